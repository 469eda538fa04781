"""How well a model classifies: predictions over a data set, exact match and mAP.

The course's models are multi-label (a shapes image holds 1 or 2 objects): one probability
per class, a class is "present" above 0.5. Two scores, both in [0, 1]:

* :func:`exact_match`: the share of images whose every class decision is right;
* :func:`mean_average_precision`: the mean over classes of the average precision
  (threshold-free: how well the scores rank the images holding a class first).

:func:`predict` runs a model over a data set (a ``Dataset``, a ``DataLoader`` or a pair
``(images, labels)``, see :func:`iter_batches`) in eval mode, :func:`accuracy` scores logits,
:func:`evaluate` does both with the model's own probability kind
(:func:`gradcam_edu.models.probability_kind`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from . import models
from .images import to_tensor

__all__ = ["accuracy", "average_precision", "evaluate", "exact_match", "iter_batches",
           "mean_average_precision", "model_device", "predict"]


# ----------------------------------------------------------------------------- scores
def exact_match(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """Share of images whose every class decision is right.

    probs: (N, C) probabilities; labels: (N, C) multi-hot {0, 1}. An image counts when
    ``(probs > threshold) == labels`` for all C classes.
    """
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.shape != labels.shape or probs.ndim != 2:
        raise ValueError(f"labels: expected the shape of probs (N, C) {probs.shape}, got "
                         f"{labels.shape}")
    return float(np.mean(np.all((probs > threshold) == (labels > 0.5), axis=1)))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of one class: sum over thresholds of (R_n - R_{n-1}) * P_n.

    scores: (N,) any real scores (higher = more positive); labels: (N,) {0, 1}. Tied scores
    form one threshold (as scikit-learn's ``average_precision_score``). NaN without positives.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0.5
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"labels: expected one label per score {scores.shape}, got "
                         f"{labels.shape}")
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tied group
    tp_at, seen = tp[last], last + 1
    precision = tp_at / seen
    recall_gain = np.diff(np.r_[0, tp_at]) / n_pos
    return float(np.sum(precision * recall_gain))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes (columns) of :func:`average_precision`; scores, labels: (N, C).
    Classes without a positive are skipped."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected (N, C), got shape {scores.shape}")
    aps = [average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1])]
    return float(np.nanmean(aps))


def accuracy(logits: torch.Tensor, labels: torch.Tensor, kind: str = "sigmoid",
             ) -> dict[str, float]:
    """``{"exact_match", "mAP"}`` of logits ``(N, K)`` against multi-hot labels ``(N, K)``.

    ``kind``: how logits become probabilities (``"sigmoid"``: the course's multi-label
    models; ``"softmax"``), as :func:`gradcam_edu.models.probability_kind` says of a model.
    """
    probs = models.to_probabilities(logits, kind).cpu().numpy()
    y = torch.as_tensor(labels).detach().float().cpu().numpy()
    return {"exact_match": exact_match(probs, y), "mAP": mean_average_precision(probs, y)}


# ----------------------------------------------------------------------------- data sets
def iter_batches(data, batch_size: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images (B, 3, H, W) float, labels (B, K))`` batches of a data set, in order.

    ``data``: a ``Dataset`` or ``DataLoader`` of ``(image, label)``, or a pair
    ``(images, labels)`` of a float tensor ``(N, 3, H, W)`` or a uint8 array
    ``(N, H, W, 3)`` (converted per batch) with labels ``(N, K)``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if isinstance(data, tuple | list) and len(data) == 2:
        images, labels = data
        if isinstance(images, np.ndarray | torch.Tensor):
            if len(images) != len(labels):
                raise ValueError(f"data: {len(images)} images but {len(labels)} labels")
            for i in range(0, len(images), batch_size):
                x = images[i:i + batch_size]
                yield (to_tensor(x) if isinstance(x, np.ndarray) else x,
                       torch.as_tensor(labels[i:i + batch_size]))
            return
    if isinstance(data, torch.utils.data.DataLoader):
        yield from data
        return
    if isinstance(data, torch.utils.data.Dataset):
        yield from torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        return
    raise TypeError("data: expected a Dataset, a DataLoader or a pair (images, labels) of "
                    f"tensors or uint8 arrays, got {type(data).__name__}")


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 64,
            forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, K)`` and labels ``(N, K)`` (float32, on the CPU) of a whole data set
    (:func:`iter_batches`), in eval mode; the model's train/eval mode is restored.

    ``forward``: what to compute per batch instead of ``model(x)`` (e.g. a truncated
    model's ``features``), still in the model's eval mode.
    """
    forward = forward or model
    was_training = model.training
    model.eval()
    outputs, labels = [], []
    try:
        device = model_device(model)
        for x, y in iter_batches(data, batch_size):
            outputs.append(forward(x.to(device)).float().cpu())
            labels.append(torch.as_tensor(y).float().cpu())
    finally:
        model.train(was_training)
    if not outputs:
        raise ValueError("data: the data set is empty")
    return torch.cat(outputs), torch.cat(labels)


def evaluate(model: nn.Module, data, batch_size: int = 64) -> dict:
    """``{"exact_match", "mAP", "n_images"}`` of ``model`` on a data set (:func:`predict`,
    then :func:`accuracy` with the model's :func:`gradcam_edu.models.probability_kind`)."""
    logits, labels = predict(model, data, batch_size)
    return {**accuracy(logits, labels, models.probability_kind(model)),
            "n_images": len(labels)}
