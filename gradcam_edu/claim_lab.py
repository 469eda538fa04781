"""The claim lab: change one factor of the post's settings, see what it does to the map.

    lab = ClaimLab(n_images=16)    # precomputes every setting (a progress bar), then
    lab                            # shows the widget; lab.set(head="trained fc") from code

Factors: the head, the depth (full, or cut after ``layer4.0``), the skip gradient and the hook
point in the last block; the models are the verdict evidence's
(:func:`gradcam_edu.evidence.variant`). The lab shows the Grad-CAM maps of the current and a
comparison setting (the post's example 1, or the setting before the last change: one toggle,
one factor's isolated effect), and the paired difference of energy and clarity over the
(image, class) pairs with its 95% interval (:func:`gradcam_edu.verdict.seed_bootstrap`).
Everything is computed at construction (one capture per model variant, all hook points), so
a toggle is a lookup and a redraw (``benchmarks/bench_claim_lab.py`` times both).
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

import ipywidgets as widgets
import torch
from IPython import get_ipython
from IPython.display import display
from PIL import Image
from torch import nn

from . import cams, render, views, weights
from .capture import capture
from .evidence import CUT, SEEDS, model_name, variant
from .images import encode, to_uint8
from .metrics import energy_at_grid, gini, upsample_adjoint
from .models import probability_kind, to_probabilities
from .session import GroundTruth
from .shapes import CLASS_NAMES, shapes_sample
from .threads import torch_threads
from .verdict import Effect, changed_factors, seed_bootstrap

__all__ = ["COMPARE", "DEPTHS", "EXAMPLE_1", "FACTORS", "HEADS", "HOOKS", "SKIPS", "ClaimLab",
           "Measured", "layer_name", "measure_variant"]

HEADS, DEPTHS, SKIPS = ("random fc", "trained fc", "probe"), ("full", "cut"), ("on", "off")
HOOKS = ("conv1", "conv2", "bn2", "pre_relu", "output")
"""Hook points of the last block; ``"output"`` is the block itself (after its ReLU)."""
HOOK_LABELS = {"conv1": "block conv1", "pre_relu": "sum before ReLU", "output": "block output"}
FACTORS = ("head", "depth", "skip_gradient", "hook")
EXAMPLE_1 = {"head": "random fc", "depth": "full", "skip_gradient": "on", "hook": "conv2"}
"""The post's example 1: ``model.fc`` replaced by a random ``nn.Linear``, ``layer4.1.conv2``."""
COMPARE = {"example 1": "the post's example 1", "previous": "the setting before your last change"}
LAST_BLOCK = {"full": "layer4.1", "cut": CUT}
CHOICES = {"head": HEADS, "depth": DEPTHS, "skip_gradient": SKIPS, "hook": HOOKS}
METRIC_TITLES = {"energy": "energy (mass inside the object)", "clarity": "clarity (Gini)"}
MAX_IMAGES = 64


def layer_name(depth: str, hook: str) -> str:
    """The capture name of ``hook`` in the last block at ``depth``: ``layer4.1.conv2``,
    ``layer4.0.pre_relu``, ``layer4.1`` (the block output), ..."""
    block = LAST_BLOCK[_check("depth", depth)]
    return block if _check("hook", hook) == "output" else f"{block}.{hook}"


def _check(factor: str, value: str) -> str:
    if value not in CHOICES[factor]:
        raise ValueError(f"{factor}: expected one of {CHOICES[factor]}, got {value!r}")
    return value


@dataclass(frozen=True)
class Measured:
    """One setting on the P (image, class) pairs: ``maps`` ``(P, h, w)`` displayed maps at the
    layer's grid (:func:`gradcam_edu.cams.finalize`), ``energy``, ``clarity`` ``(P,)`` scored
    as the scoreboard does, ``logits`` ``(N, K)`` of the model on the N images."""

    maps: torch.Tensor
    energy: torch.Tensor
    clarity: torch.Tensor
    logits: torch.Tensor


def _score(cap, layers: Sequence[str], local: list[int], mask: torch.Tensor,
           size: tuple[int, int], parts: dict) -> None:
    """Maps and scores of one backward's pairs (images ``local`` of the batch, objects
    ``mask`` ``(P, H, W)``) at every layer, appended to ``parts``."""
    adjoints: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for la in layers:
        low = cams.finalize(cams.raw_map("gradcam", cap.activations[la].detach()[local],
                                         cap.gradients[la][local]))
        grid = tuple(low.shape[-2:])
        if grid not in adjoints:       # U^T mask, U^T 1: the same for every layer of a grid
            adjoints[grid] = (upsample_adjoint(mask.float(), grid),
                              upsample_adjoint(torch.ones_like(mask, dtype=torch.float32), grid))
        parts[la]["maps"].append(low)
        parts[la]["energy"].append(energy_at_grid(low, mask, adjoints[grid]))
        parts[la]["clarity"].append(gini(cams.upsample(low, size)))


def measure_variant(model: nn.Module, images: torch.Tensor, masks: Sequence[torch.Tensor],
                    classes: Sequence[Sequence[int]], layers: Sequence[str],
                    batch_size: int = 16) -> dict[str, Measured]:
    """Grad-CAM at every layer of ``layers`` on every (image, class present) pair, from one
    capture (per batch one forward, one backward per object slot). ``images``
    ``(N, 3, H, W)``; ``masks[i]`` bool ``(K_i, H, W)`` aligned with ``classes[i]``. Pairs
    in (image, object) order, as the scoreboard's."""
    size = tuple(images.shape[-2:])
    parts = {la: {"maps": [], "energy": [], "clarity": []} for la in layers}
    order, logits = [], []
    with capture(model, list(layers)) as cap:
        for start in range(0, images.shape[0], batch_size):
            batch = list(range(start, min(start + batch_size, images.shape[0])))
            logits.append(cap.forward(images[batch]).detach())
            for slot in range(max(len(classes[i]) for i in batch)):
                cls = torch.tensor([classes[i][slot] if slot < len(classes[i]) else 0
                                    for i in batch])
                valid = torch.tensor([slot < len(classes[i]) for i in batch])  # else no gradient
                cap.backward(lambda z, c=cls, v=valid: z.gather(1, c[:, None]).squeeze(1) * v)
                local = [k for k, i in enumerate(batch) if slot < len(classes[i])]
                mask = torch.stack([masks[batch[k]][slot] for k in local])
                order += [(batch[k], slot) for k in local]
                with torch_threads(1):     # small tensors: one thread is faster
                    _score(cap, layers, local, mask, size, parts)
    perm = torch.tensor(sorted(range(len(order)), key=order.__getitem__))
    return {la: Measured(*(torch.cat(p[k])[perm] for k in ("maps", "energy", "clarity")),
                         torch.cat(logits)) for la, p in parts.items()}


def _check_int(name: str, value, lo: int, hi: int | None = None, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
            hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: expected an int {span}{why}, got {value!r}")


def _describe(s: dict, short: bool = False) -> str:
    """``full · trained fc · skip gradient on · layer4.1.conv2`` (``short``: ``skip on``)."""
    skip = "skip" if short else "skip gradient"
    return (f"{s['depth']} · {s['head']} · {skip} {s['skip_gradient']} · "
            f"{layer_name(s['depth'], s['hook'])}")


class ClaimLab:
    """Toggle the post's factors and see the isolated effect of each on the Grad-CAM map.

    Factors (ToggleButtons): ``head`` (the post's ``random fc``, the ``trained fc``, a linear
    ``probe``), ``depth`` (``full`` or ``cut``), ``skip_gradient`` (``off``: no gradient flows
    back through any skip connection), ``hook`` in the last block (``layer4.1`` full,
    ``layer4.0`` cut): ``conv1`` (the post's example 3), ``conv2``, ``bn2``, ``pre_relu`` (the
    sum before the final ReLU), the block ``output``. The view: both settings' maps over the
    image, objects outlined (white: the explained class), their mean energy (share of the map
    inside the object) and clarity (Gini), the paired difference current - comparison (one
    training seed: the interval resamples images) and the factors that differ
    (:func:`gradcam_edu.verdict.changed_factors`); a PNG snapshot in the display bundle.

    n_images: the first ``n_images`` held-out "test" shapes images (2 to 64), with their
    object masks and classes; seed: the training seed of ``resnet18-shapes`` (one of
    :data:`gradcam_edu.evidence.SEEDS`); n_boot: bootstrap resamples of the intervals;
    start: the first setting (dict of :data:`FACTORS`, default the trained full model at
    ``conv2``); display_size: pixels of each view; progress: show a progress bar while
    precomputing (in a notebook).

    Widgets: ``head_buttons``, ``depth_buttons``, ``skip_buttons``, ``hook_buttons``,
    ``compare_buttons``, ``class_buttons`` (ToggleButtons), ``image_slider``; views
    ``current_image``, ``comparison_image`` (Image), ``current_caption``,
    ``comparison_caption``, ``difference``, ``probabilities`` (HTML); all in ``widget``."""

    def __init__(self, n_images: int = 16, seed: int = 0, n_boot: int = 2000,
                 start: dict | None = None, display_size: int = 224, progress: bool = True):
        _check_int("n_images", n_images, 2, MAX_IMAGES, " (a paired difference needs 2)")
        if seed not in SEEDS or isinstance(seed, bool):
            raise ValueError(f"seed: expected a training seed of the shipped models {SEEDS}, "
                             f"got {seed!r}")
        _check_int("n_boot", n_boot, 1)
        _check_int("display_size", display_size, 32, why=" (pixels)")
        self._current = self._checked({**EXAMPLE_1, "head": "trained fc"}, start or {}, "start")
        self._previous = dict(EXAMPLE_1)
        self.seed, self.n_boot, self.display_size = seed, n_boot, display_size
        self.images, masks, self.classes = shapes_sample(n_images, split="test")
        self.truth = GroundTruth(masks, self.classes, n_images, self.images.shape[-1])
        self.class_names = list(CLASS_NAMES)
        self._effects: dict[tuple, Effect] = {}
        self._silent = False  # True while the lab sets its own widgets
        self.precompute_s, self.last_update_ms = 0.0, 0.0  # the precompute, the last toggle
        self._precompute(masks, progress)
        d = display_size   # each image and its objects' outlines, at the view's size
        self._rgb = [Image.fromarray(to_uint8(x)).resize((d, d)) for x in self.images]
        self._edges = [views.outlines(self.truth, i, d) for i in range(n_images)]
        self._build_widgets()
        self._update()

    def _precompute(self, masks, progress: bool) -> None:
        """Every (head, depth, skip) variant: one capture, all hook points, every pair."""
        t0 = time.perf_counter()
        base = self.model = weights.load_model(model_name(self.seed))  # variants are copies
        variants = [(h, d, s) for d in DEPTHS for h in HEADS for s in SKIPS]
        bar = widgets.IntProgress(max=len(variants), description="precomputing")
        if progress and get_ipython() is not None:   # a notebook (or IPython)
            display(bar)
        self._measured: dict[tuple[str, str, str, str], Measured] = {}
        self._kind: dict[tuple[str, str, str], str] = {}
        for head, depth, skip in variants:
            model = variant(base, self.seed, depth, head, skip)
            self._kind[(head, depth, skip)] = probability_kind(model)
            found = measure_variant(model, self.images, masks, self.classes,
                                    [layer_name(depth, h) for h in HOOKS])
            for hook in HOOKS:
                self._measured[(head, depth, skip, hook)] = found[layer_name(depth, hook)]
            bar.value += 1
        self.image_index = torch.tensor([i for i, c in enumerate(self.classes) for _ in c])
        self.target_class = torch.tensor([k for c in self.classes for k in c])
        self.precompute_s = time.perf_counter() - t0
        bar.close()

    @staticmethod
    def _checked(base: dict, changes: dict, what: str) -> dict:
        if set(changes) - set(FACTORS):
            raise ValueError(f"{what}: unknown factor(s) {sorted(set(changes) - set(FACTORS))}"
                             f"; expected some of {FACTORS}")
        return {**base, **{k: _check(k, v) for k, v in changes.items()}}

    def _build_widgets(self) -> None:
        d, s = self.display_size, self._current

        def toggles(factor: str, description: str, labels=None) -> widgets.ToggleButtons:
            opts = [((labels or {}).get(v, v), v) for v in CHOICES[factor]]
            return widgets.ToggleButtons(options=opts, value=s[factor], description=description,
                                         style={"button_width": "auto"})
        self.head_buttons, self.depth_buttons = toggles("head", "head"), toggles("depth", "depth")
        self.skip_buttons = toggles("skip_gradient", "skip grad.")
        self.hook_buttons = toggles("hook", "hook point", HOOK_LABELS)
        self.compare_buttons = widgets.ToggleButtons(
            options=[(v, k) for k, v in COMPARE.items()], value="example 1",
            description="compare with", style={"button_width": "auto"})
        self.image_slider = widgets.IntSlider(value=0, min=0, max=len(self.classes) - 1,
                                              description="image", continuous_update=False)
        self.class_buttons = widgets.ToggleButtons(description="class",
                                                   style={"button_width": "auto"})
        self._set_class_options(0)
        layout = widgets.Layout(width=f"{d}px", height=f"{d}px")
        self.current_image, self.comparison_image = (widgets.Image(format="jpeg", layout=layout)
                                                     for _ in "ab")
        cap = widgets.Layout(width=f"{d}px", height="80px")  # 5 caption lines
        self.current_caption, self.comparison_caption = (widgets.HTML(layout=cap) for _ in "ab")
        self.probabilities = widgets.HTML(layout=widgets.Layout(min_width="260px"))
        self.difference = widgets.HTML(layout=widgets.Layout(width=f"{2 * d + 300}px"))
        self.widget = widgets.VBox([
            self.head_buttons, self.depth_buttons, self.skip_buttons, self.hook_buttons,
            self.compare_buttons, widgets.HBox([self.image_slider, self.class_buttons]),
            widgets.HBox([widgets.VBox([self.current_caption, self.current_image]),
                          widgets.VBox([self.comparison_caption, self.comparison_image]),
                          self.probabilities]),
            self.difference])
        self.toggles = {"head": self.head_buttons, "depth": self.depth_buttons,
                        "skip_gradient": self.skip_buttons, "hook": self.hook_buttons}
        for factor, w in self.toggles.items():
            w.observe(lambda change, f=factor: self._on_factor(f, change), "value")
        self.compare_buttons.observe(lambda change: self._timed(self._update), "value")
        self.image_slider.observe(self._on_image, "value")
        self.class_buttons.observe(lambda change: self._timed(self._draw_views), "value")

    def _set_class_options(self, image: int) -> None:
        self._silent = True   # no redraw for the intermediate values
        self.class_buttons.options = [(self.class_names[c], c) for c in self.classes[image]]
        self.class_buttons.value = self.classes[image][0]
        self._silent = False

    @property
    def state(self) -> dict:
        """The current setting (:data:`FACTORS`, and its ``layer`` name), the comparison
        (``"example 1"`` or ``"previous"``), the image index and the class shown."""
        s, cls = self._current, self.class_buttons.value
        return {**s, "layer": layer_name(s["depth"], s["hook"]), "class": cls,
                "compare": self.compare_buttons.value, "image": self.image_slider.value,
                "class_name": self.class_names[cls]}

    @property
    def comparison(self) -> dict:
        """The comparison setting: the post's example 1 or the setting before the last change."""
        return dict(EXAMPLE_1 if self.compare_buttons.value == "example 1" else self._previous)

    @property
    def current_difference(self) -> dict[str, Effect]:
        """``{"energy": Effect, "clarity": Effect}``: the mean paired difference current -
        comparison over the pairs and its 95% interval (``.difference``, ``.low``,
        ``.high``; ``.clearer`` is the current setting, ``.other`` the comparison,
        ``.changed`` the factors that differ)."""
        return {m: self.effect(self._current, self.comparison, m) for m in METRIC_TITLES}

    def means(self, setting: dict) -> dict[str, float]:
        """Mean energy and clarity of a setting over the pairs."""
        m = self.measured(setting)
        return {k: float(getattr(m, k).double().mean()) for k in METRIC_TITLES}

    def measured(self, setting: dict) -> Measured:
        """The precomputed maps and scores of a setting (a dict of :data:`FACTORS`)."""
        s = self._checked(self._current, setting, "setting")
        return self._measured[tuple(s[f] for f in FACTORS)]

    def effect(self, setting: dict, other: dict, metric: str) -> Effect:
        """``metric(setting) - metric(other)`` per pair, its mean and 95% interval
        (:func:`gradcam_edu.verdict.seed_bootstrap`, the pairs of one image together)."""
        if metric not in METRIC_TITLES:
            raise ValueError(f"metric: expected one of {tuple(METRIC_TITLES)}, got {metric!r}")
        a, b = (self._checked(self._current, x, "setting") for x in (setting, other))
        key = (tuple(a[f] for f in FACTORS), tuple(b[f] for f in FACTORS), metric)
        if key not in self._effects:
            diff = (getattr(self.measured(a), metric) - getattr(self.measured(b), metric))
            found = seed_bootstrap(diff.double()[None], self.image_index, self.n_boot)
            self._effects[key] = Effect(", ".join(changed_factors(a, b)) or "no change", metric,
                                        *found, pairs=len(diff), images=len(self.classes),
                                        seeds=1, clearer=a, other=b)
        return self._effects[key]

    def current_map(self, which: str = "current") -> torch.Tensor:
        """The displayed map ``(S, S)`` in [0, 1] of the shown (image, class) for the
        ``"current"`` or the ``"comparison"`` setting."""
        setting = {"current": self._current, "comparison": self.comparison}[which]
        pair = ((self.image_index == self.image_slider.value)
                & (self.target_class == self.class_buttons.value)).nonzero()[0, 0]
        return cams.upsample(self.measured(setting).maps[pair][None],
                             tuple(self.images.shape[-2:]))[0]

    def set(self, **toggles) -> ClaimLab:
        """Change factors (:data:`FACTORS`), ``compare`` (``"example 1"``/``"previous"``),
        ``image`` or ``target`` (a class of the image, index or name) as the widgets do; the
        factors changed in one call count as one change (the "previous" setting is the one
        before the call)."""
        extra = {k: toggles.pop(k) for k in ("compare", "image", "target") if k in toggles}
        new = self._checked(self._current, toggles, "set")
        if extra.get("compare", "previous") not in COMPARE:
            raise ValueError(f"compare: expected one of {tuple(COMPARE)}, got "
                             f"{extra['compare']!r}")
        if "image" in extra:
            _check_int("image", extra["image"], 0, len(self.classes) - 1)
            self.image_slider.value = extra["image"]
        if "target" in extra:
            classes, t = self.classes[self.image_slider.value], extra["target"]
            cls = self.class_names.index(t) if t in self.class_names else t
            if cls not in classes:
                raise ValueError(f"target: expected a class of image {self.image_slider.value}"
                                 f" ({[self.class_names[c] for c in classes]}), got {t!r}")
            self.class_buttons.value = cls
        if new != self._current:
            self._silent = True   # one change, one redraw
            for factor, w in self.toggles.items():
                w.value = new[factor]
            self._silent = False
            self._previous, self._current = self._current, new
            self._timed(self._update)
        if "compare" in extra:
            self.compare_buttons.value = extra["compare"]
        return self

    # -- events and drawing ----------------------------------------------------------------
    def _timed(self, fn) -> None:
        t0 = time.perf_counter()
        with torch_threads(1):     # small tensors: one thread, immune to busy cores
            fn()
        self.last_update_ms = 1000.0 * (time.perf_counter() - t0)

    def _on_factor(self, factor: str, change) -> None:
        if self._silent:
            return
        self._previous = dict(self._current)
        self._current = {**self._current, factor: change["new"]}
        self._timed(self._update)

    def _on_image(self, change) -> None:
        self._set_class_options(change["new"])
        self._timed(self._draw_views)

    def _overlay(self, which: str) -> Image.Image:
        """The map of ``which`` ("current" / "comparison") over the image, objects outlined."""
        d = self.display_size
        i = self.image_slider.value
        heat = render.heat_image(self.current_map(which), render.HEAT_CMAP, d)
        blend = Image.blend(self._rgb[i], heat, 0.5)
        views.draw_outlines(blend, self._edges[i], self.class_buttons.value)
        return blend

    def _draw_views(self) -> None:
        if self._silent:
            return
        self._images = {k: self._overlay(k) for k in ("current", "comparison")}
        for title, x, caption, view, key in (
                ("current", self._current, self.current_caption, self.current_image, "current"),
                (COMPARE[self.compare_buttons.value], self.comparison, self.comparison_caption,
                 self.comparison_image, "comparison")):
            view.value = encode(self._images[key], "jpeg")
            e = self.means(x)
            caption.value = render.caption(
                f"<b>{html.escape(title)}</b>: {html.escape(_describe(x))}<br>means: energy "
                f"{e['energy']:.3f} · clarity {e['clarity']:.3f}")
        s, image = self._current, self.image_slider.value
        kind = self._kind[(s["head"], s["depth"], s["skip_gradient"])]
        self._probs = to_probabilities(self.measured(s).logits[image][None], kind)[0]
        self.probabilities.value = render.probability_table(
            self._probs, self.class_names, self.class_buttons.value, kind)

    def difference_lines(self, short: bool = False) -> list[str]:
        """The difference panel as plain text: what changed, one line per metric
        (``short``: ``energy 0.109 vs 0.072: difference +0.037 [+0.002, +0.075]``), notes."""
        cmp = self.comparison
        changed = changed_factors(self._current, cmp)
        lines = [f"changed: {', '.join(changed)}" if changed else "changed: nothing"]
        for metric, e in self.current_difference.items():
            a, b = self.means(self._current)[metric], self.means(cmp)[metric]
            lines.append(f"{metric} {a:.3f} vs {b:.3f}: difference {e.text()}" if short else
                         f"{METRIC_TITLES[metric]}: current {a:.3f}, comparison {b:.3f}, "
                         f"paired difference {e.text()}")
        lines.append(f"{e.pairs} (image, class) pairs from {e.images} images, training seed "
                     f"{self.seed}; 95% intervals: bootstrap over images")
        if changed and torch.equal(self.measured(self._current).maps, self.measured(cmp).maps):
            lines.append("every map is identical: the change does not reach this hook point")
        return lines

    def _update(self) -> None:
        self._draw_views()
        lines = [html.escape(x) for x in self.difference_lines()]
        self.difference.value = render.caption(f"<b>{lines[0]}</b><br>" + "<br>".join(lines[1:]))

    def snapshot(self) -> Image.Image:
        """The current view as one RGB image (:func:`gradcam_edu.views.snapshot`): the two
        overlays captioned with their settings, the probabilities, what changed, and the
        energy and clarity lines."""
        s, lines = self.state, self.difference_lines(short=True)
        title = "comparison: " + ("example 1" if s["compare"] == "example 1" else
                                  "before your last change")
        panels = [(f"{t}: {_describe(x, short=True)}", self._images[k]) for t, x, k in (
            ("current", self._current, "current"), (title, self.comparison, "comparison"))]
        header = f"image {s['image']} · class {s['class_name']} · {lines[0]} · {lines[3]}"
        kind = self._kind[(s["head"], s["depth"], s["skip_gradient"])]
        return views.snapshot(header, panels, self._probs, self.class_names, s["class"], kind,
                              lines[1], lines[2])

    def _repr_mimebundle_(self, **kwargs):
        """The live widget's bundle plus the :meth:`snapshot` as ``image/png``."""
        live = self.widget._repr_mimebundle_
        bundle = dict(live(**kwargs) or {}) if live is not None else {}
        png = io.BytesIO()
        self.snapshot().save(png, format="PNG", compress_level=6)
        bundle["image/png"] = base64.b64encode(png.getvalue()).decode("ascii")
        bundle["text/plain"] = f"{self!r} (a snapshot; run the cell for the live lab)"
        return bundle

    def __repr__(self) -> str:
        return f"ClaimLab({_describe(self._current)} vs {_describe(self.comparison)})"
