"""The claim lab's construction time (the precomputation) and toggle latency, in-process.

    python benchmarks/bench_claim_lab.py [--images 16] [--repeats 30] [--threads N]

Construction: ``ClaimLab(n_images)`` from the call to its return (load the shipped
``resnet18-shapes``, build the 12 model variants, one capture each for the 5 hook points,
score every (image, class) pair, draw the first view). Latency: the wall time of assigning a
widget's ``value`` from Python until the assignment returns, i.e. until the observers have
looked the maps up, computed any bootstrap interval not seen before and put the new image
bytes on the widgets (what a click costs in the kernel, before the browser draws). Each kind
of toggle (head, depth, skip gradient, hook point, compare with, image, class) is changed
``--repeats`` times, cycling through its values, with the comparison "the setting before your
last change" (every toggle a new pair of settings to compare, the worst case).

Goal: every toggle answers in under a second (median and 90th percentile); no hook is left on
the model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradcam_edu.capture import hook_count
from gradcam_edu.claim_lab import ClaimLab

GOAL_MS = 1000.0


def _values(widget) -> list:
    return [v for _, v in widget.options] if isinstance(widget.options[0], tuple) \
        else list(widget.options)


def toggle_times(lab: ClaimLab, kind: str, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` changes of one widget, each to its next value."""
    widget = {**lab.toggles, "compare": lab.compare_buttons, "image": lab.image_slider,
              "class": lab.class_buttons}[kind]
    times = []
    for _ in range(repeats):
        if kind == "image":
            values = list(range(widget.min, widget.max + 1))
        elif kind == "class":
            if len(widget.options) < 2:  # move to an image with two objects
                lab.image_slider.value = next(i for i, c in enumerate(lab.classes) if len(c) > 1)
            values = _values(widget)
        else:
            values = _values(widget)
        new = values[(values.index(widget.value) + 1) % len(values)]
        t0 = time.perf_counter()
        widget.value = new
        times.append(1000.0 * (time.perf_counter() - t0))
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lab = ClaimLab(n_images=args.images, progress=False)
    built = time.perf_counter() - t0
    print(f"construction: {built:.1f} s for {args.images} images, "
          f"{len(lab.image_index)} (image, class) pairs, 12 model variants x 5 hook points "
          f"(precompute {lab.precompute_s:.1f} s), torch threads {torch.get_num_threads()}")
    lab.compare_buttons.value = "previous"
    worst = 0.0
    print(f"{'toggle':<15}{'n':>4}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}")
    for kind in ("head", "depth", "skip_gradient", "hook", "compare", "image", "class"):
        t = sorted(toggle_times(lab, kind, args.repeats))
        p90 = t[min(len(t) - 1, round(0.9 * (len(t) - 1)))]
        worst = max(worst, p90)
        print(f"{kind:<15}{len(t):>4}{statistics.median(t):>11.1f}{p90:>9.1f}{t[-1]:>9.1f}")
    hooks = hook_count(lab.model)
    ok = worst < GOAL_MS and hooks == 0
    print(f"goal: every toggle's median and p90 < {GOAL_MS:.0f} ms, no hook left "
          f"(hooks: {hooks}): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
