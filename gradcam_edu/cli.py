"""Command line: Grad-CAM figures outside notebooks.

    python -m gradcam_edu explain IMAGE [--model M] [--layer L] [--target C] [--method X] -o F
    python -m gradcam_edu sweep IMAGE [--model M] [--layers L ...] [--methods X ...] -o F
    python -m gradcam_edu models
    python -m gradcam_edu layers [--model M]
    python -m gradcam_edu fetch ARCH [ARCH ...] [--timeout S]   (downloads, when asked)

Every input mistake (unreadable image, unknown model / layer / class / method) ends with a
one-line message on stderr naming the problem and the valid choices, and exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from . import cams, fetch, images, layers, models, shapes, viz, weights
from .capture import capturable_layers, capture, split_call
from .cli_parser import DPI_RANGE, build_parser

EXIT_USAGE = 2
SHAPES_PREFIX = "shapes:"
TORCHVISION_PREFIX = "torchvision:"
RANDOM_PREFIX = "random:"
TORCHVISION_ARCHS = models.IMAGENET_ARCHS
RANDOM_ARCHS = ("resnet18_narrow", "plain_cnn")



class CliError(Exception):
    """A user input problem: printed as one line on stderr, exit code 2."""


# ----------------------------------------------------------------------------- models
@dataclass
class LoadedModel:
    """A model with what the command line needs around it."""

    model: nn.Module
    label: str
    class_names: list[str]
    imagenet: bool = False

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """(3, S, S) image in [0, 1] -> (1, 3, S, S) model input."""
        return images.imagenet_normalize(x[None]) if self.imagenet else x[None]


def _model_choices() -> list[str]:
    return [*weights.available_models(), *(RANDOM_PREFIX + a for a in RANDOM_ARCHS),
            *(TORCHVISION_PREFIX + a for a in TORCHVISION_ARCHS)]


def _unknown(kind: str, name: str, choices: Sequence[str], limit: int = 60) -> CliError:
    close = difflib.get_close_matches(name, list(choices), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    shown = list(choices)[:limit]
    more = f", ... ({len(choices)} in all)" if len(choices) > limit else ""
    return CliError(f"unknown {kind} {name!r}; {hint}valid: {', '.join(shown) or '(none)'}"
                    f"{more}")


def load_cli_model(spec: str, weights_kind: str | None = None) -> LoadedModel:
    """``spec``: a shipped model name, ``random:ARCH`` or ``torchvision:ARCH``."""
    if spec.startswith(TORCHVISION_PREFIX):
        arch = spec[len(TORCHVISION_PREFIX):]
        if arch not in TORCHVISION_ARCHS:
            raise _unknown("torchvision model", arch, TORCHVISION_ARCHS)
        kind = weights_kind or "imagenet"
        try:
            model = models.torchvision_resnet(arch, weights=kind)
        except (FileNotFoundError, ValueError) as err:  # absent, or corrupt in the cache
            raise CliError(f"{err} Or use --weights random.") from None
        categories = models.imagenet_weights(arch).meta["categories"]
        return LoadedModel(model, f"{arch} ({kind})", list(categories), imagenet=True)
    if weights_kind is not None:
        raise CliError(f"--weights applies to torchvision:ARCH models only, not {spec!r}; "
                       f"valid: {', '.join(TORCHVISION_PREFIX + a for a in TORCHVISION_ARCHS)}")
    if spec.startswith(RANDOM_PREFIX):
        arch = spec[len(RANDOM_PREFIX):]
        if arch not in RANDOM_ARCHS:
            raise _unknown("model", spec, _model_choices())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = weights.ARCHITECTURES[arch](num_classes=shapes.NUM_CLASSES).eval()
        return LoadedModel(model, f"{arch} (random weights)", list(shapes.CLASS_NAMES))
    if spec not in weights.available_models():
        raise _unknown("model", spec, _model_choices())
    try:  # a card and its weight file are data: anything in them may be wrong
        card = weights.model_card(spec)
        model = weights.load_model(spec)
        names = card.get("classes") or list(shapes.CLASS_NAMES)
        if not isinstance(names, list):
            raise ValueError(f"its card's classes is a {type(names).__name__}, not a list")
    except Exception as err:  # e.g. kwargs the builder refuses, bytes that are not tensors
        raise CliError(f"model {spec!r} cannot be loaded: {err}".replace("\n", " ")) from None
    return LoadedModel(model, spec, [str(n) for n in names])


# ----------------------------------------------------------------------------- images
def load_cli_image(source: str, size: int = 224, imagenet: bool = False) -> tuple[
        torch.Tensor, str]:
    """IMAGE argument -> ((3, size, size) float in [0, 1], short description).

    ``imagenet``: the crop of :func:`gradcam_edu.images.imagenet_preprocess` (short side 256,
    centre 224), returned un-normalised for display; the model input is normalised again.
    """
    if source.startswith(SHAPES_PREFIX):
        parts = source[len(SHAPES_PREFIX):].split(":")
        split, index = ("test", parts[0]) if len(parts) == 1 else (parts[0], parts[-1])
        if len(parts) > 2 or split not in shapes.SPLITS:
            raise CliError(f"bad shapes image {source!r}; write shapes:SPLIT:INDEX with SPLIT "
                           f"one of {', '.join(shapes.SPLITS)} (e.g. shapes:test:12)")
        if not index.isdigit():
            raise CliError(f"bad shapes image {source!r}: INDEX must be a non-negative integer "
                           "(e.g. shapes:test:12)")
        pil = Image.fromarray(shapes.render(0, split, int(index)).image)
        described = f"shapes {split} #{index}"
    else:
        try:  # too large (pixels, a strip, the resize plan): refused before decoding
            pil = images.open_image_file(source, images.IMAGENET_RESIZE if imagenet else size)
        except ValueError as err:
            raise CliError(f"{err} (or use shapes:SPLIT:INDEX)") from None
        described = Path(source).name
    if imagenet:
        return images.imagenet_crop(pil), described
    return images.fit_image(pil, size), described


# ----------------------------------------------------------------------------- choices
def check_layers(model: nn.Module, names: Sequence[str], inp: torch.Tensor) -> None:
    """Unknown layer names -> CliError with close matches and the valid layers."""
    modules = dict(model.named_modules())
    for layer in names:
        try:
            base = split_call(layer)[0]
        except ValueError as err:
            raise CliError(str(err)) from None
        if not base or base not in modules:
            close = difflib.get_close_matches(layer, [n for n in modules if n], n=4, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise CliError(f"unknown layer {layer!r}; {hint}valid (main layers; any name of "
                           f"model.named_modules() works): "
                           f"{', '.join(layers.default_layers(model, inp))}")


def resolve_target(target: str | None, class_names: Sequence[str], logits: torch.Tensor) -> int:
    """Class name or index (string) -> index; None -> the top predicted class."""
    if logits.shape[-1] != len(class_names):
        raise CliError(f"the model has {logits.shape[-1]} outputs, {len(class_names)} class names")
    if target is None:
        return int(logits[0].argmax())
    if target in class_names:
        return list(class_names).index(target)
    lowered = [n.lower() for n in class_names]
    if target.lower() in lowered:
        return lowered.index(target.lower())
    if target.lstrip("-").isdigit():
        index = int(target)
        if 0 <= index < len(class_names):
            return index
        raise CliError(f"class index {index} out of range; valid: 0 to {len(class_names) - 1} "
                       f"or a class name ({', '.join(class_names[:10])}"
                       f"{', ...' if len(class_names) > 10 else ''})")
    raise _unknown("class", target, class_names, limit=20)


# ----------------------------------------------------------------------------- commands
def _save(fig, output: str, dpi: int) -> Path:
    """Write the figure; returns the path written (``.png`` added when there is no suffix)."""
    path = Path(output)
    if not path.name:
        raise CliError(f"cannot write {output!r}: give a file name (e.g. -o out.png)")
    path = path if path.suffix else path.with_name(path.name + ".png")
    kinds = fig.canvas.get_supported_filetypes()
    if path.suffix[1:].lower() not in kinds:
        raise CliError(f"cannot write {output!r}: unknown image format {path.suffix!r}; use "
                       f"one of {', '.join('.' + k for k in sorted(kinds))}")
    if not path.parent.is_dir():
        raise CliError(f"cannot write {output!r}: folder {str(path.parent)!r} does not exist")
    try:
        fig.savefig(path, dpi=dpi)
    except (OSError, ValueError) as err:
        raise CliError(f"cannot write {output!r}: {err}") from None
    return path


def _capture_maps(loaded: LoadedModel, inp: torch.Tensor, names: Sequence[str],
                  methods: Sequence[str], target: str | None):
    """One capture: (logits, class, {layer: {method: (raw (h, w), map (S, S))}})."""
    size = tuple(inp.shape[-2:])
    try:
        with capture(loaded.model, list(names)) as cap:
            logits = cap.forward(inp)
            cls = resolve_target(target, loaded.class_names, logits)
            cap.backward(cls)
            out = {}
            for layer in cap.layer_names:
                A, G = cap.activations[layer].detach(), cap.gradients[layer]
                if A.ndim != 4:  # e.g. the linear head: no grid to map
                    raise CliError(f"layer {layer!r} outputs {tuple(A.shape)}, not a feature map"
                                   " (N, C, h, w); choose a conv or block (see `layers`)")
                out[layer] = {}
                for m in methods:
                    raw = cams.raw_map(m, A, G, model=loaded.model, x=inp, target=cls,
                                       logits=logits)
                    out[layer][m] = (raw[0], cams.finalize(raw, size)[0])
    except (ValueError, TypeError) as err:  # e.g. a reused module named without "#k"
        raise CliError(str(err).replace("\n", " ")) from None
    return logits.detach(), cls, out


def _check_methods(names: Sequence[str], allowed: Sequence[str]) -> None:
    """:func:`gradcam_edu.cams.check_methods`, its message as a one-line CLI error."""
    try:
        cams.check_methods(names, list(allowed), what="method")
    except ValueError as err:
        raise CliError(str(err).removeprefix("method: ")) from None


def _prepare(args: argparse.Namespace):
    """The image, the model and its input of an explain / sweep command."""
    imagenet = args.model.startswith(TORCHVISION_PREFIX)  # known before the model loads
    image, described = load_cli_image(args.image, imagenet=imagenet)
    loaded = load_cli_model(args.model, args.weights)
    return image, described, loaded, loaded.model_input(image)


def _class_title(loaded: LoadedModel, logits: torch.Tensor, cls: int) -> str:
    """``class ring (sigmoid 0.93, logit 2.61)``: the class and the model's own probability."""
    prob = float(models.probabilities(loaded.model, logits)[0, cls])
    return (f"class {loaded.class_names[cls]} ({models.probability_kind(loaded.model)} "
            f"{prob:.2f}, "
            f"logit {float(logits[0, cls]):.2f})")


def cmd_explain(args: argparse.Namespace) -> int:
    _check_methods([args.method], list(cams.METHODS))
    image, described, loaded, inp = _prepare(args)
    layer = args.layer or layers.default_layer(loaded.model, inp)
    check_layers(loaded.model, [layer], inp)
    logits, cls, maps = _capture_maps(loaded, inp, [layer], [args.method], args.target)
    raw, cam = maps[layer][args.method]
    h, w = raw.shape
    title = cams.METHOD_TITLES[args.method]
    fig = Figure(figsize=(12.0, 4.4))
    axes = fig.subplots(1, 3)
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].set_title(f"image: {described}", fontsize=10)
    shown = axes[1].imshow(viz.overlay(image, cam, alpha=args.alpha), cmap=viz.HEAT_CMAP,
                           vmin=0, vmax=1)
    axes[1].set_title(f"{title} over the image (opacity {args.alpha:g})", fontsize=10)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.03, label="map (ReLU, min-max)")
    viz.show_raw_map(axes[2], raw, size=image.shape[-1])
    axes[2].set_title(f"raw map at the layer's {h}x{w} grid (signed)", fontsize=10)
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    fig.suptitle(f"{loaded.label} · {layer} ({h}x{w}) · {_class_title(loaded, logits, cls)} · "
                 f"{title}", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.94, top=0.89, bottom=0.03, wspace=0.3)
    written = _save(fig, args.output, args.dpi)
    prob = float(models.probabilities(loaded.model, logits)[0, cls])
    print(f"wrote {written}: {title} at {layer} ({h}x{w}) for class "
          f"{loaded.class_names[cls]!r} ({models.probability_kind(loaded.model)} {prob:.3f})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    _check_methods(args.methods, list(cams.GRADIENT_METHODS))
    image, described, loaded, inp = _prepare(args)
    names = args.layers or layers.sweep_layers(loaded.model, inp)
    check_layers(loaded.model, names, inp)
    logits, cls, maps = _capture_maps(loaded, inp, names, args.methods, args.target)
    grid = {f"{layer} ({raw.shape[0]}x{raw.shape[1]})":
            {cams.METHOD_TITLES[m]: maps[layer][m][1] for m in args.methods}
            for layer in maps for raw in [maps[layer][args.methods[0]][0]]}
    title = (f"{loaded.label} · {described} · {_class_title(loaded, logits, cls)} · "
             "one forward, one backward")
    fig = viz.plot_grid(image, grid, alpha=args.alpha, title=title)
    try:
        written = _save(fig, args.output, args.dpi)
    finally:
        plt.close(fig)
    print(f"wrote {written}: {len(maps)} layers x {len(args.methods)} methods for class "
          f"{loaded.class_names[cls]!r}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    names = weights.available_models()
    print(f"shipped models ({weights.data_dir()}):")
    if not names:
        print("  (none yet: the data folder holds no model card)")
    for name in names:
        try:  # a card is data: any of its fields may be of the wrong kind
            card = weights.model_card(name)
            held = card.get("held_out", {})
            score = (f"test exact-match {held['exact_match']:.3f}, mAP {held['mAP']:.3f} "
                     f"({held.get('n_images', '?')} images)" if "exact_match" in held
                     else "no held-out score in the card")
            arch = str(card.get("architecture", "?"))
            if "cut" in card:
                arch = f"cut after {card['cut']}, {card.get('head', '?')} head"
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as err:
            print(f"  {name:<40} (card unreadable: {err})".replace("\n", " "))
            continue
        print(f"  {name:<36} {arch:<31} {score}")
    print("untrained (seeded random weights, a sanity-check baseline):")
    for arch in RANDOM_ARCHS:
        print(f"  {RANDOM_PREFIX + arch}")
    print("torchvision (ImageNet weights from the local torch cache; `fetch ARCH` downloads):")
    for arch in TORCHVISION_ARCHS:
        path = models.imagenet_weight_path(arch)
        state = "present" if path.is_file() else f"absent ({path})"
        print(f"  {TORCHVISION_PREFIX + arch:<24} imagenet weights {state}")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    loaded = load_cli_model(args.model, args.weights)
    inp = loaded.model_input(torch.zeros(3, 224, 224))
    names = (capturable_layers(loaded.model, inp) if args.all
             else layers.default_layers(loaded.model, inp))
    with capture(loaded.model, list(names)) as cap, torch.no_grad():
        cap.forward(inp)
        shapes_of = {n: "x".join(str(s) for s in cap.activations[n].shape[1:]) for n in names}
    for name in names:
        print(f"{name:<32} {shapes_of[name]}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    for arch in args.archs:
        if arch not in TORCHVISION_ARCHS:
            raise _unknown("architecture", arch, TORCHVISION_ARCHS)
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise CliError(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    for arch in args.archs:
        present = models.imagenet_weight_path(arch).is_file()
        try:
            path = fetch.fetch_imagenet_weights(arch, timeout=args.timeout)
            models.torchvision_resnet(arch, weights="imagenet")  # the file loads
        except (fetch.FetchError, ValueError) as err:
            raise CliError(f"{arch}: {err}".replace("\n", " ")) from None
        how = "already in the cache" if present else "downloaded"
        print(f"{arch}: {how}, {path} ({path.stat().st_size / 2**20:.1f} MiB, sha256 "
              f"checked); --model {TORCHVISION_PREFIX}{arch} and "
              f"models.torchvision_resnet({arch!r}, weights='imagenet') now load it")
    return 0


# ----------------------------------------------------------------------------- parser
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m gradcam_edu`` and ``gradcam-edu``; returns the exit code."""
    launched = Path(sys.argv[0])
    prog = ("python -m gradcam_edu" if launched.name == "__main__.py"
            and launched.parent.name == "gradcam_edu" else "gradcam-edu")
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    for flag, (lo, hi) in (("alpha", (0, 1)), ("dpi", DPI_RANGE)):
        if not lo <= getattr(args, flag, lo) <= hi:  # NaN too
            print(f"{prog} {args.command}: error: --{flag} must be between {lo} and {hi}, "
                  f"got {getattr(args, flag)}", file=sys.stderr)
            return EXIT_USAGE
    commands = {"explain": cmd_explain, "sweep": cmd_sweep, "models": cmd_models,
                "layers": cmd_layers, "fetch": cmd_fetch}
    try:
        return commands[args.command](args)
    except CliError as err:
        print(f"{prog} {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
