"""All-layer Grad-CAM sweep: one capture versus bare passes, torchcam and grad-cam, side by side.

    python benchmarks/bench_capture.py [--batch 1 8] [--repeats 7] [--reference-repeats 3]
                                       [--threads 1] [--device cpu|cuda]

torchvision resnet18 (random weights, seeded, eval mode) at 224 x 224, its 28 layers: 20 convs
(downsample convs included) and 8 blocks. For every batch size, measured in ONE run, all
candidates and both batch sizes interleaved in every repeat (load on the machine hits all
alike); medians over the repeats of each one's CPU time (``time.process_time``; on a GPU wall
time), since on cores shared with other jobs wall time mostly measures the scheduler:

  bare-input  model(x), then d score / d input only (no parameter gradient): the like-for-like
              floor, what any capture of these layers must at least run
  bare        model(x), then score.backward(): also every parameter's gradient (training)
  capture     gradcam_edu's capture of the 28 layers: one forward, one backward, no map
  sweep       capture + cams.grad_cam + cams.finalize to 224 x 224 for every layer: the
              package's sweep, maps as the package displays them
  torchcam    torchcam.methods.GradCAM(model, target_layer=[28 names]), one extractor for
              every layer: model(x), then extractor(class_idx=[one per image], scores=...)
              (ReLU + min-max maps at each layer's resolution, not upsampled)
  torchcam224 torchcam, then its 28 maps upsampled to 224 x 224 with cams.upsample: the
              sweep's output, like for like
  reference   grad-cam's GradCAM called once per layer (what a per-layer loop costs); run in
              the first --reference-repeats repeats only (28 forwards + backwards each)

Prints the medians, the ratios sweep / torchcam224, sweep / torchcam (the goal: <= 0.95),
sweep / bare-input (goal: <= 1.05), reference / sweep, and the largest difference between the
sweep's maps and torchcam's and grad-cam's: as shipped, and with their conventions matched
(see :func:`agreement`). ``--profile`` then prints where each candidate's time goes
(torch.profiler, by operator group: :mod:`profiling`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from profiling import print_breakdowns
from torch import nn

from gradcam_edu import cams
from gradcam_edu.capture import capture


def sweep_layers(model: nn.Module) -> list[str]:
    """The 20 convs (downsample convs included) and the 8 blocks of a torchvision ResNet-18."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    blocks = [n for n, m in model.named_modules()
              if isinstance(m, torchvision.models.resnet.BasicBlock)]
    return convs + blocks


def bare(model, x, classes):
    out = model(x)
    out[torch.arange(len(classes), device=x.device), classes].sum().backward()
    model.zero_grad(set_to_none=True)


def bare_input(model, x, classes):
    x = x.detach().requires_grad_(True)
    out = model(x)
    torch.autograd.grad(out[torch.arange(len(classes), device=x.device), classes].sum(), x)


def capture_only(model, x, classes, layers):
    with capture(model, layers) as cap:
        cap.forward(x)
        cap.backward(classes)
        return cap.gradients


def sweep(model, x, classes, layers, size=(224, 224)):
    """Grad-CAM maps of every layer, ``size`` (None: each layer's resolution)."""
    with capture(model, layers) as cap:
        cap.forward(x)
        cap.backward(classes)
        return {n: cams.finalize(cams.grad_cam(cap.activations[n], cap.gradients[n]), size)
                for n in layers}


def torchcam(model, x, classes, layers, size=None):
    """torchcam's multi-layer GradCAM (model in eval mode); maps upsampled to ``size``."""
    from torchcam.methods import GradCAM

    with GradCAM(model, target_layer=layers) as extractor:
        scores = model(x)
        maps = extractor(class_idx=[int(c) for c in classes], scores=scores)
    model.zero_grad(set_to_none=True)
    if size is not None:
        maps = [cams.upsample(m, size) for m in maps]
    return dict(zip(layers, maps, strict=True))


def reference(model, x, classes, layers):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    modules = dict(model.named_modules())
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    out = {}
    for n in layers:
        with GradCAM(model=model, target_layers=[modules[n]]) as cam:
            out[n] = cam(input_tensor=x, targets=targets)
    model.zero_grad(set_to_none=True)
    return out


def max_diff(a: dict, b: dict) -> float:
    return max(float((torch.as_tensor(a[n]).detach().cpu()
                      - torch.as_tensor(b[n]).detach().cpu()).abs().max()) for n in a)


def timed(fn, device) -> float:
    """Seconds of ``fn``: on the CPU the process's CPU time (``time.process_time``), which the
    time the scheduler gives other jobs on shared cores does not inflate; on a GPU wall time
    between synchronisations."""
    if device.type != "cuda":
        t0 = time.process_time()
        fn()
        return time.process_time() - t0
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def candidates(model, x, classes, layers, with_reference: bool) -> dict:
    runs = {"bare-input": lambda: bare_input(model, x, classes),
            "bare": lambda: bare(model, x, classes),
            "capture": lambda: capture_only(model, x, classes, layers),
            "sweep": lambda: sweep(model, x, classes, layers),
            "torchcam": lambda: torchcam(model, x, classes, layers),
            "torchcam224": lambda: torchcam(model, x, classes, layers, tuple(x.shape[-2:]))}
    if with_reference:
        runs["reference"] = lambda: reference(model, x, classes, layers)
    return runs


def raw_maps(model, x, classes, layers) -> dict:
    with capture(model, layers) as cap:
        cap.forward(x)
        cap.backward(classes)
        return {n: cams.grad_cam(cap.activations[n].detach(), cap.gradients[n]) for n in layers}


def agreement(model, x, classes, layers, with_reference: bool) -> str:
    """The largest differences between the sweep's maps and the peers', as shipped and with
    their conventions matched: torchcam's min-max adds 1e-8 (the package 1e-7), which moves a
    map by about 1e-7 / (its raw range) (random weights: raw ranges down to the printed one);
    grad-cam min-maxes its maps once more after cv2.resize."""
    size = tuple(x.shape[-2:])
    ours = sweep(model, x, classes, layers)
    tc_low = torchcam(model, x, classes, layers)
    raw = raw_maps(model, x, classes, layers)
    relu = {n: r.clamp(min=0) for n, r in raw.items()}
    span = min(float((r.flatten(1).amax(1) - r.flatten(1).amin(1)).min()) for r in relu.values())
    tc_eps = {n: (r - r.amin(dim=(1, 2), keepdim=True))
              / (r.amax(dim=(1, 2), keepdim=True) - r.amin(dim=(1, 2), keepdim=True) + 1e-8)
              for n, r in relu.items()}
    at_size = max_diff(ours, torchcam(model, x, classes, layers, size))
    low = max_diff(sweep(model, x, classes, layers, None), tc_low)
    text = (f"max |sweep - torchcam| at 224: {at_size:.1e}, at the layers' resolution {low:.1e},"
            f" with torchcam's 1e-8 {max_diff(tc_eps, tc_low):.1e} (smallest raw range "
            f"{span:.1e})")
    if with_reference:
        twice = {n: cams.normalize(m) for n, m in ours.items()}
        gc = reference(model, x, classes, layers)
        text += (f"; max |sweep - grad-cam| {max_diff(ours, gc):.1e}, min-maxed again as "
                 f"grad-cam does {max_diff(twice, gc):.1e}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reference-repeats", type=int, default=3,
                        help="repeats that also run grad-cam's per-layer loop (0: never)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true",
                        help="also print each candidate's time by operator group")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().to(device)
    layers = sweep_layers(model)
    setups = {}
    for b in args.batch:
        x = torch.rand(b, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)
        classes = (torch.arange(b) * 7 % 1000).to(device)
        setups[b] = (x, classes)
        print(f"batch {b}: {agreement(model, x, classes, layers, args.reference_repeats > 0)}",
              flush=True)
        for fn in candidates(model, x, classes, layers, False).values():   # warm-up
            fn()

    times: dict[int, dict[str, list[float]]] = {b: {} for b in setups}
    for r in range(args.repeats):
        for b, (x, classes) in setups.items():
            runs = candidates(model, x, classes, layers, r < args.reference_repeats)
            for name, fn in runs.items():
                times[b].setdefault(name, []).append(timed(fn, device))

    print(f"resnet18, 224 x 224, {device}, {torch.get_num_threads()} thread(s), {len(layers)} "
          f"layers (20 convs + 8 blocks); {'wall' if device.type == 'cuda' else 'CPU'} time, "
          f"median of {args.repeats} interleaved repeats "
          f"(reference: {min(args.reference_repeats, args.repeats)})")
    for b, per in times.items():
        med = {k: statistics.median(v) for k, v in per.items()}
        print(f"batch {b}: " + "  ".join(f"{k} {v * 1000:.1f} ms" for k, v in med.items()))
        line = (f"  sweep / torchcam224 = {med['sweep'] / med['torchcam224']:.3f}   "
                f"sweep / torchcam = {med['sweep'] / med['torchcam']:.3f} (goal <= 0.95)   "
                f"sweep / bare-input = {med['sweep'] / med['bare-input']:.3f} (goal <= 1.05)   "
                f"capture / bare-input = {med['capture'] / med['bare-input']:.3f}")
        if "reference" in med:
            line += f"   reference / sweep = {med['reference'] / med['sweep']:.1f}"
        print(line, flush=True)
    if args.profile:
        for b, (x, classes) in setups.items():
            print_breakdowns(candidates(model, x, classes, layers, False),
                             title=f"batch {b}: where the time goes")


if __name__ == "__main__":
    main()
