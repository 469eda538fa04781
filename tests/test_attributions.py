"""Pixel attributions: gradient, Guided Backprop (by hand, against captum), SmoothGrad,
Integrated Gradients (completeness)."""

import pytest
import torch
from torch import nn

from gradcam_edu.attributions import (
    guided_backprop,
    guided_relu,
    integrated_gradients,
    smooth_grad,
    to_heatmap,
    vanilla_gradient,
)


def small_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()
    nn.init.normal_(model[-1].weight, std=3.0)  # a model whose scores respond to the image
    return model


@pytest.fixture
def x():
    return torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(3))


def test_vanilla_gradient_matches_autograd(x):
    model = small_model()
    grad = vanilla_gradient(model, x, [1, 4])
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    (out[0, 1] + out[1, 4]).backward()
    torch.testing.assert_close(grad, xr.grad)


def test_no_parameter_grad_written(x):
    model = small_model()
    vanilla_gradient(model, x, 0)
    smooth_grad(model, x, 0, n_samples=4, batch_size=2)
    integrated_gradients(model, x, 0, steps=8)
    assert all(p.grad is None for p in model.parameters())


def test_integrated_gradients_completeness_below_one_percent(x):
    model = small_model()
    ig = integrated_gradients(model, x, target=[2, 3], steps=64, batch_size=16)
    assert ig.attributions.shape == x.shape
    assert (ig.delta.abs() > 0.05).all()  # a non-trivial path
    assert (ig.relative_error < 0.01).all(), ig.relative_error
    coarse = integrated_gradients(model, x, target=[2, 3], steps=2)
    assert coarse.relative_error.mean() > ig.relative_error.mean()


def test_integrated_gradients_baseline_equal_input_gives_zero(x):
    model = small_model()
    ig = integrated_gradients(model, x, 1, baseline=x, steps=4)
    assert ig.attributions.abs().max() == 0 and ig.delta.abs().max() == 0


def test_smooth_grad_is_seeded_and_averages(x):
    model = small_model()
    a = smooth_grad(model, x, [0, 1], n_samples=6, batch_size=4)
    b = smooth_grad(model, x, [0, 1], n_samples=6, batch_size=4)
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape
    no_noise = smooth_grad(model, x, [0, 1], n_samples=3, noise=0.0)
    torch.testing.assert_close(no_noise, vanilla_gradient(model, x, [0, 1]))


def test_attribution_errors(x):
    model = small_model()
    with pytest.raises(ValueError, match="noise"):
        smooth_grad(model, x, 0, noise=-1)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(model, x, 0, steps=0)
    with pytest.raises(ValueError, match="target: got 3 classes for a batch of 2"):
        smooth_grad(model, x, [0, 1, 2], n_samples=2)
    with pytest.raises(ValueError, match="x: expected a 4-D batch"):
        vanilla_gradient(model, x[0], 0)


def test_to_heatmap_range(x):
    heat = to_heatmap(torch.randn_like(x))
    assert heat.shape == (2, 24, 24)
    assert torch.allclose(heat.amax(dim=(1, 2)), torch.ones(2))
    assert torch.isfinite(to_heatmap(torch.zeros_like(x))).all()


# ----------------------------------------------------------------------------- guided backprop
def tiny():
    """x (3 channels, 1 pixel) -> 1x1 conv W1 (a Linear) -> ReLU -> 1x1 conv W2 -> score."""
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.Conv2d(2, 1, 1, bias=False),
                        nn.Flatten())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [2.0, 1.0, 0.0]])[..., None, None])
        net[2].weight.copy_(torch.tensor([[1.0, -1.0]])[..., None, None])
    return net.eval()


def test_guided_backprop_by_hand():
    net = tiny()
    x = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0]]).reshape(2, 3, 1, 1)
    # image 0: pre-activations W1 x = (0.5, 2.5), both open; d score / d relu output = W2 =
    # (1, -1). Plain: W1^T (1, -1) = (-1, -2, 0). Guided drops the negative -1: W1^T (1, 0)
    # image 1: pre-activations (-1, 1): unit 0 closed. Plain: W1^T (0, -1) = (-2, -1, 0);
    # guided: (1, -1) -> clamp (1, 0) -> times open (0, 1) -> (0, 0): no gradient at all
    assert vanilla_gradient(net, x, 0).flatten(1).tolist() == [[-1.0, -2.0, 0.0],
                                                               [-2.0, -1.0, 0.0]]
    assert guided_backprop(net, x, 0).flatten(1).tolist() == [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]


def test_guided_backprop_leaves_the_model_alone():
    net = tiny().train()
    net[0].eval()                                         # a mixed mode, to be restored as is
    modes = [m.training for m in net.modules()]
    modules = [(name, id(m)) for name, m in net.named_modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    guided_backprop(net, torch.rand(2, 3, 1, 1), 0)
    assert [m.training for m in net.modules()] == modes
    assert [(name, id(m)) for name, m in net.named_modules()] == modules
    assert type(net[1]) is nn.ReLU
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(TypeError, match="no nn.ReLU"):
        guided_backprop(nn.Sequential(nn.Conv2d(3, 1, 1), nn.Flatten()), torch.rand(1, 3, 1, 1), 0)
    with pytest.raises(TypeError, match="model"):
        guided_relu(lambda x: x)


def test_guided_relu_reused_and_its_input_changed_in_place():
    """One ReLU module run twice, its first input then modified in place: the guided copy
    keeps its own record of where the input was positive, and gives the value by hand."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x):
            t = x - 0.5
            h = self.relu(t)
            t += 1.0                                       # in place, after the ReLU read it
            return self.relu(h + t - 1.2).sum(dim=(1, 2, 3))[:, None]

    x = torch.tensor([0.2, 1.0, 2.0]).reshape(1, 3, 1, 1)
    # t = (-.3, .5, 1.5), h = (0, .5, 1.5); h + t + 1 - 1.2 = (-.5, .8, 2.8): open at 1, 2.
    # d/dx = relu'(t) * 1 + 1 on the open entries = (0, 2, 2); every upstream gradient is
    # positive, so guided and plain agree
    assert vanilla_gradient(Twice(), x, 0).flatten().tolist() == [0.0, 2.0, 2.0]
    assert guided_backprop(Twice(), x, 0).flatten().tolist() == [0.0, 2.0, 2.0]


def test_guided_backprop_matches_captum_on_a_resnet():
    from captum.attr import GuidedBackprop
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(num_classes=5).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    ours = guided_backprop(net, x, [1, 3])
    theirs = GuidedBackprop(net).attribute(x.clone().requires_grad_(True), target=[1, 3])
    assert ours.abs().max() > 1e-3                      # not trivially zero
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, vanilla_gradient(net, x, [1, 3]), atol=1e-4)
