"""Drawing without matplotlib figures: PIL images and small HTML for the explorer's views.

* :func:`signed_colours` - THE colours of a raw signed map: ``RdBu_r``, symmetric around 0
  (``-max|v|`` .. ``+max|v|``, 0 is the middle colour), one colour per grid cell. The
  explorer's panel (:func:`raw_panel`) and the figures (:func:`gradcam_edu.viz.show_raw_map`)
  both colour with it.
* :data:`HEAT_CMAP` - THE colour map of every [0, 1] map (``inferno``); :func:`heat_image` - a
  [0, 1] map coloured by it (or another colour map; 256 levels, as matplotlib).
* :func:`raw_panel` - the raw map at its own grid, enlarged with nearest neighbours, with a
  colour bar and its value range.
* HTML: :func:`probability_table`, :func:`caption` and the explorer's caption texts.

:class:`Display` holds the explorer's drawing options (view size, colour map, encoding).
"""

from __future__ import annotations

import functools
import html
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["HEAT_CMAP", "RAW_CMAP", "Display", "caption", "heat_image", "input_caption",
           "layer_label", "lut", "map_caption", "note_panel", "probability_table", "raw_caption",
           "raw_panel", "signed_colours", "signed_range", "unavailable_caption"]

RAW_CMAP = "RdBu_r"
"""The colour map of raw signed maps: red positive, blue negative, white-ish 0."""

HEAT_CMAP = "inferno"
"""The colour map of every [0, 1] map the package draws (overlays, grids, the explorer, the
command line): perceptually uniform - its luminance rises monotonically with the value (black,
purple, orange, pale yellow), so equal steps of the map look like equal steps, and it stays
readable in greyscale and by colour-blind readers. ``jet`` does not: its bright yellow and cyan
bands create edges that are not in the data, and make any bump look important."""

_BAR_W, _TEXT_W, _PAD = 12, 56, 6  # raw panel: colour bar width, its labels, the gap


@dataclass(frozen=True)
class Display:
    """How the views are drawn: ``display_size`` pixels (None: max(image_size, 224)),
    ``cmap`` for the map, ``image_format`` of the image and overlay views: ``"jpeg"``
    (default: about 0.3 ms and 15 kB a view) or ``"png"`` (lossless: about 4-9 ms and
    100 kB); the raw panel is always PNG (exact grid, crisp text)."""

    display_size: int | None = None
    cmap: str = HEAT_CMAP
    image_format: str = "jpeg"

    def __post_init__(self):
        if self.image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format: expected 'png' or 'jpeg', got "
                             f"{self.image_format!r}")


@functools.lru_cache(maxsize=8)
def lut(cmap: str) -> np.ndarray:
    """uint8 (256, 3): ``cmap`` sampled at its 256 levels (as matplotlib draws it)."""
    return matplotlib.colormaps[cmap](np.arange(256), bytes=True)[:, :3].copy()


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float64)


def signed_range(raw) -> float:
    """``max |raw|`` (0.0 for an empty or all-zero map): the colour range is -it .. +it."""
    r = _numpy(raw)
    return float(np.abs(r).max()) if r.size else 0.0


def signed_colours(raw, cmap: str = RAW_CMAP) -> tuple[np.ndarray, float]:
    """A raw signed map (h, w) -> (uint8 (h, w, 3) colours, vmax): ``cmap`` over
    ``-vmax .. +vmax`` with ``vmax = max |raw|`` (0 is the middle colour; an all-zero map is
    all middle colour), exactly as matplotlib's ``imshow(raw, cmap, vmin=-vmax, vmax=vmax)``
    colours each cell. Enlarge with nearest neighbours to keep the grid visible."""
    r = _numpy(raw)
    if r.ndim != 2:
        raise ValueError(f"raw: expected one map (h, w), got shape {r.shape}")
    vmax = signed_range(r)
    scaled = 0.5 + 0.5 * r / vmax if vmax > 0 else np.full_like(r, 0.5)
    colours = matplotlib.colormaps[cmap](scaled, bytes=True)[..., :3]
    return np.ascontiguousarray(colours), vmax


def heat_image(cam: torch.Tensor, cmap: str = HEAT_CMAP, size: int | None = None) -> Image.Image:
    """A [0, 1] map (H, W) coloured by ``cmap`` (256 levels, as matplotlib) as an RGB PIL
    image, bilinearly resized to (size, size) when given."""
    idx = (cam.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    img = Image.fromarray(idx, mode="L").convert("P")
    img.putpalette(lut(cmap).tobytes())
    img = img.convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return img


def _panel(size: int) -> Image.Image:
    return Image.new("RGB", (size + _PAD + _BAR_W + _TEXT_W, size), "white")


@functools.lru_cache(maxsize=4)
def _bar(size: int, cmap: str) -> Image.Image:
    """The colour bar: +vmax at the top, -vmax at the bottom."""
    levels = np.linspace(1.0, 0.0, size)
    colours = matplotlib.colormaps[cmap](levels, bytes=True)[:, :3]
    return Image.fromarray(np.ascontiguousarray(np.repeat(colours[:, None], _BAR_W, axis=1)))


def raw_panel(raw, size: int, cmap: str = RAW_CMAP) -> Image.Image:
    """A raw signed map (h, w) at its own grid (:func:`signed_colours`), enlarged to
    ``size`` x ``size`` with nearest neighbours, and a colour bar labelled -vmax, 0, +vmax.
    RGB PIL image ``(size + 74) x size``."""
    colours, vmax = signed_colours(raw, cmap)
    canvas = _panel(size)
    canvas.paste(Image.fromarray(colours).resize((size, size), Image.NEAREST), (0, 0))
    canvas.paste(_bar(size, cmap), (size + _PAD, 0))
    draw = ImageDraw.Draw(canvas)
    x = size + _PAD + _BAR_W + 3
    for y, text in [(0, f"{vmax:+.3g}"), (size // 2 - 6, "0"), (size - 13, f"{-vmax:+.3g}")]:
        draw.text((x, y), text, fill="black", font=_font())
    return canvas


def note_panel(text: str, size: int) -> Image.Image:
    """A panel the size of :func:`raw_panel`'s with ``text`` in it (a map not available)."""
    canvas = _panel(size)
    draw = ImageDraw.Draw(canvas)
    chars = max(12, (canvas.width - 12) // 6)
    draw.multiline_text((6, 6), "\n".join(textwrap.wrap(text, chars)[:size // 14]),
                        fill="#b00", font=_font())
    return canvas


# ----------------------------------------------------------------------------- HTML
def caption(text: str) -> str:
    """``text`` (HTML) in the explorer's caption style."""
    return f"<div style='font-size:12px;line-height:1.3'>{text}</div>"


def _grid(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def layer_label(layer: str, grid: Sequence[int], same_as: str | None = None) -> str:
    """``layer4 (7x7, the output of layer4.1)``: the layer slider's label."""
    note = f", the output of {html.escape(same_as)}" if same_as else ""
    return f"<b>{html.escape(layer)}</b> ({_grid(grid)}{note})"


def map_caption(title: str, layer: str, grid: Sequence[int], class_name: str,
                logit: float) -> str:
    """The overlay's caption: method, layer, grid, class and its logit."""
    return caption(f"<b>{html.escape(title)}</b> · {html.escape(layer)} ({_grid(grid)}) · "
                   f"{html.escape(class_name)} (logit {logit:.2f})")


def unavailable_caption(title: str, layer: str) -> str:
    """The overlay's caption when the method cannot explain the layer."""
    return caption(f"<b>{html.escape(title)}</b> is not available at {html.escape(layer)}")


def raw_caption(grid: Sequence[int], lo: float, hi: float) -> str:
    """The raw panel's caption: its grid and value range."""
    return caption(f"raw map at the {_grid(grid)} grid: min {lo:.3g}, max {hi:.3g}")


def input_caption(name: str, top_class: str, probability: float) -> str:
    """The input view's caption: the image's name and the model's top class."""
    return caption(f"{html.escape(name)} · top class {html.escape(top_class)} "
                   f"({probability:.2f})")


def probability_table(probs: torch.Tensor, names: Sequence[str], selected: int, kind: str,
                      top: int = 10) -> str:
    """HTML: the ``top`` classes by probability (``kind``: "sigmoid" or "softmax"), a bar
    each, the ``selected`` class in bold."""
    order = probs.argsort(descending=True)[:top].tolist()
    title = "sigmoid, per class" if kind == "sigmoid" else "softmax"
    rows = []
    for c in order:
        p = float(probs[c])
        weight = "bold" if c == selected else "normal"
        rows.append(
            f"<tr style='font-weight:{weight}'>"
            f"<td style='padding:1px 6px 1px 0'>{html.escape(str(names[c]))}</td>"
            f"<td style='padding:1px 0;width:104px'><div style='width:{max(1, round(p * 100))}px;"
            f"height:9px;background:#3b7dd8'></div></td>"
            f"<td style='padding:1px 0 1px 6px;text-align:right'>{p:.3f}</td></tr>")
    return (f"<div style='font-size:12px;line-height:1.3'><b>probabilities ({title})</b>"
            f"<table style='border-collapse:collapse;font-size:12px'>{''.join(rows)}</table></div>")
