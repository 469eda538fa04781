"""How long does retraining resnet18-shapes take on this machine? Times training steps at each
resolution of the schedule and projects the whole run (steps x median step time, plus the
per-epoch monitoring and the held-out scoring), for 1 and 2 torch threads.

    .venv/bin/python benchmarks/bench_training.py            # about a minute

Run it on an idle machine: the training command's own card records its wall time, which on a
machine shared with other jobs can be several times the projection.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from gradcam_edu.train import CONFIGS
from gradcam_edu.weights import architecture


def step_seconds(side: int, threads: int, batch: int, repeats: int) -> float:
    """Median wall time of one AdamW training step at ``side`` px."""
    torch.set_num_threads(threads)
    cfg = CONFIGS["resnet18-shapes"]
    torch.manual_seed(0)
    model = architecture(cfg.architecture)(**cfg.kwargs).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, side, side).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 6) > 0.5).float()
    loss_fn = nn.BCEWithLogitsLoss()
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:                                 # the first step warms up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def eval_seconds(threads: int, n: int = 128) -> float:
    """Wall time per image of inference at 224 px, batch 128."""
    torch.set_num_threads(threads)
    cfg = CONFIGS["resnet18-shapes"]
    model = architecture(cfg.architecture)(**cfg.kwargs).eval()
    x = torch.rand(n, 3, 224, 224)
    with torch.inference_mode():
        model(x[:8])
        t = time.perf_counter()
        model(x)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    cfg = CONFIGS["resnet18-shapes"]
    steps = cfg.train_size // cfg.batch_size
    print(f"load average {os.getloadavg()[0]:.2f} (run on an idle machine); schedule "
          f"{cfg.resolutions} px, {steps} steps of {cfg.batch_size} per epoch")
    for threads in (1, 2):
        per_side = {s: step_seconds(s, threads, cfg.batch_size, args.repeats)
                    for s in sorted(set(cfg.resolutions))}
        per_image = eval_seconds(threads)
        train = sum(per_side[s] * steps for s in cfg.resolutions)
        scoring = per_image * (cfg.monitor_size * cfg.epochs + cfg.test_size)
        sides = ", ".join(f"{s} px {1000 * t / cfg.batch_size:.1f} ms/image"
                          for s, t in per_side.items())
        print(f"{threads} thread(s): {sides}; projected training {train:.0f} s + scoring "
              f"{scoring:.0f} s = {(train + scoring) / 60:.1f} min")


if __name__ == "__main__":
    main()
