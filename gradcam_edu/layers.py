"""Which layers to explain by default, in one place (the explorer and the CLI).

    default_layers(model, x)   every conv and every block / stage output (the explorer's list)
    default_layer(model, x)    the one layer of a single explanation: the last of those
    sweep_layers(model, x)     one row per block: the residual blocks' outputs, else the
                               plain CNN's conv blocks, else the convs
    same_output_as(model, ls)  {"layer4": "layer4.1"}: a stage's output IS its last block's

``x``: one input batch as the model takes it (only its first image runs, once).
Names are capture names (:func:`gradcam_edu.capture.capturable_layers`): ``"name#k"`` for
the k-th call of a module that runs several times in one forward.
"""

from __future__ import annotations

import torch
from torch import nn

from . import resnet
from .capture import capturable_layers, split_call

__all__ = ["default_layer", "default_layers", "same_output_as", "sweep_layers"]


def _modules_of(model: nn.Module, names: list[str]) -> list[tuple[str, nn.Module]]:
    modules = dict(model.named_modules())
    return [(name, modules[split_call(name)[0]]) for name in names]


def _is_container(module: nn.Module) -> bool:
    return next(module.children(), None) is not None


def default_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Every ``Conv2d`` and every container module with a 4-D output (ResNet blocks and
    stages, the plain CNN's blocks), in forward order, except a ResNet's ``downsample``
    container (its conv is kept)."""
    keep = []
    for name, module in _modules_of(model, capturable_layers(model, x)):
        base = split_call(name)[0]
        if isinstance(module, nn.Conv2d) or (_is_container(module)
                                             and not base.endswith("downsample")):
            keep.append(name)
    return keep


def default_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The layer a single explanation uses by default: the last of :func:`default_layers`
    (a ResNet's ``layer4``, the plain CNN's ``features``). ``ValueError`` when the model has
    no layer with a 4-D output."""
    layers = default_layers(model, x)
    if not layers:
        raise ValueError("model: it has no conv or block with a 4-D output to explain")
    return layers[-1]


def sweep_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """One layer per block, in forward order: the residual blocks' outputs
    (:func:`gradcam_edu.resnet.is_block`), else the containers holding a ``Conv2d`` (the plain
    CNN's blocks), else every ``Conv2d``."""
    named = _modules_of(model, capturable_layers(model, x))
    blocks = [n for n, m in named if resnet.is_block(m)]
    if blocks:
        return blocks
    convs = [n for n, m in named if any(isinstance(c, nn.Conv2d) for c in m.children())]
    return convs or [n for n, m in named if isinstance(m, nn.Conv2d)]


def same_output_as(model: nn.Module, layers: list[str]) -> dict[str, str]:
    """Containers whose output IS their last child's output (a ResNet stage ``layer4``
    returns what ``layer4.1`` returns): ``{"layer4": "layer4.1"}`` for those whose child is
    listed too, so a view can say that two of its layers show the same tensor."""
    modules = dict(model.named_modules())
    same = {}
    for name in layers:
        module = modules.get(name)
        if isinstance(module, nn.Sequential) and len(module) > 0:
            last = f"{name}.{len(module) - 1}"
            if last in layers:
                same[name] = last
    return same
