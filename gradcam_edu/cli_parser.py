"""The command line's argument parser (the commands themselves are in :mod:`gradcam_edu.cli`)."""

from __future__ import annotations

import argparse
import textwrap

from . import cams
from .fetch import DEFAULT_TIMEOUT_S
from .models import IMAGENET_ARCHS

DPI_RANGE = (10, 600)
EPILOG = """\
IMAGE is an image file (PNG, JPEG, ...) or shapes:SPLIT:INDEX for image INDEX of the
generated shapes split (shapes:test:12; shapes:12 means the test split).

MODEL is a shipped model (see `models`: resnet18-shapes, plaincnn-shapes, probes such as
resnet18-shapes-cut-layer4.0-probe), random:resnet18_narrow or random:plain_cnn (untrained,
seeded: a sanity-check baseline), or torchvision:resnet18|resnet34|resnet50 with
--weights imagenet (only when the weight file is already in the local torch cache: only
the `fetch` command downloads, when asked) or --weights random. ImageNet models get ImageNet
preprocessing.

examples:
  python -m gradcam_edu explain shapes:test:12 --layer layer4.1 --target ring -o out.png
  python -m gradcam_edu explain photo.jpg --model torchvision:resnet18 --target 207 -o dog.png
  python -m gradcam_edu sweep shapes:test:3 --layers layer1 layer2 layer3 layer4 \\
      --methods gradcam hirescam layercam -o grid.png
  python -m gradcam_edu models
  python -m gradcam_edu layers --model plaincnn-shapes
  python -m gradcam_edu fetch resnet18      # once: torchvision's ImageNet weights, downloaded
"""


def build_parser(prog: str = "gradcam-edu") -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    wrap = lambda text: textwrap.fill(text, 88)  # noqa: E731
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=fmt, epilog=EPILOG,
        description=wrap("Grad-CAM figures from the command line: one layer and method "
                         "(explain), a layers x methods grid (sweep), the shipped models "
                         "(models), a model's layers (layers); fetch downloads torchvision's "
                         "ImageNet weights once, on request."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    methods = ", ".join(cams.GRADIENT_METHODS)

    def common(p: argparse.ArgumentParser, with_image: bool = True) -> None:
        if with_image:
            p.add_argument("image", metavar="IMAGE",
                           help="image file, or shapes:SPLIT:INDEX (e.g. shapes:test:12)")
        p.add_argument("--model", default="resnet18-shapes",
                       help="shipped model name, random:ARCH or torchvision:ARCH "
                            "(default: resnet18-shapes; see the `models` command)")
        p.add_argument("--weights", choices=("imagenet", "random"), default=None,
                       help="for torchvision:ARCH only (default: imagenet, local cache only)")

    def figure(p: argparse.ArgumentParser, default_out: str) -> None:
        p.add_argument("--target", default=None,
                       help="class name or index to explain (default: the top predicted class)")
        p.add_argument("-o", "--output", default=default_out,
                       help=f"output image: .png, .pdf, .svg, ... (default: {default_out})")
        p.add_argument("--alpha", type=float, default=0.5,
                       help="opacity of the map over the image, 0 to 1 (default: 0.5)")
        p.add_argument("--dpi", type=int, default=100,
                       help=f"figure resolution, {DPI_RANGE[0]} to {DPI_RANGE[1]} (default: 100)")

    p = sub.add_parser(
        "explain", formatter_class=fmt, epilog=EPILOG,
        help="one layer, one method: image, map over the image, raw map with colour bar",
        description=wrap("Write a figure: the image, the map over it and the raw map at "
                         "the layer's own grid with its colour bar; the title names the "
                         "model, layer, class, score and method."))
    common(p)
    p.add_argument("--layer", default=None,
                   help="layer name as in model.named_modules(), name#k for a reused module "
                        "(default: the last conv/block output before the head)")
    p.add_argument("--method", default="gradcam",
                   help=f"one of {', '.join(cams.METHODS)} (default: gradcam)")
    figure(p, "explain.png")

    p = sub.add_parser(
        "sweep", formatter_class=fmt, epilog=EPILOG,
        help="a layers x methods grid from one forward and one backward",
        description=wrap("Write a grid figure: one row per layer, one column per method, "
                         "all maps from ONE forward and ONE backward."))
    common(p)
    p.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                   help="layers, one row each (default: every residual block's output, or "
                        "the conv blocks of a plain CNN)")
    p.add_argument("--methods", nargs="+", default=["gradcam", "hirescam", "layercam"],
                   metavar="METHOD", help=f"methods, one column each, from {methods} "
                                          "(default: gradcam hirescam layercam)")
    figure(p, "sweep.png")

    p = sub.add_parser("models", help="list the available models and their held-out scores",
                       description="List shipped models (with their model card's held-out "
                                   "accuracy), random baselines and torchvision models.")

    p = sub.add_parser("layers", help="list a model's layers and their output shapes",
                       description="List the layers the explorer and sweep use by default "
                                   "(convs, blocks, stages), with output shapes at 224x224.")
    common(p, with_image=False)
    p.add_argument("--all", action="store_true",
                   help="every layer with a 4-D output (BN, ReLU calls name#k, pools...)")
    _add_fetch(sub, fmt)
    return parser


def _add_fetch(sub, fmt) -> None:
    """The ``fetch`` command: the only one that downloads."""
    archs = ", ".join(IMAGENET_ARCHS)
    p = sub.add_parser(
        "fetch", formatter_class=fmt,
        help=f"download torchvision's ImageNet weights ({archs}) into the torch cache",
        description=textwrap.fill(
            "Download torchvision's IMAGENET1K_V1 weights of each ARCH into the local torch "
            "hub cache (torch.hub.get_dir()/checkpoints), with torch's progress bar and "
            "sha256 check; then --model torchvision:ARCH and models.torchvision_resnet(ARCH, "
            "weights='imagenet') find them. The only command that downloads.", 88))
    p.add_argument("archs", nargs="+", metavar="ARCH", help=f"one or more of {archs}")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds the server may stay silent before the download gives up "
                        f"(default: {DEFAULT_TIMEOUT_S:g})")
