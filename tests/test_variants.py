"""The model variants the verdict's experiments need (gradcam_edu.variants)."""

import pytest
import torch
from torchvision.models.resnet import Bottleneck

from gradcam_edu import resnet
from gradcam_edu.capture import capture
from gradcam_edu.variants import random_head, with_sum_points, without_skip_gradient

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- model variants
@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def grads(model, x, layers):
    with capture(model, layers) as cap:
        logits = cap.forward(x)
        cap.backward(1)
        return logits.detach(), cap.activations, cap.gradients


def test_without_skip_gradient_keeps_the_forward_and_cuts_skip_paths(model, x):
    layers = ["layer4.1.conv2", "layer3.1.conv2", "layer4.0.conv1"]
    logits, acts, g = grads(model, x, layers)
    logits2, acts2, g2 = grads(without_skip_gradient(model), x, layers)
    assert torch.allclose(logits, logits2, atol=1e-6)
    for name in layers:
        assert torch.allclose(acts[name], acts2[name], atol=1e-6)
    # no skip lies between layer4.1.conv2 and the logits: its gradient is unchanged
    assert torch.allclose(g["layer4.1.conv2"], g2["layer4.1.conv2"], atol=1e-7)
    # deeper layers lose the gradient that came through layer4's skips
    assert not torch.allclose(g["layer3.1.conv2"], g2["layer3.1.conv2"], atol=1e-6)


def test_without_skip_gradient_runs_the_block_forward_without_the_skip():
    torch.manual_seed(0)
    net = torch.nn.Sequential(Bottleneck(16, 4), torch.nn.Flatten()).eval()
    h = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    cut = without_skip_gradient(net)
    assert cut[0].forward.__self__ is cut[0] and net[0].forward.__self__ is net[0]
    (got,) = torch.autograd.grad(cut(h).sum(), h)
    (expected,) = torch.autograd.grad(resnet.block_forward(net[0], h, False).sum(), h)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, torch.autograd.grad(net(h).sum(), h)[0], atol=1e-4)


def test_without_skip_gradient_rejects_a_model_without_blocks():
    with pytest.raises(TypeError, match="no torchvision residual block"):
        without_skip_gradient(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


def test_random_head_is_seeded_and_leaves_the_model_alone(model):
    before = model.fc.weight.clone()
    a, b = random_head(model, seed=1), random_head(model, seed=1)
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.fc.weight, model.fc.weight)
    assert torch.equal(model.fc.weight, before)
    assert torch.equal(a.layer4[1].conv2.weight, model.layer4[1].conv2.weight)


def test_sum_points_hook_the_sum_before_the_relu(model, x):
    names = ["layer4.1.bn2", "layer4.1.pre_relu", "layer4.1", "layer4.0"]
    m = with_sum_points(model)
    assert not hasattr(model.layer4[1], "pre_relu")          # the model passed in is untouched
    logits, acts, g = grads(m, x, names)
    logits0, acts0, g0 = grads(model, x, ["layer4.1.bn2", "layer4.1", "layer4.0"])
    assert torch.equal(logits, logits0)
    identity = acts["layer4.0"]
    # by hand: the sum is bn2 + skip, and the block output is its ReLU
    assert torch.allclose(acts["layer4.1.pre_relu"], acts["layer4.1.bn2"] + identity, atol=1e-6)
    assert torch.allclose(acts["layer4.1"], acts["layer4.1.pre_relu"].clamp(min=0), atol=1e-6)
    # d out / d sum = relu'(sum): the gradient at the sum is the output gradient where sum > 0
    want = g["layer4.1"] * (acts["layer4.1.pre_relu"] > 0)
    assert torch.allclose(g["layer4.1.pre_relu"], want, atol=1e-7)
    assert torch.allclose(g["layer4.1.bn2"], g0["layer4.1.bn2"], atol=1e-7)


def test_sum_points_keep_a_detached_skip(model, x):
    both = with_sum_points(without_skip_gradient(model))
    _, _, g = grads(both, x, ["layer4.0", "layer4.1.pre_relu"])
    _, _, g_cut = grads(without_skip_gradient(model), x, ["layer4.0"])
    assert torch.allclose(g["layer4.0"], g_cut["layer4.0"], atol=1e-7)
