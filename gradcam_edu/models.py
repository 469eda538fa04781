"""The course's models, named as torchvision names them.

* :func:`resnet18_narrow` - a ResNet-18 with widths 16/32/64/128 instead of 64/128/256/512.
  It *is* a ``torchvision.models.ResNet`` (same ``BasicBlock``, ``_make_layer`` and
  ``forward``), so every module name (``conv1``, ``layer4.1.conv2``, ``layer4.0.downsample.0``,
  ``fc``) and every ``state_dict`` key is exactly that of ``torchvision.models.resnet18()``.
  At a 224 x 224 input: ``layer1`` 56x56, ``layer2`` 28x28, ``layer3`` 14x14, ``layer4`` 7x7.
* :func:`plain_cnn` - a VGG-style CNN without skip connections (7 convs by default, as
  shipped in ``plaincnn-shapes``). Module names::

      features.block1.conv  .bn  .relu  .pool          (5x5 conv, stride 2)
      features.block2.conv1 .bn1 .relu1 .conv2 .bn2 .relu2 .pool
      features.block3.conv1 .bn1 .relu1 .conv2 .bn2 .relu2 .pool
      features.block4.conv1 .bn1 .relu1 .conv2 .bn2 .relu2     <- last conv: 14x14 at 224
      avgpool  (global average pool)   fc  (linear head)

  Spatial sizes at 224: block1 out 56 (stride-2 conv then pool), block2 28, block3 14,
  block4 14. Widths 16/32/64/128. Every ReLU is its own module (no shared, no in-place
  ReLU), so a hook on a name fires exactly once per forward.
* :func:`torchvision_resnet` - torchvision's own ResNet-18/34/50, random (seeded) or with the
  ImageNet weights *when the weight file is already in the local torch hub cache* (loading
  never downloads; ``python -m gradcam_edu fetch resnet18``, :mod:`gradcam_edu.fetch`, puts
  the file there once, on request). :func:`gradcam_edu.images.imagenet_preprocess` (also
  importable from here) prepares a PIL image for them.

All models here except the ImageNet ones take images in [0, 1] directly (no normalisation).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

# ImageNet preprocessing lives in gradcam_edu.images; importable from here as before.
from .images import IMAGENET_MEAN, IMAGENET_STD, imagenet_preprocess

__all__ = [
    "ResNet18Narrow",
    "PlainCNN",
    "resnet18_narrow",
    "plain_cnn",
    "torchvision_resnet",
    "IMAGENET_ARCHS",
    "imagenet_weights",
    "imagenet_weight_path",
    "imagenet_preprocess",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "probability_kind",
    "probabilities",
    "to_probabilities",
]

# ----------------------------------------------------------------------------- probabilities
PROBABILITY_KINDS = ("sigmoid", "softmax")


def probability_kind(model: nn.Module) -> str:
    """How ``model``'s logits become probabilities, as the model says: ``"sigmoid"`` for the
    course's multi-label models (one sigmoid per class: a shapes image holds 1 or 2 objects),
    ``"softmax"`` for single-label models such as torchvision's ImageNet classifiers and any
    model that does not say (its ``probabilities`` attribute)."""
    kind = getattr(model, "probabilities", "softmax")
    if kind not in PROBABILITY_KINDS:
        raise ValueError(f"model: its probabilities attribute is {kind!r}; expected one of "
                         f"{PROBABILITY_KINDS}")
    return kind


def to_probabilities(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """``(..., K)`` logits -> float32 probabilities: ``kind`` "sigmoid" (one per class) or
    "softmax" (over the last axis)."""
    if kind not in PROBABILITY_KINDS:
        raise ValueError(f"kind: expected one of {PROBABILITY_KINDS}, got {kind!r}")
    logits = torch.as_tensor(logits).detach().float()
    return logits.sigmoid() if kind == "sigmoid" else logits.softmax(-1)


def probabilities(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` logits -> ``(N, K)`` probabilities by :func:`probability_kind`."""
    return to_probabilities(logits, probability_kind(model))


# ----------------------------------------------------------------------------- narrow ResNet-18
class ResNet18Narrow(ResNet):
    """torchvision's ResNet-18, with base width ``width`` (16 -> stages 16/32/64/128).

    Reuses ``ResNet.__init__`` for the wiring and initialisation, then rebuilds the width-
    dependent parts with ``ResNet._make_layer``; ``forward`` is torchvision's.
    Input float (N, 3, H, W); output logits (N, num_classes), multi-label (sigmoid).
    """

    probabilities = "sigmoid"

    def __init__(self, num_classes: int = 6, width: int = 16) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(width)
        self.layer1 = self._make_layer(BasicBlock, widths[0], 2)
        self.layer2 = self._make_layer(BasicBlock, widths[1], 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], 2, stride=2)
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
        _init_like_torchvision(self)


def _init_like_torchvision(model: nn.Module) -> None:
    """The initialisation ``torchvision.models.ResNet.__init__`` applies (kaiming convs,
    BN weight 1 / bias 0); the fc keeps PyTorch's default, as in torchvision."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def resnet18_narrow(num_classes: int = 6, width: int = 16) -> ResNet18Narrow:
    """A narrow ResNet-18 (stage widths ``width * (1, 2, 4, 8)``) with torchvision's names.

    Input (N, 3, 224, 224) in [0, 1]; logits (N, num_classes). ``layer4`` output is
    (N, 8 * width, 7, 7), ``layer3`` (N, 4 * width, 14, 14).
    """
    return ResNet18Narrow(num_classes=num_classes, width=width)


# ----------------------------------------------------------------------------- plain CNN
def _conv_bn_relu(
    c_in: int, c_out: int, stride: int = 1, suffix: str = "", kernel: int = 3
) -> list[tuple[str, nn.Module]]:
    return [
        (
            f"conv{suffix}",
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        ),
        (f"bn{suffix}", nn.BatchNorm2d(c_out)),
        (f"relu{suffix}", nn.ReLU()),
    ]


def _plain_block(
    c_in: int, c_out: int, depth: int, pool: bool, stride: int = 1, kernel: int = 3
) -> nn.Sequential:
    """``depth`` conv-BN-ReLU (named conv/bn/relu if depth is 1, else conv1, bn1, relu1, conv2,
    ...), the first with ``stride`` and ``kernel``, then a 2x2 max-pool named ``pool``."""
    layers: list[tuple[str, nn.Module]] = []
    for j in range(depth):
        suffix = "" if depth == 1 else str(j + 1)
        layers += _conv_bn_relu(
            c_in if j == 0 else c_out, c_out, stride=stride if j == 0 else 1, suffix=suffix,
            kernel=kernel if j == 0 else 3,
        )
    if pool:
        layers.append(("pool", nn.MaxPool2d(2)))
    return nn.Sequential(OrderedDict(layers))


class PlainCNN(nn.Module):
    """VGG-style CNN, no skip connections: ``features`` -> ``avgpool`` (GAP) -> ``fc``.

    ``features`` holds block1..block4; block ``b`` has ``depths[b]`` 3x3 conv-BN-ReLU at width
    ``widths[b]`` (block1's single conv: ``stem_kernel`` x ``stem_kernel``, stride 2), and
    blocks 1-3 end in a 2x2 max-pool. Input (N, 3, 224, 224) in [0, 1]; logits
    (N, num_classes). The last conv, ``features.block4.conv2`` (``depths[3] == 2``), has a
    14x14 grid at 224 input (stride 16). See the module docstring for all names.
    Multi-label: one sigmoid per class.
    """

    probabilities = "sigmoid"

    def __init__(
        self,
        num_classes: int = 6,
        widths: tuple[int, int, int, int] = (16, 32, 64, 128),
        depths: tuple[int, int, int, int] = (1, 2, 2, 2),
        stem_kernel: int = 5,
    ) -> None:
        super().__init__()
        chans = [3, *widths]
        blocks = OrderedDict(
            (
                f"block{b + 1}",
                _plain_block(
                    chans[b], chans[b + 1], depths[b], pool=b < 3,
                    stride=2 if b == 0 else 1, kernel=stem_kernel if b == 0 else 3,
                ),
            )
            for b in range(4)
        )
        self.features = nn.Sequential(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        _init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) in [0, 1] -> logits (N, num_classes)."""
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def plain_cnn(
    num_classes: int = 6,
    widths: tuple[int, int, int, int] = (16, 32, 64, 128),
    depths: tuple[int, int, int, int] = (1, 2, 2, 2),
    stem_kernel: int = 5,
) -> PlainCNN:
    """A plain (no skip connection) CNN; last conv ``features.block4.conv2`` is 14x14 at 224.

    ``widths``/``depths``: channels / number of convs of block1..block4; ``stem_kernel``:
    kernel size of block1's stride-2 conv.
    """
    return PlainCNN(
        num_classes=num_classes, widths=tuple(widths), depths=tuple(depths),
        stem_kernel=stem_kernel,
    )


# ----------------------------------------------------------------------------- torchvision
_TV_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
}


IMAGENET_ARCHS = tuple(_TV_WEIGHTS)
"""The torchvision architectures whose ImageNet weights the course can read (and
:func:`gradcam_edu.fetch.fetch_imagenet_weights` can download)."""


def imagenet_weights(arch: str = "resnet18") -> torchvision.models.WeightsEnum:
    """torchvision's entry for ``arch``'s IMAGENET1K_V1 weights (``.url``, ``.meta``
    with its ``"categories"``), from ``torchvision.models.get_weight``."""
    if arch not in _TV_WEIGHTS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(_TV_WEIGHTS)}")
    return torchvision.models.get_weight(f"{_TV_WEIGHTS[arch]}.IMAGENET1K_V1")


def imagenet_weight_path(arch: str = "resnet18") -> Path:
    """Where torchvision keeps ``arch``'s IMAGENET1K_V1 weights in the local torch hub cache
    (``torch.hub.get_dir()/checkpoints/<file name of the official URL>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(imagenet_weights(arch).url).name


def torchvision_resnet(
    arch: str = "resnet18", weights: str = "random", seed: int = 0, num_classes: int = 1000
) -> ResNet:
    """torchvision's ``arch`` ("resnet18" | "resnet34" | "resnet50") in eval mode.

    ``weights="random"``: initialised under ``torch.manual_seed(seed)`` (same seed, same
    weights; the global RNG state is restored afterwards). ``weights="imagenet"``: the
    IMAGENET1K_V1 weights read from the local torch hub cache with ``weights_only=True``;
    nothing is ever downloaded, a missing file raises ``FileNotFoundError`` and a corrupt one
    ``ValueError``, both naming the path. ImageNet models expect
    :func:`imagenet_preprocess`-ed input (normalised).
    """
    if arch not in _TV_WEIGHTS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(_TV_WEIGHTS)}")
    if weights not in ("random", "imagenet"):
        raise ValueError(f"weights must be 'random' or 'imagenet', got {weights!r}")
    builder = getattr(torchvision.models, arch)
    if weights == "imagenet":
        path = imagenet_weight_path(arch)
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {arch} not found at {path} (loading never "
                f"downloads). Run `python -m gradcam_edu fetch {arch}` (or `make fetch "
                f"MODEL={arch}`) once to download them, copy the file {path.name} "
                f"(torchvision's {_TV_WEIGHTS[arch]}.IMAGENET1K_V1 checkpoint) into "
                f"{path.parent}, or set TORCH_HOME so that torch.hub.get_dir() points at a "
                "folder whose checkpoints/ holds it."
            )
        if num_classes != 1000:
            raise ValueError("ImageNet weights come with a 1000-class head; use num_classes=1000")
        model = builder(weights=None, num_classes=1000)
        try:  # a truncated download, another file under the same name...
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as err:  # any failure means the same thing: a bad file
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise ValueError(
                f"ImageNet weights for {arch} at {path} cannot be loaded "
                f"({type(err).__name__}: {reason}): the file is corrupt or not torchvision's "
                f"{_TV_WEIGHTS[arch]}.IMAGENET1K_V1 checkpoint; delete it and copy the "
                "official file again."
            ) from None
        return model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(weights=None, num_classes=num_classes)
    return model.eval()
