"""The ResNet structure module: names, blocks, branch ends, and forwards equal to the model's."""

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from gradcam_edu import resnet
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.truncate import truncate

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch-norm statistics and affine parameters, as in a trained model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.copy_(torch.rand(bn.num_features, generator=gen) * 0.4 - 0.2)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) * 1.5 + 0.5)
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.rand(bn.num_features, generator=gen) * 0.4 - 0.2)
    return module.eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _randomise_bn(resnet18_narrow(width=8))


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _blocks_under_test():
    torch.manual_seed(1)
    down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    return {"basic identity": (BasicBlock(8, 8), 8),
            "basic downsample": (BasicBlock(8, 16, stride=2, downsample=down), 8),
            "bottleneck identity": (Bottleneck(16, 4), 16)}


@pytest.mark.parametrize("kind", list(_blocks_under_test()))
def test_block_forward_equals_the_block(kind):
    block, channels = _blocks_under_test()[kind]
    _randomise_bn(block, seed=2)
    h = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = block(h)
        assert torch.allclose(resnet.block_forward(block, h), expected, atol=1e-6)
        assert torch.allclose(resnet.block_forward(block, h, skip_gradient=False), expected,
                              atol=1e-6)
    assert resnet.is_block(block) and not resnet.is_block(block.conv1)
    assert resnet.branch_end(block) == ("bn3" if "bottleneck" in kind else "bn2")
    assert resnet.block_channels(block) == expected.shape[1]
    assert resnet.relu_calls(block) == (3 if "bottleneck" in kind else 2)


def test_without_the_skip_gradient_only_the_branch_carries_gradient():
    torch.manual_seed(4)
    block = _randomise_bn(BasicBlock(2, 2)).double()
    h = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    w = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    h.requires_grad_(True)
    (g_cut,) = torch.autograd.grad((w * resnet.block_forward(block, h, False)).sum(), h)
    (g_full,) = torch.autograd.grad((w * resnet.block_forward(block, h)).sum(), h)
    # by hand: y = relu(b(h) + h), so dL/dh = J_b^T g_pre + g_pre with g_pre = w * [y > 0]
    branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(h)))))
    g_pre = w * ((branch + h) > 0)
    (through_branch,) = torch.autograd.grad(branch, h, g_pre)
    assert torch.allclose(g_cut, through_branch, atol=1e-12)
    assert torch.allclose(g_full, through_branch + g_pre, atol=1e-12)
    # a branch of zero convolutions: no gradient reaches the input without the skip
    with torch.no_grad():
        block.conv2.weight.zero_()
    (g_zero,) = torch.autograd.grad((w * resnet.block_forward(block, h, False)).sum(), h)
    assert torch.equal(g_zero, torch.zeros_like(h))


def test_names_of_a_resnet18_and_of_a_truncated_one(model):
    names = resnet.blocks(model)
    assert names == [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    assert resnet.block_inputs(model)[:3] == [("layer1.0", "maxpool"), ("layer1.1", "layer1.0"),
                                              ("layer2.0", "layer1.1")]
    assert resnet.last_block(model) == "layer4.1" and resnet.stages(model) == list(resnet.STAGES)
    assert resnet.block_of(model, "layer3") == "layer3.1"
    assert resnet.block_module(model, "layer2.0") is model.layer2[0]
    cut = truncate(model, "layer3.0", head="probe")
    assert resnet.blocks(cut) == names[:5] and resnet.stages(cut) == ["layer1", "layer2", "layer3"]
    assert resnet.block_inputs(cut)[-1] == ("layer3.0", "layer2.1")
    assert resnet.last_block(cut) == "layer3.0" and resnet.block_of(cut, "layer3") == "layer3.0"
    with pytest.raises(ValueError, match="after: 'layer3.1'"):
        resnet.block_of(cut, "layer3.1")
    with pytest.raises(ValueError, match="until: 'layer4'"):
        resnet.forward_to(cut, torch.zeros(1, 3, 32, 32), "layer4")
    with pytest.raises(TypeError, match="model: expected a torchvision-style ResNet"):
        resnet.blocks(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_forward_to_the_last_stage_pooled_through_fc_is_the_model(model, x):
    with torch.no_grad():
        h = resnet.forward_to(model, x, "layer4")
        assert torch.allclose(model.fc(resnet.pooled(model, h)), model(x), atol=1e-6)
        assert torch.allclose(resnet.forward_to(model, x), h, atol=0)
        mid = resnet.forward_to(model, x, "layer3.0")
        expected = model.layer3[0](model.layer2(model.layer1(resnet.stem_forward(model, x))))
        assert torch.allclose(mid, expected, atol=1e-6)
        outputs = dict(resnet.iter_blocks(model, x, until="layer3.0"))
        assert list(outputs) == resnet.blocks(model)[:5]
        assert torch.allclose(outputs["layer3.0"], mid, atol=1e-6)


def test_forward_to_runs_whole_stages_so_their_hooks_fire(model, x):
    cut = truncate(model, "layer3.1", head="probe")
    seen = []
    handle = cut.layer3.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        with torch.no_grad():
            cut(x)
    finally:
        handle.remove()
    assert seen == [torch.Size([2, 32, 4, 4])]
