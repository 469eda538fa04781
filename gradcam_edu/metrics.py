"""How good is a saliency map? Pure functions over torch tensors.

Localisation against a ground-truth mask (maps ``(N, H, W)`` at the input size, masks
``(N, H, W)`` bool, the same size):

=========================  ===============================================================
:func:`pointing_game`      hit when the map's maximum lies on the object (Zhang et al. 2016),
                           optionally within ``tolerance_px`` of it (their 15 px)
:func:`energy_pointing_game`  share of the map's positive mass inside the mask (Score-CAM)
:func:`target_share`       on a 2-object image: mass on the target vs on the other object
:func:`centre_map`,        trivial baselines: always point at the centre; spread evenly
:func:`uniform_map`        (a uniform map's energy score is the mask's area fraction)
:func:`energy_ceiling`,    the best any map on a layer's grid can score, exact bounds
:func:`pointing_ceiling`   (:func:`grid_ceiling` both); :func:`mask_pooled_reference`: the
                           mask pooled to the grid, a reference map, not a bound
:func:`gini`,              clarity of a displayed map: concentration of its mass (Gini
:func:`map_entropy`        coefficient) and its normalised entropy (spread)
=========================  ===============================================================

Faithfulness to the model: deletion / insertion in :mod:`gradcam_edu.faithfulness`, the
randomisation sanity check in :mod:`gradcam_edu.sanity`. Uncertainty: :func:`paired_bootstrap`.

Conventions for degenerate maps (so no localisation score is ever NaN): a map that is
constant over the image says nothing; its maximum is everywhere, and ties are broken toward the
image centre, so it points where the centre baseline points. A map without positive mass
scores like the uniform map on energy (the mask's area fraction), 0 on clarity (Gini).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .cams import finalize

ZHANG_TOLERANCE_PX = 15
"""The pointing game's tolerance in Zhang et al. (ECCV 2016), in pixels."""


# ----------------------------------------------------------------------------- checks
def _check_maps_masks(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError("maps: expected a tensor of shape (N, H, W), got "
                         f"{tuple(getattr(maps, 'shape', ())) or type(maps).__name__}"
                         " (add the batch axis with maps.unsqueeze(0))")
    if not isinstance(masks, torch.Tensor) or masks.shape != maps.shape:
        raise ValueError(f"masks: expected a bool tensor of the maps' shape {tuple(maps.shape)}, "
                         f"got {tuple(getattr(masks, 'shape', ())) or type(masks).__name__}; "
                         "upsample the maps to the mask size first (cams.finalize)")
    if masks.dtype != torch.bool:
        raise TypeError(f"masks: expected dtype torch.bool, got {masks.dtype} (use mask > 0.5)")


# ----------------------------------------------------------------------------- pointing game
@functools.lru_cache(maxsize=8)
def _centre_distance(h: int, w: int, device: str = "cpu") -> torch.Tensor:
    """(H, W) squared distance of each pixel centre to the image centre (cached)."""
    ys = torch.arange(h, device=device, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, device=device, dtype=torch.float32) - (w - 1) / 2
    return ys[:, None] ** 2 + xs[None, :] ** 2


PEAK_TIE = 1e-4
"""Values within this fraction of a map's range below its maximum count as tied with it."""


def peak_location(maps: torch.Tensor, tie: float = PEAK_TIE) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column ``(N,), (N,)`` of each map's maximum.

    Pixels within ``tie`` x (max - min) of the maximum count as tied with it, and ties go to
    the pixel nearest the image centre: a constant map points at the centre (the centre
    baseline's guess), and two peaks that differ by float32 rounding alone (which the CPU's
    SIMD kernels change) do not decide the pointing game by that rounding.
    """
    n, h, w = maps.shape
    flat = maps.reshape(n, -1).double()
    top, low = flat.max(dim=1).values, flat.min(dim=1).values
    is_max = flat >= (top - tie * (top - low))[:, None]
    dist = _centre_distance(h, w, str(maps.device)).reshape(1, -1).double()
    idx = torch.where(is_max, dist, torch.full_like(dist, math.inf)).argmin(dim=1)
    return idx // w, idx % w


@functools.lru_cache(maxsize=8)
def _disc_offsets(radius: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    inside = dy ** 2 + dx ** 2 <= radius ** 2
    return dy[inside], dx[inside]


def hits_at(ys: torch.Tensor, xs: torch.Tensor, masks: torch.Tensor,
            tolerance_px: int = 0) -> torch.Tensor:
    """``(N,)`` bool: pixel ``(ys[i], xs[i])`` lies within ``tolerance_px`` (Euclidean) of a
    pixel of ``masks[i]`` ``(N, H, W)`` bool."""
    if not isinstance(tolerance_px, int) or tolerance_px < 0:
        raise ValueError(f"tolerance_px: expected an int >= 0 (pixels), got {tolerance_px!r}")
    n, h, w = masks.shape
    dy, dx = _disc_offsets(tolerance_px, str(masks.device))
    yy, xx = ys[:, None] + dy[None], xs[:, None] + dx[None]          # (N, disc)
    valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    rows = torch.arange(n, device=masks.device)[:, None]
    on_mask = masks[rows, yy.clamp(0, h - 1), xx.clamp(0, w - 1)] & valid
    return on_mask.any(dim=1)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance_px: int = 0) -> torch.Tensor:
    """Hits ``(N,)`` bool: the map's maximum lies on the object.

    ``maps`` ``(N, H, W)`` (any scale), ``masks`` ``(N, H, W)`` bool at the same size.
    ``tolerance_px``: also a hit when the maximum is within this Euclidean distance (pixels)
    of a mask pixel; Zhang et al. use 15 (:data:`ZHANG_TOLERANCE_PX`). Ties at the maximum go
    to the pixel nearest the image centre (:func:`peak_location`).
    """
    _check_maps_masks(maps, masks)
    ys, xs = peak_location(maps)
    return hits_at(ys, xs, masks, tolerance_px)


def energy_pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share ``(N,)`` in [0, 1] of each map's positive mass that lies inside the mask.

    Negative values count as zero (as after a CAM's ReLU). A map with no positive mass gets
    the mask's area fraction: the score of a uniform map, which carries no information.
    """
    _check_maps_masks(maps, masks)
    pos = maps.clamp(min=0).reshape(maps.shape[0], -1).double()   # sums in float64
    inside = masks.reshape(masks.shape[0], -1)
    total = pos.sum(dim=1)
    share = (pos * inside).sum(dim=1) / total.clamp(min=1e-300)
    area = inside.double().mean(dim=1)
    return torch.where(total > 0, share.clamp(0, 1), area).float()


@functools.lru_cache(maxsize=32)
def _linear_matrix(small: int, large: int, device: str = "cpu") -> torch.Tensor:
    """``(large, small)`` float64: 1-D linear upsampling (``align_corners=False``)."""
    eye = torch.eye(small, dtype=torch.float64, device=device)[None]
    return F.interpolate(eye, size=large, mode="linear", align_corners=False)[0].T


def upsample_adjoint(images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``U^T images``: ``(N, h, w)`` for full-size ``(N, H, W)``, where ``U`` is the bilinear
    upsampling of :func:`gradcam_edu.cams.upsample` from ``grid`` to ``(H, W)``; so that
    ``sum(U(m) * images) == sum(m * U^T(images))`` for any map ``m`` on the grid. Bilinear is
    separable, ``U(m) = Y m X^T`` (``Y``, ``X`` 1-D linear), so ``U^T(v) = Y^T v X`` (float64)."""
    (h, w), (big_h, big_w), dev = grid, images.shape[-2:], str(images.device)
    y, x = _linear_matrix(h, big_h, dev), _linear_matrix(w, big_w, dev)
    return (y.T @ images.double() @ x).float()


def energy_at_grid(maps: torch.Tensor, masks: torch.Tensor,
                   adjoints: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """:func:`energy_pointing_game` of ``upsample(relu(maps))`` without building it.

    ``maps`` ``(N, h, w)`` on a layer's grid, ``masks`` ``(N, H, W)`` bool. Upsampling is linear,
    so the mass inside the mask is ``<relu(m), U^T mask>`` and the total ``<relu(m), U^T 1>``
    (:func:`upsample_adjoint`): the cost is that of the grid, not of the image. ``adjoints``:
    ``(U^T masks, U^T ones)`` when already computed for these masks and this grid.
    """
    n, h, w = maps.shape
    if adjoints is None:
        adjoints = (upsample_adjoint(masks.float(), (h, w)),
                    upsample_adjoint(torch.ones_like(masks, dtype=torch.float32), (h, w)))
    inside_w, total_w = adjoints
    pos = maps.clamp(min=0).float()
    total = (pos * total_w).sum(dim=(1, 2))
    share = (pos * inside_w).sum(dim=(1, 2)) / total.clamp(min=1e-30)
    area = masks.reshape(n, -1).float().mean(dim=1)
    return torch.where(total > 0, share.clamp(0, 1), area)


def target_share(maps: torch.Tensor, target_mask: torch.Tensor,
                 other_mask: torch.Tensor) -> torch.Tensor:
    """Class discrimination ``(N,)`` in [0, 1]: mass on the target / mass on both objects.

    For the map of class A on an image holding objects A and B: 1 = all of the mass on the
    two objects lies on A, 0 = all on B, 0.5 = equal (also when neither gets any mass).
    """
    _check_maps_masks(maps, target_mask)
    _check_maps_masks(maps, other_mask)
    pos = maps.clamp(min=0).reshape(maps.shape[0], -1).double()
    on_target = (pos * target_mask.reshape(maps.shape[0], -1)).sum(dim=1)
    on_other = (pos * other_mask.reshape(maps.shape[0], -1)).sum(dim=1)
    both = on_target + on_other
    return torch.where(both > 0, on_target / both.clamp(min=1e-300),
                       torch.full_like(both, 0.5)).to(torch.float32)


# ----------------------------------------------------------------------------- baselines
def centre_map(height: int, width: int) -> torch.Tensor:
    """(H, W) map peaked at the image centre, falling linearly to 0 at the corners.

    Its pointing game is "always point at the centre", the trivial baseline every pointing
    score should be read against.
    """
    d = _centre_distance(height, width).sqrt()
    return 1 - d / d.max().clamp(min=1e-12)


def uniform_map(height: int, width: int) -> torch.Tensor:
    """(H, W) constant map: its energy score is the mask's area fraction."""
    return torch.ones(height, width)


def baseline_scores(masks: torch.Tensor,
                    tolerance_px: int = ZHANG_TOLERANCE_PX) -> dict[str, torch.Tensor]:
    """Per-mask scores ``(N,)`` of the trivial baselines on masks ``(N, H, W)`` bool.

    Keys: ``centre_pointing`` (strict), ``centre_pointing_tol`` (within ``tolerance_px``),
    ``centre_energy``, ``uniform_energy`` (= area fraction).
    """
    n, h, w = masks.shape
    centre = centre_map(h, w).to(masks.device).expand(n, h, w)
    uniform = uniform_map(h, w).to(masks.device).expand(n, h, w)
    return {
        "centre_pointing": pointing_game(centre, masks).float(),
        "centre_pointing_tol": pointing_game(centre, masks, tolerance_px).float(),
        "centre_energy": energy_pointing_game(centre, masks),
        "uniform_energy": energy_pointing_game(uniform, masks),
    }


def _check_masks(masks: torch.Tensor) -> None:
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3 or masks.dtype != torch.bool:
        raise ValueError("masks: expected a bool tensor (N, H, W), got "
                         f"{getattr(masks, 'dtype', type(masks).__name__)} "
                         f"{tuple(getattr(masks, 'shape', ()))}")


def mask_pooled_maps(masks: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """The mask-pooled reference map of a ``grid``-resolution layer: ``(N, H, W)`` in [0, 1].

    A reference, not a bound: the mask is average-pooled to the grid (each cell: the object's
    share of the cell) and displayed exactly like a CAM (:func:`gradcam_edu.cams.finalize`:
    ReLU, min-max, bilinear upsampling with ``align_corners=False``). Maps on the same grid
    can score higher (:func:`energy_ceiling`, :func:`pointing_ceiling` are the bounds).
    """
    _check_masks(masks)
    size = _grid_size(grid)
    pooled = F.adaptive_avg_pool2d(masks[:, None].float(), size)[:, 0]
    return finalize(pooled, tuple(masks.shape[-2:]))


def mask_pooled_reference(masks: torch.Tensor, grid: int | tuple[int, int],
                          tolerance_px: int = ZHANG_TOLERANCE_PX) -> dict[str, torch.Tensor]:
    """Scores ``(N,)`` of :func:`mask_pooled_maps` (a map that copies the object at the grid's
    resolution): ``pointing`` (strict), ``pointing_tol`` (within ``tolerance_px``), ``energy``.
    Not an upper bound (:func:`grid_ceiling` is): a one-cell map beats its energy."""
    maps = mask_pooled_maps(masks, grid)
    return {"pointing": pointing_game(maps, masks).float(),
            "pointing_tol": pointing_game(maps, masks, tolerance_px).float(),
            "energy": energy_pointing_game(maps, masks)}


def resolution_ceiling(masks: torch.Tensor, grid: int | tuple[int, int],
                       tolerance_px: int = ZHANG_TOLERANCE_PX) -> dict[str, torch.Tensor]:
    """Deprecated name of :func:`mask_pooled_reference` (it is no ceiling)."""
    return mask_pooled_reference(masks, grid, tolerance_px)


def energy_ceiling(masks: torch.Tensor, grid: int | tuple[int, int]) -> torch.Tensor:
    """The exact maximum ``(N,)`` of :func:`energy_pointing_game` over every non-negative map
    on ``grid``, displayed as a CAM is (bilinear upsampling, ``align_corners=False``, to the
    masks' size).

    Derivation: with ``U`` the upsampling (linear), ``energy(U m) = <m, a> / <m, b>`` with
    ``a = U^T mask``, ``b = U^T 1`` (:func:`upsample_adjoint`), a ratio of two linear functions
    of ``m >= 0``. It equals ``sum_k w_k (a_k / b_k)`` with weights ``w_k = m_k b_k / <m, b>``
    summing to 1: a weighted mean of the per-cell ratios, so it is at most
    ``max_k a_k / b_k``, reached by the one-cell map on the best cell (a vertex of the set of
    maps). :func:`gradcam_edu.cams.finalize` only rescales a one-cell map (ReLU and min-max
    leave ``e_k / (1 + eps)``), which the ratio ignores; and every finalised map is itself a
    non-negative map on the grid, so no CAM can exceed it. On a 1 x 1 grid it is the mask's
    area fraction (the flat map's score).
    """
    _check_masks(masks)
    size = _grid_size(grid)
    on = upsample_adjoint(masks.float(), size).double()
    total = upsample_adjoint(torch.ones_like(masks[:1], dtype=torch.float32), size).double()
    return (on / total.clamp(min=1e-300)).flatten(1).max(dim=1).values.clamp(0, 1).float()


def _grid_size(grid: int | tuple[int, int]) -> tuple[int, int]:
    size = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
        raise ValueError(f"grid: expected an int >= 1 or (rows, cols), got {grid!r}")
    return size


@functools.lru_cache(maxsize=64)
def _peak_span(cells: int, pixels: int) -> tuple[int, int]:
    """First and last pixel along an axis of ``pixels`` at which a map on ``cells`` cells can
    peak: where :func:`peak_location` puts the peak of the first / last one-cell map."""
    ends = torch.zeros(2, cells, 1, dtype=torch.float64)
    ends[0, 0, 0] = ends[1, -1, 0] = 1.0
    rows, _ = peak_location(finalize(ends, (pixels, 1)))
    return int(rows[0]), int(rows[1])


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """``masks`` ``(N, H, W)`` bool grown by a Euclidean disc of ``radius`` pixels: a pixel is
    set when a mask pixel lies within ``radius`` of it (the tolerance of the pointing game).
    Per row offset ``dy`` of the disc, a row window of half-width ``isqrt(r^2 - dy^2)`` holds a
    mask pixel when its count, a difference of two row prefix sums, is > 0: O(radius) passes."""
    if not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius: expected an int >= 0 (pixels), got {radius!r}")
    n, h, w = masks.shape
    r = min(radius, w)                       # a wider window holds the whole row
    counts = masks.reshape(n * h, w).to(torch.int32).cumsum(dim=1, dtype=torch.int32)
    prefix = torch.cat([counts.new_zeros(n * h, r + 1), counts,   # [:, r + j]: before pixel j
                        counts[:, -1:].expand(n * h, r)], dim=1)
    out = torch.zeros(n, h, w, dtype=torch.bool, device=masks.device)
    for dy in range(-min(radius, h - 1), min(radius, h - 1) + 1):   # shifts within the image
        half = min(math.isqrt(radius * radius - dy * dy), r)
        row = (prefix[:, r + half + 1:r + half + 1 + w] - prefix[:, r - half:r - half + w]
               ).reshape(n, h, w) > 0
        out[:, max(dy, 0):h + min(dy, 0)] |= row[:, max(-dy, 0):h - max(dy, 0)]
    return out


def pointing_ceiling(masks: torch.Tensor, grid: int | tuple[int, int],
                     tolerance_px: int = 0, dilated: torch.Tensor | None = None,
                     ) -> torch.Tensor:
    """1.0 ``(N,)`` where some non-negative map on ``grid``, displayed as a CAM is (bilinear,
    ``align_corners=False``), can win the pointing game (within ``tolerance_px``), else 0.0.

    Derivation, per axis (the upsampling is separable): a pixel whose source coordinate lies
    before the first cell centre is clamped onto it, so all pixels of that edge band carry the
    same value in every map, and :func:`peak_location` gives their tie to the one nearest the
    image centre; likewise at the far end. No map can peak in those bands, so the peak lies
    in the rectangle between the two innermost band pixels (:func:`_peak_span`: the peaks of
    the edge one-cell maps). Inside it every pixel is reachable when the grid has 3 or more
    cells along some axis: set the 2 x 2 cells around the pixel to a plane that rises away
    from the image centre by just under :data:`PEAK_TIE` of the range, the other cells to 0;
    the tied set is then a half-plane whose pixel nearest the centre is the chosen one
    (checked pixel by pixel in ``tests/test_metrics.py``). With clearly separated values, the
    peak sits at a pixel next to a cell centre, so much of the rectangle is reached only by
    maps whose top cells agree to 1e-4; on 2 x 2 (or smaller) grids this is an upper bound.
    ``dilated``: ``dilate(masks, tolerance_px)`` when already computed (grid-independent).
    """
    _check_masks(masks)
    if isinstance(tolerance_px, bool) or not isinstance(tolerance_px, int) or tolerance_px < 0:
        raise ValueError(f"tolerance_px: expected an int >= 0 (pixels), got {tolerance_px!r}")
    (gh, gw), (h, w) = _grid_size(grid), masks.shape[-2:]
    m = dilate(masks, tolerance_px) if dilated is None else dilated
    (y0, y1), (x0, x1) = _peak_span(gh, h), _peak_span(gw, w)
    return m[:, y0:y1 + 1, x0:x1 + 1].flatten(1).any(dim=1).float()


def grid_ceiling(masks: torch.Tensor, grid: int | tuple[int, int],
                 tolerance_px: int = ZHANG_TOLERANCE_PX, dilated: torch.Tensor | None = None,
                 ) -> dict[str, torch.Tensor]:
    """The true ceilings ``(N,)`` of a map on ``grid``: ``pointing`` (strict),
    ``pointing_tol`` (within ``tolerance_px``; ``dilated`` as for :func:`pointing_ceiling`)
    and ``energy`` (:func:`pointing_ceiling`, :func:`energy_ceiling`)."""
    return {"pointing": pointing_ceiling(masks, grid),
            "pointing_tol": pointing_ceiling(masks, grid, tolerance_px, dilated),
            "energy": energy_ceiling(masks, grid)}


def _clarity_values(maps: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(N, n)`` non-negative pixel values of maps (N, H, W) / (N, 1, H, W), in ``dtype``."""
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (3, 4) or (
            maps.ndim == 4 and maps.shape[1] != 1):
        raise ValueError("maps: expected a tensor (N, H, W) or (N, 1, H, W), got "
                         f"{getattr(maps, 'shape', type(maps).__name__)}")
    if not maps.is_floating_point():
        raise TypeError(f"maps: expected a floating-point tensor, got {maps.dtype}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps: contain NaN or infinite values")
    if maps[0].numel() < 2:
        raise ValueError(f"maps: expected at least 2 pixels per map, got {maps[0].numel()}")
    return maps.reshape(maps.shape[0], -1).to(dtype).clamp(min=0)


def _sorted_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` ``(N, n)`` sorted: numpy's SIMD sort on the CPU (~10x ``torch.sort``)."""
    cpu = x.device.type == "cpu"
    return torch.from_numpy(np.sort(x.detach().numpy(), axis=1)) if cpu else x.sort(dim=1).values


def gini(maps: torch.Tensor) -> torch.Tensor:
    """Clarity (concentration) ``(N,)`` of maps ``(N, H, W)`` or ``(N, 1, H, W)``: the Gini
    coefficient of each map's non-negative pixel values ``x``, sorted ascending,
    ``G = sum_i (2i - n - 1) x_(i) / (n sum_i x_i)`` (i = 1 .. n): 0 for a flat map,
    ``(n - 1) / n`` when one pixel holds all the mass; unchanged by scaling and by moving
    pixels. Negative values count as 0. An all-zero map (a blank display: every value
    clipped by the ReLU) scores 0, as a flat map does: it is the limit of a flat map whose
    value goes to 0, and it shows nothing, so it must not be left out as undefined (a method
    whose maps are often blank would otherwise be judged on its non-blank maps only)."""
    x = _sorted_rows(_clarity_values(maps, maps.dtype)).double()   # same order, fewer bytes
    n, total = x.shape[1], x.sum(dim=1)
    rank = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    g = ((2 * rank - n - 1) * x).sum(dim=1) / (n * total.clamp(min=1e-300))
    return torch.where(total > 0, g, torch.zeros_like(g)).float()


def map_entropy(maps: torch.Tensor) -> torch.Tensor:
    """Spread ``(N,)`` in [0, 1] of maps ``(N, H, W)`` or ``(N, 1, H, W)``: the Shannon entropy
    of ``p = x / sum x`` (``x`` the non-negative pixel values, ``0 log 0 = 0``) divided by
    ``log n``: 1 for a flat map, 0 when one pixel holds all the mass (the opposite direction
    to :func:`gini`). Negative values count as 0; an all-zero map gets NaN."""
    x = _clarity_values(maps)
    total = x.sum(dim=1, keepdim=True)
    p = x / total.clamp(min=1e-300)
    h = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(dim=1) / math.log(x.shape[1])
    return torch.where(total[:, 0] > 0, h.clamp(0, 1), torch.full_like(h, math.nan)).float()


# ----------------------------------------------------------------------------- uncertainty
def paired_bootstrap(scores_a: torch.Tensor, scores_b: torch.Tensor, n_boot: int = 1000,
                     seed: int = 0, groups: torch.Tensor | None = None,
                     ) -> tuple[float, float, float]:
    """Mean of ``scores_a - scores_b`` and its 95% percentile bootstrap interval.

    ``scores_a``, ``scores_b`` ``(M,)``: two scores of the same M items (e.g. layer A's and layer
    B's pointing hits on the same images), so the difference is taken per item before
    resampling. ``groups`` ``(M,)`` (optional): items sharing a group id (e.g. the two target
    classes of one image) are resampled together. Returns ``(mean difference, low, high)``;
    deterministic given ``seed``.
    """
    a = torch.as_tensor(scores_a, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(scores_b, dtype=torch.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"scores_b: expected {a.numel()} scores, one per item of scores_a, "
                         f"got {b.numel()}")
    if a.numel() == 0:
        raise ValueError("scores_a: no scores to compare")
    if n_boot < 1:
        raise ValueError(f"n_boot: expected an int >= 1, got {n_boot}")
    diff = a - b
    if groups is None:
        sums, counts = diff, torch.ones_like(diff)
    else:
        _, gid = torch.unique(torch.as_tensor(groups).reshape(-1), return_inverse=True)
        if gid.numel() != diff.numel():
            raise ValueError(f"groups: expected {diff.numel()} group ids, got {gid.numel()}")
        k = int(gid.max()) + 1
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, gid, diff)
        counts = torch.zeros(k, dtype=torch.float64).index_add_(0, gid, torch.ones_like(diff))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, sums.numel(), (n_boot, sums.numel()), generator=gen)
    means = sums[idx].sum(dim=1) / counts[idx].sum(dim=1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return float(diff.mean()), float(low), float(high)
