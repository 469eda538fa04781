"""The live explorer: one image, one class, every layer, every method, with ipywidgets.

    from gradcam_edu.explorer import Explorer
    ex = Explorer(model, ShapesDataset("test", 50), CLASS_NAMES)
    ex                                # shows the widget (last expression of a cell)
    ex.layer_slider.value = 5         # or ex.set(layer="layer4.1", method="hirescam")

Why it is fast: per image the model runs ONCE, inside ``with capture(...)`` over every
explorer layer, and the explorer keeps the captured activations *with their autograd graph*
(tensors, not hooks: every hook is gone when the ``with`` block ends). A new class then costs
one ``torch.autograd.grad`` over all layers at once (cached per (image, class), bounded), and a
change of layer, method or opacity is a pure function of cached tensors plus a redraw of the
images it changes (PIL PNGs, no matplotlib).

Views: the input image, the map (ReLU, min-max, bilinear to the image size) over the image,
the raw signed map at the layer's own grid (nearest-neighbour, so the grid is visible) with a
colour bar of its value range, and the model's class probabilities (sigmoid for multi-label
models, softmax otherwise).

``ex.state``, ``ex.current_map`` and ``ex.counts`` (forwards / backwards run) make it
testable without a browser: set any widget's ``value`` from Python and read them back.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import html
import io
import math
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from torch import nn

from . import cams
from .capture import capturable_layers, capture

__all__ = [
    "Explorer",
    "default_layers",
    "decode_image",
    "fit_image",
    "fit_tensor",
    "imagenet_normalize",
    "load_image_file",
    "open_image_file",
]

Preprocess = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- images
def fit_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side of ``x`` (3, H, W) to ``size`` and centre-crop:
    float (3, size, size) in [0, 1]. Returned as is when already (3, size, size)."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"image: expected a (3, H, W) tensor, got shape {tuple(x.shape)}")
    x = x.expand(3, -1, -1).float()
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False,
                      antialias=True)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top:top + size, left:left + size].clamp(0.0, 1.0).contiguous()


def fit_image(image: Image.Image, size: int) -> torch.Tensor:
    """A PIL image -> RGB, short side resized to ``size``, centre-cropped:
    float (3, size, size) in [0, 1]."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    image = image.crop((left, top, left + size, top + size))
    arr = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def decode_image(data: bytes, size: int, name: str = "the file") -> torch.Tensor:
    """Image file bytes (PNG, JPEG, ...) -> float (3, size, size) in [0, 1].

    Raises ``ValueError`` with a one-line message when the bytes are not a readable image.
    """
    if not data:
        raise ValueError(f"{name} is empty (0 bytes); choose a PNG or JPEG image")
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            img.load()
            return fit_image(img, size)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        reason = str(err).split("\n")[0] or type(err).__name__
        raise ValueError(f"{name} is not a readable image ({reason}); choose a PNG or "
                         "JPEG image") from None


def open_image_file(path) -> Image.Image:
    """An image file -> RGB PIL image, fully read; ``ValueError`` (one line) when the file is
    missing, unreadable or not an image."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image file {str(p)!r} does not exist")
    try:
        with Image.open(p) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        reason = str(err).split("\n")[0] or type(err).__name__
        raise ValueError(f"image file {str(p)!r} is not a readable image ({reason}); choose "
                         "a PNG or JPEG image") from None


def load_image_file(path, size: int) -> torch.Tensor:
    """An image file -> float (3, size, size) in [0, 1] (short side resized, centre crop);
    ``ValueError`` (one line) when the file is missing, unreadable or not an image."""
    return fit_image(open_image_file(path), size)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of images in [0, 1]: (N, 3, H, W) -> (N, 3, H, W)."""
    from .models import IMAGENET_MEAN, IMAGENET_STD  # torchvision: imported when needed

    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def _as_image_tensor(item, size: int) -> torch.Tensor:
    """One item of ``images`` -> float (3, size, size) in [0, 1]. Items: a (3, H, W) tensor
    (float in [0, 1] or uint8), an (H, W, 3) array, a PIL image, or a tuple whose first element
    is one of those (a data set's ``(image, label)``)."""
    if isinstance(item, tuple | list):
        item = item[0]
    if hasattr(item, "convert"):  # PIL
        return fit_image(item, size)
    if isinstance(item, np.ndarray):
        arr = item if item.ndim == 3 else np.stack([item] * 3, axis=-1)
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if not (t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3)):
            t = t.permute(2, 0, 1)                                  # (H, W, C) -> (C, H, W)
        item = t.float().div_(255.0) if arr.dtype == np.uint8 else t.float()
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"images: expected tensors, arrays or PIL images, got "
                        f"{type(item).__name__}")
    t = item.detach().cpu()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    return fit_tensor(t, size)


class _Images:
    """The explorer's images: the given ones (read lazily) plus uploaded ones (appended)."""

    def __init__(self, images, size: int):
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] not in (1, 3):
                raise ValueError("images: expected a (N, 3, H, W) tensor, got shape "
                                 f"{tuple(images.shape)}")
        elif hasattr(images, "convert") or not hasattr(images, "__getitem__"):
            images = [images]  # one PIL image
        if len(images) == 0:
            raise ValueError("images: no images given (an empty data set or list)")
        self.source = images
        self.size = size
        self.extra: list[torch.Tensor] = []
        self.names: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.source) + len(self.extra)

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self.source)
        if not 0 <= i < len(self):
            raise IndexError(f"image: index {i} out of range (0 to {len(self) - 1})")
        return _as_image_tensor(self.source[i], self.size) if i < n else self.extra[i - n]

    def append(self, x: torch.Tensor, name: str) -> int:
        self.extra.append(x)
        self.names[len(self) - 1] = name
        return len(self) - 1


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch threads (None: unchanged), then restore the count."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------- layers
def default_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The explorer's default layers, in forward order: every ``Conv2d`` and every container
    module with a 4-D output (ResNet blocks and stages, the plain CNN's blocks), except a
    ResNet's ``downsample`` container (its conv is kept). ``x``: one input (1, 3, H, W)."""
    modules = dict(model.named_modules())
    keep = []
    for name in capturable_layers(model, x):
        base = name.split("#")[0]
        module = modules[base]
        is_container = next(module.children(), None) is not None
        if isinstance(module, nn.Conv2d) or (is_container and not base.endswith("downsample")):
            keep.append(name)
    return keep


def same_output_as(model: nn.Module, layers: list[str]) -> dict[str, str]:
    """Containers whose output IS their last child's output (a ResNet stage ``layer4`` returns
    what ``layer4.1`` returns): ``{"layer4": "layer4.1"}`` for those whose child is listed too,
    so the explorer can say that two slider positions show the same tensor."""
    modules = dict(model.named_modules())
    same = {}
    for name in layers:
        module = modules.get(name)
        if isinstance(module, nn.Sequential) and len(module) > 0:
            last = f"{name}.{len(module) - 1}"
            if last in layers:
                same[name] = last
    return same


# ----------------------------------------------------------------------------- rendering
@functools.lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """uint8 (256, 3): ``cmap`` sampled at 256 levels (as matplotlib does by default)."""
    colours = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(colours * 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def png_bytes(arr: np.ndarray, level: int = 0) -> bytes:
    """uint8 (H, W, 3) -> PNG file bytes, rows unfiltered, zlib ``level`` (0: stored).

    Why not PIL here: PIL's PNG writer picks a filter per row, about 10-20 ms for a noisy
    224 x 224 image on a busy CPU; stored rows take under 1 ms for 150 kB, which a local
    kernel hands to the browser as a binary buffer. Any PNG reader (PIL, browsers) reads it.
    """
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"arr: expected uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    h, w, _ = arr.shape
    rows = np.zeros((h, 1 + 3 * w), dtype=np.uint8)  # filter byte 0 ("none") per row
    rows[:, 1:] = arr.reshape(h, 3 * w)

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + chunk(b"IEND", b""))


def _encode(img: Image.Image, fmt: str = "png") -> bytes:
    """An RGB PIL image -> PNG (:func:`png_bytes`) or JPEG bytes."""
    if fmt == "png":
        return png_bytes(np.asarray(img))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [0, 1] -> uint8 (H, W, 3)."""
    return (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def heat_image(cam: torch.Tensor, cmap: str = "jet", size: int | None = None) -> Image.Image:
    """A [0, 1] map (H, W) coloured by ``cmap`` (256 levels, as matplotlib) as an RGB PIL
    image, bilinearly resized to (size, size) when given."""
    idx = (cam.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    img = Image.fromarray(idx, mode="L").convert("P")
    img.putpalette(_lut(cmap).tobytes())
    img = img.convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return img


def raw_panel(raw: torch.Tensor, size: int, cmap: str = "RdBu_r") -> bytes:
    """PNG of a signed raw map (h, w) at its own grid, enlarged to ``size`` x ``size`` with
    nearest neighbours, and a colour bar from -max|v| to +max|v| (0 is the middle colour)."""
    r = raw.detach().cpu().float().numpy()
    vmax = float(np.abs(r).max()) if r.size else 0.0
    scaled = 0.5 + 0.5 * r / vmax if vmax > 0 else np.full_like(r, 0.5)
    lut = _lut(cmap)
    grid = Image.fromarray(lut[np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)])
    bar_w, text_w, pad = 12, 56, 6
    canvas = Image.new("RGB", (size + pad + bar_w + text_w, size), "white")
    canvas.paste(grid.resize((size, size), Image.NEAREST), (0, 0))
    levels = np.linspace(255, 0, size).round().astype(np.uint8)
    bar = np.repeat(lut[levels][:, None, :], bar_w, axis=1)
    canvas.paste(Image.fromarray(bar), (size + pad, 0))
    draw = ImageDraw.Draw(canvas)
    x = size + pad + bar_w + 3
    font = _font()
    labels = [(0, f"{vmax:+.3g}"), (size // 2 - 6, "0"), (size - 13, f"{-vmax:+.3g}")]
    for y, text in labels:
        draw.text((x, y), text, fill="black", font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _probability_html(probs: torch.Tensor, names: Sequence[str], selected: int, kind: str,
                      top: int = 10) -> str:
    """A small table: the ``top`` classes by probability, a bar each, the selected in bold."""
    order = probs.argsort(descending=True)[:top].tolist()
    title = "sigmoid, per class" if kind == "sigmoid" else "softmax"
    rows = []
    for c in order:
        p = float(probs[c])
        weight = "bold" if c == selected else "normal"
        rows.append(
            f"<tr style='font-weight:{weight}'>"
            f"<td style='padding:1px 6px 1px 0'>{html.escape(str(names[c]))}</td>"
            f"<td style='padding:1px 0;width:104px'><div style='width:{max(1, round(p * 100))}px;"
            f"height:9px;background:#3b7dd8'></div></td>"
            f"<td style='padding:1px 0 1px 6px;text-align:right'>{p:.3f}</td></tr>")
    return (f"<div style='font-size:12px;line-height:1.3'><b>probabilities ({title})</b>"
            f"<table style='border-collapse:collapse;font-size:12px'>{''.join(rows)}</table></div>")


def _caption(text: str) -> str:
    return f"<div style='font-size:12px;line-height:1.3'>{text}</div>"


# ----------------------------------------------------------------------------- the explorer
class Explorer:
    """An interactive Grad-CAM explorer over the layers of ``model``.

    model: logits ``(N, K)`` from images ``(N, 3, S, S)``. images: a data set whose items are
    ``(image, label)`` (e.g. :class:`~gradcam_edu.shapes.ShapesDataset`), a float tensor
    ``(N, 3, H, W)`` in [0, 1], or a list of PIL images; each is resized/centre-cropped to
    ``image_size``. class_names: K names (None: "0", "1", ...). layers: layer names (capture
    names, ``"name#k"`` for a reused module), ``"all"`` for every layer with a 4-D output,
    or None for :func:`default_layers`. methods: names of
    :data:`gradcam_edu.cams.GRADIENT_METHODS` (default all), plus ``"scorecam"`` if wanted
    (one masked forward per channel, computed on demand and cached).
    probabilities: ``"sigmoid"`` (multi-label), ``"softmax"`` or ``"auto"`` (sigmoid when
    K <= 20). preprocess: applied to the [0, 1] images before the model (e.g.
    :func:`imagenet_normalize`); the views always show the [0, 1] image.
    layer / method / image / target / alpha: the initial selection (target None: follow the
    top predicted class). display_size: pixel size of the views. cache_mb: bound on the
    cached gradients (per (image, class), all layers). image_format: "png" (lossless,
    default) or "jpeg" (smaller and faster to encode, for remote kernels). threads: torch
    threads for the model's forward and backward (None: torch's setting; 1 is the fastest
    when other jobs keep the cores busy). The map arithmetic always runs on one thread.

    Widgets: ``image_slider``, ``upload``, ``class_dropdown``, ``top_class``,
    ``method_dropdown``, ``layer_slider`` (+ ``layer_label``), ``alpha_slider``; views
    ``input_image``, ``overlay_image``, ``raw_image`` (ipywidgets.Image, PNG bytes),
    ``probabilities``, captions and ``message`` (ipywidgets.HTML); all in ``widget``.
    """

    def __init__(self, model: nn.Module, images, class_names: Sequence[str] | None = None,
                 layers: Sequence[str] | str | None = None,
                 methods: Sequence[str] | None = None, image_size: int = 224,
                 probabilities: str = "auto", preprocess: Preprocess | None = None,
                 layer: str | None = None, method: str | None = None, image: int = 0,
                 target: int | str | None = None, alpha: float = 0.5,
                 display_size: int | None = None, cache_mb: float = 64.0, cmap: str = "jet",
                 score_cam_batch: int = 32, image_format: str = "png",
                 threads: int | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format: expected 'png' or 'jpeg', got {image_format!r}")
        if probabilities not in ("auto", "sigmoid", "softmax"):
            raise ValueError(f"probabilities: expected 'sigmoid', 'softmax' or 'auto', got "
                             f"{probabilities!r}")
        self.model = model
        self.image_size = int(image_size)
        self.display_size = int(display_size or max(self.image_size, 224))
        self.preprocess = preprocess
        self.cmap = cmap
        self.image_format = image_format
        self.threads = threads
        self.cache_bytes = int(cache_mb * 2**20)
        self.score_cam_batch = int(score_cam_batch)
        self.images = _Images(images, self.image_size)
        self.methods = self._check_methods(methods)
        #: model work done so far: graph forwards, backwards, Score-CAM masked batches
        self.counts = {"forward": 0, "backward": 0, "score_cam_forward": 0}
        #: milliseconds spent in the last update (from a value change to the new images)
        self.last_update_ms = 0.0

        if not 0 <= image < len(self.images):
            raise IndexError(f"image: index {image} out of range (0 to {len(self.images) - 1})")
        first = self._model_input(self.images[image])
        self.layers = self._resolve_layers(layers, first)
        self._same_as = same_output_as(model, self.layers)
        self._grad_cache: OrderedDict[tuple[int, int], dict[str, torch.Tensor]] = OrderedDict()
        self._score_cache: dict[tuple[int, str, int], torch.Tensor] = {}
        self._index = image
        self._forward(image)
        k = self._logits.shape[1]
        self.class_names = [str(c) for c in (class_names if class_names is not None
                                             else range(k))]
        if len(self.class_names) != k:
            raise ValueError(f"class_names: {len(self.class_names)} names for a model with {k} "
                             "outputs")
        self.probability_kind = (("sigmoid" if k <= 20 else "softmax")
                                 if probabilities == "auto" else probabilities)
        self._probs = self._probabilities()
        start_layer = layer if layer is not None else self.layers[-1]
        if start_layer not in self.layers:
            raise ValueError(f"layer: {start_layer!r} is not one of the explorer's layers: "
                             f"{', '.join(self.layers)}")
        start_method = method or self.methods[0]
        if start_method not in self.methods:
            raise ValueError(f"method: {start_method!r} is not one of {', '.join(self.methods)}")
        start_class = self._top_class() if target is None else self._class_index(target)
        self._build_widgets(image, start_layer, start_class, start_method, alpha,
                            follow_top=target is None)
        self._update(grads=True, maps=True, image=True)
        self._observe()

    # -- construction helpers ------------------------------------------------------------
    @staticmethod
    def _check_methods(methods: Sequence[str] | None) -> list[str]:
        valid = [*cams.GRADIENT_METHODS, "scorecam"]
        methods = list(methods) if methods is not None else list(cams.GRADIENT_METHODS)
        if not methods:
            raise ValueError(f"methods: empty list; choose from {', '.join(valid)}")
        for m in methods:
            if m not in valid:
                raise ValueError(f"methods: unknown method {m!r}; choose from "
                                 f"{', '.join(valid)}")
        return methods

    def _resolve_layers(self, layers, x: torch.Tensor) -> list[str]:
        if layers is None:
            names = default_layers(self.model, x)
        elif layers == "all":
            names = capturable_layers(self.model, x)
        else:
            names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise ValueError("layers: the model has no layer with a 4-D output to explain")
        return names

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        """(3, S, S) image in [0, 1] -> (1, 3, S, S) model input on the model's device."""
        param = next(self.model.parameters(), None)
        inp = x[None].to(param.device if param is not None else "cpu")
        return self.preprocess(inp) if self.preprocess is not None else inp

    def _class_index(self, target: int | str) -> int:
        if isinstance(target, str):
            if target not in self.class_names:
                names = self.class_names
                if len(names) > 20:  # e.g. ImageNet: the closest names, not all 1000
                    names = difflib.get_close_matches(target, names, n=8, cutoff=0.3)
                    names = [*names, f"... ({len(self.class_names)} classes)"]
                raise ValueError(f"target: unknown class {target!r}; classes: "
                                 f"{', '.join(names)}")
            return self.class_names.index(target)
        if not 0 <= int(target) < len(self.class_names):
            raise IndexError(f"target: class index {target} out of range "
                             f"(0 to {len(self.class_names) - 1})")
        return int(target)

    def _build_widgets(self, image: int, layer: str, cls: int, method: str, alpha: float,
                       follow_top: bool) -> None:
        d = self.display_size
        self.image_slider = widgets.IntSlider(
            value=image, min=0, max=len(self.images) - 1, description="image",
            continuous_update=False)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False,
                                         description="your image")
        self.class_dropdown = widgets.Dropdown(
            options=[(n, i) for i, n in enumerate(self.class_names)], value=cls,
            description="class")
        self.top_class = widgets.Checkbox(value=follow_top, description="follow top class",
                                          indent=False)
        self.method_dropdown = widgets.Dropdown(
            options=[(cams.METHOD_TITLES.get(m, m), m) for m in self.methods], value=method,
            description="method")
        self.layer_slider = widgets.IntSlider(
            value=self.layers.index(layer), min=0, max=len(self.layers) - 1,
            description="layer", continuous_update=True)
        self.layer_label = widgets.HTML()
        self.alpha_slider = widgets.FloatSlider(
            value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
            continuous_update=True)
        layout = widgets.Layout(width=f"{d}px", height=f"{d}px")
        self.input_image = widgets.Image(format=self.image_format, layout=layout)
        self.overlay_image = widgets.Image(format=self.image_format, layout=layout)
        self.raw_image = widgets.Image(format="png", layout=widgets.Layout(height=f"{d}px"))
        # fixed two-line captions keep the three images aligned
        self.input_caption = widgets.HTML(layout=widgets.Layout(width=f"{d}px", height="36px"))
        self.overlay_caption = widgets.HTML(layout=widgets.Layout(width=f"{d}px",
                                                                  height="36px"))
        self.raw_caption = widgets.HTML(layout=widgets.Layout(width=f"{d + 80}px",
                                                              height="36px"))
        self.probabilities = widgets.HTML(layout=widgets.Layout(min_width="260px"))
        self.message = widgets.HTML()
        self.widget = widgets.VBox([
            widgets.HBox([self.image_slider, self.upload]),
            widgets.HBox([self.class_dropdown, self.top_class, self.method_dropdown]),
            widgets.HBox([self.layer_slider, self.layer_label, self.alpha_slider]),
            widgets.HBox([
                widgets.VBox([self.input_caption, self.input_image]),
                widgets.VBox([self.overlay_caption, self.overlay_image]),
                widgets.VBox([self.raw_caption, self.raw_image]),
                widgets.VBox([self.probabilities]),
            ]),
            self.message,
        ])

    def _observe(self) -> None:
        self.image_slider.observe(self._on_image, "value")
        self.class_dropdown.observe(self._on_class, "value")
        self.top_class.observe(self._on_top_class, "value")
        self.method_dropdown.observe(self._on_map_change, "value")
        self.layer_slider.observe(self._on_map_change, "value")
        self.alpha_slider.observe(self._on_alpha, "value")
        self.upload.observe(self._on_upload, "value")

    # -- the public state ----------------------------------------------------------------
    @property
    def state(self) -> dict:
        """The current selection: image index, layer name, class index and name, method,
        opacity."""
        cls = self.class_dropdown.value
        return {"image": self.image_slider.value, "layer": self.layers[self.layer_slider.value],
                "class": cls, "class_name": self.class_names[cls],
                "method": self.method_dropdown.value, "alpha": self.alpha_slider.value}

    @property
    def current_map(self) -> torch.Tensor:
        """The displayed map (S, S) in [0, 1] (S = image_size)."""
        return self._map

    @property
    def current_raw_map(self) -> torch.Tensor:
        """The raw signed map (h, w) at the current layer's grid."""
        return self._raw

    @property
    def grid_sizes(self) -> dict[str, tuple[int, int]]:
        """Each layer's spatial grid (h, w) at ``image_size``."""
        return {n: tuple(a.shape[-2:]) for n, a in self._acts.items()}

    def set(self, image: int | None = None, layer: str | int | None = None,
            target: int | str | None = None, method: str | None = None,
            alpha: float | None = None) -> Explorer:
        """Change the selection from code (each change runs as if made in the widgets)."""
        if image is not None:
            self.image_slider.value = int(image)
        if layer is not None:
            if isinstance(layer, str) and layer not in self.layers:
                raise ValueError(f"layer: {layer!r} is not one of the explorer's layers: "
                                 f"{', '.join(self.layers)}")
            self.layer_slider.value = self.layers.index(layer) if isinstance(layer, str) \
                else int(layer)
        if target is not None:
            self.class_dropdown.value = self._class_index(target)
        if method is not None:
            if method not in self.methods:
                raise ValueError(f"method: {method!r} is not one of {', '.join(self.methods)}")
            self.method_dropdown.value = method
        if alpha is not None:
            self.alpha_slider.value = float(alpha)
        return self

    def add_image(self, image, name: str = "uploaded image") -> int:
        """Append an image (file bytes, PIL image or (3, H, W) tensor in [0, 1]) and show it.
        Returns its index. Raises ``ValueError`` when bytes are not a readable image."""
        if isinstance(image, bytes | bytearray | memoryview):
            x = decode_image(bytes(image), self.image_size, name=repr(name))
        else:
            x = _as_image_tensor(image, self.image_size)
        index = self.images.append(x, name)
        self.image_slider.max = len(self.images) - 1
        self.image_slider.value = index
        return index

    # -- model work ------------------------------------------------------------------------
    def _forward(self, index: int) -> None:
        """ONE forward capturing every layer; the graph is kept (in tensors), hooks are not."""
        x = self.images[index]
        inp = self._model_input(x)
        with torch_threads(self.threads), capture(self.model, self.layers) as cap:
            logits = cap.forward(inp)
            acts = dict(cap.activations)  # graph-attached tensors, kept after the hooks go
        self.counts["forward"] += 1
        self._x, self._input = x, inp.detach()
        self._rgb = _to_uint8(x)
        self._logits, self._acts = logits, acts
        self._score_cache.clear()

    def _probabilities(self) -> torch.Tensor:
        logits = self._logits.detach()[0].float().cpu()
        return logits.sigmoid() if self.probability_kind == "sigmoid" else logits.softmax(0)

    def _top_class(self) -> int:
        return int(self._logits.detach()[0].argmax())

    def _gradients(self, cls: int) -> dict[str, torch.Tensor]:
        """d logit[cls] / d activation for every layer: ONE backward, cached per (image,
        class) with a bound on the cache's bytes."""
        key = (self._index, cls)
        if key in self._grad_cache:
            self._grad_cache.move_to_end(key)
            return self._grad_cache[key]
        names = list(self._acts)
        tensors = [self._acts[n] for n in names]
        with torch_threads(self.threads):
            grads = torch.autograd.grad(self._logits[0, cls], tensors, retain_graph=True,
                                        allow_unused=True)
        self.counts["backward"] += 1
        out = {n: (g.detach() if g is not None else torch.zeros_like(a.detach()))
               for n, a, g in zip(names, tensors, grads, strict=True)}
        self._grad_cache[key] = out
        self._evict()
        return out

    def _evict(self) -> None:
        def nbytes(d):
            return sum(t.numel() * t.element_size() for t in d.values())
        total = sum(nbytes(d) for d in self._grad_cache.values())
        while len(self._grad_cache) > 1 and total > self.cache_bytes:
            _, dropped = self._grad_cache.popitem(last=False)
            total -= nbytes(dropped)

    def _score_cam(self, layer: str, cls: int) -> torch.Tensor:
        key = (self._index, layer, cls)
        if key not in self._score_cache:
            A = self._acts[layer].detach()
            t0 = time.perf_counter()
            self._score_cache[key] = cams.score_cam(self.model, self._input, A, cls,
                                                    batch_size=self.score_cam_batch)
            batches = math.ceil(A.shape[1] / self.score_cam_batch)
            self.counts["score_cam_forward"] += batches
            self.message.value = (f"Score-CAM at {html.escape(layer)}: {A.shape[1]} masked "
                                  f"images in {batches} batches, "
                                  f"{time.perf_counter() - t0:.2f} s (cached)")
        return self._score_cache[key]

    def _compute_map(self) -> None:
        s = self.state
        A = self._acts[s["layer"]].detach()
        if s["method"] == "scorecam":
            raw = self._score_cam(s["layer"], s["class"])
        else:
            G = self._gradients(s["class"])[s["layer"]]
            # small tensors: one thread is faster, and immune to busy cores (no OpenMP waits)
            with torch_threads(1):
                raw = cams.raw_map(s["method"], A, G)
        with torch_threads(1):
            self._raw = raw[0].detach().cpu()
            self._map = cams.finalize(raw.detach().float(),
                                      (self.image_size, self.image_size))[0].cpu()

    # -- drawing ---------------------------------------------------------------------------
    def _draw_overlay(self) -> None:
        """(1 - alpha) image + alpha coloured map, as :func:`gradcam_edu.viz.overlay`."""
        blend = Image.blend(self._rgb_img, self._heat_img, float(self.alpha_slider.value))
        self.overlay_image.value = _encode(blend, self.image_format)

    def _draw_maps(self, probabilities: bool = True) -> None:
        s = self.state
        h, w = self._raw.shape
        same = self._same_as.get(s["layer"])
        note = f", the output of {html.escape(same)}" if same else ""
        self.layer_label.value = f"<b>{html.escape(s['layer'])}</b> ({h}x{w}{note})"
        with torch_threads(1):
            self._heat_img = heat_image(self._map, self.cmap, self.display_size)
        self._draw_overlay()
        self.raw_image.value = raw_panel(self._raw, self.display_size)
        title = cams.METHOD_TITLES.get(s["method"], s["method"])
        score = float(self._logits.detach()[0, s["class"]])
        self.overlay_caption.value = _caption(
            f"<b>{title}</b> · {html.escape(s['layer'])} ({h}x{w}) · "
            f"{html.escape(s['class_name'])} (logit {score:.2f})")
        self.raw_caption.value = _caption(
            f"raw map at the {h}x{w} grid: min {float(self._raw.min()):.3g}, "
            f"max {float(self._raw.max()):.3g}")
        if probabilities:
            self.probabilities.value = _probability_html(self._probs, self.class_names,
                                                         s["class"], self.probability_kind)

    def _draw_image(self) -> None:
        img = Image.fromarray(self._rgb)
        d = self.display_size
        self._rgb_img = img if img.size == (d, d) else img.resize((d, d), Image.BILINEAR)
        self.input_image.value = _encode(self._rgb_img, self.image_format)
        i = self._index
        top = self._top_class()
        name = self.images.names.get(i, f"image {i}")
        self.input_caption.value = _caption(
            f"{html.escape(name)} · top class {html.escape(self.class_names[top])} "
            f"({float(self._probs[top]):.2f})")

    def _update(self, grads: bool = False, maps: bool = False, image: bool = False) -> None:
        if image:
            self._draw_image()
        if maps or grads:
            self._compute_map()
            self._draw_maps(probabilities=grads or image)

    # -- event handlers ----------------------------------------------------------------------
    def _timed(self, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as err:  # show it in the widget, then let the kernel log it
            self.message.value = (f"<span style='color:#b00'>error: "
                                  f"{html.escape(str(err))}</span>")
            raise
        finally:
            self.last_update_ms = 1000.0 * (time.perf_counter() - t0)

    def _on_image(self, change) -> None:
        def run():
            self._index = change["new"]
            self._forward(self._index)
            self._probs = self._probabilities()
            if self.top_class.value:
                self._set_class_silently(self._top_class())
            self._update(grads=True, maps=True, image=True)
        self._timed(run)

    def _set_class_silently(self, cls: int) -> None:
        self.class_dropdown.unobserve(self._on_class, "value")
        try:
            self.class_dropdown.value = cls
        finally:
            self.class_dropdown.observe(self._on_class, "value")

    def _on_class(self, change) -> None:
        top = self._top_class()
        if self.top_class.value and change["new"] != top:
            self.top_class.unobserve(self._on_top_class, "value")
            self.top_class.value = False  # a class chosen by hand: stop following the top
            self.top_class.observe(self._on_top_class, "value")
        self._timed(lambda: self._update(grads=True))

    def _on_top_class(self, change) -> None:
        if change["new"]:
            self.class_dropdown.value = self._top_class()

    def _on_map_change(self, change) -> None:
        self._timed(lambda: self._update(maps=True))

    def _on_alpha(self, change) -> None:
        self._timed(self._draw_overlay)

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        entry = files[0]
        name = str(entry.get("name", "uploaded image"))
        try:
            index = self.add_image(bytes(entry["content"]), name=name)
        except ValueError as err:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return
        finally:
            self.upload.unobserve(self._on_upload, "value")
            self.upload.value = ()  # allow the same file again
            self.upload.observe(self._on_upload, "value")
        self.message.value = (f"{html.escape(name)} loaded as image {index} "
                              f"({self.image_size}x{self.image_size}, centre crop)")

    # -- display ---------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        s = self.state
        return (f"Explorer(image={s['image']}, layer={s['layer']!r}, class={s['class_name']!r}, "
                f"method={s['method']!r}, alpha={s['alpha']}, {len(self.layers)} layers, "
                f"{len(self.images)} images)")
