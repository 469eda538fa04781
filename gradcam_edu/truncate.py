"""Truncated ResNets: keep the network up to one block, then pool and classify.

The source post's third example removes ``layer4[1]`` and keeps the trained ``fc``. Here that
is one call, and the alternative the course compares it with is a new linear head ("probe")
to be trained on the frozen features of the cut (:mod:`gradcam_edu.probes`)::

    cut = truncate(model, after="layer4.0")                  # stem .. layer4.0 + original fc
    cut = truncate(model, after="layer3.1", head="probe")    # new Linear(C -> 6) head

The truncated model keeps the original module names (``conv1``, ``layer1`` .. the last kept
stage holding only the kept blocks, ``avgpool``, ``fc``), so capture names such as
``"layer4.0"`` or ``"layer3.1.conv2"`` mean the same module in both models, and its
``state_dict`` keys are a subset of the full model's (plus the head).

The truncated model is a deep copy: training a probe, or anything else done to it, never
touches the full model. The ResNet structure (stem, stages, blocks, forward) comes from
:mod:`gradcam_edu.resnet`. This module is model surgery only: shipped probes are built by
:mod:`gradcam_edu.probes` and loaded by :func:`gradcam_edu.weights.load_model`.
"""

from __future__ import annotations

import copy
import difflib

import torch
from torch import nn

from . import models, resnet

__all__ = ["TruncatedResNet", "cut_points", "truncate"]


class TruncatedResNet(nn.Module):
    """A torchvision-style ResNet cut after one block: same module names, shorter.

    ``forward``: stem, the kept stages, ``avgpool``, flatten, ``fc``. ``cut`` names the last
    kept block, ``head`` says where ``fc`` came from ("original", "probe" or "custom"),
    ``probabilities`` is the base model's (:func:`gradcam_edu.models.probability_kind`).
    :meth:`features` returns the pooled features ``(N, C)`` that the head sees.
    """

    def __init__(self, stem: dict[str, nn.Module], stages: dict[str, nn.Sequential],
                 avgpool: nn.Module, fc: nn.Module, cut: str, head: str,
                 probabilities: str = "softmax"):
        super().__init__()
        for name, module in stem.items():
            self.add_module(name, module)
        for name, module in stages.items():
            self.add_module(name, module)
        self.avgpool = avgpool
        self.fc = fc
        self.cut = cut
        self.head = head
        self.probabilities = probabilities

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, C)`` of images ``(N, 3, H, W)``: the input of ``fc``."""
        return resnet.pooled(self, resnet.forward_to(self, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, 3, H, W)``."""
        return self.fc(self.features(x))

    def extra_repr(self) -> str:
        return f"cut={self.cut!r}, head={self.head!r}"


def cut_points(model: nn.Module) -> list[str]:
    """Valid values of ``after`` for :func:`truncate`: ``"layer1.0"``, ..., ``"layer4"``
    (every block, and after a stage's blocks the stage itself)."""
    names = resnet.blocks(model)
    out = []
    for stage in resnet.stages(model):
        out += [n for n in names if n.startswith(stage + ".")] + [stage]
    return out


def _check_after(model: nn.Module, after: object) -> str:
    """``after`` as a valid cut point, or a clear error naming it with the closest cuts."""
    if not isinstance(after, str):
        raise TypeError(f"after: expected a block name such as 'layer4.0', got "
                        f"{type(after).__name__}")
    valid = cut_points(model)
    if after not in valid:
        close = difflib.get_close_matches(after, valid, n=4, cutoff=0.4)
        raise ValueError(f"after: {after!r} is not a block boundary of this ResNet. "
                         f"Closest: {', '.join(close) if close else '(none)'}. "
                         f"Valid cuts: {', '.join(valid)}")
    return after


def _new_head(fc: nn.Module, head: str | nn.Module, after: str, channels: int,
              num_classes: int | None) -> tuple[nn.Module, str]:
    """The head of the cut and its kind: ``(module, "original" | "probe" | "custom")``."""
    if isinstance(head, nn.Module):
        return head, "custom"
    if head == "original":
        in_features = getattr(fc, "in_features", None)
        if in_features != channels:
            raise ValueError(f"head: the original fc expects {in_features} input channels, but "
                             f"the network cut after {after!r} outputs {channels}; use "
                             "head='probe' for a new linear head (train it with "
                             "gradcam_edu.probes.train_probe)")
        return copy.deepcopy(fc), "original"
    if head == "probe":
        out = num_classes if num_classes is not None else getattr(fc, "out_features", None)
        if isinstance(out, bool) or not isinstance(out, int) or out < 1:
            raise ValueError(f"num_classes: expected a positive int for the probe, got {out!r}")
        p = next(fc.parameters(), None)
        probe = nn.Linear(channels, out, device=p.device if p is not None else None)
        nn.init.zeros_(probe.weight)
        nn.init.zeros_(probe.bias)
        return probe, "probe"
    raise ValueError(f"head: expected 'original', 'probe' or an nn.Module, got {head!r}")


def truncate(model: nn.Module, after: str, head: str | nn.Module = "original",
             num_classes: int | None = None) -> TruncatedResNet:
    """Cut a torchvision-style ResNet after block ``after`` and put a head on it.

    ``after``: a block (``"layer4.0"``, ``"layer3.1"``) or a whole stage (``"layer3"``, the
    same as its last block); see :func:`cut_points`. ``"layer4"`` keeps the whole network.
    ``head``: ``"original"`` reuses the trained ``fc`` (only where the cut's channel count
    equals ``fc.in_features``, e.g. resnet18 cut after ``layer4.0``); ``"probe"`` puts a new
    zero-initialised ``nn.Linear(channels, num_classes)`` to be trained with
    :func:`gradcam_edu.probes.train_probe`; or any ``nn.Module`` mapping ``(N, C)`` features to
    logits. ``num_classes``: outputs of a probe (default: those of the original ``fc``).

    Returns a :class:`TruncatedResNet` built from deep copies of the kept modules (the full
    model is never modified or shared), in the full model's train/eval mode, with the full
    model's ``probabilities`` kind.
    """
    resnet.check_resnet(model)
    after = _check_after(model, after)
    last = resnet.block_of(model, after)
    last_stage, _, index = last.partition(".")
    stages: dict[str, nn.Sequential] = {}
    for s in resnet.stages(model):
        kept = list(getattr(model, s))
        if s == last_stage:
            kept = kept[:int(index) + 1]
        # nn.Sequential of the first j blocks keeps their indices 0..j-1: "layer4.0" survives
        stages[s] = copy.deepcopy(nn.Sequential(*kept))
        if s == last_stage:
            break
    channels = resnet.block_channels(stages[last_stage][-1])
    new_head, kind = _new_head(model.fc, head, after, channels, num_classes)
    stem = {n: copy.deepcopy(getattr(model, n)) for n in resnet.STEM}
    cut = TruncatedResNet(stem, stages, copy.deepcopy(model.avgpool), new_head, after, kind,
                          probabilities=models.probability_kind(model))
    cut.train(model.training)
    return cut
