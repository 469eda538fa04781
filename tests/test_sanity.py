"""Guided Backprop by hand and against captum, and the randomisation sanity check."""

import pytest
import torch
from torch import nn

from gradcam_edu.attributions import guided_backprop, guided_relu, vanilla_gradient
from gradcam_edu.sanity import format_randomisation, randomisation_test

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny():
    """x (3 channels, 1 pixel) -> 1x1 conv W1 -> ReLU -> 1x1 conv W2 -> score."""
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 1, bias=False),
                        nn.Flatten())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [2.0, 1.0, 0.0]])[..., None, None])
        net[2].weight.copy_(torch.tensor([[1.0, -1.0]])[..., None, None])
    return net.eval()


def test_guided_backprop_by_hand():
    x = torch.tensor([1.0, 0.5, 0.0]).reshape(1, 3, 1, 1)
    net = tiny()
    # pre-activations (0.5, 2.5) > 0; d score / d relu output = (1, -1)
    # plain: W1^T (1, -1) = (-1, -2, 0); guided drops the negative part: W1^T (1, 0) = (1, -1, 0)
    assert vanilla_gradient(net, x, 0).flatten().tolist() == [-1.0, -2.0, 0.0]
    assert guided_backprop(net, x, 0).flatten().tolist() == [1.0, -1.0, 0.0]
    assert isinstance(net[1], nn.ReLU)                  # the model passed in is unchanged
    with pytest.raises(TypeError, match="no nn.ReLU"):
        guided_relu(nn.Sequential(nn.Conv2d(3, 1, 1)))


def test_guided_backprop_matches_captum_on_a_resnet():
    from captum.attr import GuidedBackprop
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=5).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ours = guided_backprop(net, x, [1, 3])
    theirs = GuidedBackprop(net).attribute(x.clone().requires_grad_(True), target=[1, 3])
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not net.training


def test_randomisation_rows_are_cumulative_and_leave_the_model_alone(model):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = randomisation_test(model, x, 0, "layer4", stages=["fc", "layer4", "conv1"],
                              n_boot=200)
    assert [(r["stage"], r["method"]) for r in rows][:3] == [
        ("fc", "gradient"), ("fc", "guided_backprop"), ("fc", "gradcam")]
    assert len(rows) == 9
    for r in rows:
        assert r["low"] <= r["mean"] <= r["high"] and r["spearman"].shape == (4,)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    text = format_randomisation(rows)
    assert text.splitlines()[0].split() == ["randomised", "up", "to", "gradient",
                                            "guided_backprop", "gradcam"]
    with pytest.raises(ValueError, match="methods"):
        randomisation_test(model, x, 0, "layer4", methods=["nope"])
    with pytest.raises(ValueError, match="no module"):
        randomisation_test(model, x, 0, "layer4", stages=["layer9"])


def test_a_map_that_ignores_the_weights_stays_correlated(model):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    # randomising fc leaves Grad-CAM's *activations* intact; Eigen-CAM uses only them
    rows = randomisation_test(model, x, 0, "layer4", methods=["eigencam"], stages=["fc"],
                              n_boot=100)
    assert rows[0]["mean"] == pytest.approx(1.0)
