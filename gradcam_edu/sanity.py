"""The model-randomisation sanity check (Adebayo et al., NeurIPS 2018) over many images, with
intervals, for pixel attributions and CAMs side by side.

    rows = randomisation_test(model, images, targets, layer="layer4")
    print(format_randomisation(rows))

The stages (default :func:`gradcam_edu.faithfulness.randomization_stages`: ``fc``, then the
blocks from the top down, then the stem) are re-initialised *cumulatively* on a deep copy of
the model (the model is untouched), seeded. After each stage every method's map is recomputed
and compared with the trained model's map by the Spearman rank correlation, per image. A map
that explains the model should decorrelate as the weights it depends on are destroyed; one
that stays correlated shows something else (the input's edges, the architecture).

Maps compared: ``gradient`` and ``guided_backprop`` as the absolute value summed over colour
channels (Adebayo et al. rank absolute values), at image resolution; CAM methods as
displayed (ReLU, min-max) at the layer's resolution.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Sequence

import torch
from torch import nn

from .attributions import guided_backprop, vanilla_gradient
from .cams import GRADIENT_METHODS, finalize, raw_map
from .capture import capture
from .faithfulness import _reinitialise, randomization_stages, spearman
from .metrics import paired_bootstrap
from .targets import Target

__all__ = ["PIXEL_METHODS", "format_randomisation", "method_maps", "randomisation_test"]

PIXEL_METHODS = {"gradient": vanilla_gradient, "guided_backprop": guided_backprop}


def method_maps(model: nn.Module, x: torch.Tensor, target: Target, layer: str,
                methods: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each method's map ``(N, h, w)`` of images ``x`` for ``target`` (see the module
    docstring for the reduction of pixel attributions)."""
    out = {}
    cam_methods = [m for m in methods if m not in PIXEL_METHODS]
    for m in methods:
        if m in PIXEL_METHODS:
            out[m] = PIXEL_METHODS[m](model, x, target).abs().sum(dim=1)
    if cam_methods:
        with capture(model, [layer]) as cap:
            cap.forward(x)
            cap.backward(target)
            A, G = cap.activations[layer].detach(), cap.gradients[layer]
            for m in cam_methods:
                out[m] = finalize(raw_map(m, A, G))
    return {m: out[m] for m in methods}


def _check(methods: Sequence[str]) -> list[str]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    known = [*PIXEL_METHODS, *GRADIENT_METHODS]
    bad = [m for m in methods if m not in known]
    if not methods or bad:
        raise ValueError(f"methods: expected names from {known}, got {methods}")
    return methods


def randomisation_test(model: nn.Module, images: torch.Tensor, targets: Target, layer: str,
                       methods: Sequence[str] = ("gradient", "guided_backprop", "gradcam"),
                       stages: Sequence[str] | None = None, seed: int = 0,
                       n_boot: int = 1000) -> list[dict]:
    """Cascading randomisation over ``images`` ``(N, 3, H, W)``: one row per (stage, method),
    stages in order, ``{"stage", "method", "spearman" (N,), "mean", "low", "high"}`` with the
    95% bootstrap interval of the mean over images (seeded by ``seed``). A map that became
    constant has no ranking; it counts as correlation 0 (it keeps nothing of the trained map's
    order), and ``"constant"`` says on how many images that happened."""
    methods = _check(methods)
    stages = list(stages) if stages is not None else randomization_stages(model)
    if not stages:
        raise ValueError("stages: expected at least one module name to re-initialise")
    reference = method_maps(model, images, targets, layer, methods)
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    missing = [s for s in stages if s not in modules]
    if missing:
        raise ValueError(f"stages: the model has no module(s) {missing}")
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for stage in stages:
            _reinitialise(modules[stage])
            now = method_maps(randomised, images, targets, layer, methods)
            for m in methods:
                rho = spearman(reference[m], now[m])
                constant = rho.isnan()
                rho = rho.nan_to_num(0.0)
                mean, low, high = paired_bootstrap(rho, torch.zeros_like(rho), n_boot, seed)
                rows.append({"stage": stage, "method": m, "spearman": rho, "mean": mean,
                             "low": low, "high": high, "constant": int(constant.sum())})
    return rows


def format_randomisation(rows: Sequence[dict], width: int = 100) -> str:
    """Stages down, methods across: mean rank correlation [95% interval]."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    cell = {(r["stage"], r["method"]): r for r in rows}
    lines = [f"{'randomised up to':<18}" + "".join(f"{m:<22}" for m in methods)]
    for s in stages:
        lines.append(f"{s:<18}" + "".join(
            f"{cell[(s, m)]['mean']:+.2f} [{cell[(s, m)]['low']:+.2f}, "
            f"{cell[(s, m)]['high']:+.2f}]".ljust(22) for m in methods).rstrip())
    n = len(rows[0]["spearman"]) if rows else 0
    seeds = rows[0].get("seeds", 1) if rows else 0
    over = "seeds and images" if seeds > 1 else "images"
    lines += textwrap.wrap(f"Spearman rank correlation with the trained model's map, mean over "
                           f"{n} images x {seeds} trained model(s), 95% bootstrap interval over "
                           f"{over}", width)
    return "\n".join(lines)
