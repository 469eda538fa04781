"""Is a map faithful to the model? Deletion and insertion curves, and the model-randomisation
sanity check (Adebayo et al. 2018) with its rank correlation.

Localisation (:mod:`gradcam_edu.metrics`) asks whether a map covers the object; these ask
whether the pixels a map ranks first are the ones the model's score depends on (deletion,
insertion: Petsiuk et al. 2018), and whether the map changes when the model's weights are
destroyed (a map that survives randomisation explains the image, not the model).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .cams import GRADIENT_METHODS, check_method, finalize, raw_map
from .capture import capture, check_images, model_mode
from .inputs import run_model
from .models import probabilities, probability_kind
from .targets import Target, select_target, target_scores

# ----------------------------------------------------------------------------- deletion / insertion
Baseline = Literal["zeros", "blur"] | torch.Tensor


def blurred(x: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur of images ``(N, C, H, W)``: kernel ``2 * ceil(3 sigma) + 1`` px."""
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])


def _baseline_image(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        return baseline.to(x).expand_as(x)
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "blur":
        return blurred(x)
    raise ValueError(f"baseline: expected 'zeros', 'blur' or an image tensor, got {baseline!r}")


@torch.no_grad()
def perturbation_curve(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: Target,
                       mode: Literal["deletion", "insertion"], steps: int = 32,
                       baseline: Baseline | None = None, batch_size: int = 64) -> torch.Tensor:
    """Class probability ``(N, steps + 1)`` as pixels are removed / revealed by saliency.

    Pixels are ranked by ``maps`` ``(N, H, W)`` (highest first; ties by position). At step k of
    ``steps`` the first ``round(k * H * W / steps)`` pixels (all channels) are
    ``deletion``: replaced by the baseline image (default ``"zeros"``, black, as in RISE);
    ``insertion``: copied from ``x`` into the baseline image (default ``"blur"``, a Gaussian
    blur with sigma 5 px). The score is the probability of the target class as the model
    gives it (:func:`gradcam_edu.models.probability_kind`): the sigmoid of its logit for the
    course's multi-label models, the softmax over classes for single-label ones (a callable
    target then receives the probabilities). All ``N * (steps + 1)`` images are scored in
    batches of ``batch_size``.
    """
    check_images(model, x)
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode: expected 'deletion' or 'insertion', got {mode!r}")
    n, c, h, w = x.shape
    if maps.shape != (n, h, w):
        raise ValueError(f"maps: expected shape {(n, h, w)} (one map per image at the input "
                         f"size), got {tuple(maps.shape)}")
    if steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps}")
    if baseline is None:
        baseline = "zeros" if mode == "deletion" else "blur"
    base = _baseline_image(x, baseline)
    order = maps.reshape(n, -1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(n, -1))
    rank = rank.reshape(n, 1, h, w)
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    jobs = [(i, k) for i in range(n) for k in range(steps + 1)]
    probs = torch.empty(n, steps + 1)
    sigmoid = probability_kind(model) == "sigmoid"
    with model_mode(model):
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            idx = torch.tensor([i for i, _ in chunk], device=x.device)
            cnt = torch.tensor([counts[k] for _, k in chunk], device=x.device)
            chosen = rank[idx] < cnt[:, None, None, None]              # (B, 1, H, W)
            if mode == "deletion":
                batch = torch.where(chosen, base[idx], x[idx])
            else:
                batch = torch.where(chosen, x[idx], base[idx])
            t = select_target(target, n, index=idx.cpu())
            logits = run_model(model, batch)
            if sigmoid:
                p = torch.sigmoid(target_scores(logits, t))
            else:
                p = target_scores(probabilities(model, logits), t)
            for (i, k), p_ik in zip(chunk, p.float().cpu(), strict=True):
                probs[i, k] = p_ik
    return probs


def curve_auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves ``(N, K + 1)`` sampled at fractions 0, 1/K, ..., 1 (trapezoids)."""
    k = curve.shape[-1] - 1
    return (curve.sum(dim=-1) - (curve[..., 0] + curve[..., -1]) / 2) / k


def deletion_auc(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: Target,
                 steps: int = 32, baseline: Baseline = "zeros",
                 batch_size: int = 64) -> torch.Tensor:
    """Deletion score ``(N,)`` in [0, 1] (lower is better): area under the class probability
    as the most salient pixels are replaced by ``baseline`` (see :func:`perturbation_curve`)."""
    return curve_auc(perturbation_curve(model, x, maps, target, "deletion", steps, baseline,
                                        batch_size))


def insertion_auc(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: Target,
                  steps: int = 32, baseline: Baseline = "blur",
                  batch_size: int = 64) -> torch.Tensor:
    """Insertion score ``(N,)`` in [0, 1] (higher is better): area under the class
    probability as the most salient pixels are revealed on ``baseline``."""
    return curve_auc(perturbation_curve(model, x, maps, target, "insertion", steps, baseline,
                                        batch_size))


# ----------------------------------------------------------------------------- rank correlation
def rankdata(values: torch.Tensor) -> torch.Tensor:
    """Ranks ``(N, M)`` (1 = smallest) of each row of ``values`` ``(N, M)``; ties get the
    average of the ranks they span (as ``scipy.stats.rankdata``)."""
    if values.ndim == 1:
        return rankdata(values[None])[0]
    flat = values.reshape(values.shape[0], -1)
    order = flat.argsort(dim=1, stable=True)
    sorted_vals = flat.gather(1, order)
    ranks = torch.empty_like(flat, dtype=torch.float64)
    for i in range(flat.shape[0]):
        # average rank of each run of equal values
        _, inverse, counts = torch.unique_consecutive(sorted_vals[i], return_inverse=True,
                                                      return_counts=True)
        ends = counts.cumsum(0).double()
        avg = ends - (counts.double() - 1) / 2
        ranks[i, order[i]] = avg[inverse]
    return ranks.reshape(values.shape)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation ``(N,)`` between maps ``a`` and ``b`` ``(N, ...)``.

    The Pearson correlation of the ranks (ties averaged). NaN where a map is constant (its
    ranks have no spread, the correlation is undefined).
    """
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")
    ra = rankdata(a.reshape(a.shape[0], -1))
    rb = rankdata(b.reshape(b.shape[0], -1))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denom = ra.norm(dim=1) * rb.norm(dim=1)
    out = (ra * rb).sum(dim=1) / denom
    return torch.where(denom > 0, out, torch.full_like(out, math.nan)).float()


# ----------------------------------------------------------------------------- sanity check
def randomization_stages(model: nn.Module) -> list[str]:
    """Names re-initialised one after another by :func:`cascading_randomization`, top first.

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


def cascading_randomization(model: nn.Module, x: torch.Tensor, layer: str, target: Target,
                            method: str = "gradcam", stages: Sequence[str] | None = None,
                            seed: int = 0) -> list[dict]:
    """Adebayo et al.'s cascading randomisation sanity check for one layer and method.

    The stages (default :func:`randomization_stages`: ``fc``, ``layer4.1``, ... top first) are
    re-initialised cumulatively on a deep copy of ``model`` (the model itself is untouched) with
    their own ``reset_parameters`` (PyTorch's default initialisation; batch-norm statistics
    reset to mean 0, variance 1), seeded by ``seed`` without touching the global RNG. After
    each stage the map of ``layer`` is recomputed and compared with the trained model's map.

    Returns one row per stage: ``{"stage", "spearman" (N,), "mean"}``, the Spearman rank
    correlation between the trained and the randomised maps (displayed maps: ReLU and
    min-max, at the layer's resolution). A faithful method's correlation falls toward 0.
    """
    stages = list(stages) if stages is not None else randomization_stages(model)

    def displayed(m: nn.Module) -> torch.Tensor:
        with capture(m, [layer]) as cap:
            cap.forward(x)
            cap.backward(target)
            return finalize(raw_map(method, cap.activations[layer].detach(),
                                    cap.gradients[layer]))

    check_method(method, GRADIENT_METHODS)
    reference = displayed(model)
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for stage in stages:
            if stage not in modules:
                raise ValueError(f"stages: the model has no module {stage!r}")
            _reinitialise(modules[stage])
            rho = spearman(reference, displayed(randomised))
            rows.append({"stage": stage, "spearman": rho, "mean": float(rho.nanmean())})
    return rows
