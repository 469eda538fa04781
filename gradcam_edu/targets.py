"""What to explain: the target score of each image, and how a target follows its images.

A *target* says which score of the logits to differentiate or to measure, one per image:

* an ``int``: the same class for every image;
* a sequence or 1-D tensor of ints: one class per image (as long as the batch);
* a callable ``f(logits) -> (N,)``: any score of the logits (a margin, a masked class...).

Scores are taken before any softmax, as Grad-CAM prescribes. When images are repeated
(SmoothGrad's noisy copies, a path of Integrated Gradients, masked copies for Score-CAM or
deletion curves), the target must follow them: :func:`select_target` is the one expander.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Target = int | Sequence[int] | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def _is_callable(target: Target) -> bool:
    return callable(target) and not isinstance(target, torch.Tensor)


def class_indices(target: Target, n: int) -> torch.Tensor | None:
    """The class of each of ``n`` images, ``(n,)`` long, or None for a callable target.

    Raises ``TypeError`` / ``ValueError`` naming ``target`` for a bool, a non-integer value or a
    sequence whose length is not ``n``.
    """
    if _is_callable(target):
        return None
    if isinstance(target, bool):
        raise TypeError("target: expected a class index, got a bool")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long)
    if isinstance(target, torch.Tensor) and target.is_floating_point():
        raise TypeError(f"target: expected integer class indices, got a {target.dtype} tensor")
    try:
        classes = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError("target: expected an int, a sequence of ints (one per image) or a "
                        f"callable on the logits, got {type(target).__name__}") from err
    if classes.numel() != n:
        raise ValueError(f"target: got {classes.numel()} classes for a batch of {n} images; "
                         "give one int for all images or exactly one class per image")
    return classes


def select_target(target: Target, n: int, index: torch.Tensor | Sequence[int] | None = None,
                  repeats: int = 1) -> Target:
    """The target for a batch built from a batch of ``n`` images.

    ``index``: the images taken, in order (``x[index]``); ``repeats``: each taken image
    repeated that many times in a row (``repeat_interleave``). An int or a callable target is
    returned as is; per-image classes are gathered and repeated.
    """
    classes = class_indices(target, n)
    if classes is None or isinstance(target, int):
        return target
    if index is not None:
        classes = classes[torch.as_tensor(index, dtype=torch.long).cpu()]
    return classes.repeat_interleave(repeats) if repeats != 1 else classes


def target_scores(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The score to explain, one per image: ``(N,)`` (see the module docstring)."""
    n, num_classes = logits.shape[0], logits.shape[-1]
    if _is_callable(target):
        scores = target(logits)
        if not isinstance(scores, torch.Tensor):
            raise TypeError("target: the callable must return a tensor of scores, got "
                            f"{type(scores).__name__}")
        return scores.reshape(-1) if scores.ndim else scores.reshape(1)
    classes = class_indices(target, n)
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise IndexError(f"target: class index {int(classes[bad][0])} is out of range; the "
                         f"model has {num_classes} classes (0 to {num_classes - 1})")
    return logits.gather(1, classes.to(logits.device)[:, None]).squeeze(1)
