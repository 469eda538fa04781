"""Deletion / insertion: gradcam_edu's batched curves against torchcam's and grad-cam's, on
the same maps, then the faithfulness board (20 layers x 3 methods x 128 images).

    python benchmarks/bench_faithfulness.py [--images 4] [--rounds 2] [--board-images 2]
        [--device cpu|cuda] [--profile]

Model: the shipped resnet18-shapes (sigmoid: multi-label). Maps: Grad-CAM of a few layers
for every (image, class) pair of the first "test" images, at 224 x 224. The clock runs with 1
torch thread, the candidates interleaved round by round (best round kept), on a machine that
may be shared (the load average is printed).

  ours-A    gradcam_edu.faithfulness.perturbation_curves, 32 steps, black substrate for both
            curves (torchcam's setting)
  torchcam  torchcam 0.5 DeletionInsertionMetric(steps=32, logits_fn=sigmoid, baseline zeros):
            the same 1568-pixel steps (ceil(50176 / 32) = 50176 / 32), the same stable
            descending ranking, one substrate for both curves, trapezoids over the perturbed
            fraction; fed our maps through a stand-in CAM extractor (no CAM cost is timed).
            Also timed with the model in channels_last (torchcam's code unchanged).
  ours-A-itself  ours-A with the frozen copy turned off (``inference.model_itself``: the
            perturbed images through the model itself, channels-last): what the copy gains
  ours-B    the package's defaults: black for deletion, blurred (sigma 5 px) for insertion
  grad-cam  pytorch_grad_cam.metrics' PerturbationConfidenceMetric with RemoveMostRelevantFirst
            (deletion) / RemoveLeastRelevantFirst (insertion) at percentiles 100 (1 - k/32)
            and 100 k/32 and our substrates as the imputer; it thresholds at a percentile,
            so it gets the maps as distinct rank values (v = (HW - 1 - rank) / (HW - 1), the
            same order as ours, ties already broken by position), which makes its k-th
            threshold remove exactly round(k HW / 32) pixels. Its ROAD imputer (noisy linear
            infilling, a sparse solve per image and step) has no counterpart here and is not
            compared; the curve's end points it cannot reach (k = 0, and insertion's k = 32)
            are one forward of the original images. AUC: our trapezoid rule on its points.

``--profile`` prints where ours-A, torchcam-cl and grad-cam spend their time (torch.profiler,
by operator group: :mod:`profiling`).

The board is timed on its first --board-images images and extrapolated by pairs (the cost
per (image, class) pair is about constant), at 1 and 2 threads, and at 32 and 4 steps to
fit the steps that would bring the full board under 10 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import torch
from bench_scoreboard import LAYERS as SCOREBOARD_LAYERS
from profiling import print_breakdowns
from pytorch_grad_cam.metrics.perturbation_confidence import (
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from torchcam.metrics import DeletionInsertionMetric

from gradcam_edu import inference, weights
from gradcam_edu.cams import explain
from gradcam_edu.faithfulness import (
    blurred,
    curve_auc,
    perturbation_curves,
    saliency_ranks,
)
from gradcam_edu.faithfulness_board import faithfulness_board
from gradcam_edu.shapes import shapes_sample

BOARD_LAYERS = SCOREBOARD_LAYERS   # the scoreboard benchmark's 20 layers
METHODS = ["gradcam", "hirescam", "layercam"]
STEPS = 32
BUDGET_S = 600.0


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


# ----------------------------------------------------------------------------- the maps
def comparison_maps(model, images, classes, layers):
    """Grad-CAM maps (M, 224, 224) of every (image, class) pair at ``layers``; the image and
    the class of each."""
    maps, image, cls = [], [], []
    for i, c in enumerate(classes):
        for k in c:
            out = explain(model, images[i:i + 1], layers, int(k), ["gradcam"])
            for layer in layers:
                maps.append(out[layer]["gradcam"][0])
                image.append(i)
                cls.append(int(k))
    return torch.stack(maps), torch.tensor(image), torch.tensor(cls)


# ----------------------------------------------------------------------------- candidates
def ours(model, images, maps, image, cls, insertion_baseline, batch_size=16):
    curves = perturbation_curves(model, images, maps, cls, STEPS, image, "zeros",
                                 insertion_baseline, batch_size)
    return curve_auc(curves["deletion"]).cpu(), curve_auc(curves["insertion"]).cpu()


def ours_itself(*args):
    with inference.model_itself():
        return ours(*args)


class GivenMaps:
    """torchcam's CAM-extractor protocol, handing its metric the maps we give it."""

    def __init__(self, model):
        self.model, self.maps = model, None

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    def _hooks_off(self):
        return contextlib.nullcontext()


def torchcam(model, images, maps, image, cls):
    extractor = GivenMaps(model)
    metric = DeletionInsertionMetric(extractor, torch.sigmoid, steps=STEPS)
    deletion, insertion = [], []
    for j in range(len(maps)):        # one update per map: its per-map AUCs
        metric.reset()
        extractor.maps = maps[j:j + 1]
        metric.update(images[image[j]][None], class_idx=[int(cls[j])])
        out = metric.summary()
        deletion.append(out["deletion_auc"])
        insertion.append(out["insertion_auc"])
    return torch.tensor(deletion), torch.tensor(insertion)


class Substrate:
    """grad-cam imputer: the kept pixels (mask 1) from the image, the others from the
    image's substrate; called once per image of a batch, in order."""

    def __init__(self, bases):
        self.bases, self.i = bases, 0

    def __call__(self, img, keep):
        base = self.bases[self.i % len(self.bases)]
        self.i += 1
        return img * keep + base * (1 - keep)


def gradcam_metrics(model, images, maps, image, cls):
    x = images[image]
    hw = maps[0].numel()
    rank_maps = ((hw - 1 - saliency_ranks(maps).float()) / (hw - 1)).reshape(maps.shape)
    cams_np = rank_maps.cpu().numpy().astype(np.float32)
    targets = [lambda out, c=int(c): torch.sigmoid(out[c]) for c in cls]
    zeros, blur = Substrate(torch.zeros_like(x)), Substrate(blurred(x))
    with torch.no_grad():
        start = torch.stack([t(o) for t, o in zip(targets, model(x), strict=True)])
    deletion, insertion = [start.cpu().numpy()], []
    for k in range(1, STEPS + 1):
        metric = PerturbationConfidenceMetric(RemoveMostRelevantFirst(100 * (1 - k / STEPS),
                                                                      zeros))
        deletion.append(metric(x, cams_np, targets, model, return_diff=False))
    for k in range(STEPS):
        metric = PerturbationConfidenceMetric(RemoveLeastRelevantFirst(100 * k / STEPS, blur))
        insertion.append(metric(x, cams_np, targets, model, return_diff=False))
    insertion.append(start.cpu().numpy())
    d = torch.from_numpy(np.stack(deletion, axis=1).astype(np.float32))
    i = torch.from_numpy(np.stack(insertion, axis=1).astype(np.float32))
    return curve_auc(d), curve_auc(i)


def timed(fn, *args):
    """Wall seconds of ``fn(*args)`` (on a GPU between synchronisations) and its result."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn(*args)
    sync()
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------- the phases
def memory_format(model, images, rounds):
    x = images[:1].expand(16, -1, -1, -1).contiguous()
    xcl = x.contiguous(memory_format=torch.channels_last)
    runs = {"model, contiguous": lambda: model(x), "model, channels_last": lambda: model(xcl),
            "frozen copy": lambda: inference.inference_forward(model, x)}
    best = dict.fromkeys(runs, float("inf"))
    with torch.inference_mode():
        for fn in runs.values():
            fn()
        for _ in range(rounds):
            for name, fn in runs.items():
                best[name] = min(best[name], timed(lambda f=fn: [f() for _ in range(3)])[0])
    print("forward of 16 images x 3: " + ", ".join(
        f"{k} {48 / v:.1f} img/s" for k, v in best.items())
        + f" ({inference.inference_status(model)}; {load()})", flush=True)


def batch_sizes(model, images, maps, image, cls):
    sub = slice(0, min(4, len(maps)))
    best = {}
    for _ in range(2):
        for bs in (8, 16, 32, 64):
            t = timed(ours, model, images, maps[sub], image[sub], cls[sub], "blur", bs)[0]
            best[bs] = min(best.get(bs, float("inf")), t)
    n = len(maps[sub])
    print("ours, maps/s by batch size: " + ", ".join(f"{bs}: {n / t:.3f}"
                                                     for bs, t in best.items())
          + f" (fastest {min(best, key=best.get)}; {load()})", flush=True)


def compare(model, images, maps, image, cls, rounds, profile=False):
    model_cl = weights.load_model("resnet18-shapes").to(images.device,
                                                        memory_format=torch.channels_last)
    candidates = {
        "ours-A": lambda: ours(model, images, maps, image, cls, "zeros"),
        "ours-A-itself": lambda: ours_itself(model, images, maps, image, cls, "zeros"),
        "torchcam": lambda: torchcam(model, images, maps, image, cls),
        "torchcam-cl": lambda: torchcam(model_cl, images, maps, image, cls),
        "ours-B": lambda: ours(model, images, maps, image, cls, "blur"),
        "grad-cam": lambda: gradcam_metrics(model, images, maps, image, cls),
    }
    best, values = {}, {}
    for r in range(rounds):
        for name, fn in candidates.items():
            t, values[name] = timed(fn)
            best[name] = min(best.get(name, float("inf")), t)
            print(f"  round {r + 1} {name:<14}{t:7.1f} s  ({load()})", flush=True)
    tol = 1e-5
    for a, b in (("ours-A", "torchcam"), ("ours-A", "torchcam-cl"), ("ours-B", "grad-cam"),
                 ("ours-A", "ours-A-itself")):
        dd = float((values[a][0] - values[b][0]).abs().max())
        di = float((values[a][1] - values[b][1]).abs().max())
        verdict = "EQUAL" if max(dd, di) <= tol else "DIFFERENT"
        print(f"{a} vs {b}: max |AUC difference| deletion {dd:.2e}, insertion {di:.2e} "
              f"-> {verdict} within {tol:.0e}")
    rate = {k: len(maps) / v for k, v in best.items()}
    for k, v in rate.items():
        print(f"{k:<14}{v:8.3f} maps/s (deletion + insertion, {STEPS} steps, best of "
              f"{rounds} rounds)")
    print(f"ratios: ours-A / torchcam {rate['ours-A'] / rate['torchcam']:.2f}x, ours-A / "
          f"torchcam-cl {rate['ours-A'] / rate['torchcam-cl']:.2f}x, ours-B / grad-cam "
          f"{rate['ours-B'] / rate['grad-cam']:.2f}x, ours-A / ours-A-itself "
          f"{rate['ours-A'] / rate['ours-A-itself']:.2f}x (the frozen copy's gain)", flush=True)
    if profile:
        print_breakdowns({k: candidates[k] for k in ("ours-A", "torchcam-cl", "grad-cam")},
                         repeats=1, title=f"where the time goes, {len(maps)} maps")


def board(model, images, classes, n_images, threads, steps):
    torch.set_num_threads(threads)
    total = sum(len(c) for c in classes)
    part = sum(len(c) for c in classes[:n_images])
    before = load()
    t, out = timed(faithfulness_board, model, images[:n_images], classes[:n_images],
                   BOARD_LAYERS, METHODS, steps)
    full = t * total / part
    print(f"board, {threads} thread(s), {steps} steps: {n_images} images ({part} pairs, "
          f"{part * len(BOARD_LAYERS) * len(METHODS)} maps) in {t:.1f} s -> EXTRAPOLATED to "
          f"{len(classes)} images ({total} pairs): {full:.0f} s = {full / 60:.1f} min "
          f"({'within' if full <= BUDGET_S else 'OVER'} {BUDGET_S / 60:.0f} min; before: "
          f"{before}, after: {load()})", flush=True)
    torch.set_num_threads(1)
    return full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4, help="images of the comparison")
    ap.add_argument("--layers", nargs="+", default=["layer4", "layer3"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--board-images", type=int, default=2)
    ap.add_argument("--board-threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--skip-board", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", action="store_true",
                    help="also print each candidate's time by operator group (torch.profiler)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    model = weights.load_model("resnet18-shapes").to(device)
    images, _, classes = shapes_sample(max(args.images, 128))
    images = images.to(device)
    if not args.skip_compare:
        cmp_images, cmp_classes = images[:args.images], [c[:1] for c in classes[:args.images]]
        maps, image, cls = comparison_maps(model, cmp_images, cmp_classes, args.layers)
        print(f"resnet18-shapes; {len(maps)} Grad-CAM maps ({args.images} images x first class "
              f"x layers {args.layers}); {STEPS} steps; 1 torch thread; {load()}", flush=True)
        memory_format(model, images, args.rounds)
        batch_sizes(model, cmp_images, maps, image, cls)
        compare(model, cmp_images, maps, image, cls, args.rounds, args.profile)
    if args.skip_board:
        return
    print(f"board: {len(BOARD_LAYERS)} layers x {len(METHODS)} methods x {len(classes[:128])} "
          f"images, deletion and insertion", flush=True)
    for threads in args.board_threads:
        t32 = board(model, images[:128], classes[:128], args.board_images, threads, STEPS)
        if threads != 1:
            continue
        t4 = board(model, images[:128], classes[:128], args.board_images, 1, 4)
        per_step = (t32 - t4) / (STEPS - 4)        # linear in the steps: t = a + b * steps
        fixed = t4 - 4 * per_step
        fit = int((BUDGET_S - fixed) // per_step) if per_step > 0 else STEPS
        print(f"at 1 thread the full board would take about {fixed:.0f} s + {per_step:.1f} s "
              f"per step: within {BUDGET_S / 60:.0f} min up to {fit} steps (linear fit of the "
              f"32- and 4-step runs)", flush=True)


if __name__ == "__main__":
    main()
