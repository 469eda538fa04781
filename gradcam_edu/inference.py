"""The many forwards that need no gradient, run on a copy of the model made for inference.

Score-CAM scores one masked image per channel, deletion and insertion one perturbed image per
step: hundreds of forwards per map, no gradient, no hook read. On the CPU
:func:`inference_forward` runs them through a frozen copy of the model, made once per model:

    copy.deepcopy(model).eval()  ->  torch.jit.script  ->  torch.jit.freeze
                                 ->  torch.jit.optimize_for_inference

Freezing turns the weights into constants and folds every BatchNorm into the convolution
before it (``w' = w * gamma / sqrt(var + eps)``, ``b' = (b - mean) * gamma / sqrt(var + eps)
+ beta``: the same function, fewer passes over memory); the last step runs the convolutions
in oneDNN's blocked layout. ``benchmarks/bench_scorecam.py`` and
``benchmarks/bench_faithfulness.py`` print what it gains.

The copy computes the same function as the model, rounded differently (a folded BatchNorm
rounds once where the model rounds twice). Before a copy is used, its logits for the first
batch are compared with the model's own: if any differs by more than ``ATOL + RTOL * |logit|``
the model itself is used. So is it when the copy cannot be made (a model TorchScript cannot
compile, a forward hook that is not an inactive capture's, a device other than the CPU):
:func:`inference_status` says which path a model takes and why. A copy is rebuilt when the
model's parameters, buffers or modules change (an optimiser step, ``load_state_dict``). What
a copy cannot keep: Python side effects of the model's ``forward`` (a counter in ``self``)
happen only in the model's own forwards; a model that needs them, or a hook, runs as itself.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
import weakref

import torch
from torch import nn

from .inputs import HOOK_DICTS, run_model

__all__ = ["ATOL", "RTOL", "inference_forward", "inference_status", "masked_images",
           "model_itself"]

ATOL, RTOL = 1e-4, 1e-4
"""How far the copy's logits may lie from the model's (absolute, relative) on the first batch:
about 100 times what folding BatchNorm moves a float32 logit."""
_CHECK_IMAGES = 2
"""Images of the first batch that both the copy and the model run to compare."""

# model -> (fingerprint, frozen copy or None, why the model itself is used, checked yet)
_COPIES: weakref.WeakKeyDictionary[nn.Module, list] = weakref.WeakKeyDictionary()
_OFF: list[str] = []      # reasons given to model_itself() blocks now open


@contextlib.contextmanager
def model_itself(why: str = "asked for (inference.model_itself)"):
    """Within the block :func:`inference_forward` runs the model itself, never a copy: to
    compare the two, or to rule the copy out when a number looks wrong."""
    _OFF.append(why)
    try:
        yield
    finally:
        _OFF.pop()


def _fingerprint(model: nn.Module, device: torch.device) -> tuple:
    """What the copy depends on: every module, parameter and buffer (identity, storage, and
    version counter, which every in-place update bumps), and the input's device."""
    tensors = [*model.parameters(), *model.buffers()]
    return (device.type, tuple(id(m) for m in model.modules()),
            tuple((id(t), t.data_ptr(), t._version, t.dtype) for t in tensors))


def _live_hooks(model: nn.Module) -> list[str]:
    """Modules with a hook that would change or observe a forward: every hook except a
    capture's own forward hooks (inert outside the capture's recorded forward)."""
    found = []
    for name, module in model.named_modules():
        for d in HOOK_DICTS:
            hooks = getattr(module, d).values()
            if any(not (d == "_forward_hooks" and getattr(h, "from_capture", False))
                   for h in hooks):
                found.append(name or "(the model)")
                break
    return found


def _frozen_copy(model: nn.Module) -> torch.jit.ScriptModule:
    twin = copy.deepcopy(model).eval()
    for module in twin.modules():                   # the capture's inert hooks: not copied
        for d in HOOK_DICTS:
            getattr(module, d).clear()
    with warnings.catch_warnings():                 # TorchScript's deprecation notices
        warnings.simplefilter("ignore")
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(twin)))


def _entry(model: nn.Module, device: torch.device) -> list:
    key = _fingerprint(model, device)
    entry = _COPIES.get(model)
    if entry is not None and entry[0] == key:
        return entry
    frozen, why = None, ""
    hooked = _live_hooks(model)
    if device.type != "cpu":
        why = f"the input is on {device.type}, and the copy is made for the CPU"
    elif hooked:
        why = f"hooks on {', '.join(hooked[:3])} must see every forward"
    else:
        try:
            frozen = _frozen_copy(model)
        except Exception as err:  # noqa: BLE001 - any failure: the model itself, still right
            why = f"TorchScript could not compile it ({type(err).__name__})"
    entry = [key, frozen, why, frozen is None]
    _COPIES[model] = entry
    return entry


def _check(entry: list, model: nn.Module, x: torch.Tensor) -> None:
    """Compare the copy's logits with the model's on the first images of ``x``; drop the
    copy when they differ by more than ``ATOL + RTOL * |logit|``."""
    probe = x[:_CHECK_IMAGES].contiguous()
    try:
        ours, theirs = entry[1](probe), run_model(model, probe)
        close = ours.shape == theirs.shape and bool(
            ((ours - theirs).abs() <= ATOL + RTOL * theirs.abs()).all())
    except Exception as err:  # noqa: BLE001 - an input the copy cannot run
        close, why = False, f"the copy failed on the first batch ({type(err).__name__})"
    else:
        why = "its logits differed from the model's on the first batch"
    if not close:
        entry[1], entry[2] = None, why
    entry[3] = True


def inference_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``x`` ``(N, C, H, W)``, no gradient: through the frozen copy
    where one can be made and agrees with the model, else ``model(x)`` (channels-last on the
    CPU). Call in eval mode (:func:`gradcam_edu.inputs.model_mode`) and inference mode."""
    entry = None if _OFF else _entry(model, x.device)
    if entry is not None and not entry[3]:
        _check(entry, model, x)
    if entry is not None and entry[1] is not None:
        return entry[1](x.contiguous())
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return run_model(model, x)


def masked_images(x: torch.Tensor, index: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``x[index] * masks`` ``(B, C, H, W)`` for masks ``(B, 1, H, W)``, without gathering
    ``x[index]`` first: one broadcast product per run of equal indices (Score-CAM's batches
    hold the masks of one image after another)."""
    out = masks.new_empty(len(index), *x.shape[1:])
    images, counts = torch.unique_consecutive(index, return_counts=True)
    start = 0
    for image, count in zip(images.tolist(), counts.tolist(), strict=True):
        torch.mul(masks[start:start + count], x[image], out=out[start:start + count])
        start += count
    return out


def inference_status(model: nn.Module, device: str | torch.device = "cpu") -> str:
    """Which path :func:`inference_forward` takes for ``model`` on ``device``: ``"frozen
    copy"``, or ``"the model itself: <why>"`` (a copy not yet checked says so)."""
    if _OFF:
        return f"the model itself: {_OFF[-1]}"
    entry = _entry(model, torch.device(device))
    if entry[1] is not None:
        return "frozen copy" + ("" if entry[3] else " (not yet checked on a batch)")
    return f"the model itself: {entry[2]}"

