"""The model-randomisation sanity check (Adebayo et al., NeurIPS 2018) over many images, with
intervals, for pixel attributions and CAMs side by side.

    rows = randomisation_test(model, images, targets, layer="layer4")
    print(format_randomisation(rows))

The stages (default :func:`randomization_stages`: ``fc``, then the blocks from the top down,
then the stem) are re-initialised *cumulatively* on a deep copy of the model (the model is
untouched), seeded, without touching the global random state. After each stage every
method's map is recomputed and compared with the trained model's map by the Spearman rank
correlation (:func:`gradcam_edu.faithfulness.spearman`), per image. A map that explains the
model should decorrelate as the weights it depends on are destroyed; one that stays correlated
shows something else (the input's edges, the architecture). Adebayo et al. found that the
gradient and Grad-CAM pass (their correlation falls toward 0) and Guided Backprop fails.

Maps compared: ``gradient`` (:func:`gradcam_edu.attributions.vanilla_gradient`) and
``guided_backprop`` (:func:`gradcam_edu.attributions.guided_backprop`) as the absolute value
summed over the colour channels, ``|g_R| + |g_G| + |g_B|``, at image resolution (Adebayo et
al. rank absolute values); CAM methods as displayed (ReLU, min-max), at the layer's
resolution; or any callable ``fn(model, x, target) -> (N, h, w)``.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .attributions import guided_backprop, vanilla_gradient
from .cams import GRADIENT_METHODS, check_method, finalize, raw_map
from .capture import capture
from .faithfulness import spearman
from .metrics import paired_bootstrap
from .targets import Target

__all__ = ["PIXEL_METHODS", "cascading_randomization", "format_randomisation", "method_maps",
           "randomisation_test", "randomization_stages"]

PIXEL_METHODS = ("gradient", "guided_backprop")
"""Pixel attributions :func:`randomisation_test` compares at image resolution."""
MapFn = Callable[[nn.Module, torch.Tensor, Target], torch.Tensor]


def randomization_stages(model: nn.Module) -> list[str]:
    """Names re-initialised one after another by :func:`randomisation_test`, top first.

    For a ResNet: ``fc``, ``layer4.1``, ``layer4.0``, ..., ``layer1.0``, then the stem
    (``bn1``, ``conv1``). Sequential containers are split into their children.
    """
    stages: list[str] = []
    for name, child in model.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, nn.Sequential):
            stages += [f"{name}.{sub}" for sub, m in child.named_children()
                       if any(True for _ in m.parameters())]
        else:
            stages.append(name)
    return stages[::-1]


def _reinitialise(module: nn.Module) -> None:
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()


def _cascade(model: nn.Module, stages: Sequence[str] | None, seed: int,
             measure: Callable[[nn.Module], object]) -> list[tuple[str, object]]:
    """``[(stage, measure(randomised copy))]`` after each cumulative re-initialisation (each
    module's own ``reset_parameters``: PyTorch's default initialisation; batch-norm statistics
    reset to mean 0, variance 1), drawn from ``seed`` inside a forked global RNG."""
    stages = list(stages) if stages is not None else randomization_stages(model)
    if not stages or not all(isinstance(s, str) for s in stages):
        raise ValueError(f"stages: expected module names to re-initialise, got {stages!r}")
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    missing = [s for s in stages if s not in modules]
    if missing:
        raise ValueError(f"stages: the model has no module(s) {missing}; see "
                         "randomization_stages(model)")
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for stage in stages:
            _reinitialise(modules[stage])
            out.append((stage, measure(randomised)))
    return out


def _check(methods) -> list[str | MapFn]:
    methods = [methods] if isinstance(methods, str) or callable(methods) else list(methods)
    if not methods:
        raise ValueError("methods: expected at least one method")
    for m in methods:
        if not callable(m) and m not in PIXEL_METHODS:
            check_method(m, GRADIENT_METHODS, "methods")
    return methods


def _name(method: str | MapFn) -> str:
    return method if isinstance(method, str) else getattr(method, "__name__", repr(method))


def method_maps(model: nn.Module, x: torch.Tensor, target: Target, layer: str,
                methods: Sequence[str | MapFn]) -> dict[str, torch.Tensor]:
    """Each method's map ``(N, h, w)`` of images ``x`` for ``target``, by name (see the module
    docstring for the maps). ``gradient`` and the CAMs share one forward and one backward."""
    out = {}
    cams = [m for m in methods if isinstance(m, str) and m not in PIXEL_METHODS]
    if cams:
        with capture(model, [layer]) as cap:
            cap.forward(x)
            cap.backward(target, input_gradient="gradient" in methods)
            if "gradient" in methods:
                out["gradient"] = cap.input_gradient.abs().sum(dim=1)
            for m in cams:
                out[m] = finalize(raw_map(m, cap.activations[layer].detach(),
                                          cap.gradients[layer]))
    elif "gradient" in methods:
        out["gradient"] = vanilla_gradient(model, x, target).abs().sum(dim=1)
    if "guided_backprop" in methods:
        out["guided_backprop"] = guided_backprop(model, x, target).abs().sum(dim=1)
    for m in methods:
        if callable(m):
            out[_name(m)] = m(model, x, target)
    return {_name(m): out[_name(m)] for m in methods}


def randomisation_test(model: nn.Module, images: torch.Tensor, targets: Target, layer: str,
                       methods: Sequence[str | MapFn] = ("gradient", "guided_backprop",
                                                         "gradcam"),
                       stages: Sequence[str] | None = None, seed: int = 0,
                       n_boot: int = 1000) -> list[dict]:
    """Cascading randomisation of ``model`` on ``images`` ``(N, 3, H, W)`` for ``targets``
    (one class, or one per image), CAMs at ``layer``.

    One row per (stage, method), stages in the order re-initialised (cumulative: the row of a
    stage has it and every stage before it randomised), methods in the order given:
    ``{"stage", "method", "spearman" (N,), "mean", "low", "high", "constant", "undefined"}``,
    the per-image Spearman correlation between the trained and the randomised map, its mean
    over images and 95% percentile bootstrap interval over images (``n_boot`` resamples,
    seeded by ``seed``, :func:`gradcam_edu.metrics.paired_bootstrap` against 0). A randomised
    map that became constant has no ranking left: it counts as 0 (``"constant"`` images). An
    image whose *trained* map is constant cannot be tested: NaN, left out of the mean and the
    interval (``"undefined"`` images; all of them: NaN mean and interval).
    """
    methods = _check(methods)
    names = [_name(m) for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods: names must differ, got {names}")
    reference = method_maps(model, images, targets, layer, methods)
    undefined = {m: reference[m].flatten(1).amax(dim=1) == reference[m].flatten(1).amin(dim=1)
                 for m in names}
    def correlations(randomised: nn.Module) -> dict[str, torch.Tensor]:
        maps = method_maps(randomised, images, targets, layer, methods)
        return {m: spearman(reference[m], maps[m]) for m in names}

    rows = []
    for stage, rhos in _cascade(model, stages, seed, correlations):
        for m in names:
            rho = rhos[m]
            constant = rho.isnan() & ~undefined[m]
            rho = torch.where(undefined[m], torch.nan, rho.nan_to_num(0.0))
            kept = rho[~undefined[m]]
            mean = low = high = float("nan")
            if kept.numel():
                mean, low, high = paired_bootstrap(kept, torch.zeros_like(kept), n_boot, seed)
            rows.append({"stage": stage, "method": m, "spearman": rho, "mean": mean,
                         "low": low, "high": high, "constant": int(constant.sum()),
                         "undefined": int(undefined[m].sum())})
    return rows


def cascading_randomization(model: nn.Module, x: torch.Tensor, layer: str, target: Target,
                            method: str = "gradcam", stages: Sequence[str] | None = None,
                            seed: int = 0) -> list[dict]:
    """One CAM method's cascading randomisation at ``layer``, without intervals: one row per
    stage ``{"stage", "spearman" (N,), "mean"}`` (NaN where a map is constant, left out of the
    mean). The same stages, seed and maps as :func:`randomisation_test`."""
    check_method(method, GRADIENT_METHODS)
    reference = method_maps(model, x, target, layer, [method])[method]
    rows = []
    for stage, rho in _cascade(model, stages, seed, lambda m: spearman(
            reference, method_maps(m, x, target, layer, [method])[method])):
        rows.append({"stage": stage, "spearman": rho, "mean": float(rho.nanmean())})
    return rows


def format_randomisation(rows: Sequence[dict], width: int = 100) -> str:
    """Stages down, methods across: mean rank correlation [95% interval], as plain text.
    ``rows``: :func:`randomisation_test`'s (or rows with the same keys; ``"seeds"``: how many
    trained models they pool)."""
    if isinstance(rows, dict) or not rows:
        raise ValueError("rows: expected the non-empty list of randomisation_test rows")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    cell = {(r["stage"], r["method"]): r for r in rows}
    lines = [f"{'randomised up to':<18}" + "".join(f"{m:<22}" for m in methods)]
    for s in stages:
        lines.append(f"{s:<18}" + "".join(
            f"{cell[(s, m)]['mean']:+.2f} [{cell[(s, m)]['low']:+.2f}, "
            f"{cell[(s, m)]['high']:+.2f}]".ljust(22) for m in methods).rstrip())
    n = len(rows[0]["spearman"])
    seeds = rows[0].get("seeds", 1)
    over = "seeds and images" if seeds > 1 else "images"
    odd = sum(r.get("constant", 0) for r in rows), max(r.get("undefined", 0) for r in rows)
    note = (f"; {odd[0]} randomised maps constant (counted as 0), at most {odd[1]} trained "
            "maps constant (left out)" if any(odd) else "")
    lines += textwrap.wrap(f"Spearman rank correlation with the trained model's map, mean over "
                           f"{n} images x {seeds} trained model(s), 95% bootstrap interval over "
                           f"{over}{note}", width)
    return "\n".join(lines)
