"""Attributions on models whose gradients are known in closed form."""

import pytest
import torch
from torch import nn

from gradcam_edu.attributions import integrated_gradients, smooth_grad, to_heatmap


class Polynomial(nn.Module):
    """Logits (N, 3): sum of x^3, sum of x^2, sum of w * x (gradients 3x^2, 2x, w)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x):
        return torch.stack([(x ** 3).sum(dim=(1, 2, 3)), (x ** 2).sum(dim=(1, 2, 3)),
                            (self.w * x).sum(dim=(1, 2, 3))], dim=1)


@pytest.fixture
def x():
    return 0.5 + torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def model():
    return Polynomial(torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1)))


def test_integrated_gradients_trapezoids_by_hand(model, x):
    # F = sum x^3, baseline 0: attribution = x * int_0^1 3 a^2 x^2 da with the integral of
    # a^2 by trapezoids on 4 intervals: 1/4 [(0 + 1)/2 + (1 + 4 + 9)/16] = 11/32, so the
    # attribution is 33/32 x^3 (batches of 3 path points: 3 + 2); one interval: 3/2 x^3
    ig = integrated_gradients(model, x, 0, steps=4, batch_size=3)
    assert torch.allclose(ig.attributions, 33 / 32 * x ** 3, rtol=1e-5)
    assert torch.allclose(ig.delta, (x ** 3).sum(dim=(1, 2, 3)), rtol=1e-5)
    assert torch.allclose(ig.completeness_error, (x ** 3).sum(dim=(1, 2, 3)) / 32, rtol=1e-4)
    one = integrated_gradients(model, x, 0, steps=1)
    assert torch.allclose(one.attributions, 1.5 * x ** 3, rtol=1e-5)
    # F = sum x^2: the integrand is linear in a, trapezoids are exact: attribution x^2
    exact = integrated_gradients(model, x, [1, 1], steps=3, batch_size=2)
    assert torch.allclose(exact.attributions, x ** 2, rtol=1e-5)
    assert exact.relative_error.max() < 1e-5


def test_smooth_grad_of_a_linear_score_is_its_gradient(model, x):
    # the gradient of sum w x is w whatever the noise: the mean over 6 samples (4 + 2) is w
    sg = smooth_grad(model, x, 2, n_samples=6, batch_size=4, noise=0.3)
    assert torch.allclose(sg, model.w.expand_as(x), atol=1e-6)


def test_smooth_grad_noise_follows_the_range_not_the_level(model, x):
    # F = sum x^2: SmoothGrad = 2 x + 2 s (max - min) mean(eps). Shifting the image keeps its
    # range, hence the same noise (same seed): the result moves by exactly 2 * shift
    a = smooth_grad(model, x, 1, n_samples=5, batch_size=2, noise=0.15)
    b = smooth_grad(model, x + 0.25, 1, n_samples=5, batch_size=2, noise=0.15)
    assert torch.allclose(b - a, torch.full_like(x, 0.5), atol=1e-5)


def test_to_heatmap_sums_absolute_values_by_hand():
    attributions = torch.tensor([[[[1.0, -2.0]], [[-1.0, 1.0]]]])       # (1, 2, 1, 2)
    # |1| + |-1| = 2, |-2| + |1| = 3, scaled by the maximum 3
    assert torch.allclose(to_heatmap(attributions), torch.tensor([[[2 / 3, 1.0]]]))
