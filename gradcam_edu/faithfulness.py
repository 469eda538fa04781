"""Is a map faithful to the model? Deletion and insertion curves, and the rank correlation
that the model-randomisation sanity check (Adebayo et al. 2018, :mod:`gradcam_edu.sanity`)
compares maps with.

Localisation (:mod:`gradcam_edu.metrics`) asks whether a map covers the object; deletion and
insertion (Petsiuk et al. 2018) ask whether the pixels a map ranks first are the ones the
model's score depends on.

Deletion and insertion run many masked forwards per map; :func:`perturbation_curves` scores
many maps of many images at once: the substrate (black, blurred) is made once per image, the
unperturbed and the fully perturbed images are scored once per image (not once per map), a
perturbed image that two maps of one image share (the same pixel set) is scored once, and
the rest go through the model ``batch_size`` at a time, in inference mode, through
:func:`gradcam_edu.inference.inference_forward` (a frozen copy of the model on the CPU).
:mod:`gradcam_edu.faithfulness_board` runs them for every layer and method of a scoreboard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .capture import check_images, model_mode
from .inference import inference_forward
from .models import probabilities, probability_kind
from .targets import Target, select_target, target_scores

# ----------------------------------------------------------------------------- deletion / insertion
Baseline = Literal["zeros", "blur"] | torch.Tensor
MODES = ("deletion", "insertion")
BATCH_SIZE = 16
"""Perturbed images per forward by default (chosen by ``benchmarks/bench_faithfulness.py``,
which times 8, 16, 32 and 64)."""


def blurred(x: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur of images ``(N, C, H, W)``: kernel ``2 * ceil(3 sigma) + 1`` px."""
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])


def _baseline_image(x: torch.Tensor, baseline: Baseline, name: str = "baseline") -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(x).expand_as(x)
        except RuntimeError:
            raise ValueError(f"{name}: expected an image broadcastable to x's shape "
                             f"{tuple(x.shape)}, got shape {tuple(baseline.shape)}") from None
    if isinstance(baseline, str) and baseline == "zeros":
        return torch.zeros_like(x)
    if isinstance(baseline, str) and baseline == "blur":
        return blurred(x)
    raise ValueError(f"{name}: expected 'zeros', 'blur' or an image tensor, got {baseline!r}")


def step_counts(pixels: int, steps: int) -> list[int]:
    """Pixels perturbed at each of the ``steps + 1`` points of a curve:
    ``round(k * pixels / steps)`` for k = 0 .. steps (Python's round: halves to even)."""
    return [round(k * pixels / steps) for k in range(steps + 1)]


def saliency_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Rank ``(M, H * W)`` int32 of every pixel of maps ``(M, H, W)``: 0 for the highest value,
    ties by position (row-major). Step k perturbs the pixels ranked below its count."""
    order = _orders_and_keys(maps, [])[0].long()
    ranks = torch.empty_like(order, dtype=torch.int32)
    positions = torch.arange(order.shape[1], dtype=torch.int32, device=order.device)
    return ranks.scatter_(1, order, positions.expand_as(order))


def _orders_and_keys(maps: torch.Tensor, counts: list[int], chunk: int = 64,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels of each map, most salient first ``(M, H * W)`` int32 (a stable descending
    sort: ties by position), and per count c (> 0) a key ``(M, len(counts))`` of the set of
    its first c pixels: the sum of fixed random 31-bit weights of those pixels. Equal sets
    have equal keys; the rare different sets with equal keys are told apart exactly by
    :func:`_unique_jobs`."""
    m, hw = maps.shape[0], maps[0].numel()
    dev = maps.device
    weights = torch.randint(0, 2**31, (hw,), generator=torch.Generator().manual_seed(0)).to(dev)
    orders = torch.empty(m, hw, dtype=torch.int32, device=dev)
    keys = torch.empty(m, len(counts), dtype=torch.int64, device=dev)
    at = torch.tensor([c - 1 for c in counts], dtype=torch.long, device=dev)
    for s in range(0, m, chunk):
        order = maps[s:s + chunk].reshape(-1, hw).argsort(dim=1, descending=True, stable=True)
        orders[s:s + chunk] = order
        if counts:
            keys[s:s + chunk] = weights[order].cumsum(dim=1)[:, at]
    return orders, keys


def _unique_jobs(orders: torch.Tensor, keys: torch.Tensor, image_index: torch.Tensor,
                 counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Interior jobs ``j = map * K + k`` (K interior counts) -> ``(unique, position)``: the jobs
    that need a forward ``(U,)``, in job order, and for every job the position among them of
    the job whose perturbed image is its own (same image, same pixel set) ``(J,)``."""
    m, k = keys.shape
    jobs = torch.arange(m * k)
    if m * k == 0:
        return jobs, jobs
    table = torch.stack([image_index.cpu().repeat_interleave(k), torch.arange(k).repeat(m),
                         keys.cpu().reshape(-1)], dim=1)
    _, group = torch.unique(table, dim=0, return_inverse=True)
    first = torch.full((int(group.max()) + 1,), m * k).scatter_reduce_(0, group, jobs, "amin")
    same = first[group]
    for j in torch.nonzero(same != jobs).flatten().tolist():
        r, c = int(same[j]), counts[j % k]
        if not torch.equal(orders[j // k, :c].sort().values,
                           orders[r // k, :c].sort().values):   # a key collision
            same[j] = j
    unique = torch.nonzero(same == jobs).flatten()
    position = torch.empty_like(jobs)
    position[unique] = torch.arange(len(unique))
    return unique, position[same]


def _run_batches(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([inference_forward(model, images[s:s + batch_size])
                      for s in range(0, images.shape[0], batch_size)])


def _perturbed(start: torch.Tensor, fill: torch.Tensor, orders: torch.Tensor,
               images: list[int], jobs: list[tuple[int, int]], h: int, w: int) -> torch.Tensor:
    """The images of ``jobs`` ``(map, count)``, ``(B, C, H, W)`` channels-last: image
    ``images[map]`` of ``start`` ``(N, H * W, C)`` with the map's first ``count`` pixels
    taken from ``fill``. A job that follows one of the same map starts from that job's image
    and copies only the pixels added since."""
    out = start.new_empty(len(jobs), *start.shape[1:])
    prev_map, prev_count = -1, 0
    for j, (m, count) in enumerate(jobs):
        i = images[m]
        if m == prev_map and count >= prev_count:
            out[j], low = out[j - 1], prev_count
        else:
            out[j], low = start[i], 0
        pixels = orders[m, low:count].long()
        out[j].index_copy_(0, pixels, fill[i].index_select(0, pixels))
        prev_map, prev_count = m, count
    return out.view(len(jobs), h, w, -1).permute(0, 3, 1, 2)


def _job_logits(model: nn.Module, x: torch.Tensor, base: torch.Tensor, orders: torch.Tensor,
                image_index: torch.Tensor, jobs: list[tuple[int, int]], insertion: bool,
                batch_size: int) -> list[torch.Tensor]:
    """Logits of the perturbed images of ``jobs`` ``(map, count)``: the map's first ``count``
    pixels taken from ``x`` (insertion) or from ``base`` (deletion), the rest from the other.
    ``x``, ``base`` ``(N, C, H, W)`` channels-last."""
    n, c, h, w = x.shape
    pixels = {"x": x.permute(0, 2, 3, 1).reshape(n, h * w, c),
              "base": base.permute(0, 2, 3, 1).reshape(n, h * w, c)}
    start, fill = (pixels["base"], pixels["x"]) if insertion else (pixels["x"], pixels["base"])
    images = image_index.tolist()
    return [inference_forward(model, _perturbed(start, fill, orders, images,
                                                jobs[s:s + batch_size], h, w))
            for s in range(0, len(jobs), batch_size)]


def _probability(model: nn.Module, logits: torch.Tensor, target: Target,
                 rows: torch.Tensor, n: int) -> torch.Tensor:
    """Probability of the target of each row (``rows``: the map of each row, of ``n`` maps)."""
    t = select_target(target, n, index=rows)
    if probability_kind(model) == "sigmoid":
        return torch.sigmoid(target_scores(logits, t))
    return target_scores(probabilities(model, logits), t)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return value


def _check_curves(model, x, maps, image_index, steps, batch_size, modes) -> torch.Tensor:
    """Validate :func:`perturbation_curves`' arguments; returns ``image_index`` ``(M,)``."""
    check_images(model, x)
    n, _, h, w = x.shape
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or tuple(maps.shape[1:]) != (h, w):
        raise ValueError(f"maps: expected a tensor (M, {h}, {w}) (maps at the input size), got "
                         f"{getattr(maps, 'shape', type(maps).__name__)}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps: contain NaN or infinite values; a ranking needs finite values")
    _positive_int(steps, "steps")
    _positive_int(batch_size, "batch_size")
    if isinstance(modes, str) or not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes: expected a non-empty selection of {MODES}, got {modes!r}")
    if image_index is None:
        if maps.shape[0] != n:
            raise ValueError(f"maps: expected shape {(n, h, w)} (one map per image at the input "
                             f"size), got {tuple(maps.shape)}; give image_index for several "
                             "maps per image")
        return torch.arange(n, device=x.device)
    index = torch.as_tensor(image_index)
    if (index.shape != (maps.shape[0],) or index.is_floating_point() or index.dtype == torch.bool
            or (index.numel() and not (0 <= int(index.min()) and int(index.max()) < n))):
        raise ValueError(f"image_index: expected {maps.shape[0]} integer indices (the image of "
                         f"each map) in [0, {n}), got {image_index!r}")
    return index.to(device=x.device, dtype=torch.long)


def perturbation_curves(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: Target,
                        steps: int = 32, image_index: torch.Tensor | Sequence[int] | None = None,
                        deletion_baseline: Baseline = "zeros",
                        insertion_baseline: Baseline = "blur", batch_size: int = BATCH_SIZE,
                        modes: Sequence[str] = MODES) -> dict[str, torch.Tensor]:
    """Class probability curves ``{mode: (M, steps + 1)}`` of M maps, all batched together.

    ``maps`` ``(M, H, W)`` at the input size rank the pixels (highest first; ties by
    position). ``image_index`` ``(M,)``: the image of ``x`` ``(N, C, H, W)`` each map explains
    (default: map i explains image i, M = N); ``target``: one per map (see
    :mod:`gradcam_edu.targets`). At step k of ``steps`` the first ``round(k * H * W / steps)``
    pixels (all channels, :func:`step_counts`) are, for ``"deletion"``, replaced by
    ``deletion_baseline`` (default ``"zeros"``, black, as in RISE) and, for ``"insertion"``,
    copied from ``x`` into ``insertion_baseline`` (default ``"blur"``: :func:`blurred`, sigma
    5 px). The score is the probability of the target class as the model gives it
    (:func:`gradcam_edu.models.probability_kind`): the sigmoid of its logit for the course's
    multi-label models, the softmax over classes for single-label ones (a callable target then
    receives the probabilities). Perturbed images go through the model in eval mode (its
    mode restored), ``batch_size`` at a time; the unperturbed and fully perturbed images once
    per image, a perturbed image that two maps of one image share (same pixels) once.
    """
    index = _check_curves(model, x, maps, image_index, steps, batch_size, modes)
    m, hw = maps.shape[0], x.shape[-2] * x.shape[-1]
    counts = step_counts(hw, steps)
    inner = [k for k, c in enumerate(counts) if 0 < c < hw]
    with torch.inference_mode(), model_mode(model):
        xs = x.detach().contiguous(memory_format=torch.channels_last)
        names = {"deletion": "deletion_baseline", "insertion": "insertion_baseline"}
        given = {"deletion": deletion_baseline, "insertion": insertion_baseline}
        bases = {mode: _baseline_image(xs, given[mode], names[mode])
                 .contiguous(memory_format=torch.channels_last) for mode in modes}
        ends = {"x": _run_batches(model, xs, batch_size)}
        ends.update({mode: _run_batches(model, bases[mode], batch_size) for mode in modes})
        inner_counts = [counts[k] for k in inner]
        orders, keys = _orders_and_keys(maps.detach().to(x.device), inner_counts)
        unique, position = _unique_jobs(orders, keys, index, inner_counts)
        jobs = [(j // len(inner), inner_counts[j % len(inner)]) for j in unique.tolist()]
        curves = {}
        for mode in modes:
            logits = ends["x"].new_empty(m, steps + 1, ends["x"].shape[1])
            for k, c in enumerate(counts):
                if c in (0, hw):
                    logits[:, k] = ends["x" if (c == 0) == (mode == "deletion") else mode][index]
            if inner:
                done = torch.cat(_job_logits(model, xs, bases[mode], orders, index, jobs,
                                             mode == "insertion", batch_size))
                logits[:, inner] = done[position.to(x.device)].reshape(m, len(inner), -1)
            rows = torch.arange(m).repeat_interleave(steps + 1)
            p = _probability(model, logits.reshape(m * (steps + 1), -1), target, rows, m)
            curves[mode] = p.reshape(m, steps + 1).float().cpu()
    return {mode: c.clone() for mode, c in curves.items()}   # normal tensors, not inference


def perturbation_curve(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: Target,
                       mode: Literal["deletion", "insertion"], steps: int = 32,
                       baseline: Baseline | None = None,
                       batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Class probability ``(N, steps + 1)`` as pixels are removed / revealed by saliency:
    one map per image, ``maps`` ``(N, H, W)``, one ``mode`` (see :func:`perturbation_curves`;
    ``baseline`` None: black for deletion, blurred for insertion)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected 'deletion' or 'insertion', got {mode!r}")
    chosen = {} if baseline is None else {f"{mode}_baseline": baseline}
    return perturbation_curves(model, x, maps, target, steps, batch_size=batch_size,
                               modes=(mode,), **chosen)[mode]


def curve_auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves ``(N, K + 1)`` sampled at fractions 0, 1/K, ..., 1 (trapezoids)."""
    k = curve.shape[-1] - 1
    return (curve.sum(dim=-1) - (curve[..., 0] + curve[..., -1]) / 2) / k


def deletion_auc(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: Target,
                 steps: int = 32, baseline: Baseline = "zeros",
                 batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Deletion score ``(N,)`` in [0, 1] (lower is better): area under the class probability
    as the most salient pixels are replaced by ``baseline`` (see :func:`perturbation_curve`)."""
    return curve_auc(perturbation_curve(model, x, maps, target, "deletion", steps, baseline,
                                        batch_size))


def insertion_auc(model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target: Target,
                  steps: int = 32, baseline: Baseline = "blur",
                  batch_size: int = BATCH_SIZE) -> torch.Tensor:
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
