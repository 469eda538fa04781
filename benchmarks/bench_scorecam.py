"""Score-CAM: gradcam_edu against grad-cam's and torchcam's ScoreCAM, same layer, same images.

    python benchmarks/bench_scorecam.py [--models shapes resnet18] [--layer layer4]
        [--images 4] [--resnet18-images 1] [--size 224] [--repeats 3] [--batch-size 32]
        [--sweep-batch 16 32 64 128] [--threads 1] [--device cpu|cuda]

Models: the shipped ``resnet18-shapes`` (``weights.load_model``, 128 channels at layer4) on
rendered shapes test images, and torchvision's ``resnet18`` with seeded random weights (512
channels at layer4) on seeded uniform images. One Score-CAM costs one forward per image and
channel (4 images x 512 channels = 2048 resnet18 forwards, minutes on one core): hence
``--resnet18-images`` (default 1) next to ``--images`` (default 4). Timed in one run,
interleaved, medians of ``--repeats`` of each one's CPU time (``time.process_time``; on a GPU
wall time); ``--sweep-batch`` first times the package alone at each
masked batch size (how its default was chosen).

Conventions (read from the sources: pytorch_grad_cam/score_cam.py + base_cam.py 1.5, and
torchcam/methods/activation.py 0.5):

  gradcam_edu  mask_k = (U(A_k) - min) / (max - min + 1e-7), U bilinear, align_corners=False,
               to the input size; score = the target logit of x * mask_k (before softmax, no
               baseline); w = softmax_k(score); map = sum_k w_k A_k; displayed: ReLU, min-max
               (+1e-7), bilinear (align_corners=False) to the input size.
  grad-cam     mask_k as above but U = torch.nn.UpsamplingBilinear2d (align_corners=TRUE) and
               +1e-8; same score (ClassifierOutputTarget: the raw logit), softmax, no baseline;
               map ReLU, min-max (+1e-7), cv2.resize to the input size, min-max again (the
               package's displayed map is min-maxed once more for this comparison). Every
               masked image is built at once (N, C, 3, H, W); batches of 16; a tqdm bar per
               image (silenced here: its cost is negligible, its output is not).
  torchcam     mask_k = U((A_k - min) / (max - min + 1e-8)): min-max at the layer's
               resolution, THEN upsampled (align_corners=False); w = softmax_k(score(x *
               mask_k) - score(x)): the baseline is one constant per image, which softmax
               ignores; map ReLU, min-max (+1e-8) at the layer's resolution; batches of 32.

``ours-itself`` is the package with its frozen copy turned off (``inference.model_itself``: the
masked images through the model itself, channels-last): what the copy gains. ``--profile``
prints where each candidate's time goes (torch.profiler, by operator group: :mod:`profiling`).

So the three differ in the masks only (where min-max happens, align_corners). Maps are compared
twice: as shipped (the difference this makes, printed, no tolerance), and with each peer's masks
switched to the package's convention for that check only (grad-cam's upsampler made
align_corners=False; torchcam's min-max moved after its upsampling): then all three must agree
within TOLERANCE at the layer's resolution (grad-cam's cv2 maps: at the input size).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from bench_capture import timed  # the same clock as the capture benchmark
from profiling import print_breakdowns

from gradcam_edu import cams, inference, weights
from gradcam_edu.capture import capture
from gradcam_edu.shapes import shapes_sample

TOLERANCE = 1e-4
"""Largest difference allowed between convention-matched maps in [0, 1]."""


# ------------------------------------------------------------------------------ the three
def ours(model, x, layer, classes, batch_size):
    with capture(model, [layer]) as cap:
        cap.forward(x)
    return cams.score_cam(model, x, cap.activations[layer].detach(), classes,
                          batch_size=batch_size)


def ours_itself(model, x, layer, classes, batch_size):
    with inference.model_itself():
        return ours(model, x, layer, classes, batch_size)


def grad_cam(model, x, layer, classes, batch_size=None):
    import pytorch_grad_cam.score_cam as gc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    with silent_tqdm(gc), gc.ScoreCAM(model=model, target_layers=[module]) as cam:
        if batch_size is not None:
            cam.batch_size = batch_size
        return torch.from_numpy(cam(input_tensor=x, targets=targets))


def torchcam(model, x, layer, classes, batch_size=32, extractor=None):
    from torchcam.methods import ScoreCAM

    with (extractor or ScoreCAM)(model, target_layer=layer, batch_size=batch_size) as cam:
        with torch.no_grad():
            model(x)
        return cam(class_idx=[int(c) for c in classes])[0]


@contextlib.contextmanager
def silent_tqdm(module):
    saved = module.tqdm.tqdm
    module.tqdm.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        module.tqdm.tqdm = saved


# ------------------------------------------------------------- the package's mask convention
@contextlib.contextmanager
def grad_cam_align_corners_false():
    """grad-cam's ScoreCAM upsamples with torch.nn.UpsamplingBilinear2d (align_corners=True);
    for the check, the package's upsampler instead."""
    saved = torch.nn.UpsamplingBilinear2d
    torch.nn.UpsamplingBilinear2d = lambda size: torch.nn.Upsample(
        size=size, mode="bilinear", align_corners=False)
    try:
        yield
    finally:
        torch.nn.UpsamplingBilinear2d = saved


def torchcam_upsample_then_minmax():
    """torchcam's ScoreCAM with the min-max moved after the upsampling (the package's order)."""
    from torchcam.methods import ScoreCAM

    class Matched(ScoreCAM):
        def _get_weights(self, class_idx, *_, targets=None):
            with torch.no_grad(), self._hooks_off(), self._eval_mode():
                return self._get_score_weights(self.hook_a, class_idx, targets)

        def _upsample(self, activation):
            up = super()._upsample(activation)
            flat = up.flatten(1)
            lo, hi = flat.min(1).values, flat.max(1).values
            return (up - lo[:, None, None, None]) / (hi - lo + cams.EPS)[:, None, None, None]
    return Matched


def agreement(model, x, layer, classes, batch_size) -> str:
    raw = ours(model, x, layer, classes, batch_size)
    low = cams.finalize(raw)
    full = cams.normalize(cams.finalize(raw, tuple(x.shape[-2:])))  # grad-cam: min-max again
    shipped_gc = float((grad_cam(model, x, layer, classes) - full).abs().max())
    shipped_tc = float((torchcam(model, x, layer, classes).cpu() - low.cpu()).abs().max())
    with grad_cam_align_corners_false():
        matched_gc = float((grad_cam(model, x, layer, classes) - full.cpu()).abs().max())
    tc = torchcam(model, x, layer, classes, extractor=torchcam_upsample_then_minmax())
    matched_tc = float((tc.cpu() - low.cpu()).abs().max())
    ok = max(matched_gc, matched_tc) <= TOLERANCE
    return (f"max |ours - peer|, conventions matched: grad-cam {matched_gc:.1e}, torchcam "
            f"{matched_tc:.1e} ({'within' if ok else 'OVER'} {TOLERANCE:g}); as shipped: "
            f"grad-cam {shipped_gc:.1e}, torchcam {shipped_tc:.1e}")


# ---------------------------------------------------------------------------------- timing
def setup(name: str, n: int, size: int, device):
    if name == "shapes":
        model = weights.load_model("resnet18-shapes")
        x = shapes_sample(n)[0]
        if size != 224:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    else:
        torch.manual_seed(0)
        model = torchvision.models.resnet18()
        x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    model = model.eval().to(device)
    with torch.no_grad():
        classes = model(x.to(device)).argmax(1).cpu()
    return model, x.to(device), classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["shapes", "resnet18"],
                    choices=["shapes", "resnet18"])
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--resnet18-images", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32,
                    help="the package's masked batch (cams.score_cam's default)")
    ap.add_argument("--sweep-batch", type=int, nargs="*", default=[],
                    help="first time the package alone at these masked batch sizes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", action="store_true",
                    help="also print each candidate's time by operator group")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setups = {m: setup(m, args.images if m == "shapes" else args.resnet18_images, args.size,
                       device) for m in args.models}
    for m, (model, x, classes) in setups.items():
        c = dict(model.named_modules())[args.layer]
        print(f"{m}: {tuple(x.shape)}, {args.layer} ({type(c).__name__}), classes "
              f"{classes.tolist()}: {agreement(model, x, args.layer, classes, args.batch_size)}",
              flush=True)
    if args.sweep_batch:
        for m, (model, x, classes) in setups.items():
            t = {b: [] for b in args.sweep_batch}
            for _ in range(args.repeats):
                for b in args.sweep_batch:
                    run = functools.partial(ours, model, x, args.layer, classes, b)
                    t[b].append(timed(run, device))
            print(f"{m}: ours by masked batch size: " + "  ".join(
                f"{b}: {statistics.median(v):.2f} s" for b, v in t.items()), flush=True)

    runs = {}
    for m, (model, x, classes) in setups.items():
        runs[(m, "ours")] = functools.partial(ours, model, x, args.layer, classes,
                                              args.batch_size)
        runs[(m, "ours-itself")] = functools.partial(ours_itself, model, x, args.layer,
                                                     classes, args.batch_size)
        runs[(m, "grad-cam")] = functools.partial(grad_cam, model, x, args.layer, classes)
        runs[(m, "torchcam")] = functools.partial(torchcam, model, x, args.layer, classes)
    times = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, fn in runs.items():
            times[key].append(timed(fn, device))
    print(f"{device}, {torch.get_num_threads()} thread(s), {args.size} px, {args.layer}, "
          f"{'wall' if device.type == 'cuda' else 'CPU'} time, median "
          f"of {args.repeats} interleaved repeats; ours: batches of {args.batch_size}, peers "
          "their defaults (grad-cam 16, torchcam 32)")
    for m in setups:
        med = {k: statistics.median(times[(m, k)])
               for k in ("ours", "ours-itself", "grad-cam", "torchcam")}
        faster = min(med["grad-cam"], med["torchcam"])
        print(f"  {m}: " + "  ".join(f"{k} {v:.2f} s" for k, v in med.items())
              + f"   faster peer / ours = {faster / med['ours']:.2f}x (goal >= 3)"
              + f"   grad-cam / ours = {med['grad-cam'] / med['ours']:.2f}x"
              + f"   torchcam / ours = {med['torchcam'] / med['ours']:.2f}x"
              + f"   ours-itself / ours = {med['ours-itself'] / med['ours']:.2f}x"
              + f" ({inference.inference_status(setups[m][0], device)})", flush=True)
    if args.profile:
        for m in setups:
            print_breakdowns({k: runs[(m, k)] for k in ("ours", "ours-itself", "grad-cam",
                                                        "torchcam")},
                             repeats=1, title=f"{m}: where the time goes")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
