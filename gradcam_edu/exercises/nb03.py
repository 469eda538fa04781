"""Checkers for notebook 03, *Truncated ResNets*.

As in :mod:`gradcam_edu.exercises.nb01`, every ``check_*`` returns a :class:`Verdict` (true
when the answer is right, with a message that says why not when it is not); a wrong answer
never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from .. import resnet
from ..capture import model_mode
from ..truncate import truncate
from .nb01 import Verdict, _describe

__all__ = ["Verdict", "check_cut_logits", "check_confounders", "check_probe_cam"]


# ----------------------------------------------------------------------------- exercise 1
def check_cut_logits(fn: Callable[[nn.Module, torch.Tensor], torch.Tensor], model: nn.Module,
                     head: nn.Module, after: str = "layer3.1",
                     x: torch.Tensor | None = None) -> Verdict:
    """Exercise 1: ``fn(model, x)`` returns the logits of ``model`` cut after block ``after``
    with the linear head ``head`` (stem, kept blocks, global average pool, flatten, head).
    Compared with ``truncate(model, after, head=head)`` on ``x`` (default: 2 seeded random
    images of 224 x 224)."""
    if not callable(fn):
        return Verdict(False, f"pass your function itself (cut_logits, not cut_logits(...)); "
                       f"got {_describe(fn)}.")
    if x is None:
        x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    reference_model = truncate(model, after, head=head).eval()
    with model_mode(model), torch.no_grad():
        ref = reference_model(x)
        try:
            out = fn(model, x)
        except Exception as err:  # the learner's code failing is an answer, not a crash
            hint = ""
            if "shapes cannot be multiplied" in str(err) or "size mismatch" in str(err):
                hint = (" The head expects one number per channel: pool over the positions "
                        "(model.avgpool, or a mean over dims 2 and 3), then flatten to (N, C).")
            return Verdict(False, f"your function raised {type(err).__name__}: {err}.{hint}")
        if not isinstance(out, torch.Tensor):
            return Verdict(False, f"return the logits as a tensor, got {_describe(out)}.")
        if out.shape != ref.shape:
            return Verdict(False, f"expected logits of shape {tuple(ref.shape)} (images x "
                           f"classes), got {tuple(out.shape)}.")
        if torch.allclose(out, ref, atol=1e-4, rtol=1e-4):
            return Verdict(True, f"stem, blocks up to {after}, average pool, flatten, head: the "
                           "same logits as truncate(model, after, head=head).")
        if torch.allclose(out, model(x), atol=1e-4, rtol=1e-4):
            return Verdict(False, "these are the full model's logits; stop after "
                           f"{after} and use the given head instead of model.fc.")
        mistake = _cut_mistake(model, head, x, out, after)
    if mistake:
        return Verdict(False, mistake)
    return Verdict(False, f"the logits differ from the cut after {after} (largest difference "
                   f"{float((out - ref).abs().max()):.3g}); check the stem (conv1, bn1, relu, "
                   "maxpool), that each stage runs in order, and the average pool.")


def _cut_mistake(model: nn.Module, head: nn.Module, x: torch.Tensor, out: torch.Tensor,
                 after: str) -> str | None:
    """What the learner's logits ``out`` are, when they are a known mistake: a cut after
    another block, or a max pool instead of the average."""
    for name, feats in resnet.iter_blocks(model, x):
        if feats.shape[1] != getattr(head, "in_features", feats.shape[1]):
            continue
        pooled = head(resnet.pooled(model, feats))
        if resnet.block_of(model, after) != name and torch.allclose(out, pooled, atol=1e-4,
                                                                    rtol=1e-4):
            return f"you cut after {name}, not after {after}."
        if torch.allclose(out, head(feats.amax(dim=(2, 3))), atol=1e-4, rtol=1e-4):
            return ("you max-pooled; a ResNet's head reads the *average* over positions "
                    "(model.avgpool).")
    return None


# ----------------------------------------------------------------------------- exercise 2
FACTORS = {
    "head": ("head", "fc", "classifier", "linear", "random head", "weights of the head"),
    "layer": ("layer", "hooked layer", "target layer", "hook", "conv", "layer4.0.conv1"),
    "depth": ("depth", "truncation", "truncate", "cut", "block removed", "removed block",
              "blocks", "architecture", "layer4.1"),
}
"""The three factors of the post's example 3 versus example 1, and words accepted for each."""


def _factor_of(word: str) -> str | None:
    w = word.strip().lower()
    for factor, words in FACTORS.items():       # exact words first ("layer4.1" is depth)
        if w in words:
            return factor
    for factor, words in FACTORS.items():       # then "truncated", "classifier head", ...
        if any(w.startswith(v) for v in words if len(v) > 4):
            return factor
    return None


def check_confounders(answer: Iterable[str]) -> Verdict:
    """Exercise 2: the factors that differ between the post's example 1 and example 3:
    the head (random ``nn.Linear`` vs trained ``fc``), the hooked layer (``layer4.1.conv2`` vs
    ``layer4.0.conv1``) and the depth (full network vs cut after ``layer4.0``)."""
    if isinstance(answer, str):
        answer = [answer]
    try:
        words = [str(w) for w in answer]
    except TypeError:
        return Verdict(False, f"answer with a list of words, e.g. ['layer'], got "
                       f"{_describe(answer)}.")
    found = {f for f in map(_factor_of, words) if f is not None}
    unknown = [w for w in words if _factor_of(w) is None]
    if unknown:
        return Verdict(False, f"{unknown} is not one of the factors that changed; think of what "
                       "the two code examples build (the model, its head) and where they hook.")
    missing = [f for f in FACTORS if f not in found]
    if not missing:
        return Verdict(True, "head (random vs trained fc), layer (layer4.1.conv2 vs "
                       "layer4.0.conv1) and depth (full vs cut after layer4.0): three changes "
                       "at once, so a clearer map cannot be credited to any one of them.")
    hints = {"head": "compare what example 1 does to model.fc with what example 3 keeps",
             "layer": "compare the `layer = ...` line of the two examples",
             "depth": "example 3 builds a new model class: which blocks does it keep?"}
    return Verdict(False, f"{len(found)} of 3 found; missing: "
                   + "; ".join(hints[m] for m in missing) + ".")


# ----------------------------------------------------------------------------- exercise 3
def check_probe_cam(cam: object, A: torch.Tensor, weight: torch.Tensor, cls: int) -> Verdict:
    """Exercise 3: CAM of class ``cls`` from activations ``A`` ``(C, h, w)`` of one image and a
    linear head's ``weight`` ``(K, C)``: ``sum_k weight[cls, k] A_k``, shape ``(h, w)``, signed
    (no ReLU, no scaling)."""
    if not isinstance(A, torch.Tensor) or A.ndim != 3:
        raise ValueError("A: pass one image's activations, a tensor of shape (C, h, w)")
    A, weight = A.detach(), weight.detach()
    ref = torch.einsum("k,khw->hw", weight[cls], A)
    if not isinstance(cam, torch.Tensor):
        return Verdict(False, f"expected a tensor of shape {tuple(ref.shape)}, got "
                       f"{_describe(cam)}.")
    cam = cam.detach()
    if cam.ndim == 3 and cam.shape[0] == 1:
        cam = cam[0]
    if cam.shape != ref.shape:
        return Verdict(False, f"expected one value per position, shape {tuple(ref.shape)}, got "
                       f"{tuple(cam.shape)}; sum over the channels (dim 0 of A).")

    def close(a, b):
        return bool(torch.allclose(a.double(), b.double(), atol=1e-5, rtol=1e-4))

    if close(cam, ref):
        return Verdict(True, "CAM = sum_k w_ck A_k: at the cut's last block this is Grad-CAM "
                       "up to the factor h w.")
    if close(cam, ref.clamp(min=0)):
        return Verdict(False, "right before the ReLU: the exercise asks for the signed map.")
    hw = ref.shape[0] * ref.shape[1]
    if close(cam, ref / hw) or close(cam * hw, ref):
        return Verdict(False, "that is Grad-CAM's weighted sum (CAM / (h w)); CAM uses the "
                       "head's weights themselves.")
    other = [c for c in range(weight.shape[0])
             if c != cls and close(cam, torch.einsum("k,khw->hw", weight[c], A))]
    if other:
        return Verdict(False, f"that is the CAM of class {other[0]}; use row {cls} of the "
                       "weights.")
    if close(cam, A.mean(dim=0)) or close(cam, A.sum(dim=0)):
        return Verdict(False, "every channel got the same weight; weight channel k by "
                       f"weight[{cls}, k].")
    return Verdict(False, "the values differ from sum_k weight[cls, k] * A[k]; check that you "
                   "used the probe's weights and this image's activations.")
