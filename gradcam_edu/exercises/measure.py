"""Checkers of the "new measurement" exercises: one per notebook, each a number that no
cell above prints. The checker measures the same thing with the package and compares; a
known wrong variant of the measurement gets its own hint.

* notebook 01 - :func:`check_wrong_object_rate`: how often the map peaks on the *other* object;
* notebook 02 - :func:`check_target_shares`: class discrimination of one image at two layers;
* notebook 03 - :func:`check_agreement`: how often the cut model answers as the full model;
* notebook 04 - :func:`check_map_difference`: how far apart two methods' maps are;
* notebook 05 - :func:`check_seed_means`: how much retraining alone moves one setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..cams import explain
from ..capture import model_mode
from ..evidence import Evidence
from ..metrics import pointing_game, target_share
from ..truncate import truncate
from .nb01 import Verdict, _describe

__all__ = ["wrong_object_rate", "check_wrong_object_rate", "target_shares",
           "check_target_shares", "agreement", "check_agreement", "map_difference",
           "check_map_difference", "seed_means", "check_seed_means"]


def _number(value: object) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _compare(value: object, reference: float, what: str, tol: float,
             hints: Mapping[str, float] = {}) -> Verdict:  # noqa: B006 (read only)
    v = _number(value)
    if v is None:
        return Verdict(False, f"expected one number ({what}), got {_describe(value)}.")
    if abs(v - reference) <= tol:
        return Verdict(True, f"{what} = {reference:.4f}.")
    for hint, wrong in hints.items():
        if abs(v - wrong) <= tol:
            return Verdict(False, hint)
    side = "high" if v > reference else "low"
    return Verdict(False, f"{what}: got {v:.4f}, too {side}; measure again (check which "
                   "images, classes and masks you used).")


# ----------------------------------------------------------------------------- notebook 01
def _two_object(masks: Sequence[torch.Tensor], classes: Sequence[Sequence[int]]) -> list[int]:
    if len(masks) != len(classes):
        raise ValueError(f"masks, classes: expected one entry per image, got {len(masks)} "
                         f"and {len(classes)}")
    two = [i for i, c in enumerate(classes) if len(c) == 2]
    if not two:
        raise ValueError("classes: expected at least one image with two objects")
    return two


def wrong_object_rate(model: nn.Module, images: torch.Tensor, masks: Sequence[torch.Tensor],
                      classes: Sequence[Sequence[int]], layer: str) -> tuple[float, float]:
    """Over the two-object images: the share whose Grad-CAM map at ``layer`` for the first
    object's class peaks on the *other* object, and the share that peaks on the first
    object (strict pointing game, no tolerance)."""
    two = _two_object(masks, classes)
    maps = explain(model, images[two], [layer], [classes[i][0] for i in two])[layer]["gradcam"]
    first = torch.stack([masks[i][0] for i in two])
    other = torch.stack([masks[i][1] for i in two])
    return (float(pointing_game(maps, other).float().mean()),
            float(pointing_game(maps, first).float().mean()))


def check_wrong_object_rate(value: object, model: nn.Module, images: torch.Tensor,
                            masks: Sequence[torch.Tensor], classes: Sequence[Sequence[int]],
                            layer: str) -> Verdict:
    """Notebook 01: the share of two-object images whose map for the first class peaks on
    the other object (a share in [0, 1], not a count)."""
    wrong, right = wrong_object_rate(model, images, masks, classes, layer)
    n = len(_two_object(masks, classes))
    return _compare(value, wrong, f"share of peaks on the other object at {layer}", 1e-6, {
        "that is the share of peaks on the object asked for; count the peaks on the OTHER "
        "object (masks[i][1]).": right,
        f"that is a count; divide by the number of two-object images ({n}).": wrong * n})


# ----------------------------------------------------------------------------- notebook 02
def target_shares(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, target_class: int,
                  layers: Sequence[str]) -> dict[str, float]:
    """Target share of Grad-CAM for ``target_class`` on one image ``x`` ``(1, 3, H, W)``
    holding two objects, whose masks ``(2, H, W)`` are ordered target first."""
    return _target_shares_both_ways(model, x, masks, target_class, layers)[0]


def _target_shares_both_ways(model: nn.Module, x: torch.Tensor, masks: torch.Tensor,
                             target_class: int, layers: Sequence[str]
                             ) -> tuple[dict[str, float], dict[str, float]]:
    """Target shares with the masks in the given order and swapped, from one set of maps."""
    if x.ndim != 4 or x.shape[0] != 1 or masks.ndim != 3 or masks.shape[0] != 2:
        raise ValueError(f"x, masks: expected one image (1, 3, H, W) and its two masks "
                         f"(2, H, W), got {tuple(x.shape)} and {tuple(masks.shape)}")
    maps = explain(model, x, list(layers), target_class)
    return tuple({la: float(target_share(maps[la]["gradcam"], a, b)[0]) for la in layers}
                 for a, b in ((masks[:1], masks[1:]), (masks[1:], masks[:1])))


def check_target_shares(values: object, model: nn.Module, x: torch.Tensor,
                        masks: torch.Tensor, target_class: int,
                        layers: Sequence[str] = ("layer3", "layer4")) -> Verdict:
    """Notebook 02: ``{layer: target share}`` of Grad-CAM for ``target_class`` on ``x``."""
    if not isinstance(values, Mapping) or set(values) != set(layers):
        got = sorted(values) if isinstance(values, Mapping) else _describe(values)
        return Verdict(False, f"expected a dict with the keys {list(layers)}, got {got}.")
    ref, swapped = _target_shares_both_ways(model, x, masks, target_class, layers)
    for la in layers:
        got = _compare(values[la], ref[la], f"target share at {la}", 1e-4, {
            f"at {la} you measured the share on the other object: target mask first "
            "(masks[0]), the other second.": swapped[la]})
        if not got:
            return got
    shown = ", ".join(f"{la} {ref[la]:.3f}" for la in layers)
    return Verdict(True, f"target shares: {shown}.")


# ----------------------------------------------------------------------------- notebook 03
def _answers(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with model_mode(model), torch.no_grad():
        return torch.sigmoid(model(images)) > 0.5


def _agreements(model: nn.Module, images: torch.Tensor, after: str) -> tuple[float, float]:
    """(share of images whose six answers all agree, share of single answers that agree)
    between the full model and the model cut after ``after`` with its original fc."""
    same = _answers(model, images) == _answers(truncate(model, after, head="original"), images)
    return float(same.all(dim=1).float().mean()), float(same.float().mean())


def agreement(model: nn.Module, images: torch.Tensor, after: str = "layer4.0") -> float:
    """Share of ``images`` on which the model cut after ``after`` with its original fc gives
    exactly the full model's six yes/no answers (p > 0.5)."""
    return _agreements(model, images, after)[0]


def check_agreement(value: object, model: nn.Module, images: torch.Tensor,
                    after: str = "layer4.0") -> Verdict:
    """Notebook 03: how often the cut model (original fc) agrees with the full model."""
    per_image, per_answer = _agreements(model, images, after)
    return _compare(value, per_image,
                    f"share of images with the same six answers after cutting at {after}", 1e-6,
                    {"that counts single yes/no answers; an image agrees only when all six "
                     "answers agree (.all(dim=1)).": per_answer})


# ----------------------------------------------------------------------------- notebook 04
def map_difference(model: nn.Module, images: torch.Tensor, targets: Sequence[int], layer: str,
                   methods: tuple[str, str] = ("gradcam", "hirescam")) -> float:
    """Mean absolute difference of two methods' displayed maps (ReLU, min-max, at input size)
    over ``images`` and their ``targets``."""
    return _map_gaps(model, images, targets, layer, methods)[0]


def _map_gaps(model: nn.Module, images: torch.Tensor, targets: Sequence[int], layer: str,
              methods: tuple[str, str]) -> tuple[float, float]:
    """(mean |map_a - map_b|, mean map_a - map_b) from one set of maps."""
    maps = explain(model, images, [layer], list(targets), methods=methods)[layer]
    gap = maps[methods[0]] - maps[methods[1]]
    return float(gap.abs().mean()), float(gap.mean())


def check_map_difference(value: object, model: nn.Module, images: torch.Tensor,
                         targets: Sequence[int], layer: str,
                         methods: tuple[str, str] = ("gradcam", "hirescam")) -> Verdict:
    """Notebook 04: mean |map_a - map_b| of two methods' displayed maps at ``layer``."""
    ref, signed = _map_gaps(model, images, targets, layer, methods)
    return _compare(value, ref, f"mean |{methods[0]} - {methods[1]}| at {layer}", 1e-4,
                    {"that is the mean signed difference; take the absolute value first "
                     "(.abs().mean()).": signed})


# ----------------------------------------------------------------------------- notebook 05
def seed_means(ev: Evidence, s: Mapping[str, str], metric: str = "energy") -> list[float]:
    """The mean ``metric`` of setting ``s`` for each training seed of ``ev`` (NaN pairs left
    out): how much retraining alone moves one setting's score."""
    return [float(v) for v in ev.get(s, metric).double().nanmean(dim=1)]


def check_seed_means(values: object, ev: Evidence, s: Mapping[str, str],
                     metric: str = "energy") -> Verdict:
    """Notebook 05: the list of per-seed means of one setting, in the order of ``ev.seeds``."""
    ref = seed_means(ev, s, metric)
    if (not isinstance(values, (list, tuple)) or len(values) != len(ref)
            or any(_number(v) is None for v in values)):
        return Verdict(False, f"expected a list of {len(ref)} numbers (one per seed "
                       f"{list(ev.seeds)}), got {_describe(values)}.")
    pooled = float(ev.get(s, metric).double().nanmean())
    for seed, v, r in zip(ev.seeds, values, ref, strict=True):
        if abs(_number(v) - r) > 1e-4:
            hint = (" That is the mean over every seed at once: average each row of "
                    "ev.get(s, metric) (dim=1)." if abs(_number(v) - pooled) <= 1e-4 else "")
            side = "high" if _number(v) > r else "low"
            hint = hint or " Average that seed's row of ev.get(s, metric), leaving NaN out."
            return Verdict(False, f"seed {seed}: got {_number(v):.4f}, too {side}.{hint}")
    spread = max(ref) - min(ref)
    return Verdict(True, f"per-seed means {', '.join(f'{r:.3f}' for r in ref)}: retraining "
                   f"alone moves this setting by {spread:.3f}.")
