"""Localisation and faithfulness metrics, baselines, ceilings and the bootstrap."""

import math

import pytest
import torch

from gradcam_edu import cams, metrics
from gradcam_edu.faithfulness import (
    deletion_auc,
    insertion_auc,
    perturbation_curve,
    rankdata,
    spearman,
)
from gradcam_edu.metrics import (
    baseline_scores,
    centre_map,
    dilate,
    energy_at_grid,
    energy_ceiling,
    energy_pointing_game,
    gini,
    grid_ceiling,
    map_entropy,
    mask_pooled_reference,
    paired_bootstrap,
    peak_location,
    pointing_ceiling,
    pointing_game,
    resolution_ceiling,
    target_share,
    uniform_map,
)
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.sanity import cascading_randomization
from gradcam_edu.scoreboard import scoreboard


def box_masks(n=3, size=64):
    masks = torch.zeros(3, size, size, dtype=torch.bool)
    masks[0, 5:15, 5:25] = True
    masks[1, 40:60, 30:40] = True
    masks[2, 20:44, 20:44] = True
    return masks[:n]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resnet18_narrow().eval()


def test_map_equal_to_mask_scores_one():
    masks = box_masks()
    assert pointing_game(masks.float(), masks).all()
    assert torch.allclose(energy_pointing_game(masks.float(), masks), torch.ones(3))


def test_uniform_map_energy_is_the_area_fraction():
    masks = box_masks()
    uniform = uniform_map(64, 64).expand(3, 64, 64)
    area = masks.float().mean(dim=(1, 2))
    assert torch.allclose(energy_pointing_game(uniform, masks), area)
    # no positive mass: no information, scored like the uniform map (never NaN)
    assert torch.allclose(energy_pointing_game(-torch.ones(3, 64, 64), masks), area)


def test_negative_values_carry_no_energy():
    masks = box_masks(1)
    maps = torch.where(masks, torch.ones(1, 64, 64), -5 * torch.ones(1, 64, 64))
    assert energy_pointing_game(maps, masks).item() == pytest.approx(1.0)


def test_centre_baseline_points_at_the_centre():
    centre = centre_map(64, 64)
    peak = (centre == centre.max()).nonzero()
    assert ((peak.float() - 31.5).abs() <= 0.5).all()
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 28:36, 28:36] = True       # on the centre
    masks[1, 0:8, 0:8] = True           # in a corner
    scores = baseline_scores(masks, tolerance_px=15)
    assert scores["centre_pointing"].tolist() == [1.0, 0.0]
    assert scores["uniform_energy"][0].item() == pytest.approx(64 / 64 ** 2)


def test_constant_map_points_at_the_centre():
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 30:34, 30:34] = True
    assert pointing_game(torch.zeros(1, 64, 64), masks).item()


def test_tolerance_counts_euclidean_distance():
    maps = torch.zeros(1, 64, 64)
    maps[0, 10, 10] = 1.0                   # the peak
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 10, 22] = True                 # 12 px to the right
    assert not pointing_game(maps, masks).item()
    assert not pointing_game(maps, masks, tolerance_px=11).item()
    assert pointing_game(maps, masks, tolerance_px=12).item()
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 20, 20] = True                 # diagonal: sqrt(200) = 14.1 px
    assert not pointing_game(maps, masks, tolerance_px=14).item()
    assert pointing_game(maps, masks, tolerance_px=15).item()
    with pytest.raises(ValueError, match="tolerance_px"):
        pointing_game(maps, masks, tolerance_px=-1)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="maps"):
        pointing_game(torch.zeros(64, 64), torch.zeros(64, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks"):
        energy_pointing_game(torch.zeros(1, 64, 64), torch.zeros(1, 32, 32, dtype=torch.bool))
    with pytest.raises(TypeError, match="masks"):
        energy_pointing_game(torch.zeros(1, 64, 64), torch.zeros(1, 64, 64))


def test_target_share():
    masks = box_masks(2)
    a, b = masks[:1], masks[1:2]
    assert target_share(a.float(), a, b).item() == pytest.approx(1.0)
    assert target_share(b.float(), a, b).item() == pytest.approx(0.0)
    assert target_share((a | b).float(), a, b).item() == pytest.approx(
        a.sum().item() / (a.sum() + b.sum()).item())
    assert target_share(torch.zeros(1, 64, 64), a, b).item() == 0.5


def test_mask_pooled_reference_full_grid_and_one_cell():
    masks = box_masks()
    full = mask_pooled_reference(masks, 64)
    for key in ("pointing", "pointing_tol", "energy"):
        assert torch.allclose(full[key], torch.ones(3), atol=1e-5)
    one = mask_pooled_reference(masks, 1)
    assert torch.allclose(one["energy"], masks.float().mean(dim=(1, 2)))
    coarse = mask_pooled_reference(masks, 4)["energy"]
    assert ((coarse > one["energy"]) & (coarse < 1)).all()
    old = resolution_ceiling(masks, 4)                     # the deprecated name, same values
    assert all(torch.equal(old[k], mask_pooled_reference(masks, 4)[k]) for k in old)


def test_energy_at_grid_equals_energy_of_upsampled_map():
    torch.manual_seed(0)
    low = cams.finalize(torch.randn(3, 7, 7))
    masks = box_masks()
    full = energy_pointing_game(cams.upsample(low, (64, 64)), masks)
    assert torch.allclose(energy_at_grid(low, masks), full, atol=1e-5)


def test_rankdata_and_spearman():
    assert rankdata(torch.tensor([[30.0, 10.0, 20.0, 20.0]])).tolist() == [[4.0, 1.0, 2.5, 2.5]]
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert spearman(a, a ** 3).item() == pytest.approx(1.0)           # monotone: 1
    assert spearman(a, -a).item() == pytest.approx(-1.0)
    b = torch.tensor([[2.0, 1.0, 4.0, 3.0, 5.0]])                      # 1 - 6*4/(5*24) = 0.8
    assert spearman(a, b).item() == pytest.approx(0.8)
    assert math.isnan(spearman(a, torch.ones(1, 5)).item())


def test_paired_bootstrap_contains_truth_and_is_deterministic():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(400, generator=gen)
    a = base + 0.1 + 0.05 * torch.randn(400, generator=gen)
    b = base
    diff, lo, hi = paired_bootstrap(a, b, n_boot=500, seed=3)
    assert lo < 0.1 < hi and lo < diff < hi
    assert (diff, lo, hi) == paired_bootstrap(a, b, n_boot=500, seed=3)
    assert (lo, hi) != paired_bootstrap(a, b, n_boot=500, seed=4)[1:]
    groups = torch.arange(400) // 2
    g = paired_bootstrap(a, b, n_boot=500, seed=3, groups=groups)
    assert g[0] == pytest.approx(diff) and g[1] < 0.1 < g[2]
    with pytest.raises(ValueError, match="scores_b"):
        paired_bootstrap(a, b[:10])


def test_deletion_and_insertion(model):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(1))
    curve = perturbation_curve(model, x, maps, [0, 1], "deletion", steps=4)
    assert curve.shape == (2, 5)
    with torch.no_grad():
        p0 = torch.sigmoid(model(x))[[0, 1], [0, 1]]
        p_end = torch.sigmoid(model(torch.zeros_like(x)))[[0, 1], [0, 1]]
    assert torch.allclose(curve[:, 0], p0, atol=1e-5)          # nothing removed yet
    assert torch.allclose(curve[:, -1], p_end, atol=1e-5)      # everything removed
    d = deletion_auc(model, x, maps, [0, 1], steps=4)
    i = insertion_auc(model, x, maps, 2, steps=4)
    assert d.shape == i.shape == (2,) and ((d >= 0) & (d <= 1) & (i >= 0) & (i <= 1)).all()


def test_cascading_randomization_leaves_the_model_alone(model):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = cascading_randomization(model, x, "layer3", [0, 1], "gradcam",
                                   stages=["fc", "layer4.1", "layer4.0"])
    assert [r["stage"] for r in rows] == ["fc", "layer4.1", "layer4.0"]
    assert all(r["spearman"].shape == (2,) for r in rows)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    again = cascading_randomization(model, x, "layer3", [0, 1], "gradcam",
                                    stages=["fc", "layer4.1", "layer4.0"])
    assert [r["mean"] for r in rows] == pytest.approx([r["mean"] for r in again], nan_ok=True)


def test_scoreboard_rows_and_compare(model):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    masks = box_masks()
    obj = [masks[0:1], torch.stack([masks[1], masks[2]]), masks[2:3]]
    classes = [[1], [2, 4], [0]]
    board = scoreboard(model, x, obj, classes, ["layer4", "layer3.1.conv2", "conv1"],
                       ["gradcam", "hirescam"], n_boot=100, batch_size=2)
    assert board.layers == ["conv1", "layer3.1.conv2", "layer4"]    # forward order
    assert len(board.image_index) == 4 and board.image_index.tolist() == [0, 1, 1, 2]
    assert board.target_class.tolist() == [1, 2, 4, 0]
    assert len(board.rows) == 3 * 2 + 2
    assert board.grids["layer4"] == (2, 2)
    for row in board.rows:
        for key in ("pointing", "pointing_tol", "energy"):
            assert 0.0 <= row[key] <= 1.0
    # the layer-grid energy equals the score of the displayed (upsampled) map
    maps = cams.explain(model, x[1:2], ["layer4"], 4, ["gradcam"])["layer4"]["gradcam"]
    assert board.scores[("layer4", "gradcam")]["energy"][2].item() == pytest.approx(
        energy_pointing_game(maps, masks[2:3]).item(), abs=1e-5)
    cmp = board.compare(("layer4", "gradcam"), ("(baseline)", "uniform"), "energy")
    assert cmp["low"] <= cmp["difference"] <= cmp["high"]
    # class discrimination only on the 2-object image (pairs 1 and 2), as metrics.target_share
    share = board.scores[("layer4", "gradcam")]["target_share"]
    assert torch.isnan(share[[0, 3]]).all() and not torch.isnan(share[[1, 2]]).any()
    assert share[2].item() == pytest.approx(
        target_share(maps, masks[2:3], masks[1:2]).item(), abs=1e-5)
    assert board.compare("layer4", "conv1", "target_share")["difference"] == pytest.approx(
        float((share - board.scores[("conv1", "gradcam")]["target_share"]).nanmean()))
    assert "layer3.1.conv2" in board.to_text()
    # two models on the same pairs: a truncated model against the full one
    from gradcam_edu.truncate import truncate

    cut = truncate(model, "layer4.0")
    board_cut = scoreboard(cut, x, obj, classes, ["layer4.0"], ["gradcam"], n_boot=100)
    cmp = board.compare(("layer4", "gradcam"), ("layer4.0", "gradcam"), "pointing_tol",
                        other=board_cut)
    assert cmp["pairs"] == 4 and cmp["low"] <= cmp["difference"] <= cmp["high"]
    with pytest.raises(ValueError, match="other"):
        board.compare("layer4", "layer4", other=scoreboard(model, x[:2], obj[:2], classes[:2],
                                                          ["layer4"], ["gradcam"]))


# ----------------------------------------------------------------------------- true ceilings
def one_cell_maps(n, grid):
    """Every one-cell map on ``grid`` (rows, cols), each repeated for ``n`` masks:
    ``(cells, n, rows, cols)``."""
    rows, cols = grid
    eye = torch.eye(rows * cols).reshape(rows * cols, 1, rows, cols)
    return eye.expand(-1, n, -1, -1)


@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (3, 5), (7, 7)])
def test_energy_ceiling_is_the_best_one_cell_map_and_beats_random_maps(grid):
    masks = box_masks(size=56)
    best = torch.stack([energy_pointing_game(cams.finalize(m, (56, 56)), masks)
                        for m in one_cell_maps(3, grid)]).amax(dim=0)
    ceiling = energy_ceiling(masks, grid)
    assert torch.allclose(ceiling, best, atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    for power in (1, 4, 16):                 # 300 random maps, flat to very peaked
        raw = torch.rand(100, 3, *grid, generator=gen) ** power
        e = torch.stack([energy_pointing_game(cams.finalize(r, (56, 56)), masks) for r in raw])
        assert (e <= ceiling + 1e-6).all()
    assert (ceiling >= mask_pooled_reference(masks, grid)["energy"] - 1e-6).all()


def test_energy_ceiling_by_hand_and_the_reference_is_not_a_bound():
    # 2 x 2 grid on 8 x 8: along an axis the top cell's upsampling weights are
    # (1, 1, .875, .625, .375, .125, 0, 0) (sum 4); a mask on the top-left 4 x 4 pixels (that
    # cell exactly) holds (1 + 1 + .875 + .625)^2 = 12.25 of the map's 4^2 = 16
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :4] = True
    assert energy_ceiling(mask, 2).item() == pytest.approx(12.25 / 16)
    assert energy_ceiling(mask, 1).item() == pytest.approx(16 / 64)     # flat: area fraction
    # one more pixel, (0, 4) in the top-right cell: the pooled reference spreads 1/16 of its
    # mass there, the top-left one-cell map does not: 12.25 + 1 * .375 (weight of pixel 4)
    mask[0, 0, 4] = True
    assert energy_ceiling(mask, 2).item() == pytest.approx((12.25 + 0.375) / 16)
    assert mask_pooled_reference(mask, 2)["energy"].item() < (12.25 + 0.375) / 16 - 0.01
    with pytest.raises(ValueError, match="grid"):
        energy_ceiling(mask, 0)
    with pytest.raises(ValueError, match="masks"):
        energy_ceiling(mask.float(), 2)


def peak_after_display(raw, size):
    return peak_location(cams.finalize(raw, size))


def test_pointing_ceiling_is_not_the_one_cell_lattice():
    # 7 x 7 on 224 px: the one-cell map of cell (1, 1) peaks at (48, 48), the pixel next to
    # the cell centre (47.5, 47.5) on the image centre's side; with two neighbours at 0.9 the
    # peak moves to (47, 47), which no one-cell map reaches
    raw = torch.zeros(1, 7, 7)
    raw[0, 1, 1] = 1.0
    assert [int(v) for v in peak_after_display(raw, (224, 224))] == [48, 48]
    raw[0, 1, 0] = raw[0, 0, 1] = 0.9
    assert [int(v) for v in peak_after_display(raw, (224, 224))] == [47, 47]
    mask = torch.zeros(1, 224, 224, dtype=torch.bool)
    mask[0, 47, 47] = True
    lattice = max(pointing_game(cams.finalize(m, (224, 224)), mask).item()
                  for m in one_cell_maps(1, (7, 7)))
    assert lattice == 0 and pointing_ceiling(mask, 7).item() == 1.0


def test_pointing_ceiling_excludes_only_the_clamped_border_bands():
    # 7 x 7 on 224 px: source rows (i + .5) / 32 - .5 are clamped to the first cell centre for
    # i <= 15, to the last for i >= 208: rows 0-14 and 209-223 always tie with rows 15 / 208
    assert pointing_ceiling(torch.ones(1, 224, 224, dtype=torch.bool), 7).item() == 1.0
    mask = torch.zeros(1, 224, 224, dtype=torch.bool)
    mask[0, 0:10, 100:110] = True                          # rows 0-9: 6 px from row 15
    assert pointing_ceiling(mask, 7).item() == 0.0
    assert pointing_ceiling(mask, 7, tolerance_px=5).item() == 0.0
    assert pointing_ceiling(mask, 7, tolerance_px=6).item() == 1.0
    mask[0, 0:10, 100:110], mask[0, 215:224, 0:224] = False, True        # bottom band
    assert pointing_ceiling(mask, 7).item() == 0.0 and pointing_ceiling(mask, 224).item() == 1.0
    # a 1 x 1 grid shows a flat map: it points at the centre (111, 111), nowhere else
    mask[:] = False
    mask[0, 111, 111] = True
    assert pointing_ceiling(mask, 1).item() == 1.0
    mask[0, 111, 111], mask[0, 112, 112] = False, True
    assert pointing_ceiling(mask, 1).item() == 0.0
    with pytest.raises(ValueError, match="tolerance_px"):
        pointing_ceiling(mask, 7, tolerance_px=-1)
    with pytest.raises(ValueError, match="masks"):
        pointing_ceiling(mask[0], 7)


def source_position(pixels, cells, n):
    """Where the bilinear upsampling reads pixels ``(P,)`` from, in pixels: clamped onto the
    first / last cell centre in the border bands."""
    src = ((pixels.double() + 0.5) * cells / n - 0.5).clamp(0, cells - 1)
    return (src + 0.5) * n / cells - 0.5, src.floor().long().clamp(max=cells - 2)


def plane_maps(pixels, direction, grid, size, eps):
    """For each pixel p ``(P, 2)``: the 2 x 2 cells around p set to ``1 + eps * d``, d the
    distance of the cell centre beyond p (where p reads from) along ``direction`` ``(P, 2)``;
    every other cell 0. Inside those cells the displayed map is that plane. ``(P, rows, cols)``."""
    (rows, cols), (h, w) = grid, size
    (py, i0), (px, j0) = source_position(pixels[:, 0], rows, h), source_position(pixels[:, 1],
                                                                                 cols, w)
    maps = torch.zeros(len(pixels), rows, cols, dtype=torch.float64)
    for i in (i0, i0 + 1):
        for j in (j0, j0 + 1):
            cy, cx = (i + 0.5) * h / rows - 0.5, (j + 0.5) * w / cols - 0.5
            d = (cy - py) * direction[:, 0] + (cx - px) * direction[:, 1]
            maps[torch.arange(len(pixels)), i, j] = 1 + eps * d
    return maps


def rising_direction(pixels, grid, size):
    """Per pixel p, a direction along which every pixel nearer the image centre than p (or as
    near and before it in row-major order) reads from a point strictly behind p's: the
    tied set of a plane rising along it then has p as its pixel nearest the centre."""
    (h, w), n = size, len(pixels)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    allp = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    read = torch.stack([source_position(allp[:, k], grid[k], size[k])[0] for k in (0, 1)], 1)
    dist = ((allp.double() - torch.tensor([(h - 1) / 2, (w - 1) / 2])) ** 2).sum(dim=1)
    flat = pixels[:, 0] * w + pixels[:, 1]
    before = (dist[None] < dist[flat][:, None]) | (
        (dist[None] == dist[flat][:, None]) & (torch.arange(h * w)[None] < flat[:, None]))
    angles = torch.arange(720, dtype=torch.float64) * torch.pi / 360
    dirs = torch.stack([angles.cos(), angles.sin()], dim=1)                    # (D, 2)
    offsets = read[None] - read[flat][:, None]                                  # (P, HW, 2)
    along = torch.einsum("pqk,dk->pdq", offsets, dirs)                          # (P, D, HW)
    worst = torch.where(before[:, None], along, -torch.inf).amax(dim=2)         # (P, D)
    best = worst.argmin(dim=1)
    assert (worst[torch.arange(n), best] < 0).all()        # such a direction exists
    return dirs[best]


@pytest.mark.parametrize("grid", [(3, 3), (5, 5), (3, 4)])
def test_every_pixel_of_the_pointing_rectangle_is_some_maps_peak(grid):
    """The bound is attained: for every pixel between the border bands a map on the grid
    peaks there (a plane rising away from the centre by just under the tie tolerance)."""
    size = (24, 24)
    span = [metrics._peak_span(c, n) for c, n in zip(grid, size, strict=True)]
    ys, xs = torch.meshgrid(torch.arange(span[0][0], span[0][1] + 1),
                            torch.arange(span[1][0], span[1][1] + 1), indexing="ij")
    pixels = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    direction = rising_direction(pixels, grid, size)
    # eps: tied / not (or, where p reads from the plane's top itself, the steepest tried)
    lo, hi = torch.zeros(len(pixels)), torch.full((len(pixels),), 0.1)
    flat = pixels[:, 0] * size[1] + pixels[:, 1]
    for _ in range(60):                   # largest eps at which p still ties with the peak
        mid = (lo + hi) / 2
        shown = cams.finalize(plane_maps(pixels, direction, grid, size, mid.double()),
                              size).flatten(1)
        top, low = shown.max(dim=1).values, shown.min(dim=1).values
        tied = shown[torch.arange(len(pixels)), flat] >= top - metrics.PEAK_TIE * (top - low)
        lo, hi = torch.where(tied, mid, lo), torch.where(tied, hi, mid)
    eps = lo.double() * (1 - 1e-9)
    ys, xs = peak_after_display(plane_maps(pixels, direction, grid, size, eps), size)
    assert torch.equal(torch.stack([ys, xs], dim=1), pixels)
    # and no map peaks outside the rectangle: random maps, many with exact ties
    gen = torch.Generator().manual_seed(0)
    raw = (torch.rand(400, *grid, generator=gen) * 4).floor()
    ys, xs = peak_after_display(raw, size)
    assert ((ys >= span[0][0]) & (ys <= span[0][1]) & (xs >= span[1][0])
            & (xs <= span[1][1])).all()


@pytest.mark.parametrize("grid", [(2, 2), (7, 7)])
def test_pointing_ceiling_is_at_least_every_one_cell_map(grid):
    masks = box_masks(size=56)
    small = torch.zeros(2, 56, 56, dtype=torch.bool)
    small[0, 0:2, 0:2] = True               # the corner: out of reach strictly
    small[1, 30, 20] = True
    masks = torch.cat([masks, small])
    for tol in (0, 3):
        best = torch.stack([pointing_game(cams.finalize(m, (56, 56)), masks, tol).float()
                            for m in one_cell_maps(5, grid)]).amax(dim=0)
        ceiling = pointing_ceiling(masks, grid, tol)
        assert (ceiling >= best).all()
        assert torch.equal(ceiling, pointing_ceiling(masks, grid, tol, dilate(masks, tol)))
        assert torch.equal(grid_ceiling(masks, grid, tol)["pointing_tol"], ceiling)
    assert pointing_ceiling(small[:1], grid).item() == 0.0


# ----------------------------------------------------------------------------- clarity
def test_gini_and_entropy_by_hand():
    one = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    flat = torch.ones(1, 2, 2)
    assert gini(one).item() == pytest.approx(0.75)              # (n - 1) / n
    assert gini(flat).item() == pytest.approx(0.0)
    assert map_entropy(one).item() == pytest.approx(0.0)
    assert map_entropy(flat).item() == pytest.approx(1.0)
    # (0, 0, 1, 3), sum 4: Gini (1 * 1 + 3 * 3) / (4 * 4) = 10 / 16; entropy
    # -(1/4 log 1/4 + 3/4 log 3/4) / log 4
    two = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])
    assert gini(two).item() == pytest.approx(10 / 16)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(4)
    assert map_entropy(two).item() == pytest.approx(h)
    assert (gini(-flat) == 0).all() and map_entropy(torch.zeros(2, 1, 3, 3)).isnan().all()
    assert gini(torch.tensor([[[-2.0, 0.0], [0.0, 1.0]]])).item() == pytest.approx(0.75)


def test_clarity_is_scale_and_permutation_invariant():
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)) ** 3
    perm = x.flatten(1)[:, torch.randperm(36, generator=torch.Generator().manual_seed(1))]
    for f in (gini, map_entropy):
        assert torch.allclose(f(x), f(7 * x)) and torch.allclose(f(x), f(perm.reshape(3, 6, 6)))
    assert (gini(x) > gini(x.sqrt())).all() and (map_entropy(x) < map_entropy(x.sqrt())).all()
    for bad, err in ((torch.zeros(3, 3), ValueError), (torch.zeros(1, 2, 3, 3), ValueError),
                     (torch.zeros(1, 3, 3, dtype=torch.long), TypeError),
                     (torch.full((1, 3, 3), math.nan), ValueError)):
        with pytest.raises(err, match="maps"):
            gini(bad)
        with pytest.raises(err, match="maps"):
            map_entropy(bad)


def test_dilate_with_a_radius_beyond_the_image():
    m = torch.zeros(1, 5, 7, dtype=torch.bool)
    m[0, 0, 0] = True
    assert dilate(m, 100).all()                             # every pixel within 100 px
    assert dilate(m, 4).sum().item() == sum(1 for y in range(5) for x in range(7)
                                            if y * y + x * x <= 16)
