"""Model variants that the verdict's experiments need, each a deep copy (the model passed in is
never changed; module names are kept, so the same layer names hook the same places).

* :func:`random_head`: the post's ``model.fc = nn.Linear(512, 1000)``, a fresh seeded head;
* :func:`without_skip_gradient`: the same forward values, but no gradient flows back through
  any skip connection (every skip is added detached);
* :func:`with_sum_points`: every residual block gets an ``nn.Identity`` child ``pre_relu``
  applied to ``branch + skip`` before the final ReLU, so ``layer4.1.pre_relu`` can be hooked
  (torchvision's block adds in place and reuses one ReLU module, so the sum is no module's
  output otherwise).

The hook points inside a BasicBlock, in forward order: ``conv2`` (the branch's last
convolution) -> ``bn2`` (its batch norm: a per-channel scale and shift) -> ``pre_relu``
(``bn2 + skip``) -> the block output (after the ReLU).
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn

from . import resnet

__all__ = ["INSIDE_BLOCK", "random_head", "with_sum_points", "without_skip_gradient"]

INSIDE_BLOCK = ("conv2", "bn2", resnet.SUM_POINT, "")
"""Hook points of a BasicBlock from the branch's last convolution to the block output ("")."""


def random_head(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose ``fc`` is a fresh ``nn.Linear`` of the same shape,
    initialised under ``seed`` (the post's ``model.fc = nn.Linear(512, 1000)``); the global
    random state is left as it was."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise TypeError(f"model: expected a linear head named fc, got {type(fc).__name__}")
    out = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out.fc = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device,
                           dtype=fc.weight.dtype)
    return out.train(model.training)


def _blocks(model: nn.Module) -> list[nn.Module]:
    found = [m for m in model.modules() if resnet.is_block(m)]
    if not found:
        raise TypeError(f"model: {type(model).__name__} has no torchvision residual block "
                        "(BasicBlock or Bottleneck)")
    return found


def _forward_without_skip_gradient(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return resnet.block_forward(self, x, skip_gradient=False)


def _forward_written_out(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return resnet.block_forward(self, x)


def without_skip_gradient(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose residual blocks add a *detached* skip.

    The forward pass computes exactly the same values (same activations, same logits); in the
    backward pass no gradient flows through any skip connection (identity or downsample), so
    every gradient reaches a layer through residual branches only. Blocks are torchvision
    ``BasicBlock`` / ``Bottleneck``, each running
    ``resnet.block_forward(block, x, skip_gradient=False)``; module names unchanged.
    """
    out = copy.deepcopy(model)
    for block in _blocks(out):
        block.forward = types.MethodType(_forward_without_skip_gradient, block)
    return out


def with_sum_points(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in which every residual block's ``branch + skip`` (before the
    final ReLU) is the output of an ``nn.Identity`` child named ``pre_relu``: same values,
    same gradients, one more hookable name per block (``layer4.1.pre_relu``). A block that
    :func:`without_skip_gradient` already rewrote keeps its detached skip."""
    out = copy.deepcopy(model)
    for block in _blocks(out):
        block.add_module(resnet.SUM_POINT, nn.Identity())
        if "forward" not in vars(block):            # keep a without_skip_gradient forward
            block.forward = types.MethodType(_forward_written_out, block)
    return out

