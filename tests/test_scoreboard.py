"""The scoreboard's statistics on hand-built boards (known answers), and a real run whose
tolerance, ceilings and baselines are checked against values worked out by hand."""

import math

import pytest
import torch

from gradcam_edu.models import resnet18_narrow
from gradcam_edu.scoreboard import BASELINE, METRICS, Scoreboard, scoreboard

pytestmark = pytest.mark.usefixtures("one_thread")

nan = math.nan


def board(layers: dict[str, dict[str, list[float]]], image_index, baselines=None,
          n_boot=500) -> Scoreboard:
    """A scoreboard of given per-pair scores (method "gradcam"), without running a model."""
    p = len(image_index)
    scores = {(layer, "gradcam"): {m: torch.tensor(per.get(m, [0.5] * p), dtype=torch.float64)
                                   for m in METRICS}
              for layer, per in layers.items()}
    return Scoreboard(layers=list(layers), methods=["gradcam"], grids={la: (1, 1) for la in layers},
                      scores=scores, ceilings={}, baselines=baselines or {},
                      image_index=torch.tensor(image_index), target_class=torch.zeros(p, dtype=int),
                      n_boot=n_boot, seed=0)


def test_mean_ci_resamples_images_not_pairs():
    # every image's two pairs average 1/2: resampling images, every resample's mean is 1/2
    b = board({"x": {}}, [0, 0, 1, 1, 2, 2])
    assert b.mean_ci(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])) == (0.5, 0.5, 0.5)
    # NaN pairs (target share on 1-object images) are left out
    assert b.mean_ci(torch.tensor([nan, nan, 0.25, 0.25, 0.25, 0.25])) == (0.25, 0.25, 0.25)


def test_compare_with_another_board_pairs_its_scores():
    a = board({"x": {"energy": [1.0, 0.75, 0.5, 0.5]}}, [0, 1, 2, 3])
    b = board({"y": {"energy": [0.5, 0.25, 0.0, 0.0]}}, [0, 1, 2, 3])
    cmp = a.compare(("x", "gradcam"), ("y", "gradcam"), "energy", other=b)
    assert (cmp["difference"], cmp["low"], cmp["high"], cmp["pairs"]) == (0.5, 0.5, 0.5, 4)


def test_compare_drops_pairs_with_nan_on_either_side():
    b = board({"x": {"target_share": [0.75, 0.5, 0.25, 0.5]},
               "y": {"target_share": [nan, 0.25, 0.0, 0.25]}}, [0, 1, 2, 3])
    cmp = b.compare("x", "y", "target_share")
    assert (cmp["difference"], cmp["low"], cmp["high"], cmp["pairs"]) == (0.25, 0.25, 0.25, 3)
    cmp = b.compare("y", "x", "target_share")
    assert cmp["pairs"] == 3 and cmp["difference"] == -0.25


def test_compare_against_each_baseline_takes_its_own_scores():
    p = 4
    baselines = {"centre_pointing": torch.ones(p), "centre_pointing_tol": torch.ones(p),
                 "centre_energy": torch.full((p,), 0.25), "uniform_energy": torch.full((p,), 0.125),
                 "centre_target_share": torch.full((p,), 0.5),
                 "uniform_target_share": torch.full((p,), 0.5)}
    b = board({"x": {"energy": [0.5] * p, "pointing": [0.0, 1.0, 0.0, 1.0]}}, [0, 1, 2, 3],
              baselines)
    assert b.compare("x", (BASELINE, "uniform"), "energy")["difference"] == 0.375
    assert b.compare("x", (BASELINE, "centre"), "energy")["difference"] == 0.25
    assert b.compare("x", (BASELINE, "uniform"), "pointing")["difference"] == -0.5
    with pytest.raises(ValueError, match="unknown baseline 'corner'"):
        b.compare("x", (BASELINE, "corner"), "energy")


# ----------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def run():
    """Two 64 x 64 images: image 0 holds a 1-pixel object in the top-left corner and a 24 x 24
    block in the bottom-right corner, image 1 the corner pixel alone; tolerance 100 px (more
    than the image's diagonal, 89 px)."""
    torch.manual_seed(0)
    model = resnet18_narrow(width=8).eval()
    corner = torch.zeros(64, 64, dtype=torch.bool)
    corner[0, 0] = True
    block = torch.zeros(64, 64, dtype=torch.bool)
    block[40:, 40:] = True
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    masks = [torch.stack([corner, block]), corner[None]]
    return scoreboard(model, x, masks, [[1, 2], [3]], ["layer4", "layer3"], ["gradcam"],
                      n_boot=50, tolerance_px=100)


def test_pairs_in_image_then_object_order(run):
    assert run.image_index.tolist() == [0, 0, 1] and run.target_class.tolist() == [1, 2, 3]


def test_tolerance_reaches_the_pointing_scores_and_the_ceilings(run):
    for layer in ("layer4", "layer3"):
        s = run.scores[(layer, "gradcam")]
        assert s["pointing_tol"].tolist() == [1.0, 1.0, 1.0]        # every pixel within 100 px
        # strictly, the 1-pixel corner object is never hit: an upsampled map is flat over the
        # corner (at least 8 x 8 pixels here), and a tie goes to the pixel nearest the centre
        assert s["pointing"][[0, 2]].tolist() == [0.0, 0.0]
        assert run.ceilings[layer]["pointing_tol"].tolist() == [1.0, 1.0, 1.0]
    # the 2x2 grid's ceiling for the corner pixel is flat on the 16 x 16 corner block, so it
    # points at (15, 15): 21 px from the object, a miss within 15 px (the default tolerance)
    assert run.ceilings["layer4"]["pointing"][[0, 2]].tolist() == [0.0, 0.0]


def test_baselines_by_hand(run):
    b = run.baselines
    assert b["uniform_energy"].tolist() == pytest.approx([1 / 4096, 576 / 4096, 1 / 4096])
    # uniform map on a 2-object image: target area / (target + other areas); NaN with one object
    share = b["uniform_target_share"]
    assert share[:2].tolist() == pytest.approx([1 / 577, 576 / 577]) and math.isnan(share[2])
    assert b["centre_pointing_tol"].tolist() == [1.0, 1.0, 1.0]
