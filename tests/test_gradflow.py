"""Gradient flow: skip + branch rebuild the input gradient; zero gradients behind max-pool."""

import pytest
import torch

from gradcam_edu.capture import capture
from gradcam_edu.gradflow import flow_table, gradient_flow, residual_blocks, zero_gradient_share
from gradcam_edu.models import resnet18_narrow

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


def test_blocks_and_their_inputs(model):
    pairs = residual_blocks(model)
    assert pairs[:3] == [("layer1.0", "maxpool"), ("layer1.1", "layer1.0"),
                         ("layer2.0", "layer1.1")]
    assert len(pairs) == 8


def test_skip_plus_branch_is_the_input_gradient(model, x):
    flows = gradient_flow(model, x, [1, 3])
    assert [f.block for f in flows] == [b for b, _ in residual_blocks(model)]
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
    rows = flow_table(flows)
    assert rows[0]["block"] == "layer1.0" and {"skip_share", "skip_projection"} <= set(rows[0])


def test_block_with_zero_convs_sends_everything_through_the_skip(model, x):
    import copy

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
