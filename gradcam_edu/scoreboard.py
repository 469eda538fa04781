"""Layer scoreboard: how well does each layer's map localise the object, next to what its grid
can reach at best?

    images, masks, classes = shapes.shapes_sample(200)          # held-out "test" images
    board = scoreboard(model, images, masks, classes,
                       layers=["layer4", "layer4.1.conv2", "layer3", "conv1"],
                       methods=["gradcam", "hirescam", "layercam"])
    print(board.to_text())
    board.compare(("layer4", "gradcam"), ("layer4.1.conv2", "gradcam"), "energy")

For every image and every class present in it (a "pair") the map of that class is scored
against that object's mask. Per batch of images there is ONE forward for all layers and one
backward per object slot (two at most: the shapes images hold 1 or 2 objects), reused by
every method. Scores per pair (:mod:`gradcam_edu.metrics`): pointing game strict and within
15 px, energy pointing game, and on 2-object images the target share (class discrimination:
the map of class A should put its mass on A, not on B), and the clarity of the map (Gini);
beside each layer, the true ceiling of its grid (the best any map on it can score) and the
trivial baselines (centre, uniform). Differences between two
layers are paired (same pairs) and bootstrapped by image
(:func:`gradcam_edu.metrics.paired_bootstrap`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .cams import GRADIENT_METHODS, check_methods, finalize, raw_map, upsample
from .capture import capture
from .metrics import (
    ZHANG_TOLERANCE_PX,
    baseline_scores,
    centre_map,
    dilate,
    energy_at_grid,
    gini,
    grid_ceiling,
    hits_at,
    paired_bootstrap,
    peak_location,
    resolution_ceiling,
    target_share,
    uniform_map,
    upsample_adjoint,
)
from .threads import torch_threads

METRICS = ("pointing", "pointing_tol", "energy", "target_share", "clarity")
"""Per-pair scores in [0, 1]: strict pointing hit, hit within the tolerance, energy share, on
2-object images the class discrimination (mass on the target / on both objects; NaN for
pairs from 1-object images), and the clarity (concentration) of the displayed map: its Gini
coefficient (:func:`gradcam_edu.metrics.gini`; 0 for a blank, all-zero map)."""
BASELINE = "(baseline)"


@dataclass
class Scoreboard:
    """Per-pair scores of a scoreboard run.

    ``scores[(layer, method)][metric]``: ``(P,)`` float over the P (image, class) pairs
    (metrics: :data:`METRICS`); ``ceilings[layer][metric]`` the true ceiling of the layer's
    grid per pair (:func:`gradcam_edu.metrics.grid_ceiling`: the best any map on that grid
    can score, for ``pointing``, ``pointing_tol``, ``energy``) and, under ``reference_*``, the
    score of the mask pooled to the grid (a reference, not a bound); ``baselines``:
    ``centre_pointing``, ``centre_pointing_tol``, ``centre_energy``, ``uniform_energy``,
    ``centre_target_share``, ``uniform_target_share``;
    ``image_index`` / ``target_class`` ``(P,)``: where each pair comes from (pairs are in
    image order, then object order, whatever the batch size).
    """

    layers: list[str]
    methods: list[str]
    grids: dict[str, tuple[int, int]]
    scores: dict[tuple[str, str], dict[str, torch.Tensor]]
    ceilings: dict[str, dict[str, torch.Tensor]]
    baselines: dict[str, torch.Tensor]
    image_index: torch.Tensor
    target_class: torch.Tensor
    tolerance_px: int = ZHANG_TOLERANCE_PX
    n_boot: int = 1000
    seed: int = 0
    _rows: list[dict] | None = field(default=None, repr=False)

    def mean_ci(self, scores: torch.Tensor) -> tuple[float, float, float]:
        """Mean of per-pair ``scores`` and its 95% bootstrap interval (resampling images);
        NaN scores (target share on 1-object images) are left out."""
        keep = ~torch.isnan(scores)
        if not keep.any():
            return math.nan, math.nan, math.nan
        return paired_bootstrap(scores[keep], torch.zeros_like(scores[keep]), self.n_boot,
                                self.seed, groups=self.image_index[keep])

    @property
    def rows(self) -> list[dict]:
        """One dict per (layer, method), then the baselines: means over pairs, 95% intervals
        of ``pointing_tol`` and ``energy``, and the layer grid's ceiling."""
        if self._rows is None:
            with torch_threads(1):
                self._rows = self._make_rows()
        return self._rows

    def _make_rows(self) -> list[dict]:
        rows = []
        for layer in self.layers:
            ceiling = {f"ceiling_{k}": float(v.mean()) for k, v in self.ceilings[layer].items()}
            for method in self.methods:
                s = self.scores[(layer, method)]
                row = {"layer": layer, "method": method,
                       "grid": "x".join(map(str, self.grids[layer])),
                       "pairs": len(self.image_index),
                       "pointing": float(s["pointing"].mean())}
                for metric in ("pointing_tol", "energy", "target_share"):
                    mean, lo, hi = self.mean_ci(s[metric])
                    row.update({metric: mean, f"{metric}_lo": lo, f"{metric}_hi": hi})
                rows.append({**row, **ceiling})
        b = self.baselines
        for method in ("centre", "uniform"):
            row = {"layer": BASELINE, "method": method, "grid": "-",
                   "pairs": len(self.image_index), "pointing": float(b["centre_pointing"].mean())}
            for metric, key in (("pointing_tol", "centre_pointing_tol"),
                                ("energy", f"{method}_energy"),
                                ("target_share", f"{method}_target_share")):
                mean, lo, hi = self.mean_ci(b[key])
                row.update({metric: mean, f"{metric}_lo": lo, f"{metric}_hi": hi})
            rows.append(row)
        return rows

    def to_text(self) -> str:
        """The table as aligned plain text (interval in brackets, ceiling beside)."""
        def ci(r, m):
            return f"{r[m]:.2f} [{r[m + '_lo']:.2f}, {r[m + '_hi']:.2f}]"

        lw = max(len(BASELINE), *(len(la) for la in self.layers)) + 2
        mw = max(len("uniform"), *(len(m) for m in self.methods)) + 2
        head = (f"{'layer':<{lw}}{'method':<{mw}}{'grid':>7}  {'point':>5}  "
                f"{'point@' + str(self.tolerance_px) + 'px':<19}{'energy':<19}"
                f"{'target share':<19}{'ceiling point/@tol/energy':>26}")
        lines = [head]
        for r in self.rows:
            ceiling = (f"{r['ceiling_pointing']:.2f} / {r['ceiling_pointing_tol']:.2f} / "
                       f"{r['ceiling_energy']:.2f}" if "ceiling_energy" in r else "")
            lines.append(f"{r['layer']:<{lw}}{r['method']:<{mw}}{r['grid']:>7}  "
                         f"{r['pointing']:>5.2f}  {ci(r, 'pointing_tol'):<19}"
                         f"{ci(r, 'energy'):<19}{ci(r, 'target_share'):<19}{ceiling:>26}")
        two = int((~torch.isnan(self.baselines["uniform_target_share"])).sum())
        lines.append(f"{len(self.image_index)} (image, class) pairs from "
                     f"{len(torch.unique(self.image_index))} images ({two} pairs on 2-object "
                     f"images: target share); 95% intervals: bootstrap over images, "
                     f"{self.n_boot} resamples, seed {self.seed}")
        return "\n".join(lines)

    def compare(self, a: tuple[str, str] | str, b: tuple[str, str] | str,
                metric: str = "energy", n_boot: int | None = None,
                seed: int | None = None, other: Scoreboard | None = None) -> dict:
        """Paired difference ``a - b`` of a metric over the same pairs, bootstrapped by image.

        ``a``, ``b``: ``(layer, method)`` or a layer name (the first method), or
        ``("(baseline)", "centre" | "uniform")``. ``other``: take ``b`` from another
        scoreboard run on the same images and classes (e.g. a truncated model's), so that
        two models are compared pair by pair. Returns ``{"a", "b", "metric", "difference",
        "low", "high", "pairs"}`` (95% interval; target share: 2-object pairs only).
        """
        if metric not in METRICS:
            raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
        board_b = self if other is None else other
        if not (torch.equal(self.image_index, board_b.image_index)
                and torch.equal(self.target_class, board_b.target_class)):
            raise ValueError("other: the two scoreboards were not run on the same images and "
                             "classes, so their scores cannot be paired")
        sa, sb = self._pick(a, metric), board_b._pick(b, metric)
        keep = ~(torch.isnan(sa) | torch.isnan(sb))       # target share: 2-object images
        diff, lo, hi = paired_bootstrap(sa[keep], sb[keep], n_boot or self.n_boot,
                                        self.seed if seed is None else seed,
                                        groups=self.image_index[keep])
        return {"a": a, "b": b, "metric": metric, "difference": diff, "low": lo, "high": hi,
                "pairs": int(keep.sum())}

    def _pick(self, key: tuple[str, str] | str, metric: str) -> torch.Tensor:
        if isinstance(key, str):
            key = (key, self.methods[0])
        layer, method = key
        if layer == BASELINE:
            base = {"pointing": "centre_pointing", "pointing_tol": "centre_pointing_tol",
                    "energy": f"{method}_energy",
                    "target_share": f"{method}_target_share"}[metric]
            if base not in self.baselines:
                raise ValueError(f"b: unknown baseline {method!r}; use 'centre' or 'uniform'")
            return self.baselines[base]
        if key not in self.scores:
            raise ValueError(f"a/b: no scores for {key!r}; layers {self.layers}, methods "
                             f"{self.methods}")
        return self.scores[key][metric]


def _target_share_at_grid(low: torch.Tensor, target_adjoint: torch.Tensor,
                          other_adjoint: torch.Tensor, two: torch.Tensor) -> torch.Tensor:
    """:func:`gradcam_edu.metrics.target_share` of the upsampled map, at the grid; NaN where
    the image has one object."""
    pos = low.clamp(min=0).float()
    on_target = (pos * target_adjoint).sum(dim=(1, 2))
    on_other = (pos * other_adjoint).sum(dim=(1, 2))
    both = on_target + on_other
    share = torch.where(both > 0, on_target / both.clamp(min=1e-30), torch.full_like(both, 0.5))
    return torch.where(two, share.clamp(0, 1), torch.full_like(share, math.nan))


def _baselines(mask: torch.Tensor, other: torch.Tensor, two: torch.Tensor,
               tolerance_px: int) -> dict[str, torch.Tensor]:
    out = baseline_scores(mask, tolerance_px)
    n, h, w = mask.shape
    nan = torch.full((n,), math.nan, device=mask.device)
    for name, fn in (("centre", centre_map), ("uniform", uniform_map)):
        maps = fn(h, w).expand(n, h, w)
        out[f"{name}_target_share"] = torch.where(two, target_share(maps, mask, other), nan)
    return out


def _check_inputs(images, masks, classes) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images: expected a float tensor (N, 3, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    n = images.shape[0]
    if len(masks) != n or len(classes) != n:
        raise ValueError(f"masks, classes: expected one entry per image ({n}), got "
                         f"{len(masks)} masks and {len(classes)} class lists")
    for i, (m, c) in enumerate(zip(masks, classes, strict=True)):
        if tuple(m.shape) != (len(c), *images.shape[-2:]):
            raise ValueError(f"masks[{i}]: expected shape {(len(c), *images.shape[-2:])} "
                             f"(one mask per class in classes[{i}]), got {tuple(m.shape)}")


def _score_layers(cap, layers, methods, local, mask, other, two, size, tolerance_px,
                  per, ceilings, grids) -> None:
    """Score the pairs of one backward (images ``local`` of the batch) at every layer and
    method, appending to ``per``, ``ceilings`` and ``grids``."""
    by_grid: dict[tuple[int, int], tuple] = {}   # ceiling, U^T mask/ones, U^T other
    dilated = dilate(mask, tolerance_px)         # the same for every grid
    for layer in layers:
        A = cap.activations[layer].detach()[local]
        G = cap.gradients[layer][local]
        grid = grids[layer] = tuple(A.shape[-2:])
        if grid not in by_grid:
            reference = resolution_ceiling(mask, grid, tolerance_px)
            by_grid[grid] = (
                {**grid_ceiling(mask, grid, tolerance_px, dilated),
                 **{f"reference_{k}": v for k, v in reference.items()}},
                (upsample_adjoint(mask.float(), grid),
                 upsample_adjoint(torch.ones_like(mask, dtype=torch.float32), grid)),
                upsample_adjoint(other.float(), grid))
        ceiling, adjoints, other_adjoint = by_grid[grid]
        for k, v in ceiling.items():
            ceilings.setdefault(layer, {}).setdefault(k, []).append(v)
        for method in methods:
            low = finalize(raw_map(method, A, G))        # displayed map, at the layer grid
            shown = upsample(low, size)
            ys, xs = peak_location(shown)
            out = per[(layer, method)]
            out["clarity"].append(gini(shown))
            out["pointing"].append(hits_at(ys, xs, mask).float())
            out["pointing_tol"].append(hits_at(ys, xs, mask, tolerance_px).float())
            out["energy"].append(energy_at_grid(low, mask, adjoints))
            out["target_share"].append(_target_share_at_grid(low, adjoints[0], other_adjoint, two))


def scoreboard(model: nn.Module, images: torch.Tensor, masks: Sequence[torch.Tensor],
               classes: Sequence[Sequence[int]], layers: Sequence[str],
               methods: Sequence[str] = ("gradcam", "hirescam", "layercam"),
               n_boot: int = 1000, seed: int = 0, batch_size: int = 16,
               tolerance_px: int = ZHANG_TOLERANCE_PX) -> Scoreboard:
    """Localisation scores of every (layer, method) on every (image, class present) pair.

    ``images`` float ``(N, 3, H, W)``; ``masks[i]`` bool ``(K_i, H, W)``, one mask per object of
    image i, aligned with ``classes[i]`` (``K_i`` class indices), as in
    :class:`gradcam_edu.shapes.Sample`; ``layers``: capture names; ``methods``: names of
    :data:`gradcam_edu.cams.GRADIENT_METHODS`. Maps are displayed maps
    (:func:`gradcam_edu.cams.finalize`, upsampled to the input size). Images are processed
    ``batch_size`` at a time: one forward, one backward per object slot, all layers and methods
    from that capture. ``n_boot``, ``seed``: bootstrap of the intervals in
    :attr:`Scoreboard.rows`.
    """
    methods = check_methods(methods, GRADIENT_METHODS)
    masks = [torch.as_tensor(m, dtype=torch.bool, device=images.device) for m in masks]
    _check_inputs(images, masks, classes)
    size = tuple(images.shape[-2:])
    per: dict[tuple[str, str], dict[str, list]] = {(la, m): {k: [] for k in METRICS}
                                                   for la in layers for m in methods}
    ceilings: dict[str, dict[str, list]] = {}
    baselines: dict[str, list] = {}
    image_index, slots, target_class, grids = [], [], [], {}
    with capture(model, list(layers)) as cap:
        names = None
        for start in range(0, images.shape[0], batch_size):
            stop = min(start + batch_size, images.shape[0])
            cap.forward(images[start:stop])
            names = names or cap.layer_names
            for slot in range(max(len(c) for c in classes[start:stop])):
                rows = [i for i in range(start, stop) if slot < len(classes[i])]
                local = torch.tensor([i - start for i in rows])
                cls = torch.tensor([classes[i][slot] if slot < len(classes[i]) else 0
                                    for i in range(start, stop)])
                valid = torch.tensor([slot < len(classes[i]) for i in range(start, stop)])

                def target(logits, cls=cls, valid=valid):
                    picked = logits.gather(1, cls[:, None].to(logits.device)).squeeze(1)
                    return picked * valid.to(logits.device)   # no gradient from empty slots

                cap.backward(target)
                mask = torch.stack([masks[i][slot] for i in rows])
                # the other object of a 2-object image (empty mask on 1-object images)
                other = torch.stack([masks[i][1 - slot] if len(classes[i]) == 2
                                     else torch.zeros_like(masks[i][0]) for i in rows])
                two = torch.tensor([len(classes[i]) == 2 for i in rows], device=images.device)
                image_index += rows
                slots += [slot] * len(rows)
                target_class += [classes[i][slot] for i in rows]
                with torch_threads(1):
                    for k, v in _baselines(mask, other, two, tolerance_px).items():
                        baselines.setdefault(k, []).append(v)
                    _score_layers(cap, layers, methods, local, mask, other, two, size,
                                  tolerance_px, per, ceilings, grids)
    order = [la for la in (names or layers) if la in layers]
    # pairs in (image, object) order, whatever the batch size
    perm = torch.tensor(sorted(range(len(image_index)),
                               key=lambda p: (image_index[p], slots[p])), dtype=torch.long)

    def cat(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts)[perm].cpu()     # the tables are small: on the CPU

    return Scoreboard(
        layers=order, methods=list(methods), grids=grids,
        scores={k: {m: cat(v) for m, v in d.items()} for k, d in per.items()},
        ceilings={la: {m: cat(v) for m, v in d.items()} for la, d in ceilings.items()},
        baselines={k: cat(v) for k, v in baselines.items()},
        image_index=torch.tensor(image_index)[perm], target_class=torch.tensor(target_class)[perm],
        tolerance_px=tolerance_px, n_boot=n_boot, seed=seed)
