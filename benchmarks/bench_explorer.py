"""The live explorer's latency and memory, measured in-process (as in the kernel).

    python benchmarks/bench_explorer.py [--threads 2] [--repeats 30] [--updates 500] [--kernel]
                                        [--image-format jpeg|png]

``--kernel`` runs the same measurement inside an IPython kernel (started with nbclient, as
the notebooks run), where every widget change also sends its comm messages.

Model: the shipped ``resnet18-shapes`` (random-weight ``resnet18_narrow`` when the weights are
absent; the script says which), 224 x 224 shapes test images, the explorer's default layers
(every conv, block and stage output), methods and view encoding (``--image-format``: the
input and overlay views as JPEG, the default, or lossless PNG). Latency is the wall time of
assigning a widget's ``value`` from Python until the assignment returns, i.e. until the
observers have recomputed and the new image bytes are on the widgets (what a slider move
costs in the kernel, before the browser draws). Class and image changes are measured with
the gradient cache off (every class change runs its backward): the worst case.

Goals: median layer / method / opacity change <= 50 ms, class <= 200 ms, new image <= 300 ms;
500 updates in a row (cycling layer, method, class, image, opacity) grow the resident memory
by <= 20 MB after a warm-up pass of the same cycle; no hook is left on the model.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import torch

from gradcam_edu import explorer as explorer_mod
from gradcam_edu.capture import hook_count
from gradcam_edu.shapes import CLASS_NAMES, ShapesDataset


def load(name: str) -> tuple[torch.nn.Module, str]:
    from gradcam_edu import models, weights

    try:
        return weights.load_model(name), f"{name} (shipped weights)"
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        torch.manual_seed(0)
        reason = str(err).split(";")[0]
        return models.resnet18_narrow().eval(), (f"resnet18_narrow with RANDOM weights "
                                                 f"({name} not available: {reason})")


def rss_mb() -> float:
    """Resident memory of this process in MB (psutil, else /proc/self/statm)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(widget, value) -> float:
    t0 = time.perf_counter()
    widget.value = value
    return 1000.0 * (time.perf_counter() - t0)


def latencies(ex: explorer_mod.Explorer, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per change kind; each change differs from the current value."""
    n_layers, n_images = len(ex.layers), len(ex.images)
    out: dict[str, list[float]] = {k: [] for k in ("layer", "method", "opacity", "class",
                                                    "image")}
    for r in range(repeats):
        out["layer"].append(timed(ex.layer_slider, (ex.layer_slider.value + 7) % n_layers))
        nxt = ex.methods[(ex.methods.index(ex.method_dropdown.value) + 1) % len(ex.methods)]
        out["method"].append(timed(ex.method_dropdown, nxt))
        out["opacity"].append(timed(ex.alpha_slider, 0.2 + 0.6 * ((r % 4) / 3)))
        out["class"].append(timed(ex.class_dropdown,
                                  (ex.class_dropdown.value + 1) % len(ex.class_names)))
        out["image"].append(timed(ex.image_slider, (ex.image_slider.value + 1) % n_images))
    return out


def cycle(ex: explorer_mod.Explorer, updates: int) -> None:
    """``updates`` changes in a row, cycling layer, method, class, image and opacity."""
    n_layers, n_images, k = len(ex.layers), len(ex.images), len(ex.class_names)
    for u in range(updates):
        kind = u % 5
        if kind == 0:
            ex.layer_slider.value = (ex.layer_slider.value + 5) % n_layers
        elif kind == 1:
            ex.method_dropdown.value = ex.methods[(u // 5) % len(ex.methods)]
        elif kind == 2:
            ex.class_dropdown.value = (ex.class_dropdown.value + 1) % k
        elif kind == 3:
            ex.image_slider.value = (ex.image_slider.value + 1) % n_images
        else:
            ex.alpha_slider.value = round(0.1 + 0.8 * ((u // 5) % 9) / 8, 2)


def run_in_kernel(argv: list[str]) -> None:
    """Run this script with ``argv`` in a fresh IPython kernel (``%run``) and print its
    output."""
    import shlex

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    line = " ".join(shlex.quote(a) for a in [os.path.abspath(__file__), *argv])
    nb.cells = [nbformat.v4.new_code_cell(f"%run {line}")]
    NotebookClient(nb, timeout=3600, kernel_name="python3").execute()
    for out in nb.cells[0].outputs:
        print(out.get("text", ""), end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18-shapes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--explorer-threads", type=int, default=None,
                        help="Explorer(threads=...) for its forward/backward (default: the "
                             "--threads setting)")
    parser.add_argument("--image-format", choices=("jpeg", "png"), default=None,
                        help="Explorer(image_format=...) of the input and overlay views "
                             "(default: the explorer's)")
    parser.add_argument("--kernel", action="store_true",
                        help="measure inside an IPython kernel (widget comms live)")
    args = parser.parse_args()
    if args.kernel:
        import sys

        run_in_kernel([a for a in sys.argv[1:] if a != "--kernel"])
        return
    torch.set_num_threads(args.threads)

    model, described = load(args.model)
    ds = ShapesDataset("test", args.images, cache=False)
    images = torch.stack([ds[i][0] for i in range(args.images)])  # (N, 3, 224, 224)
    try:
        get_ipython  # noqa: B018 - defined inside IPython only
        where = "inside an IPython kernel"
    except NameError:
        where = "in a plain Python process (no kernel)"
    print(f"model: {described}; measured {where}")
    loadavg = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} "
          f"CPUs (load average {loadavg}: other jobs share them), {args.images} images 224x224")

    # -- latency (gradient cache off: every class change runs its backward)
    fmt = {} if args.image_format is None else {"image_format": args.image_format}
    ex = explorer_mod.Explorer(model, images, CLASS_NAMES, cache_mb=0,
                               threads=args.explorer_threads, **fmt)
    print(f"explorer: {len(ex.layers)} layers, methods {', '.join(ex.methods)}; model passes "
          f"on {args.explorer_threads or torch.get_num_threads()} thread(s), map arithmetic "
          f"on 1; views {ex.image_format}")
    latencies(ex, 3)  # warm-up
    res = latencies(ex, args.repeats)
    goals = {"layer": 50, "method": 50, "opacity": 50, "class": 200, "image": 300}
    print(f"\nlatency, ms from value change to new images ready ({args.repeats} repeats)")
    print(f"{'change':<9}{'median':>8}{'p90':>8}{'max':>8}{'goal':>7}  ok")
    for kind, values in res.items():
        med = statistics.median(values)
        p90 = statistics.quantiles(values, n=10, method="inclusive")[-1]
        print(f"{kind:<9}{med:>8.1f}{p90:>8.1f}{max(values):>8.1f}{goals[kind]:>7}  "
              f"{'yes' if med <= goals[kind] else 'NO'}")
    del ex
    gc.collect()

    # -- memory: a warm-up pass of the same cycle fills the (bounded) caches first
    ex = explorer_mod.Explorer(model, images, CLASS_NAMES, threads=args.explorer_threads, **fmt)
    cycle(ex, args.updates)
    gc.collect()
    before = rss_mb()
    counts = dict(ex.counts)
    t0 = time.perf_counter()
    cycle(ex, args.updates)
    seconds = time.perf_counter() - t0
    gc.collect()
    after = rss_mb()
    done = {k: ex.counts[k] - counts[k] for k in counts}
    hooks = hook_count(model)
    cached_mb = ex.session.cached_bytes() / 2**20
    print(f"\n{args.updates} updates in a row: {seconds:.1f} s "
          f"({1000 * seconds / args.updates:.1f} ms per update; {done['forward']} forwards, "
          f"{done['backward']} backwards)")
    print(f"resident memory {before:.1f} MB -> {after:.1f} MB: growth {after - before:+.1f} MB "
          f"(goal <= 20 MB: {'yes' if after - before <= 20 else 'NO'}); gradient cache "
          f"{cached_mb:.1f} MB of {ex.budget.cache_mb:.0f} MB allowed, "
          f"{ex.session.cached_gradients} entries")
    print(f"hooks left on the model: {hooks}")
    assert hooks == 0, "a hook was left on the model"


if __name__ == "__main__":
    main()
