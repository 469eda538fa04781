"""Checkers for notebook 05, *The verdict, and your own model*.

As in :mod:`gradcam_edu.exercises.nb01`, every ``check_*`` returns a :class:`Verdict` (true
when the answer is right, with a message that says why not when it is not); a wrong answer
never raises.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import resnet
from .. import verdict as rule
from ..capture import split_call
from ..images import load_image_file, to_tensor
from .nb01 import Verdict, _describe

__all__ = ["Verdict", "check_verdict", "check_model_input", "check_last_block"]


# ----------------------------------------------------------------------------- exercise 1
def check_verdict(answer: object, isolated, source: tuple[float, float, float] | None = None,
                  source_changes: tuple[str, ...] = ("depth", "head"), cause: str = "depth",
                  margin: float = 0.0) -> Verdict:
    """Exercise 1: the verdict (one of :data:`gradcam_edu.verdict.VERDICTS`) that
    :func:`gradcam_edu.verdict.judge` gives for a claim whose isolated effects (``cause``
    alone, one per setting of the other factors) measure ``isolated = [(difference, low,
    high), ...]`` and whose source comparison (None: the post made none) changes
    ``source_changes`` and measures ``source``."""
    if not isinstance(answer, str):
        return Verdict(False, f"answer with one word (a str), got {_describe(answer)}.")
    word = answer.strip().lower()
    if word not in rule.VERDICTS:
        return Verdict(False, f"{answer!r} is not a verdict; choose one of "
                       f"{', '.join(rule.VERDICTS)}.")

    def effect(numbers, changes, label):
        d, lo, hi = (float(v) for v in numbers)
        return rule.Effect(label, "energy", d, lo, hi, clearer={f: "x" for f in changes},
                           other={f: "y" for f in changes})

    iso = [effect(n, (cause,), f"setting {i + 1}") for i, n in enumerate(isolated)]
    src = None if source is None else effect(source, source_changes, "the post's comparison")
    expected, reason = rule.judge(cause, iso, src, margin)
    if word == expected:
        return Verdict(True, f"{expected}: {reason}")
    hints = {
        "supported": "'supported' needs EVERY isolated interval (the cause alone) to lie "
                     "entirely above the margin",
        "mixed": "'mixed' means some isolated intervals lie above the margin and others do not",
        "confounded": "'confounded' means every isolated interval lies below the margin (the "
                      "effect is ruled out) while the post's comparison, which changes the "
                      "cause with other factors, lies above it",
        "inconclusive": "'inconclusive' means no isolated interval lies above the margin, but "
                        "some still reach above it: neither shown nor ruled out",
        "unsupported": "'unsupported' means every isolated interval lies below the margin (the "
                       "effect is ruled out), and no comparison of several changes is real",
    }
    return Verdict(False, f"{hints[word]}. Look at where each interval lies relative to the "
                   "margin, isolated effects first.")


# ----------------------------------------------------------------------------- exercise 2
def check_model_input(x: object, path: str | os.PathLike, size: int = 224) -> Verdict:
    """Exercise 2: the image file at ``path`` as the input of the shipped models: a float
    tensor ``(1, 3, size, size)`` in [0, 1], RGB, short side resized to ``size`` and centre
    cropped (no squashing). Compared with :func:`gradcam_edu.images.load_image_file`
    (differences of a resize filter are accepted)."""
    ref = load_image_file(path, size)[None]
    if not isinstance(x, torch.Tensor):
        hint = (" Convert it: torchvision.transforms.functional.to_tensor(image)."
                if hasattr(x, "convert") else "")
        return Verdict(False, f"expected a tensor, got {_describe(x)}.{hint}")
    x = x.detach().cpu()
    if x.ndim == 3:
        return Verdict(False, f"add the batch axis: x.unsqueeze(0) gives (1, {x.shape[0]}, ...),"
                       " the model takes a batch (N, 3, H, W).")
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        return Verdict(False, "the channels are last (N, H, W, 3); models want (N, 3, H, W): "
                       "x.permute(0, 3, 1, 2).")
    if x.ndim != 4 or x.shape[1] != 3:
        return Verdict(False, f"expected shape {tuple(ref.shape)}, got {tuple(x.shape)}; convert "
                       "the image to RGB first (image.convert('RGB')).")
    if not x.is_floating_point():
        return Verdict(False, f"expected floats in [0, 1], got {x.dtype}; divide by 255.")
    if float(x.max()) > 1.5:
        return Verdict(False, "values go up to 255: scale them to [0, 1] (divide by 255). The "
                       "shipped models were trained on [0, 1] images, without normalisation.")
    if float(x.min()) < -0.01:
        return Verdict(False, "negative values: the shipped models take [0, 1] images, not "
                       "ImageNet-normalised ones (normalise only for the ImageNet weights).")
    if tuple(x.shape[-2:]) != (size, size):
        return Verdict(False, f"expected {size} x {size} pixels, got {tuple(x.shape[-2:])}: "
                       f"resize the short side to {size}, then centre-crop.")
    if float((x - ref).abs().mean()) < 0.02:
        return Verdict(True, "a (1, 3, 224, 224) float tensor in [0, 1], resized and centre-"
                       "cropped: ready for the model, capture and the explorer.")
    with Image.open(path) as img:
        squashed = to_tensor(np.asarray(img.convert("RGB").resize((size, size),
                                                                  Image.BILINEAR)))[None]
    if float((x - squashed).abs().mean()) < 0.02:
        return Verdict(False, "the image was squashed to a square (its aspect ratio changed); "
                       f"resize the short side to {size} and crop the centre instead.")
    if float((x - ref.flip(1)).abs().mean()) < 0.02:
        return Verdict(False, "the colour channels are reversed (BGR); keep RGB order.")
    return Verdict(False, "the pixels differ from the image resized (short side) and "
                   "centre-cropped; check the crop box and the order of resize and crop.")


# ----------------------------------------------------------------------------- exercise 3
def check_last_block(model: nn.Module, answer: object) -> Verdict:
    """Exercise 3: a capture name for the output of the last residual block of a
    torchvision-style ResNet (``model``): the layer whose Grad-CAM is CAM. For ResNet-50:
    ``"layer4.2"`` (or the stage ``"layer4"``, the same tensor)."""
    block = resnet.last_block(model)
    stage, module = block.partition(".")[0], resnet.block_module(model, block)
    if not isinstance(answer, str):
        return Verdict(False, f"answer with a layer name (a str), got {_describe(answer)}.")
    name = answer.strip()
    names = dict(model.named_modules())
    if name in (block, stage):
        return Verdict(True, f"{name!r} outputs the last block's features, which feed the "
                       "average pool and fc: there Grad-CAM = HiResCAM = CAM.")
    try:
        base = split_call(name)[0]
    except ValueError:
        base = name
    if name not in names and base not in names:
        return Verdict(False, f"the model has no layer {name!r}; list names with "
                       "[n for n, _ in model.named_modules()].")
    if base in ("avgpool", "fc", "flatten"):
        return Verdict(False, f"{base!r} has no spatial grid (its output is one vector per "
                       "image); pick the layer that feeds it.")
    if base.startswith(block + "."):
        relu_calls = resnet.relu_calls(module)
        if base == f"{block}.relu":
            return Verdict(False, f"{block}.relu runs {relu_calls} times per forward; its last "
                           f"call (#{relu_calls - 1}) is the block output, but the block's own "
                           f"name, {block!r}, says it without ambiguity.")
        return Verdict(False, f"{name!r} is inside the last block, before the skip is added: it "
                       "holds the residual increment only.")
    return Verdict(False, f"{name!r} comes before the last block ({block!r}); the layers after "
                   "it still change the features before the head reads them.")
