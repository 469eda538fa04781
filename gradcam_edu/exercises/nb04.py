"""Checkers for notebook 04, *Beyond Grad-CAM*.

As in :mod:`gradcam_edu.exercises.nb01`, every ``check_*`` returns a :class:`Verdict` (true
when the answer is right, with a message that says why not when it is not); a wrong answer
never raises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..cams import GRADIENT_METHODS, METHOD_TITLES, raw_map
from .nb01 import Verdict, _describe, run_on_copies

__all__ = ["Verdict", "check_layer_cam", "check_completeness_error", "check_head_blind"]


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=tol,
                                                      rtol=tol))


# ----------------------------------------------------------------------------- exercise 1
def _cam_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    A = torch.randn(3, 6, 5, 5, generator=gen).clamp(min=0)   # post-ReLU activations
    G = torch.randn(3, 6, 5, 5, generator=gen)                # gradients of both signs
    return A, G


def check_layer_cam(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Verdict:
    """Exercise 1: ``fn(A, G)`` returns LayerCAM's raw map ``(N, h, w)``:
    ``sum_k ReLU(G_k) * A_k`` at every position (before the final ReLU and scaling)."""
    if not callable(fn):
        return Verdict(False, f"pass your function itself (my_layer_cam, not my_layer_cam(...)); "
                       f"got {_describe(fn)}.")
    A, G = _cam_inputs()
    out, failed = run_on_copies(fn, A, G)
    if failed is not None:
        return failed
    if not isinstance(out, torch.Tensor):
        return Verdict(False, f"return a tensor, got {_describe(out)}.")
    ref = raw_map("layercam", A, G)
    if out.shape != ref.shape:
        hint = (" Sum over the channels (dim 1)." if out.shape == A.shape or out.ndim == 4
                else "")
        return Verdict(False, f"expected one map per image, shape {tuple(ref.shape)}, got "
                       f"{tuple(out.shape)}.{hint}")
    if _close(out, ref):
        return Verdict(True, "LayerCAM = sum_k ReLU(G_k) * A_k, position by position: only the "
                       "places where the activation raises the score count.")
    if _close(out, ref.clamp(min=0)):
        return Verdict(True, "with the final ReLU already applied; same displayed map as "
                       "cams.layer_cam.")
    for other in ("hirescam", "gradcam", "gradcam++", "xgradcam"):
        if _close(out, raw_map(other, A, G)):
            extra = (" Keep each position's gradient, but only its positive part: "
                     "G.clamp(min=0).") if other == "hirescam" else (
                " LayerCAM does not average the gradient over positions.")
            return Verdict(False, f"that is {METHOD_TITLES[other]}.{extra}")
    if _close(out, (G * A.clamp(min=0)).sum(1)) or _close(out, (G.abs() * A).sum(1)):
        return Verdict(False, "the ReLU goes on the gradient G (negative gradients dropped), "
                       "not on A, and not an absolute value.")
    return Verdict(False, "the values differ from sum_k ReLU(G_k) * A_k (largest difference "
                   f"{float((out - ref).abs().max()):.3g}).")


# ----------------------------------------------------------------------------- exercise 2
def check_completeness_error(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                          torch.Tensor]) -> Verdict:
    """Exercise 2: ``fn(attr, f_x, f_base)`` returns ``(N,)`` relative completeness errors
    ``|attr.sum over (C, H, W) - (f_x - f_base)| / |f_x - f_base|``."""
    if not callable(fn):
        return Verdict(False, f"pass your function itself, got {_describe(fn)}.")
    gen = torch.Generator().manual_seed(5)
    attr = torch.randn(3, 3, 4, 4, generator=gen) * 0.1
    f_base = torch.tensor([0.5, -1.0, 2.0])
    f_x = torch.tensor([2.0, -3.0, 2.5])           # one negative difference on purpose
    try:
        out = fn(attr.clone(), f_x.clone(), f_base.clone())
    except Exception as err:  # the learner's code failing is an answer, not a crash
        return Verdict(False, f"your function raised {type(err).__name__}: {err}.")
    if not isinstance(out, torch.Tensor):
        return Verdict(False, f"return a tensor with one error per image, got {_describe(out)}.")
    delta = f_x - f_base
    total = attr.sum(dim=(1, 2, 3))
    ref = (total - delta).abs() / delta.abs()
    if out.shape != ref.shape:
        return Verdict(False, f"expected one error per image, shape {tuple(ref.shape)}, got "
                       f"{tuple(out.shape)}; sum the attributions over dims 1, 2 and 3.")
    if _close(out, ref):
        return Verdict(True, "the relative completeness error; Integrated Gradients needs "
                       "enough steps to make it small (the course asks for < 1%).")
    if _close(out, total - delta) or _close(out, (total - delta).abs()):
        return Verdict(False, "divide by |F(x) - F(x')|: the error is relative to the score "
                       "difference being explained.")
    if _close(out, (total - delta) / delta) or _close(out, (total - delta).abs() / delta):
        return Verdict(False, "take absolute values of both the error and F(x) - F(x'): the "
                       "difference can be negative (here it is for image 1).")
    if _close(out, (total - f_x).abs() / f_x.abs()):
        return Verdict(False, "completeness compares with F(x) - F(x'), not with F(x) alone.")
    if _close(out, (attr.abs().sum(dim=(1, 2, 3)) - delta.abs()).abs() / delta.abs()):
        return Verdict(False, "sum the signed attributions; absolute values break "
                       "completeness.")
    return Verdict(False, "the values differ from |sum(attr) - (f_x - f_base)| / "
                   "|f_x - f_base|.")


# ----------------------------------------------------------------------------- exercise 3
_ALIASES = {m: m for m in GRADIENT_METHODS}
_ALIASES.update({METHOD_TITLES[m].lower(): m for m in GRADIENT_METHODS})
_ALIASES.update({"eigen cam": "eigencam", "grad cam": "gradcam", "layer cam": "layercam",
                 "hires cam": "hirescam", "xgrad cam": "xgradcam", "grad-cam ++": "gradcam++"})


def check_head_blind(answer: object) -> Verdict:
    """Exercise 3: the method of :data:`gradcam_edu.cams.GRADIENT_METHODS` whose map at
    ``layer4.1`` does not depend on the weights of ``fc`` at all (Eigen-CAM: it never uses
    the gradient, so the head never enters)."""
    if not isinstance(answer, str):
        return Verdict(False, f"answer with a method name (a str), got {_describe(answer)}.")
    method = _ALIASES.get(answer.strip().lower())
    if method is None:
        return Verdict(False, f"{answer!r} is not one of the methods: "
                       f"{', '.join(GRADIENT_METHODS)}.")
    if method == "eigencam":
        return Verdict(True, "Eigen-CAM uses A only (its first principal component); the head "
                       "enters a map only through the gradient G. That is why it passes the "
                       "sanity check's first step unchanged: it does not explain the class.")
    return Verdict(False, f"{METHOD_TITLES[method]} uses the gradient G = d score / d A, and the "
                   "score is computed by fc: new fc weights, new G, new map. Which method "
                   "ignores G?")
