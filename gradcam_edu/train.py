"""Reproduce every shipped weight file from scratch.

    python -m gradcam_edu.train                          # both models -> data/
    python -m gradcam_edu.train --only resnet18-shapes   # one of them
    python -m gradcam_edu.train --only resnet18-shapes --seed 1   # another training seed
    python -m gradcam_edu.train --quick                  # tiny smoke run -> artifacts/quick/

Seeded end to end: the images are a pure function of (seed, split, index) (see
:mod:`gradcam_edu.shapes`), the model is initialised after ``torch.manual_seed``, the batch
order and the augmentation (random 90-degree rotations and flips: every shape class is
invariant under them) come from generators seeded by (seed, epoch). Same command, same
machine -> same weights.

Loss: multi-label ``BCEWithLogitsLoss``; optimiser AdamW with a one-cycle learning rate. After
training, the model is scored on a held-out "test" split (never seen in training) with
:func:`gradcam_edu.classification.evaluate` (exact match and mAP), and saved with
:func:`gradcam_edu.weights.save_model` (safetensors + model card).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import shapes
from .classification import evaluate
from .images import to_tensor
from .threads import torch_threads
from .weights import architecture, save_model


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    """Everything that determines one shipped model."""

    name: str
    architecture: str
    kwargs: dict
    train_size: int = 10000
    epochs: int = 6
    # input side (px) per epoch (progressive resizing): a side below 224 trains on images
    # downsampled (antialiased) from 224, so a step costs about (side/224)^2 of a full one
    # (measured per image at 2 threads: 4.5 ms at 128, 8.2 at 160, 11.0 at 192, 15.2 at 224);
    # the last two epochs run at 224, the scale the model is used at
    resolutions: tuple[int, ...] = (128, 128, 160, 192, 224, 224)
    batch_size: int = 32
    max_lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0  # torch init + batch order + augmentation
    data_seed: int = 0  # which images (shapes.render seed)
    test_size: int = 2000  # held-out "test" images scored after training
    monitor_size: int = 500  # "val" images scored after each epoch (monitoring only)
    augment: bool = True
    # intra-op threads: 2 on the idle 2-core machine (1.3x faster than 1 per step); on a
    # machine shared with other jobs 1 is faster (OpenMP threads wait for a taken core)
    threads: int = 2
    extra: dict = field(default_factory=dict)


CONFIGS: dict[str, Config] = {
    "resnet18-shapes": Config(
        name="resnet18-shapes",
        architecture="resnet18_narrow",
        kwargs={"num_classes": 6, "width": 16},
    ),
    "plaincnn-shapes": Config(
        name="plaincnn-shapes",
        architecture="plain_cnn",
        kwargs={
            "num_classes": 6, "widths": [16, 32, 64, 128], "depths": [1, 2, 2, 2],
            "stem_kernel": 5,
        },
        max_lr=3e-3,
        resolutions=(224,) * 6,  # the schedule its shipped card records
        threads=1,
    ),
}


def seeded(cfg: Config, seed: int) -> Config:
    """``cfg`` trained under another ``seed`` (initialisation, batch order, augmentation; the
    same training images): named ``<name>-seed<seed>``, except seed 0 (the shipped model)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    name = cfg.name if seed == 0 else f"{cfg.name}-seed{seed}"
    return replace(cfg, name=name, seed=seed)


def quick(cfg: Config) -> Config:
    """A tiny version of ``cfg`` for smoke tests (minutes -> seconds)."""
    return replace(
        cfg, train_size=640, epochs=2, resolutions=(128, 224), test_size=128, monitor_size=64
    )


# ----------------------------------------------------------------------------- training
def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 90-degree rotation and horizontal flip of each uint8 image (N, H, W, 3), drawn
    from ``rng``; labels are unchanged (every class is rotation and mirror invariant)."""
    ks = rng.integers(0, 4, len(images))
    flips = rng.integers(0, 2, len(images))
    out = np.empty_like(images)
    for j, (k, f) in enumerate(zip(ks, flips, strict=True)):
        im = np.rot90(images[j], int(k))
        out[j] = im[:, ::-1] if f else im
    return out


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """x (N, 3, H, W) -> (N, 3, side, side), bilinear with antialiasing (identity if equal)."""
    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    out = nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return out.clamp_(0, 1).contiguous(memory_format=torch.channels_last)


def _fit(cfg: Config, model: nn.Module, x_train: np.ndarray, y_train: np.ndarray,
         x_mon: np.ndarray, y_mon: np.ndarray) -> list[dict]:
    """Train ``model`` in place for ``cfg.epochs``; returns the per-epoch history (training
    loss, and exact match / mAP on the monitoring images)."""
    steps_per_epoch = len(x_train) // cfg.batch_size  # drop the last partial batch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.max_lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25
    )
    loss_fn = nn.BCEWithLogitsLoss()
    history = []
    t_train = time.perf_counter()
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=cfg.name, mininterval=20, file=sys.stderr)
    for epoch in range(cfg.epochs):
        model.train()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(x_train))
        aug_rng = np.random.default_rng([cfg.seed, epoch, 1])
        losses = []
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            batch = augment(x_train[idx], aug_rng) if cfg.augment else x_train[idx]
            x = to_tensor(batch).contiguous(memory_format=torch.channels_last)
            x = resize(x, cfg.resolutions[epoch])
            y = torch.from_numpy(y_train[idx])
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
        mon = evaluate(model, (x_mon, y_mon), batch_size=128)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **mon})
        tqdm.write(
            f"[{cfg.name}] epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f} "
            f"val exact-match {mon['exact_match']:.4f} mAP {mon['mAP']:.4f} "
            f"({time.perf_counter() - t_train:.0f} s)",
            file=sys.stdout,
        )
        sys.stdout.flush()
    bar.close()
    return history


def _card_extra(cfg: Config, history: list[dict], test: dict, train_s: float,
                render_s: float, total_s: float) -> dict:
    """The model card fields of a trained ``cfg`` (besides those save_model adds)."""
    config = {k: v for k, v in asdict(cfg).items() if k not in ("name", "extra")}
    return {
        "architecture": cfg.architecture,
        "kwargs": cfg.kwargs,
        "input": "float32 (N, 3, 224, 224) RGB in [0, 1], no normalisation",
        "classes": list(shapes.CLASS_NAMES),
        "data": {"generator": "gradcam_edu.shapes", "generator_version": shapes.GENERATOR_VERSION,
                 "train_split": "train", "train_indices": [0, cfg.train_size],
                 "seed": cfg.data_seed},
        "training": {
            **config,
            "optimizer": "AdamW + OneCycleLR",
            "loss": "BCEWithLogitsLoss",
            "augmentation": "random rot90 + horizontal flip" if cfg.augment else "none",
            "seconds": round(train_s, 1),
            "data_render_seconds": round(render_s, 1),
            "total_seconds": round(total_s, 1),  # render + train + held-out scoring
            "torch_threads": torch.get_num_threads(),
            "history": history,
            "command": _command(cfg),
        },
        "held_out": {
            "split": "test",
            "seed": cfg.data_seed,
            "n_images": test["n_images"],
            "exact_match": round(test["exact_match"], 5),
            "mAP": round(test["mAP"], 5),
        },
        **cfg.extra,
    }


def _command(cfg: Config) -> str:
    base = next((k for k, c in CONFIGS.items() if cfg.name.startswith(k)), cfg.name)
    return f"python -m gradcam_edu.train --only {base}" + (
        f" --seed {cfg.seed}" if cfg.seed else "")


def train(cfg: Config, out_dir: str | Path | None = None, workers: int = 2) -> dict:
    """Train ``cfg`` from scratch, score it on the held-out test split, save weights + card
    (to ``out_dir``, default the package data folder). Returns the card. Runs with
    ``cfg.threads`` torch threads (restored afterwards)."""
    if len(cfg.resolutions) != cfg.epochs:
        raise ValueError(f"cfg: {cfg.name} needs one resolution per epoch, got "
                         f"{cfg.resolutions}")
    build = architecture(cfg.architecture)
    with torch_threads(cfg.threads):
        t0 = time.perf_counter()
        x_train, y_train = shapes.load_split("train", cfg.train_size, cfg.data_seed,
                                             workers=workers)
        x_mon, y_mon = shapes.load_split("val", cfg.monitor_size, cfg.data_seed, workers=workers)
        render_s = time.perf_counter() - t0
        print(f"[{cfg.name}] data ready in {render_s:.0f} s: {len(x_train)} train images",
              flush=True)
        torch.manual_seed(cfg.seed)
        model = build(**cfg.kwargs).to(memory_format=torch.channels_last)
        t_train = time.perf_counter()
        history = _fit(cfg, model, x_train, y_train, x_mon, y_mon)
        train_s = time.perf_counter() - t_train
        x_test, y_test = shapes.load_split("test", cfg.test_size, cfg.data_seed, workers=workers)
        test = evaluate(model, (x_test, y_test), batch_size=128)
        print(
            f"[{cfg.name}] held-out test ({test['n_images']} images, split 'test', seed "
            f"{cfg.data_seed}): exact-match {test['exact_match']:.4f} mAP {test['mAP']:.4f}; "
            f"training {train_s:.0f} s, in all {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        total_s = time.perf_counter() - t0
        card_extra = _card_extra(cfg, history, test, train_s, render_s, total_s)
    return save_model(model, cfg.name, card_extra, data=out_dir)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(CONFIGS), help="train just this model")
    ap.add_argument("--quick", action="store_true", help="tiny run into artifacts/quick/")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed (0: the shipped model; others are named <model>-seed<N>)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    ap.add_argument("--out", default=None, help="output folder (default: the data folder)")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering images")
    args = ap.parse_args(argv)
    out = args.out or ("artifacts/quick" if args.quick else None)
    names = [args.only] if args.only else list(CONFIGS)
    for name in names:
        cfg = seeded(CONFIGS[name], args.seed)
        cfg = quick(cfg) if args.quick else cfg
        cfg = replace(cfg, threads=args.threads) if args.threads else cfg
        card = train(cfg, out_dir=out, workers=args.workers)
        print(f"[{name}] wrote {card['weights_file']} sha256 {card['sha256'][:16]}...", flush=True)


if __name__ == "__main__":
    main()
