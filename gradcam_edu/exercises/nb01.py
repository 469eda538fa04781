"""Checkers for notebook 01, *Grad-CAM from scratch on a plain CNN*.

Every ``check_*`` function returns a :class:`Verdict`: true when the answer is right, with a
message that says why not when it is not. In a notebook, put the call last in a cell and the
message is displayed::

    check_channel_weights(alpha, G)       # Correct! ... / Not yet: ...

Checkers never raise on a wrong answer (a learner's mistake is not a crash); they raise only
when the checker itself is called wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..cams import finalize, grad_cam
from ..capture import HOOK_DICTS, capture, hook_count, hook_ids

__all__ = ["Verdict", "check_channel_weights", "check_grad_cam", "check_bare_hooks",
           "hook_count"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``ok`` and a message for the learner. ``bool(v) == v.ok``."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return ("Correct! " if self.ok else "Not yet: ") + self.message

    def __repr__(self) -> str:
        return str(self)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=tol, rtol=tol))


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


# ----------------------------------------------------------------------------- exercise 1
def check_channel_weights(alpha: object, G: torch.Tensor) -> Verdict:
    """Exercise 1: Grad-CAM's channel weights ``alpha`` ``(N, C)`` from gradients ``G``
    ``(N, C, h, w)``: the mean of each channel's gradient over the h x w positions."""
    if not isinstance(G, torch.Tensor) or G.ndim != 4:
        raise ValueError("G: pass the captured gradients, a tensor of shape (N, C, h, w)")
    G = G.detach()
    n, c, h, w = G.shape
    ref = G.mean(dim=(2, 3))
    if not isinstance(alpha, torch.Tensor):
        return Verdict(False, f"expected a tensor of shape {(n, c)}, got {_describe(alpha)}.")
    alpha = alpha.detach()
    if alpha.shape == (n, c, 1, 1) and _close(alpha[:, :, 0, 0], ref):
        return Verdict(False, "the values are right, but keep one weight per (image, channel): "
                       f"shape {(n, c)}, not {tuple(alpha.shape)} (drop keepdim=True).")
    if alpha.shape == (c, h, w) or alpha.shape == (n, h, w):
        axis = "the batch axis (dim 0)" if alpha.shape == (c, h, w) else "the channels (dim 1)"
        return Verdict(False, f"you averaged over {axis}; Grad-CAM averages each channel's "
                       "gradient over the positions: G.mean(dim=(2, 3)).")
    if alpha.shape != (n, c):
        return Verdict(False, f"expected one weight per image and channel, shape {(n, c)}; "
                       f"got {tuple(alpha.shape)}. Average G over dims 2 and 3 (rows, columns).")
    if _close(alpha, ref):
        return Verdict(True, f"alpha = G.mean(dim=(2, 3)): {c} channel weights per image.")
    if _close(alpha, G.sum(dim=(2, 3))):
        return Verdict(False, f"that is the sum over positions, {h * w} times the mean. The sum "
                       "gives the same map after min-max scaling, but the weights of the "
                       "formula are means: use .mean(dim=(2, 3)).")
    if _close(alpha, G.abs().mean(dim=(2, 3))) or _close(alpha, G.clamp(min=0).mean(dim=(2, 3))):
        return Verdict(False, "keep the sign of the gradients: a channel whose activation "
                       "lowers the class score must get a negative weight.")
    return Verdict(False, "the values differ from G.mean(dim=(2, 3)); check that you used the "
                   "gradients (not the activations) of the same capture.")


# ----------------------------------------------------------------------------- exercise 2
def _test_tensors() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(3, 8, 7, 7, generator=gen).clamp(min=0)
    G = torch.randn(3, 8, 7, 7, generator=gen)
    G[1] *= 40.0                                   # images on very different scales
    A_neg = torch.rand(2, 4, 5, 5, generator=gen) + 0.1
    G_neg = -torch.rand(2, 4, 5, 5, generator=gen) - 0.1   # every weight negative: all-zero map
    return [("a batch of 3 random maps", A, G), ("a map that is negative everywhere", A_neg, G_neg)]


def run_on_copies(fn: Callable, A: torch.Tensor, G: torch.Tensor, *args,
                  where: str = "") -> tuple[object, Verdict | None]:
    """Call a learner's ``fn(A, G, *args)`` on copies: ``(output, None)``, or ``(None, a
    failing Verdict)`` when it raised or modified A or G in place."""
    A_in, G_in = A.clone(), G.clone()
    try:
        out = fn(A_in, G_in, *args)
    except Exception as err:  # the learner's code failing is an answer, not a crash
        return None, Verdict(False, f"your function raised {type(err).__name__}: {err} "
                             f"({where}A and G of shape {tuple(A.shape)}).")
    if not (torch.equal(A_in, A) and torch.equal(G_in, G)):
        return None, Verdict(False, "your function modified A or G in place (avoid *=, "
                             "relu_(), clamp_()); compute on new tensors, the caller still "
                             "needs them.")
    return out, None


def check_grad_cam(fn: Callable[[torch.Tensor, torch.Tensor, tuple[int, int]], torch.Tensor]
                   ) -> Verdict:
    """Exercise 2: ``fn(A, G, size)`` returns the displayed Grad-CAM maps ``(N, H, W)``:
    weighted sum with alpha = mean gradient, ReLU, min-max scaling to [0, 1] per image
    (an all-zero map stays zero), bilinear upsampling to ``size`` (``align_corners=False``).
    Compared with ``cams.finalize(cams.grad_cam(A, G), size)``."""
    if not callable(fn):
        return Verdict(False, f"pass your function itself (fn, not fn(...)); got {_describe(fn)}.")
    size = (28, 28)
    for what, A, G in _test_tensors():
        out, failed = run_on_copies(fn, A, G, size, where=f"on {what}, ")
        if failed is not None:
            return failed
        if not isinstance(out, torch.Tensor):
            return Verdict(False, f"expected a tensor of shape {(A.shape[0], *size)}, got "
                           f"{_describe(out)} (stay in torch; NumPy only for plotting).")
        out = out.detach()
        n = A.shape[0]
        if torch.isnan(out).any():
            return Verdict(False, f"NaN in the result on {what}: after the ReLU the map is all "
                           "zero and 0 / 0 = NaN. Divide by (max + 1e-7) instead.")
        if out.shape == (n, *A.shape[-2:]):
            return Verdict(False, f"the maps are still at the layer's resolution "
                           f"{tuple(A.shape[-2:])}; upsample them to size {size} "
                           "(F.interpolate, mode='bilinear', align_corners=False).")
        if out.shape != (n, *size):
            hint = " Keep the batch axis: one map per image." if out.ndim != 3 else ""
            return Verdict(False, f"expected shape {(n, *size)} on {what}, got "
                           f"{tuple(out.shape)}.{hint}")
        ref = finalize(grad_cam(A, G), size)
        if _close(out, ref):
            continue
        if out.min() < -1e-6:
            return Verdict(False, f"negative values on {what}: apply the ReLU (clamp(min=0)) to "
                           "the weighted sum before scaling.")
        if out.max() > 1 + 1e-4:
            return Verdict(False, "values above 1: scale each map to [0, 1] (subtract its min, "
                           "divide by its max).")
        low = F.relu(grad_cam(A, G))
        per_batch = (low - low.min()) / (low.max() - low.min() + 1e-7)
        per_batch = F.interpolate(per_batch[:, None], size=size, mode="bilinear",
                                  align_corners=False)[:, 0]
        if _close(out, per_batch):
            return Verdict(False, "the maps were scaled with one min and max for the whole "
                           "batch; scale each image's map on its own (min/max over dims 1, 2).")
        scaled = finalize(grad_cam(A, G))
        for mode, kw, name in (("bilinear", {"align_corners": True}, "align_corners=True"),
                               ("nearest", {}, "nearest-neighbour upsampling"),
                               ("bicubic", {"align_corners": False}, "bicubic upsampling")):
            alt = F.interpolate(scaled[:, None], size=size, mode=mode, **kw)[:, 0]
            if _close(out, alt):
                return Verdict(False, f"almost: you used {name}; the course's maps use "
                               "mode='bilinear', align_corners=False (cams.upsample).")
        up_first = finalize(F.interpolate(grad_cam(A, G)[:, None], size=size, mode="bilinear",
                                          align_corners=False)[:, 0])
        if _close(out, up_first, tol=1e-3):
            return Verdict(False, "almost: scale at the layer's resolution, then upsample "
                           "(ReLU, min-max, then bilinear upsampling).")
        return Verdict(False, f"the maps differ from Grad-CAM on {what} (largest difference "
                       f"{float((out - ref).abs().max()):.3f}). Steps: alpha = G.mean over "
                       "positions; sum_k alpha_k A_k; ReLU; min-max per image; upsample.")
    return Verdict(True, "your maps match cams.finalize(cams.grad_cam(A, G), size), also on a "
                   "map with no positive evidence (all zero, no NaN).")


# ----------------------------------------------------------------------------- exercise 3
def _remove_new_hooks(model: nn.Module, before: set[tuple[int, str, int]]) -> int:
    """Remove the hooks registered since ``before`` (a :func:`hook_ids` snapshot)."""
    removed = 0
    for m in model.modules():
        for d in HOOK_DICTS:
            hooks = getattr(m, d, {})
            for k in [k for k in hooks if (id(m), d, k) not in before]:
                del hooks[k]
                removed += 1
    return removed


def check_bare_hooks(fn: Callable[[nn.Module, str, torch.Tensor, int],
                                  tuple[torch.Tensor, torch.Tensor]],
                     model: nn.Module, x: torch.Tensor, target: int,
                     layer: str = "features.block3.relu2") -> Verdict:
    """Exercise 3: ``fn(model, layer, x, target)`` records ``layer``'s activations A and the
    gradients G of the target class score with bare hooks, returns ``(A, G)`` and leaves no
    hook behind, even when the forward or backward raises. Compared with
    :func:`gradcam_edu.capture.capture` on the same input."""
    if not callable(fn):
        return Verdict(False, f"pass your function itself, got {_describe(fn)}.")
    before = hook_ids(model)
    with capture(model, layer) as cap:
        cap.forward(x)
        cap.backward(target)
        A_ref, G_ref = cap.detached()
    A_ref, G_ref = A_ref[layer], G_ref[layer]
    try:
        out = fn(model, layer, x, target)
    except Exception as err:
        leaked = _remove_new_hooks(model, before)
        tail = (f" It also left {leaked} hook(s) on the model (the checker removed them)."
                if leaked else "")
        return Verdict(False, f"your function raised {type(err).__name__}: {err}.{tail}")
    leaked = _remove_new_hooks(model, before)
    if leaked:
        return Verdict(False, f"{leaked} hook(s) were still registered on the model after your "
                       "function returned (the checker removed them): call handle.remove() "
                       "for every handle, in a finally block. Hooks left behind run on every "
                       "later forward and keep tensors alive.")
    if not (isinstance(out, tuple | list) and len(out) == 2
            and all(isinstance(t, torch.Tensor) for t in out)):
        return Verdict(False, f"return a pair (A, G) of tensors, got {_describe(out)}.")
    A, G = (t.detach() for t in out)
    if A.shape != A_ref.shape or G.shape != G_ref.shape:
        return Verdict(False, f"expected A and G of shape {tuple(A_ref.shape)} (the output of "
                       f"{layer!r}), got {tuple(A.shape)} and {tuple(G.shape)}.")
    if not _close(A, A_ref, 1e-5):
        return Verdict(False, f"A is not the output of {layer!r} for this input.")
    if _close(G, -G_ref, 1e-5) and G_ref.abs().max() > 0:
        return Verdict(False, "G has the wrong sign: differentiate the class score itself.")
    if not _close(G, G_ref, 1e-5):
        return Verdict(False, f"G is not d score / d A for class {target}: take the logit "
                       "(before any softmax or sigmoid) of that class, and register the tensor "
                       "hook on the very tensor the forward hook received.")
    try:  # an impossible class: the forward runs, the backward fails; hooks must still go
        fn(model, layer, x, 10 ** 6)
    except Exception:
        pass
    leaked = _remove_new_hooks(model, before)
    if leaked:
        return Verdict(False, "A and G are right, but when the class index is out of range your "
                       f"function raised and left {leaked} hook(s) behind (the checker removed "
                       "them): remove the handles in a try/finally block.")
    return Verdict(True, "A and G match the packaged capture, and no hook is left behind, "
                   "even when the call fails.")
