"""Truncated ResNets: keep the network up to one block, then pool and classify.

The source post's third example removes ``layer4[1]`` and keeps the trained ``fc``. Here that
is one call, and the alternative the course compares it with, a retrained linear head
("probe") on the frozen features of the cut::

    cut = truncate(model, after="layer4.0")                  # stem .. layer4.0 + original fc
    cut = truncate(model, after="layer3.1", head="probe")    # new Linear(C -> 6) head
    fit = train_probe(cut, ShapesDataset("train", 4000))     # trains the head only

The truncated model keeps the original module names (``conv1``, ``layer1`` .. the last kept
stage holding only the kept blocks, ``avgpool``, ``fc``), so capture names such as
``"layer4.0"`` or ``"layer3.1.conv2"`` mean the same module in both models, and its
``state_dict`` keys are a subset of the full model's (plus the head).

The truncated model is a deep copy: training a probe, or anything else done to it, never
touches the full model.

Shipped probes of ``resnet18-shapes`` are reproduced with ``python -m gradcam_edu.truncate``
and loaded with :func:`load_truncated`.
"""

from __future__ import annotations

import copy
import difflib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

STEM = ("conv1", "bn1", "relu", "maxpool")
STAGES = ("layer1", "layer2", "layer3", "layer4")
STANDARD_CUTS = ("layer4.0", "layer3.1", "layer3.0", "layer2.1")
"""The cuts whose probes are shipped for ``resnet18-shapes``."""
BASE_MODEL = "resnet18-shapes"


# ----------------------------------------------------------------------------- the model
class TruncatedResNet(nn.Module):
    """A torchvision-style ResNet cut after one block: same module names, shorter.

    ``forward``: stem, the kept stages, ``avgpool``, flatten, ``fc``. ``cut`` names the last
    kept block, ``head`` says where ``fc`` came from ("original", "probe" or "custom").
    :meth:`features` returns the pooled features ``(N, C)`` that the head sees.
    """

    def __init__(self, stem: dict[str, nn.Module], stages: dict[str, nn.Sequential],
                 avgpool: nn.Module, fc: nn.Module, cut: str, head: str):
        super().__init__()
        for name, module in stem.items():
            self.add_module(name, module)
        self.stage_names = list(stages)
        for name, module in stages.items():
            self.add_module(name, module)
        self.avgpool = avgpool
        self.fc = fc
        self.cut = cut
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, C)`` of images ``(N, 3, H, W)``: the input of ``fc``."""
        for name in STEM:
            x = getattr(self, name)(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, 3, H, W)``."""
        return self.fc(self.features(x))

    def extra_repr(self) -> str:
        return f"cut={self.cut!r}, head={self.head!r}"


def cut_points(model: nn.Module) -> list[str]:
    """Valid values of ``after`` for :func:`truncate`: ``"layer1.0"``, ..., ``"layer4"``."""
    _check_resnet(model)
    names = []
    for stage in STAGES:
        names += [f"{stage}.{i}" for i in range(len(getattr(model, stage)))] + [stage]
    return names


def _check_resnet(model: nn.Module) -> None:
    missing = [n for n in (*STEM, *STAGES, "avgpool", "fc") if not hasattr(model, n)]
    if missing:
        raise TypeError("model: expected a torchvision-style ResNet (conv1, bn1, relu, maxpool, "
                        f"layer1-4, avgpool, fc); {type(model).__name__} has no "
                        f"{', '.join(missing)}")


def block_out_channels(block: nn.Module) -> int:
    """Output channels of a ``BasicBlock`` (``bn2``) or ``Bottleneck`` (``bn3``)."""
    last_bn = getattr(block, "bn3", None)
    if last_bn is None:
        last_bn = getattr(block, "bn2", None)
    if not isinstance(last_bn, nn.BatchNorm2d):
        raise TypeError(f"block: expected a BasicBlock or Bottleneck, got {type(block).__name__}")
    return int(last_bn.num_features)


def truncate(model: nn.Module, after: str, head: str | nn.Module = "original",
             num_classes: int | None = None) -> TruncatedResNet:
    """Cut a torchvision-style ResNet after block ``after`` and put a head on it.

    ``after``: a block (``"layer4.0"``, ``"layer3.1"``) or a whole stage (``"layer3"``, the
    same as its last block); see :func:`cut_points`. ``"layer4"`` keeps the whole network.
    ``head``: ``"original"`` reuses the trained ``fc`` (only where the cut's channel count
    equals ``fc.in_features``, e.g. resnet18 cut after ``layer4.0``); ``"probe"`` puts a new
    zero-initialised ``nn.Linear(channels, num_classes)`` to be trained with
    :func:`train_probe`; or any ``nn.Module`` mapping ``(N, C)`` features to logits.
    ``num_classes``: outputs of a probe (default: those of the original ``fc``).

    Returns a :class:`TruncatedResNet` built from deep copies of the kept modules (the full
    model is never modified or shared), in the full model's train/eval mode.
    """
    _check_resnet(model)
    if not isinstance(after, str):
        raise TypeError(f"after: expected a block name such as 'layer4.0', got "
                        f"{type(after).__name__}")
    valid = cut_points(model)
    if after not in valid:
        close = difflib.get_close_matches(after, valid, n=4, cutoff=0.4)
        raise ValueError(f"after: {after!r} is not a block boundary of this ResNet. "
                         f"Closest: {', '.join(close) if close else '(none)'}. "
                         f"Valid cuts: {', '.join(valid)}")
    stage, _, index = after.partition(".")
    last_stage = STAGES.index(stage)
    n_blocks = int(index) + 1 if index else len(getattr(model, stage))
    stages: dict[str, nn.Sequential] = {}
    for s in STAGES[:last_stage + 1]:
        blocks = list(getattr(model, s))
        keep = blocks[:n_blocks] if s == stage else blocks
        # nn.Sequential of the first j blocks keeps their indices 0..j-1: "layer4.0" survives
        stages[s] = copy.deepcopy(nn.Sequential(*keep))
    channels = block_out_channels(stages[stage][-1])
    stem = {n: copy.deepcopy(getattr(model, n)) for n in STEM}
    fc = model.fc
    if isinstance(head, nn.Module):
        new_head, kind = head, "custom"
    elif head == "original":
        in_features = getattr(fc, "in_features", None)
        if in_features != channels:
            raise ValueError(f"head: the original fc expects {in_features} input channels, but "
                             f"the network cut after {after!r} outputs {channels}; use "
                             "head='probe' for a new linear head (train it with train_probe)")
        new_head, kind = copy.deepcopy(fc), "original"
    elif head == "probe":
        out = num_classes if num_classes is not None else getattr(fc, "out_features", None)
        if not isinstance(out, int) or out < 1:
            raise ValueError(f"num_classes: expected a positive int for the probe, got {out!r}")
        p = next(fc.parameters(), None)
        new_head = nn.Linear(channels, out, device=p.device if p is not None else None)
        nn.init.zeros_(new_head.weight)
        nn.init.zeros_(new_head.bias)
        kind = "probe"
    else:
        raise ValueError(f"head: expected 'original', 'probe' or an nn.Module, got {head!r}")
    cut = TruncatedResNet(stem, stages, copy.deepcopy(model.avgpool), new_head, after, kind)
    cut.train(model.training)
    return cut


# ----------------------------------------------------------------------------- the probe
@dataclass
class ProbeFit:
    """What :func:`train_probe` did: ``losses`` (mean training BCE per epoch, the first entry
    is the loss before training), the number of ``train_images``, and the wall seconds spent
    extracting features (``feature_seconds``) and fitting the head (``fit_seconds``)."""

    losses: list[float] = field(default_factory=list)
    train_images: int = 0
    feature_seconds: float = 0.0
    fit_seconds: float = 0.0


def _batches(data, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches from a Dataset, a DataLoader or a pair (images, labels) of
    tensors ``(N, 3, H, W)`` float or arrays ``(N, H, W, 3)`` uint8 (converted per batch)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        images, labels = data
        if isinstance(images, np.ndarray):
            from .shapes import to_tensor

            for i in range(0, len(images), batch_size):
                yield to_tensor(images[i:i + batch_size]), torch.as_tensor(labels[i:i + batch_size])
            return
        if isinstance(images, torch.Tensor):
            for i in range(0, len(images), batch_size):
                yield images[i:i + batch_size], torch.as_tensor(labels[i:i + batch_size])
            return
    if isinstance(data, torch.utils.data.DataLoader):
        yield from data
        return
    if isinstance(data, torch.utils.data.Dataset):
        yield from torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        return
    raise TypeError("data: expected a Dataset, a DataLoader or a pair (images, labels) of "
                    f"tensors or uint8 arrays, got {type(data).__name__}")


@torch.no_grad()
def extract_features(model: TruncatedResNet, data, batch_size: int = 64,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features ``(N, C)`` float32 and labels ``(N, num_classes)`` of a whole data set,
    computed in eval mode (batch-norm running statistics, no dropout)."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    try:
        device = next(model.parameters()).device
        for x, y in _batches(data, batch_size):
            feats.append(model.features(x.to(device)).float().cpu())
            labels.append(torch.as_tensor(y).float().cpu())
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("data: the data set is empty")
    return torch.cat(feats), torch.cat(labels)


def fit_linear_head(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor,
                    epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
                    batch_size: int = 256, seed: int = 0) -> list[float]:
    """Fit ``head`` on cached ``features`` ``(N, C)`` against multi-hot ``labels`` ``(N, K)``
    with ``BCEWithLogitsLoss`` and AdamW (mini-batches, order seeded by ``seed``).

    Features are standardised inside the fit and the scaling is folded back into the head's
    weights, so the head takes the raw features. Returns the mean loss per epoch (entry 0:
    before training).
    """
    if features.ndim != 2 or labels.shape[0] != features.shape[0]:
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


def _block_name(model: nn.Module, after: str) -> str:
    """``"layer3"`` -> ``"layer3.1"`` (a stage is cut after its last block)."""
    stage, _, index = after.partition(".")
    return after if index else f"{stage}.{len(getattr(model, stage)) - 1}"


@torch.no_grad()
def cut_features(model: nn.Module, data, cuts: Sequence[str], batch_size: int = 64,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pooled features ``(N, C_cut)`` of every cut in ``cuts`` from ONE pass of the full model.

    The features of cut ``c`` are what ``truncate(model, c).features(x)`` returns (the same
    modules run on the same input), computed in eval mode without building any graph.
    Returns ``({cut: features}, labels (N, K))``.
    """
    valid = cut_points(model)
    for c in cuts:
        if c not in valid:
            truncate(model, c, head="probe")        # raises the error with close matches
    wanted = {_block_name(model, c): c for c in cuts}
    deepest = max(STAGES.index(c.split(".")[0]) for c in cuts)
    was_training = model.training
    model.eval()
    feats: dict[str, list[torch.Tensor]] = {c: [] for c in cuts}
    labels = []
    try:
        device = next(model.parameters()).device
        for x, y in _batches(data, batch_size):
            h = x.to(device)
            for name in STEM:
                h = getattr(model, name)(h)
            for stage in STAGES[:deepest + 1]:
                for i, block in enumerate(getattr(model, stage)):
                    h = block(h)
                    if f"{stage}.{i}" in wanted:
                        pooled = torch.flatten(model.avgpool(h), 1).float().cpu()
                        feats[wanted[f"{stage}.{i}"]].append(pooled)
            labels.append(torch.as_tensor(y).float().cpu())
    finally:
        model.train(was_training)
    return {c: torch.cat(v) for c, v in feats.items()}, torch.cat(labels)


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
@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, K)`` and labels ``(N, K)`` of a whole data set, in eval mode."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        device = next(model.parameters()).device
        for x, y in _batches(data, batch_size):
            logits.append(model(x.to(device)).float().cpu())
            labels.append(torch.as_tensor(y).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``{"exact_match", "mAP"}`` of logits ``(N, K)`` against multi-hot labels ``(N, K)``,
    with the training module's definitions (sigmoid probabilities, threshold 0.5)."""
    from .train import exact_match, mean_average_precision

    probs = torch.sigmoid(logits.float()).numpy()
    return {"exact_match": float(exact_match(probs, labels.numpy())),
            "mAP": float(mean_average_precision(probs, labels.numpy()))}


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
    [0, 1], on ``data``, a held-out split).
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
    last = f"layer4.{len(model.layer4) - 1}"
    wanted = list(dict.fromkeys([last, *(a for a, _ in fits), *shared]))
    features, labels = cut_features(model, data, wanted, batch_size)
    rows = []

    def add(variant, cut, head, logits):
        rows.append({"variant": variant, "cut": cut, "head": head, **accuracy(logits, labels),
                     "images": len(labels)})

    with torch.no_grad():
        add("full", "layer4", "original", model.fc(features[last]))
        for after, variant in fits:
            add(f"cut-{after}-original", after, "original", variant.fc(features[after]))
        for after, variant in probes.items():
            if after in shared:
                logits = variant.fc(features[after])
            else:
                logits, _ = predict(variant, data, batch_size)
            add(f"cut-{after}-probe", after, "probe", logits)
    return rows


def format_rows(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of dict rows (floats with 3 decimals)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    cells = [[f"{r.get(c, ''):.3f}" if isinstance(r.get(c), float) else str(r.get(c, ''))
              for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- shipped probes
def probe_name(after: str, base: str = BASE_MODEL) -> str:
    """File name of a shipped probe: ``"resnet18-shapes-cut-layer4.0-probe"``."""
    return f"{base}-cut-{after}-probe"


def build_truncated(base_architecture: str, base_kwargs: dict, after: str,
                    head: str = "probe", num_classes: int | None = None) -> TruncatedResNet:
    """Builder named in a shipped probe's model card (``"gradcam_edu.truncate:build_truncated"``).

    Builds the base architecture (a name of :data:`gradcam_edu.weights.ARCHITECTURES`) with
    ``base_kwargs``, untrained, and cuts it: the weights (body and head) come from the file.
    """
    from .weights import ARCHITECTURES

    if base_architecture not in ARCHITECTURES:
        raise ValueError(f"base_architecture: unknown {base_architecture!r}; registered: "
                         f"{sorted(ARCHITECTURES)}")
    return truncate(ARCHITECTURES[base_architecture](**base_kwargs), after, head=head,
                    num_classes=num_classes)


def load_truncated(name: str) -> TruncatedResNet:
    """A shipped truncated model, e.g. ``load_truncated("resnet18-shapes-cut-layer3.1-probe")``.

    Same as ``gradcam_edu.weights.load_model(name)``: the card names
    :func:`build_truncated`, the sha256 is checked before loading. The file holds the whole
    truncated model (the frozen body copied from the base model, and the probe).
    """
    from . import weights

    model = weights.load_model(name)
    if not isinstance(model, TruncatedResNet):
        raise ValueError(f"name: {name!r} is not a truncated model ({type(model).__name__})")
    return model


def first_images(split: str, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(size, 224, 224, 3)`` and labels ``(size, 6)`` of images 0..size-1.

    Slices a larger cached render of the split when one exists (the training run caches
    12000 train images), else renders and caches exactly ``size`` images.
    """
    from . import shapes

    pattern = f"shapes_v{shapes.GENERATOR_VERSION}_seed{seed}_{split}_*.npz"
    sizes = sorted(int(p.stem.rsplit("_", 1)[1]) for p in shapes.cache_dir().glob(pattern)
                   if p.stem.rsplit("_", 1)[1].isdigit())
    bigger = [n for n in sizes if n >= size]
    images, labels = shapes.load_split(split, bigger[0] if bigger else size, seed)
    return images[:size], labels[:size]


def _check_same_logits(model: nn.Module, images: np.ndarray, expected: torch.Tensor) -> None:
    """The truncated model itself must give the logits computed from shared features."""
    from .shapes import to_tensor

    with torch.no_grad():
        got = model.eval()(to_tensor(images))
    if not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"{model.cut}: the truncated model's logits differ from those of the "
                           "shared feature pass (max difference "
                           f"{float((got - expected).abs().max()):.2e})")


def build_probes(cuts: Sequence[str] = STANDARD_CUTS, base: str = BASE_MODEL,
                 train_size: int = 4000, test_size: int = 2000, seed: int = 0,
                 epochs: int = 100, lr: float = 1e-2, save: bool = True) -> list[dict]:
    """Train (and with ``save``, ship) the probes of ``base`` for ``cuts``; reproducible.

    Train on the first ``train_size`` images of the "train" split (data seed 0, images the
    base model was trained on), score on the first ``test_size`` images of the held-out
    "test" split. Files via :func:`gradcam_edu.weights.save_model` under
    :func:`probe_name`. Returns one row per probe (its card's scores and timings).
    """
    from . import weights

    card = weights.model_card(base)
    full = weights.load_model(base)
    train = first_images("train", train_size)
    test = first_images("test", test_size)
    rows = []
    probes = train_probes(full, train, cuts, epochs=epochs, lr=lr, seed=seed)
    test_features, labels = cut_features(full, test, cuts)
    for after in cuts:
        model, fit = probes[after]
        with torch.no_grad():
            logits = model.fc(test_features[after])
        _check_same_logits(model, test[0][:8], logits[:8])
        scores = accuracy(logits, labels)
        extra = {
            "architecture": "gradcam_edu.truncate:build_truncated",
            "kwargs": {"base_architecture": card["architecture"], "base_kwargs": card["kwargs"],
                       "after": after, "head": "probe"},
            "base_model": base, "base_sha256": card["sha256"], "cut": after, "head": "probe",
            "probe": {"seed": seed, "train_split": "train", "train_indices": [0, train_size],
                      "data_seed": 0, "epochs": epochs, "lr": lr, "weight_decay": 1e-4,
                      "optimizer": "AdamW on cached, standardised features (body frozen)",
                      "loss": "BCEWithLogitsLoss (multi-label)",
                      "initial_train_loss": round(fit.losses[0], 5),
                      "final_train_loss": round(fit.losses[-1], 5),
                      "seconds": round(fit.feature_seconds + fit.fit_seconds, 1),
                      "command": "python -m gradcam_edu.truncate"},
            "held_out": {"split": "test", "seed": 0, "n_images": len(labels),
                         "exact_match": round(scores["exact_match"], 5),
                         "mAP": round(scores["mAP"], 5)},
        }
        if save:
            weights.save_model(model, probe_name(after, base), card_extra=extra)
        rows.append({"name": probe_name(after, base), "cut": after, **scores,
                     "seconds": extra["probe"]["seconds"]})
        print(f"{probe_name(after, base)}: test exact match {scores['exact_match']:.3f}, "
              f"mAP {scores['mAP']:.3f} ({rows[-1]['seconds']} s)", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gradcam_edu.truncate [--no-save] [--train-size N]``: rebuild the probes,
    then print the accuracy of every variant on the test split."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gradcam_edu.truncate",
                                     description=main.__doc__)
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


def shipped_variant_accuracy(base: str = BASE_MODEL, cuts: Sequence[str] = STANDARD_CUTS,
                             test_size: int = 2000) -> list[dict]:
    """:func:`variant_accuracy` of the shipped base model and its shipped probes on the first
    ``test_size`` held-out "test" images (those of the base model's card)."""
    from . import weights

    full = weights.load_model(base)
    probes = {c: load_truncated(probe_name(c, base)) for c in cuts}
    return variant_accuracy(full, first_images("test", test_size), cuts, probes)


if __name__ == "__main__":
    # run the package's module, not a second copy named __main__ (one TruncatedResNet class)
    from gradcam_edu.truncate import main as _main

    _main()
