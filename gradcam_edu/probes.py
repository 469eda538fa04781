"""Linear probes on truncated ResNets: features of the cuts, the fit, accuracy, shipped probes.

A probe is a new linear head trained on the frozen features of a cut
(:func:`gradcam_edu.truncate.truncate` with ``head="probe"``)::

    cut = truncate(model, after="layer3.1", head="probe")    # new Linear(C -> 6) head
    fit = train_probe(cut, ShapesDataset("train", 4000))     # trains the head only
    rows = variant_accuracy(model, first_images("test", 2000), probes={"layer3.1": cut})

One pass of the full model gives the pooled features of every cut (:func:`cut_features`), so
probes for several cuts (:func:`train_probes`) and the accuracy of every variant
(:func:`variant_accuracy`) cost one forward of the data each.

The probes of ``resnet18-shapes`` shipped in ``data/`` are rebuilt, reproducibly, with
``python -m gradcam_edu.probes`` (:func:`build_probes`) and loaded with
:func:`load_truncated`; their cards name the architecture ``"truncated_resnet"``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import models, resnet, weights
from .classification import accuracy, iter_batches, model_device, predict
from .images import to_tensor
from .shapes import first_images
from .tables import format_rows
from .truncate import TruncatedResNet, cut_points, truncate

__all__ = ["BASE_MODEL", "BUILD_COMMAND", "STANDARD_CUTS", "ProbeFit", "build_probes",
           "cut_features", "extract_features", "fit_linear_head", "load_truncated", "main",
           "probe_name", "shipped_variant_accuracy", "train_probe", "train_probes",
           "variant_accuracy"]

STANDARD_CUTS = ("layer4.0", "layer3.1", "layer3.0", "layer2.1")
"""The cuts whose probes are shipped for ``resnet18-shapes``."""
BASE_MODEL = "resnet18-shapes"
BUILD_COMMAND = "python -m gradcam_edu.probes"
"""The command that rebuilds the shipped probes (recorded in their cards)."""


# ----------------------------------------------------------------------------- features
@dataclass
class ProbeFit:
    """What :func:`train_probe` did: ``losses`` (mean training BCE per epoch, the first entry
    is the loss before training), the number of ``train_images``, and the wall seconds spent
    extracting features (``feature_seconds``) and fitting the head (``fit_seconds``)."""

    losses: list[float] = field(default_factory=list)
    train_images: int = 0
    feature_seconds: float = 0.0
    fit_seconds: float = 0.0


def extract_features(model: TruncatedResNet, data, batch_size: int = 64,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features ``(N, C)`` float32 and labels ``(N, num_classes)`` of a whole data set
    (:func:`gradcam_edu.classification.iter_batches`), computed in eval mode (batch-norm
    running statistics, no dropout); the model's mode is restored."""
    return predict(model, data, batch_size, forward=model.features)


@torch.no_grad()
def cut_features(model: nn.Module, data, cuts: Sequence[str], batch_size: int = 64,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pooled features ``(N, C_cut)`` of every cut in ``cuts`` from ONE pass of the full model.

    The features of cut ``c`` are what ``truncate(model, c).features(x)`` returns (the same
    modules run on the same input), computed in eval mode without building any graph.
    Returns ``({cut: features}, labels (N, K))``.
    """
    cuts = list(cuts)
    if not cuts:
        raise ValueError("cuts: name at least one cut, e.g. 'layer4.0'")
    valid = cut_points(model)
    for c in cuts:
        if c not in valid:
            truncate(model, c, head="probe")        # raises the error with close matches
    order = resnet.blocks(model)
    wanted: dict[str, list[str]] = {}
    for c in cuts:
        wanted.setdefault(resnet.block_of(model, c), []).append(c)
    deepest = max(wanted, key=order.index)
    was_training = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {c: [] for c in cuts}
    labels = []
    try:
        device = model_device(model)
        for x, y in iter_batches(data, batch_size):
            for name, h in resnet.iter_blocks(model, x.to(device), until=deepest):
                if name in wanted:
                    pooled = resnet.pooled(model, h).float().cpu()
                    for c in wanted[name]:
                        feats[c].append(pooled)
            labels.append(torch.as_tensor(y).float().cpu())
    finally:
        model.train(was_training)
    if not labels:
        raise ValueError("data: the data set is empty")
    return {c: torch.cat(v) for c, v in feats.items()}, torch.cat(labels)


# ----------------------------------------------------------------------------- the fit
def fit_linear_head(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor,
                    epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
                    batch_size: int = 256, seed: int = 0) -> list[float]:
    """Fit ``head`` on cached ``features`` ``(N, C)`` against multi-hot ``labels`` ``(N, K)``
    with ``BCEWithLogitsLoss`` and AdamW (mini-batches, order seeded by ``seed``).

    Features are standardised inside the fit and the scaling is folded back into the head's
    weights, so the head takes the raw features. Returns the mean loss per epoch (entry 0:
    before training).
    """
    if features.ndim != 2 or labels.ndim != 2 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"features: expected (N, C) with one label row each, got features "
                         f"{tuple(features.shape)} and labels {tuple(labels.shape)}")
    if labels.shape[1] != head.out_features or features.shape[1] != head.in_features:
        raise ValueError(f"head: expects {head.in_features} features -> {head.out_features} "
                         f"classes, data has {features.shape[1]} -> {labels.shape[1]}")
    mean = features.mean(dim=0)
    std = features.std(dim=0).clamp(min=1e-6)
    z = (features - mean) / std
    gen = torch.Generator().manual_seed(seed)
    w = (head.weight.detach().float().cpu() * std).clone().requires_grad_(True)
    b = (head.bias.detach().float().cpu() + head.weight.detach().float().cpu() @ mean
         ).clone().requires_grad_(True)
    opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    with torch.no_grad():
        losses = [float(loss_fn(z @ w.T + b, labels))]
    n = z.shape[0]
    with torch.enable_grad():
        for _ in range(epochs):
            total = 0.0
            for idx in torch.randperm(n, generator=gen).split(batch_size):
                loss = loss_fn(z[idx] @ w.T + b, labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
    with torch.no_grad():
        weight = w / std
        head.weight.copy_(weight.to(head.weight))
        head.bias.copy_((b - weight @ mean).to(head.bias))
    return losses


def train_probe(model: TruncatedResNet, data, epochs: int = 100, lr: float = 1e-2,
                seed: int = 0, weight_decay: float = 1e-4, batch_size: int = 64,
                ) -> ProbeFit:
    """Train only the linear head ``model.fc`` on the frozen features of the cut.

    ``data``: a Dataset or DataLoader of ``(image (3, H, W), multi-hot label (K,))``, or a pair
    ``(images (N, 3, H, W), labels (N, K))``. The features are computed once (eval mode) and
    kept in memory; the head is then fitted by :func:`fit_linear_head` (multi-label
    ``BCEWithLogitsLoss``, AdamW, ``epochs`` passes, seeded). The body is not changed.
    """
    if not isinstance(model, TruncatedResNet):
        raise TypeError("model: expected a TruncatedResNet from truncate(...), got "
                        f"{type(model).__name__}")
    if not isinstance(model.fc, nn.Linear):
        raise TypeError(f"model: the head must be an nn.Linear, got {type(model.fc).__name__}")
    t0 = time.perf_counter()
    features, labels = extract_features(model, data, batch_size)
    t1 = time.perf_counter()
    losses = fit_linear_head(model.fc, features, labels, epochs=epochs, lr=lr,
                             weight_decay=weight_decay, seed=seed)
    return ProbeFit(losses=losses, train_images=len(features), feature_seconds=t1 - t0,
                    fit_seconds=time.perf_counter() - t1)


def train_probes(model: nn.Module, data, cuts: Sequence[str] = STANDARD_CUTS,
                 epochs: int = 100, lr: float = 1e-2, seed: int = 0,
                 weight_decay: float = 1e-4, batch_size: int = 64,
                 ) -> dict[str, tuple[TruncatedResNet, ProbeFit]]:
    """:func:`train_probe` for several cuts of one full model, sharing one feature pass.

    Returns ``{cut: (truncated model with its trained probe, ProbeFit)}``; each probe is
    fitted exactly as :func:`train_probe` would (same features, same seed).
    """
    t0 = time.perf_counter()
    features, labels = cut_features(model, data, cuts, batch_size)
    share = (time.perf_counter() - t0) / max(len(cuts), 1)
    out = {}
    for c in cuts:
        cut = truncate(model, c, head="probe", num_classes=labels.shape[1])
        t1 = time.perf_counter()
        losses = fit_linear_head(cut.fc, features[c], labels, epochs=epochs, lr=lr,
                                 weight_decay=weight_decay, seed=seed)
        out[c] = (cut, ProbeFit(losses=losses, train_images=len(labels), feature_seconds=share,
                                fit_seconds=time.perf_counter() - t1))
    return out


# ----------------------------------------------------------------------------- accuracy
def _same_body(variant: TruncatedResNet, model: nn.Module) -> bool:
    full = model.state_dict()
    return all(k in full and torch.equal(v, full[k])
               for k, v in variant.state_dict().items() if not k.startswith("fc."))


def variant_accuracy(model: nn.Module, data, cuts: Sequence[str] = STANDARD_CUTS,
                     probes: dict[str, nn.Module] | None = None,
                     batch_size: int = 64) -> list[dict]:
    """Exact match and mAP of the full model and of each truncated variant on ``data``.

    Variants: the full model; each cut in ``cuts`` with the original head where its channel
    count fits; each trained probe in ``probes`` (cut name -> truncated model, e.g. from
    :func:`load_truncated`). One pass of the full model gives the features of every cut
    (:func:`cut_features`); a probe whose body differs from ``model``'s is run on its own.
    Returns rows ``{"variant", "cut", "head", "exact_match", "mAP", "images"}`` (scores in
    [0, 1], on ``data``, a held-out split; probabilities as the model says,
    :func:`gradcam_edu.models.probability_kind`).
    """
    probes = dict(probes or {})
    shared = [c for c, v in probes.items()
              if isinstance(v, TruncatedResNet) and _same_body(v, model)]
    fits = []
    for after in cuts:
        try:
            fits.append((after, truncate(model, after, head="original")))
        except ValueError:
            continue  # channel count does not fit the original head
    last = resnet.last_block(model)
    wanted = list(dict.fromkeys([last, *(a for a, _ in fits), *shared]))
    features, labels = cut_features(model, data, wanted, batch_size)
    kind = models.probability_kind(model)
    rows = []

    def add(variant, cut, head, logits):
        rows.append({"variant": variant, "cut": cut, "head": head,
                     **accuracy(logits, labels, kind), "images": len(labels)})

    with torch.no_grad():
        add("full", resnet.stages(model)[-1], "original", model.fc(features[last]))
        for after, variant in fits:
            add(f"cut-{after}-original", after, "original", variant.fc(features[after]))
        for after, variant in probes.items():
            if after in shared:
                logits = variant.fc(features[after])
            else:
                logits, _ = predict(variant, data, batch_size)
            add(f"cut-{after}-probe", after, "probe", logits)
    return rows


# ----------------------------------------------------------------------------- shipped probes
def probe_name(after: str, base: str = BASE_MODEL) -> str:
    """File name of a shipped probe: ``"resnet18-shapes-cut-layer4.0-probe"``."""
    return f"{base}-cut-{after}-probe"


def load_truncated(name: str) -> TruncatedResNet:
    """A shipped truncated model, e.g. ``load_truncated("resnet18-shapes-cut-layer3.1-probe")``.

    Same as ``gradcam_edu.weights.load_model(name)`` (the card names the architecture
    ``"truncated_resnet"``, the sha256 is checked before loading), and checks that the result
    is a truncated model. The file holds the whole truncated model (the frozen body copied
    from the base model, and the probe).
    """
    model = weights.load_model(name)
    if not isinstance(model, TruncatedResNet):
        raise ValueError(f"name: {name!r} is not a truncated model ({type(model).__name__})")
    return model


def _check_same_logits(model: nn.Module, images: np.ndarray, expected: torch.Tensor) -> None:
    """The truncated model itself must give the logits computed from shared features."""
    with torch.no_grad():
        got = model.eval()(to_tensor(images))
    if not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"{model.cut}: the truncated model's logits differ from those of the "
                           "shared feature pass (max difference "
                           f"{float((got - expected).abs().max()):.2e})")


def _probe_card(base_card: dict, base: str, after: str, fit: ProbeFit, scores: dict,
                n_test: int, seed: int, train_size: int, epochs: int, lr: float) -> dict:
    """The card fields of one shipped probe (besides those :func:`weights.save_model` adds)."""
    return {
        "architecture": "truncated_resnet",
        "kwargs": {"base_architecture": base_card["architecture"],
                   "base_kwargs": base_card["kwargs"], "after": after, "head": "probe"},
        "base_model": base, "base_sha256": base_card["sha256"], "cut": after, "head": "probe",
        "probe": {"seed": seed, "train_split": "train", "train_indices": [0, train_size],
                  "data_seed": 0, "epochs": epochs, "lr": lr, "weight_decay": 1e-4,
                  "optimizer": "AdamW on cached, standardised features (body frozen)",
                  "loss": "BCEWithLogitsLoss (multi-label)",
                  "initial_train_loss": round(fit.losses[0], 5),
                  "final_train_loss": round(fit.losses[-1], 5),
                  "seconds": round(fit.feature_seconds + fit.fit_seconds, 1),
                  "command": BUILD_COMMAND},
        "held_out": {"split": "test", "seed": 0, "n_images": n_test,
                     "exact_match": round(scores["exact_match"], 5),
                     "mAP": round(scores["mAP"], 5)},
    }


def build_probes(cuts: Sequence[str] = STANDARD_CUTS, base: str = BASE_MODEL,
                 train_size: int = 4000, test_size: int = 2000, seed: int = 0,
                 epochs: int = 100, lr: float = 1e-2, save: bool = True) -> list[dict]:
    """Train (and with ``save``, ship) the probes of ``base`` for ``cuts``; reproducible.

    Train on the first ``train_size`` images of the "train" split (data seed 0, images the
    base model was trained on), score on the first ``test_size`` images of the held-out
    "test" split. Files via :func:`gradcam_edu.weights.save_model` under
    :func:`probe_name`. Returns one row per probe (its card's scores and timings).
    """
    card = weights.model_card(base)
    full = weights.load_model(base)
    train = first_images("train", train_size)
    test = first_images("test", test_size)
    probes = train_probes(full, train, cuts, epochs=epochs, lr=lr, seed=seed)
    test_features, labels = cut_features(full, test, cuts)
    rows = []
    for after in cuts:
        model, fit = probes[after]
        with torch.no_grad():
            logits = model.fc(test_features[after])
        _check_same_logits(model, test[0][:8], logits[:8])
        scores = accuracy(logits, labels, models.probability_kind(model))
        extra = _probe_card(card, base, after, fit, scores, len(labels), seed, train_size,
                            epochs, lr)
        if save:
            weights.save_model(model, probe_name(after, base), card_extra=extra)
        rows.append({"name": probe_name(after, base), "cut": after, **scores,
                     "seconds": extra["probe"]["seconds"]})
        print(f"{probe_name(after, base)}: test exact match {scores['exact_match']:.3f}, "
              f"mAP {scores['mAP']:.3f} ({rows[-1]['seconds']} s)", flush=True)
    return rows


def shipped_variant_accuracy(base: str = BASE_MODEL, cuts: Sequence[str] = STANDARD_CUTS,
                             test_size: int = 2000) -> list[dict]:
    """:func:`variant_accuracy` of the shipped base model and its shipped probes on the first
    ``test_size`` held-out "test" images (those of the base model's card)."""
    full = weights.load_model(base)
    probes = {c: load_truncated(probe_name(c, base)) for c in cuts}
    return variant_accuracy(full, first_images("test", test_size), cuts, probes)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gradcam_edu.probes [--no-save] [--train-size N]``: rebuild the probes,
    then print the accuracy of every variant on the test split."""
    parser = argparse.ArgumentParser(prog=BUILD_COMMAND, description=main.__doc__)
    parser.add_argument("--base", default=BASE_MODEL)
    parser.add_argument("--cuts", nargs="+", default=list(STANDARD_CUTS))
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    build_probes(args.cuts, args.base, args.train_size, args.test_size, args.seed,
                 args.epochs, save=not args.no_save)
    if not args.no_save:
        print(format_rows(shipped_variant_accuracy(args.base, args.cuts, args.test_size)))


if __name__ == "__main__":
    main()
