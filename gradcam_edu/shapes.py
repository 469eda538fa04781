"""Procedurally generated shapes: a small multi-label image set with pixel-exact object masks.

Every image holds 1 or 2 objects of distinct classes out of :data:`CLASS_NAMES`, drawn with a
random colour, size (about 40-90 px across), rotation and position, on a textured background
(smooth colour gradient, low-frequency blotches, thin random lines, small blobs and pixel
noise) so that "there is an edge here" alone does not tell the class.

Image ``i`` of a split depends only on ``(seed, split, i)``::

    sample = render(seed=0, split="test", index=17)
    sample.image    # uint8 (224, 224, 3)
    sample.masks    # bool (K, 224, 224), one mask per object, K = 1 or 2
    sample.classes  # [class index of each object]
    sample.label    # float32 (6,) multi-hot

Objects are drawn at 4x resolution with PIL and box-filtered down (anti-aliasing); an object's
mask is "its downsampled coverage > 0.5". Masks never overlap (rejection sampling with a margin).

For training, :class:`ShapesDataset` returns ``(image, label)`` with the image as float32
(3, 224, 224) in [0, 1]: no mean/std normalisation anywhere in this package.
:func:`load_split` renders a split once and caches it as an ``.npz`` under
``$GRADCAM_EDU_CACHE`` (default ``~/.cache/gradcam_edu``); :func:`first_images` slices the
first images of a split from any cached render that holds them. :func:`shapes_sample` gives images,
masks and classes as tensors, the way a scoreboard takes them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from .images import to_tensor

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
NUM_CLASSES = 6
IMAGE_SIZE = 224
SPLITS: tuple[str, ...] = ("train", "val", "test")
GENERATOR_VERSION = 1  # bump whenever a change alters any rendered pixel (invalidates caches)

_SUPERSAMPLE = 4  # objects are drawn at 4x and box-filtered down
_MIN_SIZE, _MAX_SIZE = 40.0, 90.0  # object diameter (px), before the shape-specific factor
_MARGIN = 4  # minimum gap (px) between two objects' coverage
_NOISE_STD = 7.0  # pixel noise (grey levels, 0-255 scale)


@dataclass(frozen=True)
class Sample:
    """One rendered image and its ground truth.

    image: uint8 (224, 224, 3) RGB. masks: bool (K, 224, 224), one per object.
    classes: class index of each of the K objects (distinct). label: float32 (6,) multi-hot.
    """

    image: np.ndarray
    masks: np.ndarray
    classes: list[int]
    label: np.ndarray

    def class_masks(self) -> np.ndarray:
        """bool (6, 224, 224): the mask of each class (all False for absent classes)."""
        out = np.zeros((NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        for c, m in zip(self.classes, self.masks, strict=True):
            out[c] |= m
        return out


# ----------------------------------------------------------------------------- randomness
def split_id(split: str) -> int:
    """Stable small integer of a split name ("train" -> 0, "val" -> 1, "test" -> 2)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return SPLITS.index(split)


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``split``: depends on these three only."""
    if index < 0 or seed < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([seed, split_id(split), index]))


# ----------------------------------------------------------------------------- shape geometry
def _polygon(n_points: int, radii: list[float], angle: float) -> np.ndarray:
    """Vertices (n, 2) of a polygon around (0, 0): vertex j at radius radii[j % len(radii)]."""
    t = angle + 2 * math.pi * np.arange(n_points) / n_points
    r = np.asarray([radii[j % len(radii)] for j in range(n_points)])
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross(half: float, arm: float, angle: float) -> np.ndarray:
    """Vertices (12, 2) of a plus sign of half-length ``half`` and half arm width ``arm``."""
    pts = np.array(
        [(arm, half), (arm, arm), (half, arm), (half, -arm), (arm, -arm), (arm, -half),
         (-arm, -half), (-arm, -arm), (-half, -arm), (-half, arm), (-arm, arm), (-arm, half)],
        dtype=float,
    )
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _coverage(cls: int, diameter: float, rng: np.random.Generator) -> np.ndarray:
    """float32 (p, p) coverage in [0, 1] of one object centred in a square patch.

    ``diameter`` is the object's size in px (at 1x); the patch is a little larger than it.
    Drawn at ``_SUPERSAMPLE`` x with PIL, then box-filtered down (anti-aliasing).
    """
    angle = float(rng.uniform(0, 2 * math.pi))
    p = int(math.ceil(diameter)) + 4
    s = _SUPERSAMPLE
    big = Image.new("L", (p * s, p * s), 0)
    draw = ImageDraw.Draw(big)
    cx = cy = p * s / 2
    r = diameter * s / 2
    name = CLASS_NAMES[cls]
    if name == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif name == "ring":
        inner = r * float(rng.uniform(0.45, 0.65))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        if name == "square":
            pts = _polygon(4, [r], angle)  # diagonal = diameter: side about 71% of it
        elif name == "triangle":
            pts = _polygon(3, [r], angle)
        elif name == "star":
            pts = _polygon(10, [r, r * float(rng.uniform(0.38, 0.5))], angle)
        else:  # cross
            pts = _cross(r * 0.95, r * float(rng.uniform(0.2, 0.3)), angle)
        draw.polygon([(cx + x, cy + y) for x, y in pts], fill=255)
    small = big.reduce(s)  # box filter: mean over each s x s block
    return np.asarray(small, dtype=np.float32) / 255.0


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool (H, W): ``mask`` grown by ``radius`` px (square structuring element, separable)."""
    out = mask.copy()
    for d in range(1, radius + 1):  # along x
        out[:, d:] |= mask[:, :-d]
        out[:, :-d] |= mask[:, d:]
    rows = out.copy()
    for d in range(1, radius + 1):  # along y
        out[d:] |= rows[:-d]
        out[:-d] |= rows[d:]
    return out


# ----------------------------------------------------------------------------- background
def _smooth_field(
    rng: np.random.Generator, grid: int, channels: int, size: int = IMAGE_SIZE
) -> np.ndarray:
    """float32 (size, size, channels) in [0, 1]: bicubic upsampling of a random grid x grid
    field."""
    coarse = (rng.uniform(0, 255, (grid, grid, channels))).astype(np.uint8)
    mode = "RGB" if channels == 3 else "L"
    img = Image.fromarray(coarse if channels == 3 else coarse[..., 0], mode)
    up = np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.float32)
    return (up if channels == 3 else up[..., None]) / 255.0


def _background(rng: np.random.Generator) -> np.ndarray:
    """float32 (224, 224, 3) in 0-255: gradient + low-frequency blotches + thin lines + blobs."""
    n = IMAGE_SIZE
    c0, c1 = rng.uniform(30, 225, 3).astype(np.float32), rng.uniform(30, 225, 3).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, n, dtype=np.float32) / np.float32(math.sqrt(0.5))
    t = np.clip(math.cos(theta) * ramp[None, :] + math.sin(theta) * ramp[:, None] + 0.5, 0, 1)
    bg = c0 + (c1 - c0) * t[..., None]
    bg += (_smooth_field(rng, int(rng.integers(3, 7)), 3) - 0.5) * float(rng.uniform(30, 80))
    # clutter, drawn at 2x and box-filtered down so it is anti-aliased like the objects
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB").resize(
        (2 * n, 2 * n), Image.NEAREST
    )
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0, x1, y1 = rng.uniform(-20, 2 * n + 20, 4)
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 5)))
    for _ in range(int(rng.integers(0, 6))):
        x, y = rng.uniform(0, 2 * n, 2)
        rx, ry = rng.uniform(3, 12, 2)
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
    return np.array(canvas.reduce(2), dtype=np.float32)


def _object_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """float (3,) RGB at least ~90 grey levels (Euclidean) away from ``under``, the mean
    background colour beneath the object."""
    best, best_d = None, -1.0
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(colour - under))
        if d >= 90:
            return colour
        if d > best_d:
            best, best_d = colour, d
    return best


# ----------------------------------------------------------------------------- one sample
def _place(
    cov: np.ndarray, occupied: np.ndarray, rng: np.random.Generator, tries: int = 50
) -> tuple[int, int] | None:
    """Top-left (y, x) where ``cov`` (p, p) fits inside the image without touching the
    ``occupied`` (224, 224) bool area grown by ``_MARGIN``; None if no try succeeds."""
    p = cov.shape[0]
    hi = IMAGE_SIZE - p
    if hi < 0:
        return None
    footprint = cov > 0
    for _ in range(tries):
        y, x = (int(v) for v in rng.integers(0, hi + 1, 2))
        if not (occupied[y : y + p, x : x + p] & footprint).any():
            return y, x
    return None


def render(seed: int, split: str, index: int) -> Sample:
    """Render image ``index`` of ``split`` ("train", "val", "test") for ``seed``.

    Returns a :class:`Sample`: uint8 (224, 224, 3) image, bool (K, 224, 224) masks, the K
    distinct classes (K = 1 or 2) and the float32 (6,) multi-hot label. Pure function of
    ``(seed, split, index)``.
    """
    rng = sample_rng(seed, split, index)
    n = IMAGE_SIZE
    k = 1 if rng.random() < 0.5 else 2
    classes = [int(c) for c in rng.choice(NUM_CLASSES, size=k, replace=False)]
    img = _background(rng)
    occupied = np.zeros((n, n), dtype=bool)  # objects' coverage grown by the margin
    masks: list[np.ndarray] = []
    for cls in classes:
        pos = None
        while pos is None:  # shrink the object until it fits (always does for K <= 2)
            diameter = float(rng.uniform(_MIN_SIZE, _MAX_SIZE))
            cov = _coverage(cls, diameter, rng)
            pos = _place(cov, occupied, rng)
        y, x = pos
        p = cov.shape[0]
        win = (slice(y, y + p), slice(x, x + p))  # the object's patch in the image
        inside = cov > 0.5
        colour = _object_colour(rng, img[win][inside].mean(axis=0))
        # a little shading across the object so it is not a flat colour
        shade = 1.0 + (_smooth_field(rng, 2, 1, p) - 0.5) * 0.3
        a = cov[..., None]
        img[win] = img[win] * (1 - a) + np.clip(colour * shade, 0, 255) * a
        mask = np.zeros((n, n), dtype=bool)
        mask[win] = inside
        masks.append(mask)
        m = _MARGIN  # grow the footprint by the margin, within a patch padded by m
        y0, x0, y1, x1 = max(y - m, 0), max(x - m, 0), min(y + p + m, n), min(x + p + m, n)
        grown = np.zeros((p + 2 * m, p + 2 * m), dtype=bool)
        grown[m : m + p, m : m + p] = cov > 0
        grown = _dilate(grown, m)
        occupied[y0:y1, x0:x1] |= grown[y0 - y + m : y1 - y + m, x0 - x + m : x1 - x + m]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(_NOISE_STD)
    image = np.clip(np.rint(img, out=img), 0, 255, out=img).astype(np.uint8)
    label = np.zeros(NUM_CLASSES, dtype=np.float32)
    label[classes] = 1.0
    return Sample(image=image, masks=np.stack(masks), classes=classes, label=label)


# ----------------------------------------------------------------------------- cached splits
def cache_dir() -> Path:
    """Folder of cached splits: ``$GRADCAM_EDU_CACHE`` or ``~/.cache/gradcam_edu``."""
    env = os.environ.get("GRADCAM_EDU_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gradcam_edu"


def _render_arrays(args: tuple[int, str, int]) -> tuple[np.ndarray, np.ndarray]:
    s = render(*args)
    return s.image, s.label


def render_many(
    seed: int, split: str, indices: range | list[int], workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 224, 224, 3) and labels float32 (N, 6) of ``indices``.

    ``workers > 1`` renders in a process pool; the result is identical for any worker count
    (each image depends only on its own index).
    """
    jobs = [(seed, split, int(i)) for i in indices]
    images = np.empty((len(jobs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty((len(jobs), NUM_CLASSES), dtype=np.float32)
    if workers and workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.imap(_render_arrays, jobs, chunksize=32)
            for j, (im, lab) in enumerate(results):
                images[j], labels[j] = im, lab
    else:
        for j, job in enumerate(jobs):
            images[j], labels[j] = _render_arrays(job)
    return images, labels


def cache_path(split: str, size: int, seed: int) -> Path:
    """The .npz file that caches ``size`` images of ``split`` for ``seed``."""
    return cache_dir() / f"shapes_v{GENERATOR_VERSION}_seed{seed}_{split}_{size}.npz"


def load_split(
    split: str, size: int, seed: int = 0, workers: int = 0, cache: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (size, 224, 224, 3) and labels float32 (size, 6) of images 0..size-1.

    Rendered once, then read from :func:`cache_path` (keyed by seed, split, size and
    :data:`GENERATOR_VERSION`). ``workers`` as in :func:`render_many`.
    """
    path = cache_path(split, size, seed)
    if cache and path.exists():
        try:
            with np.load(path) as z:
                return z["images"], z["labels"]
        except (OSError, ValueError, KeyError):
            pass  # a truncated / foreign file: render again
    images, labels = render_many(seed, split, range(size), workers=workers)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, images=images, labels=labels)
        os.replace(tmp, path)
    return images, labels


def first_images(split: str, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(size, 224, 224, 3)`` and labels ``(size, 6)`` of images 0..size-1.

    Slices a larger cached render of the split when one exists (the training run caches
    12000 train images), else renders and caches exactly ``size`` images
    (:func:`load_split`); the images are the same either way.
    """
    split_id(split)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size: expected a positive int, got {size!r}")
    pattern = f"shapes_v{GENERATOR_VERSION}_seed{seed}_{split}_*.npz"
    sizes = sorted(int(p.stem.rsplit("_", 1)[1]) for p in cache_dir().glob(pattern)
                   if p.stem.rsplit("_", 1)[1].isdigit())
    bigger = [n for n in sizes if n >= size]
    images, labels = load_split(split, bigger[0] if bigger else size, seed)
    return images[:size], labels[:size]


def shapes_sample(n: int, split: str = "test", seed: int = 0, start: int = 0,
                  ) -> tuple[torch.Tensor, list[torch.Tensor], list[list[int]]]:
    """``n`` rendered shapes images (indices ``start`` .. ``start + n - 1`` of ``split``):
    images float ``(n, 3, 224, 224)`` in [0, 1], object masks (one bool ``(K_i, 224, 224)``
    per image) and classes (``K_i`` ints per image), as a scoreboard takes them."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int (number of images), got {n!r}")
    samples = [render(seed, split, i) for i in range(start, start + n)]
    images = to_tensor(np.stack([s.image for s in samples]))
    return (images, [torch.from_numpy(s.masks) for s in samples],
            [list(s.classes) for s in samples])


# ----------------------------------------------------------------------------- torch dataset
class ShapesDataset(Dataset):
    """``(image, label)`` pairs: image float32 (3, 224, 224) in [0, 1], label float32 (6,).

    ``cache=True`` renders the whole split once (see :func:`load_split`) and keeps it in
    memory; ``cache=False`` renders each item on demand. Both give identical items.
    """

    def __init__(
        self, split: str = "train", size: int = 1000, seed: int = 0, cache: bool = True,
        workers: int = 0,
    ) -> None:
        split_id(split)
        self.split, self.size, self.seed = split, int(size), int(seed)
        self._images: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        if cache:
            self._images, self._labels = load_split(split, self.size, seed, workers=workers)

    def __len__(self) -> int:
        return self.size

    def _check(self, i: int) -> int:
        if not -self.size <= i < self.size:
            raise IndexError(f"index {i} out of range for a dataset of {self.size} images")
        return i % self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self._check(int(i))
        if self._images is not None:
            image, label = self._images[i], self._labels[i]
        else:
            s = render(self.seed, self.split, i)
            image, label = s.image, s.label
        return to_tensor(image), torch.from_numpy(np.array(label, dtype=np.float32))

    def sample(self, i: int) -> Sample:
        """The full :class:`Sample` (image, per-object masks, classes, label) of item ``i``."""
        return render(self.seed, self.split, self._check(int(i)))

    def class_masks(self, i: int) -> torch.Tensor:
        """bool (6, 224, 224): the mask of each class in item ``i`` (empty if absent)."""
        return torch.from_numpy(self.sample(i).class_masks())

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All images uint8 (N, 224, 224, 3) and labels float32 (N, 6) (renders if needed)."""
        if self._images is None:
            self._images, self._labels = render_many(self.seed, self.split, range(self.size))
        return self._images, self._labels
