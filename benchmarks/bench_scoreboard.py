"""Time the layer scoreboard: 20 layers x 3 gradient methods x 200 images (budget: 90 s).

    python benchmarks/bench_scoreboard.py [--images 200] [--batch-size 16] [--threads 1 2]
        [--device cpu|cuda]

Uses the shipped ``resnet18-shapes`` when its weights are in data/, else a random
``resnet18_narrow`` (same architecture, same cost). Images: the held-out "test" split,
rendered before the clock starts. Prints the wall time of ``scoreboard`` (and of the bootstrap
intervals of its rows) for each torch thread count, side by side on the same images, and the
machine's load average: on cores shared with other jobs, 2 threads can be slower than 1.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from gradcam_edu import models, weights
from gradcam_edu.scoreboard import scoreboard
from gradcam_edu.shapes import shapes_sample

LAYERS = [
    "conv1", "maxpool",
    "layer1.0", "layer1.1.conv2", "layer1.1",
    "layer2.0.conv2", "layer2.0", "layer2.1.conv2", "layer2.1",
    "layer3.0.conv2", "layer3.0", "layer3.1.conv1", "layer3.1.conv2", "layer3.1",
    "layer4.0.conv1", "layer4.0.conv2", "layer4.0", "layer4.1.conv1", "layer4.1.conv2",
    "layer4.1",
]
METHODS = ["gradcam", "hirescam", "layercam"]
BUDGET_S = 90.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--table", action="store_true", help="also print the scoreboard table")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    try:
        model, which = weights.load_model("resnet18-shapes"), "resnet18-shapes (trained)"
    except (ValueError, FileNotFoundError):
        torch.manual_seed(0)
        model, which = models.resnet18_narrow().eval(), "resnet18_narrow (random weights)"
    t0 = time.perf_counter()
    images, masks, classes = shapes_sample(args.images)
    model, images = model.to(device), images.to(device)    # the scoreboard moves the masks
    render_s = time.perf_counter() - t0
    print(f"model: {which}; {args.images} 'test' images; {len(LAYERS)} layers x "
          f"{len(METHODS)} methods; batch {args.batch_size}; {device}; rendering "
          f"{render_s:.1f} s (not timed); load average before: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    for threads in args.threads:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        board = scoreboard(model, images, masks, classes, LAYERS, METHODS,
                           batch_size=args.batch_size)
        compute_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = board.rows  # bootstrap intervals
        rows_s = time.perf_counter() - t0
        total = compute_s + rows_s
        print(f"{threads} thread(s): {len(board.image_index)} (image, class) pairs, "
              f"{len(rows)} rows: scoreboard {compute_s:.1f} s + intervals {rows_s:.1f} s = "
              f"{total:.1f} s ({'within' if total <= BUDGET_S else 'OVER'} the "
              f"{BUDGET_S:.0f} s budget; load average now {os.getloadavg()[0]:.1f})",
              flush=True)
    if args.table:
        print(board.to_text())


if __name__ == "__main__":
    main()
