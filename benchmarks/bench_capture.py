"""All-layer Grad-CAM sweep: one capture versus a bare pass and the reference library's loop.

    python benchmarks/bench_capture.py [--batch 1] [--repeats 7] [--threads 2]

torchvision resnet18 (random weights, seeded) at 224 x 224 on the CPU. Measured side by side,
interleaved, in one run:
  bare       model(x), then score.backward(): a forward + backward that also computes every
             parameter's gradient (what training costs)
  bare-input the like-for-like baseline: model(x), then the gradient of the score with
             respect to the input only (no parameter gradient, as the sweep)
  sweep      gradcam_edu: one capture of every conv and every block output, one backward,
             Grad-CAM maps upsampled to 224 x 224 for every layer
  reference  grad-cam's GradCAM called once per layer (what a per-layer loop costs)
Prints the median seconds of each and the ratios sweep / bare-input (like for like), sweep /
bare and reference / sweep.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn

from gradcam_edu import cams
from gradcam_edu.capture import capture


def sweep_layers(model: nn.Module) -> list[str]:
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    blocks = [n for n, m in model.named_modules()
              if isinstance(m, torchvision.models.resnet.BasicBlock)]
    return convs + blocks


def bare(model, x, classes):
    out = model(x)
    out[torch.arange(len(classes)), classes].sum().backward()
    model.zero_grad(set_to_none=True)


def bare_input(model, x, classes):
    x = x.detach().requires_grad_(True)
    out = model(x)
    torch.autograd.grad(out[torch.arange(len(classes)), classes].sum(), x)


def sweep(model, x, classes, layers):
    with capture(model, layers) as cap:
        cap.forward(x)
        cap.backward(classes)
        return {n: cams.finalize(cams.grad_cam(cap.activations[n], cap.gradients[n]),
                                 tuple(x.shape[-2:]))
                for n in layers}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the grad-cam loop (if grad-cam is not installed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    classes = torch.arange(args.batch) * 7 % 1000
    layers = sweep_layers(model)

    runs = {"bare": lambda: bare(model, x, classes),
            "bare-input": lambda: bare_input(model, x, classes),
            "sweep": lambda: sweep(model, x, classes, layers)}
    if not args.no_reference:
        runs["reference"] = lambda: reference(model, x, classes, layers)
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"resnet18, batch {args.batch}, 224 x 224, {torch.get_num_threads()} threads, "
          f"{len(layers)} layers ({sum('conv' in n or 'downsample' in n for n in layers)} "
          f"convs + {sum('conv' not in n and 'downsample' not in n for n in layers)} blocks), "
          f"median of {args.repeats}")
    for k, v in med.items():
        print(f"  {k:<10} {v * 1000:9.1f} ms")
    print(f"sweep / bare-input = {med['sweep'] / med['bare-input']:.2f}x   (like for like: both "
          "differentiate the score w.r.t. activations / input only)")
    print(f"sweep / bare       = {med['sweep'] / med['bare']:.2f}x   (bare also computes "
          "parameter gradients)")
    if "reference" in med:
        print(f"reference / sweep  = {med['reference'] / med['sweep']:.1f}x   (goal >= 15x)")


if __name__ == "__main__":
    main()
