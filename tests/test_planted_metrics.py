"""Metrics and faithfulness on tiny inputs whose answers are worked out by hand (2x2, 3x3,
4x4 maps and masks), and the paired bootstrap on cases whose interval is known exactly."""

import math

import pytest
import torch
from torch import nn

from gradcam_edu.faithfulness import curve_auc, perturbation_curve
from gradcam_edu.metrics import (
    baseline_scores,
    centre_map,
    energy_at_grid,
    energy_pointing_game,
    hits_at,
    mask_pooled_maps,
    paired_bootstrap,
    peak_location,
    pointing_game,
    resolution_ceiling,
    target_share,
    uniform_map,
    upsample_adjoint,
)
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.sanity import cascading_randomization, randomization_stages

pytestmark = pytest.mark.usefixtures("one_thread")

# Bilinear upsampling 2 -> 4 (align_corners=False): output pixel i samples the input at
# (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]; so its rows are:
U2TO4 = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])


def mask(rows, cols, pixels):
    m = torch.zeros(1, rows, cols, dtype=torch.bool)
    for y, x in pixels:
        m[0, y, x] = True
    return m


# ----------------------------------------------------------------------------- pointing
def test_pointing_game_on_a_2x2_map():
    maps = torch.tensor([[[0.0, 1.0], [0.5, 0.0]]])                 # peak at (0, 1)
    assert pointing_game(maps, mask(2, 2, [(0, 1)])).tolist() == [True]
    assert pointing_game(maps, mask(2, 2, [(1, 0)])).tolist() == [False]
    # (1, 0) is sqrt(2) px from the peak: a hit within 2 px, not within 1 px
    assert pointing_game(maps, mask(2, 2, [(1, 0)]), tolerance_px=1).tolist() == [False]
    assert pointing_game(maps, mask(2, 2, [(1, 0)]), tolerance_px=2).tolist() == [True]


def test_hits_at_counts_the_euclidean_disc():
    ys, xs = torch.tensor([0]), torch.tensor([0])
    m = mask(4, 4, [(1, 2)])                                         # sqrt(5) = 2.24 px away
    assert hits_at(ys, xs, m, 2).tolist() == [False]
    assert hits_at(ys, xs, m, 3).tolist() == [True]


def test_peak_location_rows_and_columns_of_a_2x4_map():
    maps = torch.zeros(2, 2, 4)
    maps[0, 1, 3] = 1.0
    maps[1, 0, 2] = 1.0
    ys, xs = peak_location(maps)
    assert ys.tolist() == [1, 0] and xs.tolist() == [3, 2]


def test_peak_ties_within_the_tolerance_go_to_the_centre():
    # range 1: a corner 5e-5 above the centre is within 1e-4 of the range, a tie, and ties go
    # to the pixel nearest the centre; 5e-3 above it is a real maximum
    maps = torch.zeros(1, 3, 3)
    maps[0, 1, 1] = 1.0
    maps[0, 0, 0] = 1.0 + 5e-5
    assert [int(v) for v in peak_location(maps)] == [1, 1]
    maps[0, 0, 0] = 1.0 + 5e-3
    assert [int(v) for v in peak_location(maps)] == [0, 0]


# ----------------------------------------------------------------------------- energy, share
def test_energy_pointing_game_on_a_2x2_map():
    maps = torch.tensor([[[1.0, 2.0], [3.0, -4.0]]])
    # positive mass 1 + 2 + 3 = 6, of which 1 on the mask (the -4 counts as 0)
    assert energy_pointing_game(maps, mask(2, 2, [(0, 0), (1, 1)])).item() == pytest.approx(1 / 6)
    # no positive mass: each image gets its own mask's area fraction
    two = torch.cat([mask(2, 2, [(0, 0)]), mask(2, 2, [(0, 0), (0, 1), (1, 1)])])
    assert energy_pointing_game(-torch.ones(2, 2, 2), two).tolist() == pytest.approx([0.25, 0.75])


def test_target_share_on_a_2x2_map():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    target, other = mask(2, 2, [(0, 0)]), mask(2, 2, [(1, 1)])
    assert target_share(maps, target, other).item() == pytest.approx(1 / 5)
    assert target_share(maps, other, target).item() == pytest.approx(4 / 5)
    assert target_share(-maps, target, other).item() == 0.5           # no mass on either


def test_energy_at_grid_on_a_2x2_grid_and_a_4x4_mask():
    # the grid map e_00 upsampled is the outer product of u = U[:, 0] = (1, .75, .25, 0):
    # mass sum(u)^2 = 4, of which (1 + .75)^2 = 3.0625 on the top-left 2x2 block
    low = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    m = mask(4, 4, [(0, 0), (0, 1), (1, 0), (1, 1)])
    assert energy_at_grid(low, m).item() == pytest.approx(3.0625 / 4)
    # U^T 1: each grid cell receives weight 2 per axis
    assert torch.allclose(upsample_adjoint(torch.ones(1, 4, 4), (2, 2)), torch.full((1, 2, 2), 4.0))


# ----------------------------------------------------------------------------- baselines, ceiling
def test_centre_and_uniform_maps_by_hand():
    r = 1 - 1 / math.sqrt(2)                  # 1 - d / d_corner: edges d = 1, corners sqrt(2)
    expected = torch.tensor([[0.0, r, 0.0], [r, 1.0, r], [0.0, r, 0.0]])
    assert torch.allclose(centre_map(3, 3), expected, atol=1e-6)
    assert torch.allclose(centre_map(1, 3), torch.tensor([[0.0, 1.0, 0.0]]))
    assert torch.equal(uniform_map(2, 3), torch.ones(2, 3))


def test_baseline_scores_on_a_4x4_mask():
    # the 4 x 4 centre map peaks on its 4 central pixels (a tie, broken toward the first: (1, 1));
    # the mask is the edge pixel (0, 1), 1 px above that peak
    scores = baseline_scores(mask(4, 4, [(0, 1)]), tolerance_px=1)
    assert scores["centre_pointing"].tolist() == [0.0]
    assert scores["centre_pointing_tol"].tolist() == [1.0]
    assert scores["uniform_energy"].item() == pytest.approx(1 / 16)
    # centre map 1 - d / sqrt(4.5): central pixels (d^2 = 0.5) 2/3, edge pixels (d^2 = 2.5)
    # 1 - sqrt(5) / 3, corners 0
    edge = 1 - math.sqrt(5) / 3
    assert scores["centre_energy"].item() == pytest.approx(edge / (4 * 2 / 3 + 8 * edge),
                                                           rel=1e-5)


def test_mask_pooled_map_pools_the_mask_share_of_each_cell():
    # top-left cell full, one of the 4 pixels of the top-right cell: shares [[1, 1/4], [0, 0]]
    m = mask(4, 4, [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2)])
    expected = U2TO4 @ torch.tensor([[1.0, 0.25], [0.0, 0.0]]) @ U2TO4.T
    assert torch.allclose(mask_pooled_maps(m, 2)[0], expected, atol=1e-6)
    scores = resolution_ceiling(m, 2, tolerance_px=0)
    assert scores["pointing"].tolist() == [1.0]                  # its peak (0, 0) is on the mask
    share = expected[m[0]].sum() / expected.sum()
    assert scores["energy"].item() == pytest.approx(share.item(), rel=1e-5)


# ----------------------------------------------------------------------------- bootstrap
def test_paired_bootstrap_interval_of_a_known_distribution():
    # each draw from (0, 1, 1, 2) is the sum of two fair coins, so the mean of 4 draws is
    # Binomial(8, 1/2) / 4: P(B = 0) = 1/256 < 2.5 % < P(B <= 1) = 9/256, so the 2.5 % quantile
    # is 1/4 and by symmetry the 97.5 % one 7/4 (a 90 % interval would be [1/2, 3/2]).
    # Paired: b is any per-item offset, the interval is that of a - b
    b = torch.tensor([5.0, -3.0, 2.0, 7.0])
    a = b + torch.tensor([0.0, 1.0, 1.0, 2.0])
    assert paired_bootstrap(a, b, n_boot=4000) == pytest.approx((1.0, 0.25, 1.75))
    assert paired_bootstrap(b, a, n_boot=4000) == pytest.approx((-1.0, -1.75, -0.25))


def test_paired_bootstrap_resamples_groups_and_pools_their_items():
    # group 7 holds one item (difference 2), groups 3, 9, 4 three items each (difference 0).
    # A resample draws 4 groups; with j draws of the first, the pooled mean is
    # 2j / (j + 3 (4 - j)) = 0, 0.2, 0.5, 1, 2 for j = 0..4, with P(j) = Binomial(4, 1/4):
    # cumulated 0.316, 0.738, 0.949, 0.996, 1. So the 2.5 % quantile is 0 and the 97.5 % one 1
    # (the mean of group means would give 3/2; resampling the 10 items, 0.6)
    diff = torch.tensor([2.0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    groups = torch.tensor([7, 3, 3, 3, 9, 9, 9, 4, 4, 4])
    got = paired_bootstrap(diff, torch.zeros(10), n_boot=4000, groups=groups)
    assert got == pytest.approx((0.2, 0.0, 1.0))


def test_identical_groups_give_a_zero_width_interval():
    # every group (image) has the same mean difference, 1/2: every resample's pooled mean is
    # 1/2 whatever is drawn (resampling the items instead would spread it)
    diff = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    assert paired_bootstrap(diff, torch.zeros(6), n_boot=500, groups=groups) == (0.5, 0.5, 0.5)


def test_groups_of_one_item_are_the_ungrouped_bootstrap():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(30, generator=gen), torch.rand(30, generator=gen)
    assert paired_bootstrap(a, b, n_boot=300, seed=5, groups=torch.arange(30)) == \
        paired_bootstrap(a, b, n_boot=300, seed=5)


# ----------------------------------------------------------------------------- faithfulness
def test_curve_auc_trapezoids():
    assert curve_auc(torch.tensor([[1.0, 0.0]])).tolist() == [0.5]
    assert curve_auc(torch.tensor([[1.0, 1.0, 1.0]])).tolist() == [1.0]
    assert curve_auc(torch.tensor([[0.0, 1.0, 0.0]])).tolist() == [0.5]
    # K = 4 intervals: (1 + .5) / 2 + (.5 + 0) / 2 = 1, over 4
    assert curve_auc(torch.tensor([[1.0, 0.5, 0.0, 0.0, 0.0]])).tolist() == [0.25]


def weighted_pixels():
    """score = 0.1 x00 + 0.2 x01 + 0.3 x10 + 0.4 x11 (one 2x2 convolution), a multi-label
    model: its probability is the sigmoid of the score."""
    model = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False), nn.Flatten())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]]))
    model.probabilities = "sigmoid"
    return model.eval()


def test_deletion_and_insertion_curves_on_a_linear_score():
    model, x = weighted_pixels(), torch.ones(1, 1, 2, 2)
    # saliency ranks (0, 1) first, then (1, 0), (1, 1), (0, 0)
    maps = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    deletion = perturbation_curve(model, x, maps, 0, "deletion", steps=4)
    assert torch.allclose(deletion, torch.sigmoid(torch.tensor([[1.0, 0.8, 0.5, 0.1, 0.0]])),
                          atol=1e-6)
    insertion = perturbation_curve(model, x, maps, 0, "insertion", steps=4, baseline="zeros")
    assert torch.allclose(insertion, torch.sigmoid(torch.tensor([[0.0, 0.2, 0.5, 0.9, 1.0]])),
                          atol=1e-6)
    # 3 steps of 4 pixels: round(4/3) = 1, round(8/3) = 3 pixels removed
    three = perturbation_curve(model, x, maps, 0, "deletion", steps=3)
    assert torch.allclose(three, torch.sigmoid(torch.tensor([[1.0, 0.8, 0.1, 0.0]])), atol=1e-6)


def test_randomization_stages_top_first():
    assert randomization_stages(resnet18_narrow(width=8)) == [
        "fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0",
        "layer1.1", "layer1.0", "bn1", "conv1"]


def test_cascading_randomization_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    model = resnet18_narrow(width=8).eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    rows = cascading_randomization(model, x, "layer4", 0, stages=["fc"], seed=0)
    assert [r["stage"] for r in rows] == ["fc"]
    assert torch.equal(torch.get_rng_state(), state)
