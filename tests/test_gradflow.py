"""Gradient flow: skip + branch rebuild the input gradient; zero gradients behind max-pool."""

import copy

import pytest
import torch

from gradcam_edu import gradflow
from gradcam_edu.capture import Capture, capture
from gradcam_edu.gradflow import flow_table, gradient_flow, zero_gradient_share
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.resnet import block_inputs
from gradcam_edu.truncate import truncate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = resnet18_narrow().eval()
    with torch.no_grad():   # non-trivial batch-norm statistics, as in a trained model
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_skip_plus_branch_is_the_input_gradient(model, x, monkeypatch):
    pulls = []
    original = Capture.pullback

    def counted(self, output, input, grad_output):
        pulls.append((output, input))
        return original(self, output, input, grad_output)

    monkeypatch.setattr(Capture, "pullback", counted)
    flows = gradient_flow(model, x, [1, 3])
    assert [f.block for f in flows] == [b for b, _ in block_inputs(model)]
    # every vector-Jacobian product goes through the capture: one per branch, one per downsample
    assert ("layer1.0.bn2", "maxpool") in pulls and ("layer2.0.downsample", "layer1.1") in pulls
    assert len(pulls) == 8 + 3
    assert [f.skip for f in flows][:3] == ["identity", "identity", "downsample"]
    for f in flows:
        assert f.reconstruction_error < 1e-5
        assert ((f.skip_share >= 0) & (f.skip_share <= 1)).all()
    # the decomposition, checked against an independent capture of the input gradient
    with capture(model, ["layer3.1"]) as cap:
        cap.forward(x)
        cap.backward([1, 3])
        g_in = cap.gradients["layer3.1"]
    f = next(f for f in flows if f.block == "layer4.0")
    assert torch.allclose(f.input_norm, g_in.reshape(2, -1).norm(dim=1), rtol=1e-5)
    # an identity block's skip part is the gradient at its pre-ReLU sum, computed by hand
    with capture(model, ["layer1.1", "layer1.0"]) as cap:
        cap.forward(x)
        cap.backward([1, 3])
        g_pre = cap.gradients["layer1.1"] * (cap.activations["layer1.1"] > 0)
    f = flows[1]
    assert f.block == "layer1.1" and f.skip == "identity"
    assert torch.allclose(f.skip_norm, g_pre.reshape(2, -1).norm(dim=1), rtol=1e-5)
    rows = flow_table(flows)
    assert rows[0]["block"] == "layer1.0" and {"skip_share", "skip_projection"} <= set(rows[0])


def test_block_with_zero_convs_sends_everything_through_the_skip(model, x):
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.layer3[1].conv1.weight.zero_()
        m.layer3[1].conv2.weight.zero_()
    flows = {f.block: f for f in gradient_flow(m, x, 2, blocks=["layer3.1", "layer4.1"])}
    assert list(flows) == ["layer3.1", "layer4.1"]
    f = flows["layer3.1"]
    assert torch.all(f.branch_norm == 0)
    assert torch.allclose(f.skip_share, torch.ones(2))
    assert torch.allclose(f.skip_projection, torch.ones(2))
    with pytest.raises(ValueError, match="blocks"):
        gradient_flow(m, x, 2, blocks=["layer5.0"])


def test_conv1_behind_max_pool_gets_at_most_one_position_in_four(model):
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rows = {r["layer"]: r for r in zero_gradient_share(model, x, 0,
                                                       layers=["conv1", "maxpool", "layer1.0"])}
    assert rows["conv1"]["grid"] == (112, 112)
    assert rows["conv1"]["zero_entries"] >= 0.75
    assert rows["maxpool"]["zero_entries"] < 0.75


def test_a_truncated_model_has_its_own_blocks(model, x):
    cut = truncate(model, "layer3.0", head="probe", num_classes=3)
    torch.nn.init.normal_(cut.fc.weight, generator=torch.Generator().manual_seed(0))
    flows = gradient_flow(cut, x, 2)
    assert [f.block for f in flows][-2:] == ["layer2.1", "layer3.0"]
    assert all(f.reconstruction_error < 1e-5 for f in flows)


def test_dead_helpers_are_gone():
    assert not hasattr(gradflow, "_flat_norm") and not hasattr(gradflow, "residual_blocks")
