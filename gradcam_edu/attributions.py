"""Pixel attributions: vanilla gradient, Guided Backprop, SmoothGrad and Integrated Gradients.

All return tensors shaped like the input ``(N, C, H, W)`` on the input's device. Scores are
class scores before softmax; ``target`` follows :func:`gradcam_edu.capture.target_scores`
(an int, one class per image, or a callable on the logits).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .capture import check_images, input_gradient, model_mode
from .inputs import run_model
from .targets import Target, select_target, target_scores


def vanilla_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """The gradient of the class score with respect to the input pixels."""
    return input_gradient(model, x, target)


class _GuidedReLUFunction(torch.autograd.Function):
    """``relu`` forward; backward ``g.clamp(min=0) * (x > 0)`` (guided backpropagation)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x > 0)     # its own tensor: later in-place ops cannot change it
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (positive,) = ctx.saved_tensors
        return g.clamp(min=0) * positive.to(g.dtype)


class GuidedReLU(nn.Module):
    """A ReLU whose backward pass is guided: only positive gradients, at positive inputs.
    Never in place: it returns a new tensor and keeps its own copy of where ``x > 0``, so a
    module reused several times in one forward (torchvision's ``block.relu``, in place there)
    and in-place operations downstream are safe."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``max(x, 0)``, a new tensor."""
        return _GuidedReLUFunction.apply(x)


def guided_relu(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in which every ``nn.ReLU`` module is a :class:`GuidedReLU`:
    the same forward values, the guided backward. Only ``nn.ReLU`` modules are changed (a
    ``torch.relu`` / ``F.relu`` called inside a ``forward`` is not and cannot be detected;
    torchvision's ResNets use modules). ``TypeError`` when there is no ``nn.ReLU`` at all."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    out = copy.deepcopy(model)
    found = 0
    for parent in out.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, GuidedReLU())
                found += 1
    if not found:
        raise TypeError(f"model: {type(model).__name__} has no nn.ReLU module to guide (a "
                        "functional relu cannot be replaced)")
    return out.train(model.training)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015) ``(N, C, H, W)``: the input gradient
    of the class score where every ``nn.ReLU`` passes back only positive gradients, and only
    where its input was positive (:class:`GuidedReLU`). Computed on a copy
    (:func:`guided_relu`) in eval mode: ``model``, its modules, parameters and mode are
    unchanged, and no parameter ``.grad`` is written."""
    return input_gradient(guided_relu(model).eval(), x, target)


def smooth_grad(model: nn.Module, x: torch.Tensor, target: Target, n_samples: int = 25,
                noise: float = 0.15, batch_size: int = 25,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies x + N(0, s^2).

    ``noise``: s as a fraction of each image's value range (max - min), 0.1-0.2 is typical.
    ``generator``: for reproducible noise (default: seeded with 0).
    """
    check_images(model, x)
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples and batch_size must be positive, got {n_samples}, "
                         f"{batch_size}")
    if noise < 0:
        raise ValueError(f"noise: expected a fraction >= 0 of the input range, got {noise}")
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(0)
    n = x.shape[0]
    span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).reshape(n, 1, 1, 1)
    total = torch.zeros_like(x)
    with model_mode(model):
        done = 0
        while done < n_samples:
            k = min(batch_size, n_samples - done)
            eps = torch.randn((n, k, *x.shape[1:]), generator=generator, device=x.device,
                              dtype=x.dtype)
            noisy = (x[:, None] + eps * (noise * span)[:, None]).reshape(n * k, *x.shape[1:])
            grads = input_gradient(model, noisy, select_target(target, n, repeats=k))
            total += grads.reshape(n, k, *x.shape[1:]).sum(dim=1)
            done += k
    return total / n_samples


@dataclass
class IntegratedGradients:
    """Result of :func:`integrated_gradients`.

    ``attributions`` ``(N, C, H, W)``; ``delta`` ``(N,)`` = F(x) - F(baseline);
    ``completeness_error`` ``(N,)`` = sum of attributions - delta (0 for exact integration);
    ``relative_error`` ``(N,)`` = |completeness_error| / |delta|.
    """

    attributions: torch.Tensor
    delta: torch.Tensor
    completeness_error: torch.Tensor

    @property
    def relative_error(self) -> torch.Tensor:
        return self.completeness_error.abs() / self.delta.abs().clamp(min=1e-12)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: Target,
                         baseline: torch.Tensor | float = 0.0, steps: int = 64,
                         batch_size: int = 32) -> IntegratedGradients:
    """Integrated Gradients (Sundararajan et al. 2017), trapezoidal rule on ``steps`` intervals.

    attribution = (x - x') * integral_0^1 dF(x' + a (x - x'))/dx da. The completeness error
    (sum of attributions minus F(x) - F(x')) tells whether ``steps`` is enough: add steps
    until it is small (the course uses < 1 % of |F(x) - F(x')|).
    """
    check_images(model, x)
    if steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps}")
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    n = x.shape[0]
    alphas = torch.linspace(0, 1, steps + 1, device=x.device, dtype=x.dtype)
    w = torch.full((steps + 1,), 1.0 / steps, device=x.device, dtype=x.dtype)
    w[0] = w[-1] = 0.5 / steps
    diff = x - baseline
    total = torch.zeros_like(x)
    with model_mode(model):
        for start in range(0, steps + 1, batch_size):
            a = alphas[start:start + batch_size]
            k = a.numel()
            path = (baseline[:, None] + a[None, :, None, None, None] * diff[:, None])
            grads = input_gradient(model, path.reshape(n * k, *x.shape[1:]),
                                   select_target(target, n, repeats=k))
            total += (grads.reshape(n, k, *x.shape[1:])
                      * w[start:start + k][None, :, None, None, None]).sum(dim=1)
        with torch.no_grad():
            delta = (target_scores(run_model(model, x), target)
                     - target_scores(run_model(model, baseline), target))
    attributions = diff * total
    error = attributions.sum(dim=(1, 2, 3)) - delta
    return IntegratedGradients(attributions.detach(), delta.detach(), error.detach())


def to_heatmap(attributions: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` pixel attributions -> ``(N, H, W)`` in [0, 1]: absolute value summed
    over colour channels, scaled per image by its maximum."""
    heat = attributions.abs().sum(dim=1)
    return heat / heat.reshape(heat.shape[0], -1).max(dim=1).values.clamp(min=1e-12)[:, None, None]
