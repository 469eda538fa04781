"""Localisation and faithfulness metrics, baselines, ceilings and the bootstrap."""

import math

import pytest
import torch

from gradcam_edu import cams
from gradcam_edu.faithfulness import (
    cascading_randomization,
    deletion_auc,
    insertion_auc,
    perturbation_curve,
    rankdata,
    spearman,
)
from gradcam_edu.metrics import (
    baseline_scores,
    centre_map,
    energy_at_grid,
    energy_pointing_game,
    paired_bootstrap,
    pointing_game,
    resolution_ceiling,
    target_share,
    uniform_map,
)
from gradcam_edu.models import resnet18_narrow
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


def test_resolution_ceiling_full_grid_and_one_cell():
    masks = box_masks()
    full = resolution_ceiling(masks, 64)
    for key in ("pointing", "pointing_tol", "energy"):
        assert torch.allclose(full[key], torch.ones(3), atol=1e-5)
    one = resolution_ceiling(masks, 1)
    assert torch.allclose(one["energy"], masks.float().mean(dim=(1, 2)))
    coarse = resolution_ceiling(masks, 4)["energy"]
    assert ((coarse > one["energy"]) & (coarse < 1)).all()


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
