"""The explorer's views that are not widgets, drawn with PIL: the outline of an object's mask,
the scores line, and the static snapshot of the whole view that viewers without a kernel show
(the ``image/png`` of :meth:`gradcam_edu.explorer.Explorer._repr_mimebundle_`).

    views.outline(mask, 224)          # mode "L": the mask's 2-pixel inner boundary
    views.score_text(scores, "ring")  # "scores for ring: energy 0.62 · pointing (15 px) ..."
    views.snapshot(header, panels, probabilities, names, selected, "sigmoid", scores, message)

The snapshot's layout, for panels of height ``d`` (the explorer's: the image ``d`` wide, the
overlay ``d``, the raw panel ``d + 74``) and ``rows = min(K, 10)`` probabilities: a header line;
then each panel under its two-line caption, the probability column (:data:`PROB_W` pixels)
beside them; then the scores line (under the second panel) and the message line. All gaps are
:data:`GAP` pixels and text lines :data:`LINE`: the image is
``GAP + sum(panel width + GAP) + PROB_W + GAP`` wide and
``4 GAP + 3 LINE + max(2 LINE + d, LINE (rows + 1))`` high.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["GAP", "LINE", "PROB_ROWS", "PROB_W", "draw_outlines", "outline", "outlines", "plain",
           "score_text", "scores", "snapshot"]

GAP, LINE, PROB_W, PROB_ROWS = 8, 14, 250, 10
"""The snapshot's gap and text line (pixels), probability column width, probability rows."""
_BAR, _SELECTED = "#3b7dd8", "#dde8fa"  # the probability bars, the selected class's row


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    """PIL's default font at 11 px (its bitmap font where PIL lacks FreeType)."""
    try:
        return ImageFont.load_default(size=11)
    except TypeError:
        return ImageFont.load_default()


def plain(markup: str) -> str:
    """The text of a caption's HTML (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup)).strip()


def outline(mask: np.ndarray, size: int) -> Image.Image:
    """A bool (S, S) mask -> its 2-pixel inner boundary at ``size`` x ``size`` (nearest
    neighbours), as a mode "L" image: 255 on the boundary, 0 elsewhere."""
    m = np.asarray(mask, dtype=bool)
    if m.shape != (size, size):
        m = np.asarray(Image.fromarray(m).resize((size, size), Image.NEAREST))
    inner = m.copy()
    for _ in range(2):  # 4-neighbour erosion, twice
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return Image.fromarray(((m & ~inner) * 255).astype(np.uint8), mode="L")


def outlines(truth, index: int, size: int) -> list[tuple[int, Image.Image]]:
    """``(class, outline)`` of each object of image ``index`` of ``truth`` (a
    :class:`gradcam_edu.session.GroundTruth`, or None) at ``size`` (:func:`outline`)."""
    found = truth.objects(index) if truth is not None else None
    return [(c, outline(m.numpy(), size)) for c, m in zip(*found, strict=True)] if found else []


def draw_outlines(img: Image.Image, edges: Sequence[tuple[int, Image.Image]],
                  selected: int) -> None:
    """Paint :func:`outlines` on ``img`` in place: white for the ``selected`` class's object,
    black for the others."""
    for cls, edge in edges:
        img.paste((255, 255, 255) if cls == selected else (0, 0, 0), mask=edge)


def scores(truth, cam: torch.Tensor | None, index: int, cls: int,
           class_name: str) -> tuple[dict | None, str]:
    """``(scores, line)``: :meth:`gradcam_edu.session.GroundTruth.scores` of the displayed
    map ``cam`` (None: no map) for class ``cls`` on image ``index``, and the scores line in
    plain text (:func:`score_text`), which says why when there are none."""
    found = truth.scores(cam, index, cls) if cam is not None else None
    why = ("no map here" if cam is None else "no object masks for this image"
           if truth.objects(index) is None else f"no {class_name} in this image")
    return found, score_text(found, class_name, why)


def score_text(scores: dict | None, class_name: str, reason: str = "no scores") -> str:
    """The scores line (plain text) of :meth:`gradcam_edu.session.GroundTruth.scores`'s
    ``scores`` for ``class_name``; ``reason`` when there are none."""
    if scores is None:
        return f"{reason}: no scores"
    share = scores["target_share"]
    share = "-- (one object)" if share is None else f"{share:.2f}"
    return (f"scores for {class_name}: energy {scores['energy']:.2f} · pointing (15 px) "
            f"{'hit' if scores['pointing'] else 'miss'} · target share {share}")


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, width: int,
          lines: int = 1) -> None:
    """``text`` wrapped at spaces to ``width`` pixels, at most ``lines`` lines of
    :data:`LINE` (a longer word runs on; ``...`` ends a cut text)."""
    wrapped, line = [], ""
    for word in text.split():
        longer = f"{line} {word}".strip()
        if line and draw.textlength(longer, font=_font()) > width:
            wrapped.append(line)
            line = word
        else:
            line = longer
    wrapped.append(line)
    if len(wrapped) > lines:  # cut: say so
        wrapped = [*wrapped[:lines - 1], wrapped[lines - 1] + " ..."]
    for k, shown in enumerate(wrapped):
        draw.text((xy[0], xy[1] + k * LINE), shown, fill="black", font=_font())


def _probabilities(draw: ImageDraw.ImageDraw, x: int, y: int, probs: torch.Tensor,
                   names: Sequence[str], selected: int, kind: str) -> None:
    """The top :data:`PROB_ROWS` classes, a bar each, the selected one highlighted (as
    :func:`gradcam_edu.render.probability_table`)."""
    title = "sigmoid, per class" if kind == "sigmoid" else "softmax"
    _text(draw, (x, y), f"probabilities ({title})", PROB_W)
    for k, c in enumerate(probs.argsort(descending=True)[:PROB_ROWS].tolist()):
        top, p = y + LINE * (k + 1), float(probs[c])
        if c == selected:
            draw.rectangle((x - 2, top, x + PROB_W - 6, top + LINE - 1), fill=_SELECTED)
        _text(draw, (x, top), str(names[c]), 108)
        draw.rectangle((x + 112, top + 3, x + 112 + max(1, round(p * 100)), top + 11),
                       fill=_BAR)
        _text(draw, (x + 216, top), f"{p:.3f}", 40)


def snapshot(header: str, panels: Sequence[tuple[str, Image.Image]], probabilities,
             names: Sequence[str], selected: int, kind: str, scores: str | None,
             message: str) -> Image.Image:
    """One RGB image of a view (layout in the module docstring): ``header`` (one line),
    ``panels`` ``(caption, RGB image)`` left to right, all of one height, the
    ``probabilities`` ``(K,)`` of the classes ``names`` (``selected`` highlighted, ``kind``
    "sigmoid" or "softmax"), ``scores`` (a line under the second panel, or None) and
    ``message`` (the last line)."""
    if not panels or len({img.height for _, img in panels}) != 1:
        raise ValueError(f"panels: expected images of one height, got "
                         f"{[img.size for _, img in panels]}")
    probs = torch.as_tensor(probabilities).detach().float().cpu()
    d, rows = panels[0][1].height, min(len(names), PROB_ROWS)
    xs = np.cumsum([GAP] + [img.width + GAP for _, img in panels]).tolist()
    top = 2 * GAP + LINE
    bottom = top + max(2 * LINE + d, LINE * (rows + 1)) + GAP
    canvas = Image.new("RGB", (xs[-1] + PROB_W + GAP, bottom + 2 * LINE + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    _text(draw, (GAP, GAP), header, canvas.width - 2 * GAP)
    for x, (caption, img) in zip(xs, panels, strict=False):
        _text(draw, (x, top), caption, img.width, lines=2)
        canvas.paste(img.convert("RGB"), (x, top + 2 * LINE))
    _probabilities(draw, xs[-1], top, probs, names, selected, kind)
    if scores:
        x = xs[1] if len(panels) > 1 else GAP
        _text(draw, (x, bottom), scores, canvas.width - x - GAP)
    _text(draw, (GAP, bottom + LINE), message, canvas.width - 2 * GAP)
    return canvas
