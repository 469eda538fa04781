"""Faithfulness board: deletion and insertion of every layer's map, beside the localisation
scoreboard, pair by pair.

    images, masks, classes = shapes.shapes_sample(128)          # held-out "test" images
    faith = faithfulness_board(model, images, classes, ["layer4", "layer3"])
    local = scoreboard(model, images, masks, classes, ["layer4", "layer3"])
    faith.check_paired(local)          # same (image, class) pairs in the same order
    print(faith.to_text())
    faith.compare(("layer4", "gradcam"), ("layer3", "gradcam"), "insertion")

For every image and every class present in it (a "pair", ordered as
:func:`gradcam_edu.scoreboard.scoreboard` orders them: image order, then object order) the
map of that class at every layer and method is scored by deletion (area under the class
probability as its most salient pixels turn black; lower is better) and insertion (area as
they are revealed on the blurred image; higher is better), with the conventions of
:func:`gradcam_edu.faithfulness.perturbation_curves`. Per batch of ``image_batch`` images
there is ONE forward for all layers and one backward per object slot (the scoreboard's
capture, the same maps), then all the batch's maps are perturbed together. Scores are per
pair, so ``scores[key]["deletion"][p]`` sits beside the scoreboard's
``scores[key]["energy"][p]``, and differences are bootstrapped by image.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .cams import GRADIENT_METHODS, check_methods, finalize, raw_map
from .capture import check_images, record
from .faithfulness import (
    BATCH_SIZE,
    MODES,
    Baseline,
    _positive_int,
    curve_auc,
    perturbation_curves,
)
from .metrics import paired_bootstrap
from .threads import torch_threads


@dataclass
class FaithfulnessBoard:
    """Per-pair deletion and insertion scores of a :func:`faithfulness_board` run.

    ``scores[(layer, method)]["deletion" | "insertion"]``: ``(P,)`` float, areas under the
    curves for the P (image, class) pairs; ``image_index`` / ``target_class`` ``(P,)``: where
    each pair comes from, equal to the scoreboard's for the same images and classes.
    """

    layers: list[str]
    methods: list[str]
    steps: int
    scores: dict[tuple[str, str], dict[str, torch.Tensor]]
    image_index: torch.Tensor
    target_class: torch.Tensor
    n_boot: int = 1000
    seed: int = 0
    _rows: list[dict] | None = field(default=None, repr=False)

    def check_paired(self, other) -> None:
        """``ValueError`` unless ``other`` (a :class:`FaithfulnessBoard` or a
        :class:`gradcam_edu.scoreboard.Scoreboard`) holds the same pairs in the same order."""
        index, cls = getattr(other, "image_index", None), getattr(other, "target_class", None)
        if not (isinstance(index, torch.Tensor) and isinstance(cls, torch.Tensor)
                and torch.equal(self.image_index, index) and torch.equal(self.target_class, cls)):
            raise ValueError("other: not run on the same images and classes (its image_index "
                             "and target_class differ), so its scores cannot be paired")

    def mean_ci(self, scores: torch.Tensor) -> tuple[float, float, float]:
        """Mean of per-pair ``scores`` and its 95% bootstrap interval (resampling images)."""
        return paired_bootstrap(scores, torch.zeros_like(scores), self.n_boot, self.seed,
                                groups=self.image_index)

    def _pick(self, key: tuple[str, str] | str, metric: str) -> torch.Tensor:
        key = (key, self.methods[0]) if isinstance(key, str) else tuple(key)
        if key not in self.scores:
            raise ValueError(f"a/b: no scores for {key!r}; layers {self.layers}, methods "
                             f"{self.methods}")
        return self.scores[key][metric]

    def compare(self, a: tuple[str, str] | str, b: tuple[str, str] | str,
                metric: str = "insertion", other: FaithfulnessBoard | None = None) -> dict:
        """Paired difference ``a - b`` of ``metric`` ("deletion" or "insertion") over the same
        pairs, bootstrapped by image. ``a``, ``b``: ``(layer, method)`` or a layer (the first
        method); ``other``: take ``b`` from another board on the same pairs (another model).
        Returns ``{"a", "b", "metric", "difference", "low", "high", "pairs"}`` (95%)."""
        if metric not in MODES:
            raise ValueError(f"metric: expected one of {MODES}, got {metric!r}")
        board_b = self if other is None else other
        self.check_paired(board_b)
        diff, lo, hi = paired_bootstrap(self._pick(a, metric), board_b._pick(b, metric),
                                        self.n_boot, self.seed, groups=self.image_index)
        return {"a": a, "b": b, "metric": metric, "difference": diff, "low": lo, "high": hi,
                "pairs": len(self.image_index)}

    @property
    def rows(self) -> list[dict]:
        """One dict per (layer, method): means over pairs and their 95% intervals."""
        if self._rows is None:
            with torch_threads(1):
                self._rows = []
                for (layer, method), s in self.scores.items():
                    row = {"layer": layer, "method": method, "pairs": len(self.image_index)}
                    for metric in MODES:
                        mean, lo, hi = self.mean_ci(s[metric])
                        row.update({metric: mean, f"{metric}_lo": lo, f"{metric}_hi": hi})
                    self._rows.append(row)
        return self._rows

    def to_text(self) -> str:
        """The table as aligned plain text (95% interval in brackets)."""
        lw = max(len("layer"), *(len(la) for la in self.layers)) + 2
        mw = max(len("method"), *(len(m) for m in self.methods)) + 2
        lines = [f"{'layer':<{lw}}{'method':<{mw}}{'deletion (lower: better)':<26}"
                 f"insertion (higher: better)"]
        for r in self.rows:
            d, i = (f"{r[m]:.3f} [{r[m + '_lo']:.3f}, {r[m + '_hi']:.3f}]" for m in MODES)
            lines.append(f"{r['layer']:<{lw}}{r['method']:<{mw}}{d:<26}{i}")
        lines.append(f"{len(self.image_index)} (image, class) pairs from "
                     f"{len(torch.unique(self.image_index))} images; {self.steps} steps; 95% "
                     f"intervals: bootstrap over images, {self.n_boot} resamples, seed {self.seed}")
        return "\n".join(lines)


def _check_board(model: nn.Module, images: torch.Tensor, classes, layers) -> list[str]:
    """Validate :func:`faithfulness_board`'s inputs; returns ``layers`` as a list."""
    check_images(model, images, "images")
    n = images.shape[0]
    if isinstance(classes, str | torch.Tensor) or not isinstance(classes, Sequence):
        raise ValueError(f"classes: expected one list of class indices per image ({n}), got "
                         f"{type(classes).__name__}")
    if len(classes) != n:
        raise ValueError(f"classes: expected one list of class indices per image ({n}), got "
                         f"{len(classes)}")
    for i, c in enumerate(classes):
        try:
            ok = not isinstance(c, str) and all(not isinstance(v, bool) and operator.index(v) >= 0
                                                for v in c)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"classes[{i}]: expected a list of class indices (ints >= 0), got "
                             f"{c!r}")
    if not any(len(c) for c in classes):
        raise ValueError("classes: every list is empty; there is no (image, class) pair")
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers: the list of layers is empty; name at least one, e.g. 'layer4'")
    if not all(isinstance(la, str) for la in layers):
        raise TypeError("layers: expected layer names (str), as in model.named_modules()")
    return layers


def _batch_maps(model: nn.Module, x: torch.Tensor, classes: Sequence[Sequence[int]],
                layers: list[str], methods: list[str]) -> tuple[list[str], list[tuple]]:
    """ONE forward of ``x``, one backward per object slot: the displayed maps ``(R, H, W)`` at
    the input size of every (layer, method), one per image holding that slot, as
    ``(layer, method, slot, rows, maps)``; and the layers in forward order."""
    cap = record(model, layers, x)
    try:
        num_classes = cap.logits.shape[1]
        for i, c in enumerate(classes):
            if any(int(v) >= num_classes for v in c):
                raise ValueError(f"classes: image {i} of the batch names class {max(c)}, but "
                                 f"the model has {num_classes} classes (0 to {num_classes - 1})")
        out = []
        for slot in range(max(len(c) for c in classes)):
            rows = [i for i, c in enumerate(classes) if slot < len(c)]
            if not rows:
                continue
            cls = torch.tensor([int(c[slot]) if slot < len(c) else 0 for c in classes])
            valid = torch.tensor([slot < len(c) for c in classes])

            def target(logits, cls=cls, valid=valid):
                picked = logits.gather(1, cls[:, None].to(logits.device)).squeeze(1)
                return picked * valid.to(logits.device)   # no gradient from empty slots

            cap.backward(target)
            local = torch.tensor(rows)
            for layer in layers:
                A, G = cap.activations[layer].detach()[local], cap.gradients[layer][local]
                for method in methods:
                    maps = finalize(raw_map(method, A, G), tuple(x.shape[-2:]))
                    out.append((layer, method, slot, rows, maps))
        return cap.layer_names, out
    finally:
        cap.release()


def faithfulness_board(model: nn.Module, images: torch.Tensor,
                       classes: Sequence[Sequence[int]], layers: Sequence[str],
                       methods: Sequence[str] = ("gradcam", "hirescam", "layercam"),
                       steps: int = 32, batch_size: int = BATCH_SIZE, image_batch: int = 4,
                       deletion_baseline: Baseline = "zeros",
                       insertion_baseline: Baseline = "blur", n_boot: int = 1000,
                       seed: int = 0) -> FaithfulnessBoard:
    """Deletion and insertion scores of every (layer, method) on every (image, class) pair.

    ``images`` float ``(N, C, H, W)``; ``classes[i]``: the classes present in image i (as
    :func:`gradcam_edu.shapes.shapes_sample` returns them; masks are not needed);
    ``layers``: capture names; ``methods``: names of :data:`gradcam_edu.cams.GRADIENT_METHODS`.
    Maps are the scoreboard's displayed maps (:func:`gradcam_edu.cams.finalize`, upsampled to
    the input size). ``steps``, the baselines and ``batch_size`` (perturbed images per
    forward): see :func:`gradcam_edu.faithfulness.perturbation_curves`. ``image_batch``:
    images per capture, whose maps are all perturbed together. ``n_boot``, ``seed``: the
    bootstrap of :attr:`FaithfulnessBoard.rows`.
    """
    methods = check_methods(methods, GRADIENT_METHODS)
    layers = _check_board(model, images, classes, layers)
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("image_batch", image_batch)):
        _positive_int(value, name)
    first_pair = [0]
    for c in classes:
        first_pair.append(first_pair[-1] + len(c))
    p = first_pair[-1]
    scores = {(la, m): {mode: torch.full((p,), math.nan) for mode in MODES}
              for la in layers for m in methods}
    order = None
    for start in range(0, images.shape[0], image_batch):
        batch = list(range(start, min(start + image_batch, images.shape[0])))
        if not any(len(classes[i]) for i in batch):
            continue
        names, parts = _batch_maps(model, images[batch], [classes[i] for i in batch], layers,
                                   methods)
        order = order or names
        curves = perturbation_curves(
            model, images[batch], torch.cat([maps for *_, maps in parts]),
            torch.tensor([int(classes[batch[r]][slot]) for _, _, slot, rows, _ in parts
                          for r in rows]),
            steps, torch.tensor([r for *_, rows, _ in parts for r in rows]),
            deletion_baseline, insertion_baseline, batch_size)
        aucs = {mode: curve_auc(curves[mode]) for mode in MODES}
        at = 0
        for layer, method, slot, rows, _ in parts:
            pairs = torch.tensor([first_pair[batch[r]] + slot for r in rows])
            for mode in MODES:
                scores[(layer, method)][mode][pairs] = aucs[mode][at:at + len(rows)]
            at += len(rows)
    image_index = torch.tensor([i for i, c in enumerate(classes) for _ in c], dtype=torch.long)
    target_class = torch.tensor([int(v) for c in classes for v in c], dtype=torch.long)
    order = [la for la in order if la in layers]
    scores = {(la, m): scores[(la, m)] for la in order for m in methods}
    return FaithfulnessBoard(layers=order, methods=list(methods), steps=steps, scores=scores,
                             image_index=image_index, target_class=target_class,
                             n_boot=n_boot, seed=seed)
