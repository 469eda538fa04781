"""What to explain: the target score of each image, and how a target follows its images.

A *target* says which score of the logits to differentiate or to measure, one per image:

* an ``int`` (or a numpy integer, a 0-d integer tensor): the same class for every image;
* a sequence or 1-D tensor of ints: one class per image (as long as the batch);
* a callable ``f(logits) -> (N,)``: any score of the logits (a margin, a masked class...),
  exactly one per image (a 0-d scalar only for one image).

Booleans and floats are refused, never truncated to a class.

Scores are taken before any softmax, as Grad-CAM prescribes. When images are repeated
(SmoothGrad's noisy copies, a path of Integrated Gradients, masked copies for Score-CAM or
deletion curves), the target must follow them: :func:`select_target` is the one expander.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

Target = int | Sequence[int] | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def _is_callable(target: Target) -> bool:
    return callable(target) and not isinstance(target, torch.Tensor)


def _one_class(target: Target) -> int | None:
    """``target`` as one class for every image (an int, a numpy integer scalar or a 0-d
    integer array or tensor), or None when it is not a single class."""
    if isinstance(target, np.ndarray) and target.ndim == 0:
        target = target[()]
    if isinstance(target, bool | np.bool_):
        raise TypeError(f"target: expected a class index, got a bool ({target!r})")
    if isinstance(target, int | np.integer):
        if not -2**63 <= int(target) < 2**63:
            raise IndexError(f"target: class index {int(target)} is out of range")
        return int(target)
    if isinstance(target, float | np.floating):
        raise TypeError(f"target: expected integer class indices, got a float ({target!r}); "
                        "a class is an int")
    if (isinstance(target, torch.Tensor) and target.ndim == 0 and target.dtype != torch.bool
            and not target.is_floating_point() and not target.is_complex()):
        return int(target)
    return None


def _as_classes(target: Target) -> torch.Tensor:
    """A sequence, array or tensor of class indices -> a 1-D long tensor; ``TypeError`` for
    booleans, floats or anything that is not integers (never truncated)."""
    try:
        classes = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError("target: expected an int, a sequence of ints (one per image) or a "
                        f"callable on the logits, got {type(target).__name__} "
                        f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                        ) from None
    if classes.dtype == torch.bool:
        raise TypeError(f"target: expected integer class indices, got booleans (a "
                        f"{type(target).__name__} of bool); give the class of each image")
    if classes.is_floating_point() or classes.is_complex():
        kind = str(classes.dtype).removeprefix("torch.")
        raise TypeError(f"target: expected integer class indices, got a {kind} "
                        f"{type(target).__name__} (class indices are never rounded)")
    return classes.to(torch.long).reshape(-1)


def class_indices(target: Target, n: int) -> torch.Tensor | None:
    """The class of each of ``n`` images, ``(n,)`` long, or None for a callable target.

    One class for all images: an int, a numpy integer or a 0-d integer tensor. Raises
    ``TypeError`` / ``ValueError`` naming ``target`` for a bool, a float, booleans, floats or
    a sequence whose length is not ``n``.
    """
    if _is_callable(target):
        return None
    one = _one_class(target)
    if one is not None:
        return torch.full((n,), one, dtype=torch.long)
    classes = _as_classes(target)
    if classes.numel() != n:
        raise ValueError(f"target: got {classes.numel()} classes for a batch of {n} images; "
                         "give one int for all images or exactly one class per image")
    return classes


def select_target(target: Target, n: int, index: torch.Tensor | Sequence[int] | None = None,
                  repeats: int = 1) -> Target:
    """The target for a batch built from a batch of ``n`` images.

    ``index``: the images taken, in order (``x[index]``); ``repeats``: each taken image
    repeated that many times in a row (``repeat_interleave``). An int or a callable target is
    returned as is (a numpy integer or 0-d tensor as an int); per-image classes are gathered
    and repeated.
    """
    classes = class_indices(target, n)
    if classes is None or isinstance(target, int):
        return target
    one = _one_class(target)
    if one is not None:
        return one
    if index is not None:
        classes = classes[torch.as_tensor(index, dtype=torch.long).cpu()]
    return classes.repeat_interleave(repeats) if repeats != 1 else classes


def _callable_scores(logits: torch.Tensor, target: Callable) -> torch.Tensor:
    n = logits.shape[0]
    scores = target(logits)
    if not isinstance(scores, torch.Tensor):
        raise TypeError("target: the callable must return a tensor of scores, got "
                        f"{type(scores).__name__}")
    if scores.ndim == 0 and n == 1:
        return scores.reshape(1)
    if tuple(scores.shape) != (n,):
        raise ValueError(f"target: the callable must return one score per image, shape "
                         f"({n},), got shape {tuple(scores.shape)} (the logits are "
                         f"{tuple(logits.shape)}; e.g. lambda z: z[:, 0] - z[:, 1])")
    return scores


def target_scores(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The score to explain, one per image: ``(N,)`` (see the module docstring)."""
    num_classes = logits.shape[-1]
    if _is_callable(target):
        return _callable_scores(logits, target)
    classes = class_indices(target, logits.shape[0])
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise IndexError(f"target: class index {int(classes[bad][0])} is out of range; the "
                         f"model has {num_classes} classes (0 to {num_classes - 1})")
    return logits.gather(1, classes.to(logits.device)[:, None]).squeeze(1)
