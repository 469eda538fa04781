"""The structure of a torchvision-style ResNet, in one place.

A torchvision ResNet (and the course's narrow ResNet-18, and a truncated one) is::

    stem      conv1 -> bn1 -> relu -> maxpool
    stages    layer1 .. layer4, each an nn.Sequential of residual blocks
    head      avgpool -> flatten -> fc

A residual block (``BasicBlock`` or ``Bottleneck``) computes ``relu(branch(x) + skip(x))``;
its branch ends in ``bn2`` (BasicBlock) or ``bn3`` (Bottleneck), its skip is the identity or
``downsample``. Everything else in the package that needs to know this asks here: the stem
and stage names, the blocks in forward order, a block's branch end and channels, the last
block, and the forward up to a block (with the skip's gradient optionally cut).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

STEM = ("conv1", "bn1", "relu", "maxpool")
STAGES = ("layer1", "layer2", "layer3", "layer4")


def is_block(module: nn.Module) -> bool:
    """True for a torchvision residual block (``BasicBlock`` or ``Bottleneck``)."""
    return isinstance(module, BasicBlock | Bottleneck)


def check_resnet(model: nn.Module, name: str = "model") -> None:
    """``TypeError`` naming what is missing unless ``model`` is a torchvision-style ResNet."""
    missing = [n for n in (*STEM, "layer1", "avgpool", "fc") if not hasattr(model, n)]
    if missing:
        raise TypeError(f"{name}: expected a torchvision-style ResNet (conv1, bn1, relu, "
                        f"maxpool, layer1 and the stages after it, avgpool, fc); "
                        f"{type(model).__name__} has no "
                        f"{', '.join(missing)}")


def stages(model: nn.Module) -> list[str]:
    """The stage names the model has, in order (a truncated ResNet may stop early)."""
    return [s for s in STAGES if isinstance(getattr(model, s, None), nn.Sequential)]


def blocks(model: nn.Module) -> list[str]:
    """Every residual block's name in forward order: ``["layer1.0", ..., "layer4.1"]``."""
    check_resnet(model)
    return [f"{s}.{i}" for s in stages(model) for i in range(len(getattr(model, s)))]


def block_inputs(model: nn.Module) -> list[tuple[str, str]]:
    """``(block, the layer whose output feeds it)``: ``[("layer1.0", "maxpool"),
    ("layer1.1", "layer1.0"), ...]``."""
    names = blocks(model)
    return list(zip(names, ["maxpool", *names[:-1]], strict=True))


def last_block(model: nn.Module) -> str:
    """The name of the last residual block (``"layer4.1"`` in a ResNet-18): its output is
    the stage's and the network's last feature map."""
    return blocks(model)[-1]


def block_of(model: nn.Module, after: str, argument: str = "after") -> str:
    """A stage name means its last block: ``"layer3"`` -> ``"layer3.1"``; a block is itself.

    ``ValueError`` naming ``argument`` (the caller's name for ``after``) when it is neither a
    stage nor a block of ``model``.
    """
    names = blocks(model)
    if isinstance(after, str) and after in stages(model):
        return [n for n in names if n.startswith(after + ".")][-1]
    if after in names:
        return after
    raise ValueError(f"{argument}: {after!r} is not a residual block or stage of this ResNet; "
                     f"blocks: {', '.join(names)}")


def block_module(model: nn.Module, name: str) -> nn.Module:
    """The residual block named ``name`` (``"layer4.0"``), or the last block of a stage."""
    stage, _, index = block_of(model, name).partition(".")
    return getattr(model, stage)[int(index)]


def branch_end(block: nn.Module) -> str:
    """The last BatchNorm of a block's residual branch: ``"bn2"`` (BasicBlock) or ``"bn3"``
    (Bottleneck), where the branch adds onto the skip."""
    for name in ("bn3", "bn2"):
        if isinstance(getattr(block, name, None), nn.BatchNorm2d):
            return name
    raise TypeError(f"block: expected a BasicBlock or Bottleneck, got {type(block).__name__}")


def block_channels(block: nn.Module) -> int:
    """Output channels of a residual block (those of its branch end)."""
    return int(getattr(block, branch_end(block)).num_features)


def relu_calls(block: nn.Module) -> int:
    """How many times a block's shared ``relu`` runs in one forward: 2 in a BasicBlock, 3 in a
    Bottleneck; its last call (``"<block>.relu#<calls - 1>"``) is the block's output."""
    return 3 if branch_end(block) == "bn3" else 2


SUM_POINT = "pre_relu"
"""Name of the optional ``nn.Identity`` child of a block that :func:`block_forward` applies to
``branch + skip`` before the final ReLU, so that the sum can be hooked by name
(:func:`gradcam_edu.variants.with_sum_points`)."""


def block_forward(block: nn.Module, x: torch.Tensor, skip_gradient: bool = True) -> torch.Tensor:
    """A residual block's forward, written out: ``relu(branch(x) + skip(x))``.

    The same values as ``block(x)``; when the block has an identity child named
    :data:`SUM_POINT`, the sum passes through it (same values, a hookable point); with
    ``skip_gradient=False`` the skip is added detached,
    so in the backward pass no gradient flows through the skip connection.
    """
    identity = x if block.downsample is None else block.downsample(x)
    if not skip_gradient:
        identity = identity.detach()
    out = block.relu(block.bn1(block.conv1(x)))
    if isinstance(block, Bottleneck):
        out = block.relu(block.bn2(block.conv2(out)))
        out = block.bn3(block.conv3(out))
    else:
        out = block.bn2(block.conv2(out))
    total = out + identity
    sum_point = getattr(block, SUM_POINT, None)     # an nn.Identity added to be hooked
    return block.relu(total if sum_point is None else sum_point(total))


def stem_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """conv1 -> bn1 -> relu -> maxpool."""
    for name in STEM:
        x = getattr(model, name)(x)
    return x


def iter_blocks(model: nn.Module, x: torch.Tensor, until: str | None = None,
                ) -> Iterator[tuple[str, torch.Tensor]]:
    """Run the stem, then yield ``(block name, block output)`` for every block in forward
    order, stopping after ``until`` (a block or stage name; None: every block)."""
    last = block_of(model, until, "until") if until is not None else None
    h = stem_forward(model, x)
    for name in blocks(model):
        stage, _, i = name.partition(".")
        h = getattr(model, stage)[int(i)](h)
        yield name, h
        if name == last:
            return


def pooled(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The head's input: ``avgpool`` then flatten, ``(N, C)``."""
    return torch.flatten(model.avgpool(h), 1)


def forward_to(model: nn.Module, x: torch.Tensor, until: str | None = None) -> torch.Tensor:
    """The output of block ``until`` (a block or stage name; None: the last block) for images
    ``x``: the stem, then every stage before it called whole (so hooks on a stage fire), then
    the blocks of its own stage up to it (the whole stage when it is the stage's last)."""
    last = block_of(model, until, "until") if until is not None else last_block(model)
    stage, _, index = last.partition(".")
    h = stem_forward(model, x)
    for name in stages(model):
        seq = getattr(model, name)
        if name != stage:
            h = seq(h)
            continue
        if int(index) == len(seq) - 1:
            return seq(h)
        for block in list(seq)[:int(index) + 1]:
            h = block(h)
        return h
    raise AssertionError(f"until: stage {stage!r} not found")  # block_of checked it
