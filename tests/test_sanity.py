"""The cascading model-randomisation sanity check: cumulative stages, a model left alone, a map
that ignores the weights, intervals, the table."""

import copy
import math

import pytest
import torch

from gradcam_edu import cams
from gradcam_edu.attributions import vanilla_gradient
from gradcam_edu.faithfulness import spearman
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.sanity import (
    _reinitialise,
    cascading_randomization,
    format_randomisation,
    randomisation_test,
    randomization_stages,
)

pytestmark = pytest.mark.usefixtures("one_thread")
STAGES = ["fc", "layer4.1", "layer4.0"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resnet18_narrow(num_classes=6, width=8).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def gradcam_at_layer4(model, x):
    return cams.explain(model, x, ["layer4"], 0, ["gradcam"],
                        upsample_to_input=False)["layer4"]["gradcam"]


def gradient_map(model, x):
    return vanilla_gradient(model, x, 0).abs().sum(dim=1)


def image_sum(model, x, target):
    """A 'method' that ignores the model: the image's brightness."""
    return x.sum(dim=1)


def test_rows_are_cumulative_ordered_and_leave_the_model_alone(model, x):
    model.train()
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    try:
        rows = randomisation_test(model, x, 0, "layer4", stages=STAGES, n_boot=200)
    finally:
        assert [m.training for m in model.modules()] == modes
        model.eval()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert [(r["stage"], r["method"]) for r in rows] == [
        (s, m) for s in STAGES for m in ("gradient", "guided_backprop", "gradcam")]
    # stage k's row: fc, ..., stage k re-initialised in order from one seeded stream
    for method, maps in (("gradient", gradient_map), ("gradcam", gradcam_at_layer4)):
        reference = maps(model, x)
        for k, stage in enumerate(STAGES):
            copied = copy.deepcopy(model)
            modules = dict(copied.named_modules())
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                for s in STAGES[:k + 1]:
                    _reinitialise(modules[s])
            row = next(r for r in rows if r["stage"] == stage and r["method"] == method)
            expected = spearman(reference, maps(copied, x)).nan_to_num(0.0)
            assert torch.allclose(row["spearman"], expected)
    assert len({round(r["mean"], 6) for r in rows if r["method"] == "gradient"}) == 3
    for r in rows:
        assert r["spearman"].shape == (4,)
        assert r["low"] <= r["mean"] <= r["high"]
        assert r["mean"] == pytest.approx(float(r["spearman"].mean()))
    again = randomisation_test(model, x, 0, "layer4", stages=STAGES, n_boot=200)
    assert all(torch.equal(a["spearman"], b["spearman"]) and a["low"] == b["low"]
               for a, b in zip(rows, again, strict=True))
    # the stages are cumulative: layer4.0 alone (the same seed) gives another map
    alone = randomisation_test(model, x, 0, "layer4", ["gradient"], ["layer4.0"], n_boot=10)
    assert not torch.allclose(alone[0]["spearman"], rows[-3]["spearman"])


def test_a_map_that_ignores_the_weights_stays_correlated(model, x):
    rows = randomisation_test(model, x, 0, "layer4", methods=[image_sum, "eigencam"],
                              stages=["fc", "layer4.1"], n_boot=100)
    first = [r for r in rows if r["method"] == "image_sum"]
    assert [r["stage"] for r in first] == ["fc", "layer4.1"]
    assert all(r["mean"] == r["low"] == r["high"] == pytest.approx(1.0) for r in first)
    # randomising fc leaves layer4's activations, all Eigen-CAM uses: correlation 1
    eigen = next(r for r in rows if r["method"] == "eigencam" and r["stage"] == "fc")
    assert eigen["mean"] == pytest.approx(1.0)


def test_constant_maps_count_as_zero_or_are_left_out(model, x):
    def dead_after(m, x, target):             # constant once the model is randomised
        return x.sum(dim=1) if m is model else torch.zeros(x.shape[0], 64, 64)

    def dead(m, x, target):
        return torch.ones(x.shape[0], 8, 8)

    rows = randomisation_test(model, x, 0, "layer4", methods=[dead_after, dead],
                              stages=["fc"], n_boot=50)
    assert rows[0]["spearman"].tolist() == [0.0] * 4 and rows[0]["constant"] == 4
    assert rows[0]["mean"] == 0.0
    assert rows[1]["undefined"] == 4 and math.isnan(rows[1]["mean"])
    assert rows[1]["spearman"].isnan().all()


def test_bad_arguments_are_named(model, x):
    with pytest.raises(ValueError, match="methods"):
        randomisation_test(model, x, 0, "layer4", methods=["nope"])
    with pytest.raises(ValueError, match="methods"):
        randomisation_test(model, x, 0, "layer4", methods=[])
    with pytest.raises(ValueError, match="methods"):
        randomisation_test(model, x, 0, "layer4", methods=["gradcam", "gradcam"])
    with pytest.raises(ValueError, match="stages"):
        randomisation_test(model, x, 0, "layer4", stages=["layer9"])
    with pytest.raises(ValueError, match="rows"):
        format_randomisation([])


def test_cascading_randomization_is_the_same_check(model, x):
    rows = cascading_randomization(model, x, "layer4", 0, "gradcam", stages=STAGES[:2])
    full = randomisation_test(model, x, 0, "layer4", methods=["gradcam"], stages=STAGES[:2],
                              n_boot=10)
    assert [r["stage"] for r in rows] == STAGES[:2]
    assert all(torch.allclose(a["spearman"].nan_to_num(0.0), b["spearman"])
               for a, b in zip(rows, full, strict=True))


def test_stages_top_first():
    assert randomization_stages(resnet18_narrow(width=8)) == [
        "fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0",
        "layer1.1", "layer1.0", "bn1", "conv1"]


def test_format_by_hand():
    rows = [{"stage": "fc", "method": "gradcam", "mean": 0.5, "low": 0.25, "high": 0.75,
             "spearman": torch.zeros(4)},
            {"stage": "fc", "method": "gradient", "mean": -0.125, "low": -0.5, "high": 0.0,
             "spearman": torch.zeros(4), "constant": 1}]
    lines = format_randomisation(rows).splitlines()
    assert lines[0].rstrip() == "randomised up to  gradcam               gradient"
    assert lines[1] == "fc                +0.50 [+0.25, +0.75]  -0.12 [-0.50, +0.00]"
    assert "mean over 4 images x 1 trained model(s)" in lines[2]
    assert "1 randomised maps constant" in " ".join(lines)
