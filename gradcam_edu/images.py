"""Images, in one place: files, conversions, fitting, ImageNet preprocessing, encoding.

    from gradcam_edu import images
    x = images.load_image_file("cat.jpg", 224)     # float (3, 224, 224) in [0, 1]
    batch = images.to_tensor(uint8_nhwc)           # (N, H, W, 3) uint8 -> (N, 3, H, W) float
    png = images.encode(images.to_uint8(x))        # PNG bytes for a widget or a file

Conventions: an *image tensor* is float ``(3, H, W)`` in [0, 1] (a batch ``(N, 3, H, W)``);
an *image array* is uint8 ``(H, W, 3)``. Files are read with PIL and every mode becomes RGB
(:func:`to_rgb`). *Fitting* to ``size`` resizes the short side to ``size`` (bilinear,
antialiased) and takes the centre ``size x size`` crop: no squashing. The ImageNet models
take :func:`imagenet_preprocess`-ed input (short side 256, centre 224, mean/std normalised);
every other model of the course takes [0, 1] images directly.

Tiny files can describe huge images: a file's pixels (:data:`MAX_PIXELS`), its aspect ratio
(:data:`MAX_ASPECT`) and its resize plan (:data:`MAX_RESIZED_PIXELS`) are checked from the
header before anything is decoded or resized (:class:`ImageTooLargeError`, naming the file).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageTooLargeError",
    "as_image_tensor",
    "check_pixels",
    "check_plan",
    "course_photo",
    "decode_image",
    "encode",
    "fit_image",
    "fit_tensor",
    "imagenet_crop",
    "imagenet_denormalize",
    "imagenet_normalize",
    "imagenet_preprocess",
    "load_image_file",
    "open_image_file",
    "to_rgb",
    "to_tensor",
    "to_uint8",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_RESIZE, IMAGENET_CROP = 256, 224

#: What PIL raises for bytes that are not (or no longer) a readable image.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, EOFError, struct.error,
                  zlib.error, ValueError)
_CHOOSE = "choose a PNG or JPEG image"
#: Bounds checked from the file's header, before anything is decoded or resized: the pixels
#: of a file (50 megapixels: ~150 MB decoded), the ratio of its long side to its short side,
#: and the pixels of the resize plan (short side to ``size``, before the centre crop).
MAX_PIXELS = 50_000_000
MAX_ASPECT = 32
MAX_RESIZED_PIXELS = 16_000_000
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WITH_ALPHA = ("RGBA", "RGBa", "LA", "La", "PA")


# ----------------------------------------------------------------------------- arrays, tensors
def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (N, H, W, 3) -> float32 (3, H, W) or (N, 3, H, W) in [0, 1]
    (contiguous, values ``arr / 255`` exactly as torchvision's ``to_tensor``)."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"arr: expected uint8 (H, W, 3) or (N, H, W, 3), got {arr.dtype} "
                         f"{arr.shape}")
    if not arr.flags.writeable:  # e.g. np.asarray(a PIL image): torch wants its own copy
        arr = arr.copy()
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.contiguous().float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (3, H, W) or (N, 3, H, W) in [0, 1] -> uint8 (H, W, 3) or (N, H, W, 3)
    (clamped, rounded): the inverse of :func:`to_tensor`."""
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"x: expected a float (3, H, W) or (N, 3, H, W) tensor, got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    u8 = (x.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return u8.movedim(-3, -1).contiguous().numpy()


# ----------------------------------------------------------------------------- PIL modes
def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image -> RGB, sensibly for every mode a file gives: grayscale (``L``, ``1``)
    repeated on the three channels; 16-bit grayscale (``I;16``, ``I``) scaled to 8 bits
    (``v / 257``, so 65535 -> 255, not clipped); palettes looked up; transparency (``RGBA``,
    ``LA``, a palette's transparent index) composited over white, as a viewer shows it;
    ``CMYK`` by PIL's conversion."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img).astype(np.float64)
        grey = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _WITH_ALPHA:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size: expected a positive int (pixels), got {size!r}")
    return int(size)


class ImageTooLargeError(ValueError):
    """An image over the bounds of :func:`check_pixels` or :func:`check_plan`."""


def check_pixels(width: int, height: int, label: str = "image") -> None:
    """Refuse, before decoding, a file of more than :data:`MAX_PIXELS` pixels (or none)."""
    if width < 1 or height < 1:
        raise ImageTooLargeError(f"{label} has no pixels ({width} x {height}); {_CHOOSE}")
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(f"{label} is {width} x {height} = {width * height:,} pixels, "
                                 f"more than the limit of {MAX_PIXELS:,}; make it smaller "
                                 "first")


def check_plan(width: int, height: int, size: int, label: str = "image") -> None:
    """Refuse, before resizing, a ``width x height`` image whose long side is over
    :data:`MAX_ASPECT` times its short side, or whose resize plan (short side to ``size``)
    has over :data:`MAX_RESIZED_PIXELS`; :class:`ImageTooLargeError` naming ``label``."""
    short, long = sorted((width, height))
    if short < 1:
        raise ImageTooLargeError(f"{label} has no pixels ({width} x {height}); {_CHOOSE}")
    if long > MAX_ASPECT * short:
        raise ImageTooLargeError(f"{label} is {width} x {height} pixels, a strip: its long "
                                 f"side is over {MAX_ASPECT} times its short side (the "
                                 "limit); crop it first")
    planned = size * size * long / short
    if planned > MAX_RESIZED_PIXELS:
        raise ImageTooLargeError(f"{label} is {width} x {height} pixels: resizing its short "
                                 f"side to {size} gives {round(planned):,} pixels, more than "
                                 f"the limit of {MAX_RESIZED_PIXELS:,}; use a smaller size")


# ----------------------------------------------------------------------------- fitting
def fit_image(image: Image.Image, size: int) -> torch.Tensor:
    """A PIL image -> float (3, size, size) in [0, 1]: RGB (:func:`to_rgb`), short side
    resized to ``size`` (bilinear, antialiased), centre crop (torchvision's ``resize`` and
    ``center_crop``). :class:`ImageTooLargeError` (a ``ValueError``) for a strip or an
    oversized resize plan (:func:`check_plan`)."""
    size = _check_size(size)
    check_plan(*image.size, size)
    image = TF.center_crop(TF.resize(to_rgb(image), [size]), [size, size])
    return to_tensor(np.asarray(image))


def fit_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """An image tensor (3, H, W) (or (1, H, W), repeated) -> float (3, size, size) in [0, 1]:
    short side resized to ``size`` (bilinear, antialiased), centre crop. Returned as is
    when already (3, size, size)."""
    size = _check_size(size)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"image: expected a (3, H, W) tensor, got shape {tuple(x.shape)}")
    x = x.expand(3, -1, -1).float()
    if tuple(x.shape[-2:]) == (size, size):
        return x
    check_plan(x.shape[-1], x.shape[-2], size)
    x = TF.resize(x, [size], antialias=True)
    return TF.center_crop(x, [size, size]).clamp(0.0, 1.0).contiguous()


def as_image_tensor(item, size: int) -> torch.Tensor:
    """One image of any usual kind -> float (3, size, size) in [0, 1] (fitted). Items: a
    (3, H, W) tensor (float in [0, 1] or uint8), an (H, W, 3) or (3, H, W) array (uint8 or
    float in [0, 1]), an (H, W) array, a PIL image, or a tuple whose first element is one of
    those (a data set's ``(image, label)``)."""
    if isinstance(item, tuple | list):
        item = item[0]
    if isinstance(item, Image.Image):
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


# ----------------------------------------------------------------------------- files
def _reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):  # its text names a BytesIO object
        return "not an image format PIL reads"
    return str(err).split("\n")[0] or type(err).__name__


def _bomb(err: BaseException, label: str) -> ImageTooLargeError:
    """PIL's decompression-bomb warning or error -> the same error as :func:`check_pixels`."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    pixels = int(found[1]) if found else None
    limit = (f"{MAX_PIXELS:,}" if pixels is None or pixels > MAX_PIXELS
             else f"{Image.MAX_IMAGE_PIXELS:,} (PIL's Image.MAX_IMAGE_PIXELS)")
    return ImageTooLargeError(f"{label} has {'too many' if pixels is None else f'{pixels:,}'} "
                              f"pixels, more than the limit of {limit} (a decompression "
                              "bomb?); make it smaller first")


def _read(source, label: str, size: int | None = None) -> Image.Image:
    """Open ``source`` (a path or a file object), check the size its header gives
    (:func:`check_pixels`, and :func:`check_plan` for ``size``), then decode it -> RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                check_pixels(*img.size, label)
                if size is not None:
                    check_plan(*img.size, size, label)
                img.load()
                return to_rgb(img)
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise _bomb(err, label) from None
    except _DECODE_ERRORS as err:
        raise ValueError(f"{label} is not a readable image ({_reason(err)}); "
                         f"{_CHOOSE}") from None


def open_image_file(path, size: int | None = None) -> Image.Image:
    """An image file -> RGB PIL image (:func:`to_rgb`), fully read. ``ValueError`` (one line,
    naming the file) when it is missing, not a file, empty, unreadable, not an image, or
    too large (:func:`check_pixels`, and :func:`check_plan` for ``size`` when given: checked
    from the header, before decoding)."""
    p = Path(path)
    label = f"image file {str(p)!r}"
    if not p.exists():
        raise ValueError(f"{label} does not exist")
    if not p.is_file():
        raise ValueError(f"{label} is not a file (a folder?); {_CHOOSE}")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise ValueError(f"{label} cannot be read ({err.strerror or _reason(err)})") from None
    if not data:
        raise ValueError(f"{label} is empty (0 bytes); {_CHOOSE}")
    return _read(io.BytesIO(data), label, None if size is None else _check_size(size))


def load_image_file(path, size: int) -> torch.Tensor:
    """An image file -> float (3, size, size) in [0, 1] (short side resized, centre crop);
    ``ValueError`` (one line) as :func:`open_image_file`."""
    size = _check_size(size)
    return fit_image(open_image_file(path, size), size)


def decode_image(data: bytes, size: int, name: str = "the file") -> torch.Tensor:
    """Image file bytes (PNG, JPEG, ...) -> float (3, size, size) in [0, 1] (fitted).

    ``ValueError`` (one line, naming ``name``) when the bytes are empty or not a readable
    image.
    """
    size = _check_size(size)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data: expected the file's bytes, got {type(data).__name__}")
    if not len(data):
        raise ValueError(f"{name} is empty (0 bytes); {_CHOOSE}")
    return fit_image(_read(io.BytesIO(bytes(data)), name, size), size)


def course_photo(name: str) -> Image.Image:
    """A photo shipped with the course (``data/photos/``; sources and licences in its
    ``SOURCES.md``), as an RGB PIL image read by :func:`open_image_file` (size bounds
    checked): ``"chelsea.png"`` (a cat, 451 x 300), ``"coffee.jpg"`` (600 x 400),
    ``"rocket.jpg"`` (640 x 427); the suffix may be left out. ``ValueError`` naming the
    photos for any other name."""
    folder = Path(__file__).resolve().parent.parent / "data" / "photos"
    shipped = sorted(p.name for p in folder.glob("*") if p.suffix in (".png", ".jpg"))
    found = [n for n in shipped if name in (n, Path(n).stem)] if isinstance(name, str) else []
    if not found:
        raise ValueError(f"name: no course photo {name!r}; the photos: {', '.join(shipped)}")
    return open_image_file(folder / found[0])


# ----------------------------------------------------------------------------- ImageNet
def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"x: expected images (3, H, W) or (N, 3, H, W), got shape "
                         f"{tuple(x.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return mean, std


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of images in [0, 1]: (N, 3, H, W) or (3, H, W)."""
    mean, std = _stats(x)
    return (x - mean) / std


def imagenet_denormalize(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`imagenet_normalize` (``x * std + mean``), not clamped."""
    mean, std = _stats(x)
    return x * std + mean


def imagenet_crop(image: Image.Image) -> torch.Tensor:
    """PIL image -> float32 (3, 224, 224) in [0, 1]: RGB, short side resized to 256, centre
    crop 224, *not* normalised (what to display next to an ImageNet model's map)."""
    check_plan(*image.size, IMAGENET_RESIZE)
    image = TF.center_crop(TF.resize(to_rgb(image), [IMAGENET_RESIZE]),
                           [IMAGENET_CROP, IMAGENET_CROP])
    return to_tensor(np.asarray(image))


def imagenet_preprocess(image: Image.Image) -> torch.Tensor:
    """PIL image -> float32 (3, 224, 224): :func:`imagenet_crop` then
    :func:`imagenet_normalize` (for the ImageNet weights only)."""
    return imagenet_normalize(imagenet_crop(image))


# ----------------------------------------------------------------------------- encoding
#: Measured on a 224 x 224 shapes image and its map overlay (Pillow 13, one core): PNG at
#: zlib level 0 / 1 / 6 takes 3.6 / 6.5-9 / 11-15 ms (147 / 96-109 / 84-101 kB; PIL filters
#: every row); JPEG quality 92 takes 0.3 ms (16 kB, 37 dB PSNR with 4:4:4 chroma). Level 1
#: also keeps the raw panel (flat colours, text) at 1.4-3.4 ms and 4-49 kB.
PNG_COMPRESS_LEVEL = 1
JPEG_QUALITY = 92


def encode(img: Image.Image | np.ndarray, fmt: str = "png") -> bytes:
    """An RGB PIL image or a uint8 (H, W, 3) array -> ``"png"`` (lossless, zlib level
    :data:`PNG_COMPRESS_LEVEL`) or ``"jpeg"`` (quality :data:`JPEG_QUALITY`, full-resolution
    colour: no chroma subsampling) file bytes, with PIL's encoders."""
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"img: expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
        img = Image.fromarray(img)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "jpeg":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        raise ValueError(f"fmt: expected 'png' or 'jpeg', got {fmt!r}")
    return buf.getvalue()
