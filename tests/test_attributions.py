"""Pixel attributions: gradient, SmoothGrad, Integrated Gradients (completeness)."""

import pytest
import torch
from torch import nn

from gradcam_edu.attributions import (
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
