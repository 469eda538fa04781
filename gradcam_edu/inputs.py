"""What a model takes, checked before it runs: images, channels, finite values, dtype.

:func:`check_images` turns the input mistakes a learner makes most into one clear error
naming the argument; :func:`run_model` rephrases the model's own complaint when the check
could not know in advance (a dtype, a stem registered after another conv);
:func:`model_mode` puts a model in eval mode for a block and restores every module's flag.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = ["HOOK_DICTS", "check_images", "first_conv", "hook_count", "hook_ids", "model_mode",
           "run_model", "warn_non_finite"]

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
"""Where an ``nn.Module`` keeps its hooks."""


def hook_ids(model: nn.Module) -> set[tuple[int, str, int]]:
    """``(module id, hook dict, hook id)`` of every hook registered on ``model``'s modules."""
    return {(id(m), d, k) for m in model.modules() for d in HOOK_DICTS for k in getattr(m, d)}


def hook_count(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks currently registered on ``model``'s modules
    (0 after every capture has closed)."""
    return len(hook_ids(model))


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The model's first ``Conv2d`` in registration order (not necessarily the first to run)."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _check_channels(model: nn.Module, x: torch.Tensor, name: str) -> None:
    """Refuse a channel count only when no convolution of the model takes it (the stem may be
    registered after another conv); :func:`run_model` rephrases the model's own error."""
    conv = first_conv(model)
    if conv is None or any(isinstance(m, nn.Conv2d) and m.in_channels == x.shape[1]
                           for m in model.modules()):
        return
    raise ValueError(f"{name}: the model's first convolution expects {conv.in_channels} "
                     f"channels, got {x.shape[1]} (shape {tuple(x.shape)}); no convolution "
                     f"of the model takes {x.shape[1]} channels")


def check_images(model: nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """Clear errors for the input mistakes a learner makes most."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (N, C, H, W), "
                        f"got {type(x).__name__} (convert a PIL image with "
                        "torchvision.transforms.functional.to_tensor)")
    if x.ndim != 4:
        hint = " (add the batch axis with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise ValueError(f"{name}: expected a 4-D batch (N, C, H, W), got shape "
                         f"{tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype} "
                        "(scale uint8 images to [0, 1] first)")
    _check_channels(model, x, name)
    if not bool(torch.isfinite(x).all()):
        nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        kinds = " and ".join(k for k, c in (("NaN", nan), ("infinite", inf)) if c)
        raise ValueError(f"{name}: the input contains {kinds} values ({nan} NaN, {inf} inf "
                         f"of {x.numel()}); every pixel must be a finite number")


def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``; the model's own complaint about a wrong dtype or channel count becomes one
    clear error naming ``x`` (:func:`check_images` cannot always know them in advance)."""
    try:
        return model(x)
    except RuntimeError as err:
        param = next(model.parameters(), None)
        if param is not None and param.dtype != x.dtype:
            raise TypeError(f"x: the model's parameters are {param.dtype} but the input is "
                            f"{x.dtype}; give it {param.dtype} images (x.to({param.dtype}))"
                            ) from None
        found = re.search(r"to have (\d+) channels, but got (\d+) channels", str(err))
        if found:
            raise ValueError(f"x: a convolution of the model expects {found[1]} channels, got "
                             f"{found[2]} (the input's shape is {tuple(x.shape)})") from None
        raise


def warn_non_finite(what: str, names: Sequence[str], level: int = 3) -> None:
    warnings.warn(f"{what}: non-finite values (inf or NaN) at {', '.join(map(repr, names))}; "
                  "the maps there are meaningless (an overflow? check the input's range)",
                  UserWarning, stacklevel=level)


@contextlib.contextmanager
def model_mode(model: nn.Module, eval: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (when ``eval``) and restore every module's flag on exit."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        if eval:
            model.eval()
        yield model
    finally:
        for m, training in saved:
            m.training = training
