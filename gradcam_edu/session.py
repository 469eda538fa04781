"""The explorer's model work and its caches, without widgets.

Per image the model runs ONCE: :func:`gradcam_edu.capture.record` over every explorer layer
keeps the activations with their autograd graph (every hook already removed). A class costs
one ``rec.backward(cls)`` for all layers at once, cached per (image, class) within a bound in
bytes. A method that needs extra forwards (``"forwards"`` in its
:attr:`gradcam_edu.cams.Method.needs`, Score-CAM) runs them on demand and its map is cached
per (image, layer, class). Everything else is a function of cached tensors.

    s = Session(model, ImageList(images, 224))  # one forward: image 0, the default layers
    raw = s.raw_map("layer4", "gradcam", 3)     # one backward (cached), then (h, w)
    s.load(5)                                   # another image: one forward

:class:`GroundTruth` holds the object masks of the images when they are known (the shapes
world) and scores a displayed map against them with :mod:`gradcam_edu.metrics`, as the
scoreboard does. :class:`Selection` and :func:`group_options` sort the explorer's keyword
options into their groups.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from . import cams, images, metrics, models
from .capture import Capture, capturable_layers, record
from .layers import default_layers
from .render import Display
from .threads import torch_threads

__all__ = ["Budget", "GroundTruth", "ImageList", "Selection", "Session", "group_options",
           "model_input"]

Preprocess = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Budget:
    """The model work's bounds: ``cache_mb`` of cached gradients (per (image, class), all
    layers), ``score_cam_batch`` images per extra forward of a method that needs them,
    ``threads`` for the model's passes (None: torch's setting; 1 is the fastest when other
    jobs keep the cores busy). The map arithmetic always runs on one thread."""

    cache_mb: float = 64.0
    score_cam_batch: int = 32
    threads: int | None = None

    def __post_init__(self):
        if self.cache_mb < 0:
            raise ValueError(f"cache_mb: expected a size >= 0, got {self.cache_mb}")
        if self.score_cam_batch < 1:
            raise ValueError(f"score_cam_batch: expected a positive int, got "
                             f"{self.score_cam_batch}")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads: expected a positive int or None, got {self.threads!r}")

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_mb * 2**20)


@dataclass(frozen=True)
class Selection:
    """What the explorer shows first; each is then changed by its widget or :meth:`set`.
    ``layer`` None: the last layer; ``method`` None: the first method; ``target`` None:
    follow the top predicted class; ``alpha``: the map's opacity over the image."""

    image: int = 0
    layer: str | None = None
    method: str | None = None
    target: int | str | None = None
    alpha: float = 0.5

    def __post_init__(self):
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha: expected an opacity between 0 and 1, got {self.alpha}")


_GROUPS = (Selection, Display, Budget)


def group_options(options: dict) -> tuple[Selection, Display, Budget]:
    """The explorer's keyword options, sorted into their groups by name (``TypeError`` with
    close matches for an unknown one)."""
    group_of = {f.name: g for g in _GROUPS for f in dataclasses.fields(g)}
    for name in options:
        if name not in group_of:
            close = difflib.get_close_matches(name, list(group_of), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise TypeError(f"Explorer: unknown option {name!r}{hint}; options: "
                            f"{', '.join(group_of)}")
    return tuple(g(**{k: v for k, v in options.items() if group_of[k] is g}) for g in _GROUPS)


class ImageList:
    """Images as the explorer shows them, float (3, size, size) in [0, 1]: the given ones
    (converted when read, :func:`gradcam_edu.images.as_image_tensor`) plus added ones."""

    def __init__(self, source, size: int):
        if isinstance(source, torch.Tensor):
            if source.ndim != 4 or source.shape[1] not in (1, 3):
                raise ValueError("images: expected a (N, 3, H, W) tensor, got shape "
                                 f"{tuple(source.shape)}")
        elif hasattr(source, "convert") or not hasattr(source, "__getitem__"):
            source = [source]  # one PIL image
        if len(source) == 0:
            raise ValueError("images: no images given (an empty data set or list)")
        self.source = source
        self.size = size
        self.extra: list[torch.Tensor] = []
        self.names: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.source) + len(self.extra)

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self.source)
        if not 0 <= i < len(self):
            raise IndexError(f"image: index {i} out of range (0 to {len(self) - 1})")
        return images.as_image_tensor(self.source[i], self.size) if i < n else self.extra[i - n]

    def name(self, i: int) -> str:
        return self.names.get(i, f"image {i}")

    def append(self, x: torch.Tensor, name: str) -> int:
        self.extra.append(x)
        self.names[len(self) - 1] = name
        return len(self) - 1

    def drop_last(self) -> None:
        """Remove the last added image (one the model refused)."""
        self.names.pop(len(self) - 1, None)
        self.extra.pop()


def model_input(model: nn.Module, x: torch.Tensor,
                preprocess: Preprocess | None = None) -> torch.Tensor:
    """(3, S, S) image in [0, 1] -> (1, 3, S, S) model input on the model's device."""
    param = next(model.parameters(), None)
    inp = x[None].to(param.device if param is not None else "cpu")
    return preprocess(inp) if preprocess is not None else inp


class _Counted(nn.Module):
    """``model`` itself, counting its forwards (a method's extra forwards run on it)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)


def _nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


class Session:
    """One model, its layers, images and class names: the current image's recording, its
    probabilities, and the caches.

    ``layers``: capture names, ``"all"`` (every layer with a 4-D output) or None
    (:func:`gradcam_edu.layers.default_layers`). ``probabilities``: ``"sigmoid"``,
    ``"softmax"`` or ``"auto"`` (:func:`gradcam_edu.models.probability_kind`). ``budget``:
    the gradient cache's bound (the current entry is always kept), the images per extra
    forward and the threads of the model's passes (:class:`Budget`). ``image``: the image
    loaded first. ``counts``: model work so far, ``"forward"`` (recorded forwards, one per
    image shown), ``"backward"`` and ``"extra_forward"`` (forward batches run by methods
    that need them).
    """

    def __init__(self, model: nn.Module, image_list: ImageList,
                 layers: Sequence[str] | str | None = None,
                 class_names: Sequence[str] | None = None, probabilities: str = "auto",
                 preprocess: Preprocess | None = None, budget: Budget | None = None,
                 image: int = 0):
        if probabilities not in ("auto", *models.PROBABILITY_KINDS):
            raise ValueError(f"probabilities: expected 'sigmoid', 'softmax' or 'auto', got "
                             f"{probabilities!r}")
        self.model, self.images, self.preprocess = model, image_list, preprocess
        self.budget = budget if budget is not None else Budget()
        self.layers = self._resolve_layers(layers, model_input(model, image_list[image],
                                                               preprocess))
        self.probability_kind = (models.probability_kind(model) if probabilities == "auto"
                                 else probabilities)
        self.counts = {"forward": 0, "backward": 0, "extra_forward": 0}
        self.note: str | None = None  # what the last on-demand computation cost
        self.rec: Capture | None = None
        self._grads: OrderedDict[tuple[int, int], dict[str, torch.Tensor]] = OrderedDict()
        self._extra: dict[tuple[str, str, int | None], tuple[torch.Tensor, str]] = {}
        self.load(image)
        k = self.logits.shape[0]
        self.class_names = [str(c) for c in (class_names if class_names is not None
                                             else range(k))]
        if len(self.class_names) != k:
            raise ValueError(f"class_names: {len(self.class_names)} names for a model with {k} "
                             "outputs")

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

    # -- images, classes -------------------------------------------------------------------
    def load(self, index: int) -> None:
        """Show image ``index``: ONE forward recording every layer (graph kept, no hooks).

        All or nothing: when the image cannot be read, or the input check refuses it, the
        error is raised and the session (image, recording, caches) stays as it was."""
        x = self.images[index]
        inp = model_input(self.model, x, self.preprocess)
        with torch_threads(self.budget.threads):
            rec = record(self.model, self.layers, inp)
        logits = rec.logits.detach()[0]                                       # (K,)
        probabilities = models.to_probabilities(logits.cpu(), self.probability_kind)
        if self.rec is not None:                       # nothing can fail from here on
            self.rec.release()
        self.counts["forward"] += 1
        self.rec, self.index, self.x, self.input = rec, index, x, inp.detach()
        self.logits, self.probabilities = logits, probabilities
        self._extra.clear()

    def activation(self, layer: str) -> torch.Tensor:
        """The current image's activation at ``layer``, (1, C, h, w), detached."""
        return self.rec.activations[layer].detach()

    def top_class(self) -> int:
        """The current image's top predicted class."""
        return int(self.logits.argmax())

    def class_index(self, target: int | str) -> int:
        """A class name or index -> its index; ``ValueError`` / ``IndexError`` naming it."""
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

    # -- gradients -----------------------------------------------------------------------------
    def gradients(self, cls: int) -> dict[str, torch.Tensor]:
        """d logit[cls] / d activation at every layer: ONE backward, cached per (image, class)
        within the budget's ``cache_mb``."""
        key = (self.index, cls)
        if key in self._grads:
            self._grads.move_to_end(key)
            return self._grads[key]
        with torch_threads(self.budget.threads):
            self.rec.backward(cls)
        self.counts["backward"] += 1
        self._grads[key] = dict(self.rec.gradients)
        self._evict()
        return self._grads[key]

    def _evict(self) -> None:
        total = self.cached_bytes()
        while len(self._grads) > 1 and total > self.budget.cache_bytes:
            _, dropped = self._grads.popitem(last=False)
            total -= _nbytes(dropped)

    def cached_bytes(self) -> int:
        """Bytes held by the gradient cache."""
        return sum(_nbytes(d) for d in self._grads.values())

    @property
    def cached_gradients(self) -> int:
        """Entries of the gradient cache (one per (image, class))."""
        return len(self._grads)

    # -- maps ----------------------------------------------------------------------------------
    def raw_map(self, layer: str, method: str, cls: int) -> torch.Tensor:
        """The raw signed map (h, w) of ``method`` for class ``cls`` at ``layer``.

        ``ValueError`` / ``TypeError`` from :func:`gradcam_edu.cams.raw_map` when the method
        cannot explain this layer (CAM away from the layer feeding the head)."""
        m = cams.check_method(method)
        self.note = None
        if "forwards" in m.needs:
            return self._on_demand(layer, method, m, cls)
        A = self.activation(layer)
        G = self.gradients(cls)[layer] if "gradient" in m.needs else None
        # small tensors: one thread is faster, and immune to busy cores (no OpenMP waits)
        with torch_threads(1):
            return cams.raw_map(method, A, G, model=self.model, x=self.input,
                                target=cls, logits=self.logits)[0].detach()

    def display_map(self, layer: str, method: str, cls: int, size: int
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
        """``(raw map (h, w), displayed map (size, size) in [0, 1], None)`` of
        :meth:`raw_map` (:func:`gradcam_edu.cams.finalize`), or ``(None, None, why)`` when
        the method cannot explain this layer (CAM away from the layer feeding the head)."""
        try:
            raw = self.raw_map(layer, method, cls)
        except (ValueError, TypeError) as err:
            if cams.METHODS[method].from_capture:
                raise  # (A, G) explain every layer: a bug
            return None, None, f"{cams.METHOD_TITLES[method]} at {layer}: {err}"
        with torch_threads(1):
            return raw.cpu(), cams.finalize(raw[None].float(), (size, size))[0].cpu(), None

    def _on_demand(self, layer: str, method: str, m: cams.Method, cls: int) -> torch.Tensor:
        """A map that needs extra forwards: computed once per (image, layer, class)."""
        key = (layer, method, cls if m.class_specific else None)
        if key not in self._extra:
            counted = _Counted(self.model)
            A = self.activation(layer)
            G = self.gradients(cls)[layer] if "gradient" in m.needs else None
            t0 = time.perf_counter()
            with torch_threads(self.budget.threads):
                raw = cams.raw_map(method, A, G, model=counted, x=self.input, target=cls,
                                   batch_size=self.budget.score_cam_batch)
            seconds = time.perf_counter() - t0
            self.counts["extra_forward"] += counted.calls
            note = (f"{m.title} at {layer}: {counted.calls} extra forward passes of up to "
                    f"{self.budget.score_cam_batch} images, {seconds:.2f} s (cached)")
            self._extra[key] = (raw[0].detach(), note)
        raw, self.note = self._extra[key]
        return raw


# ----------------------------------------------------------------------------- ground truth
def _fit_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """bool (K, H, W) -> (K, size, size), fitted like the images (short side to ``size``,
    centre crop), with nearest neighbours."""
    if tuple(masks.shape[-2:]) == (size, size):
        return masks
    images.check_plan(masks.shape[-1], masks.shape[-2], size, "masks")
    resized = TF.resize(masks.to(torch.uint8), [size], interpolation=InterpolationMode.NEAREST)
    return TF.center_crop(resized, [size, size]).bool()


class GroundTruth:
    """The objects of the given images, and the scores of a map against them.

    ``masks[i]``: bool ``(K_i, H, W)`` at image i's own size, one mask per object, aligned
    with ``classes[i]`` (``K_i`` distinct class indices), as
    :func:`gradcam_edu.shapes.shapes_sample` returns them; one entry per given image
    (``n_images``); images added later (uploads) have none. Masks are fitted like the images
    (short side to ``size``, centre crop, nearest neighbours) when first used.
    """

    def __init__(self, masks: Sequence, classes: Sequence[Sequence[int]], n_images: int,
                 size: int):
        if len(masks) != n_images or len(classes) != n_images:
            raise ValueError(f"masks, classes: expected one entry per image ({n_images}), got "
                             f"{len(masks)} masks and {len(classes)} class lists")
        self.size = size
        self._masks: list[torch.Tensor] = []
        self._classes: list[list[int]] = []
        for i, (m, c) in enumerate(zip(masks, classes, strict=True)):
            m = m if isinstance(m, torch.Tensor) else torch.from_numpy(np.asarray(m))
            c = [int(k) for k in c]
            if m.dtype != torch.bool or m.ndim != 3 or m.shape[0] != len(c):
                raise ValueError(f"masks[{i}]: expected a bool (K, H, W) tensor with K = "
                                 f"len(classes[{i}]) = {len(c)}, got {m.dtype} "
                                 f"{tuple(m.shape)}")
            if len(set(c)) != len(c):
                raise ValueError(f"classes[{i}]: expected distinct classes, got {c}")
            self._masks.append(m)
            self._classes.append(c)
        self._fitted: dict[int, torch.Tensor] = {}

    @classmethod
    def given(cls, masks: Sequence | None, classes: Sequence[Sequence[int]] | None,
              n_images: int, size: int) -> GroundTruth | None:
        """A :class:`GroundTruth` of ``masks`` and ``classes``; None when both are None."""
        if (masks is None) != (classes is None):
            raise ValueError("masks, classes: expected both (as shapes_sample returns them) "
                             "or neither")
        return None if masks is None else cls(masks, classes, n_images, size)

    def objects(self, index: int) -> tuple[list[int], torch.Tensor] | None:
        """Image ``index``'s object classes and masks, bool ``(K, size, size)``; None for an
        image without ground truth."""
        if not 0 <= index < len(self._masks):
            return None
        if index not in self._fitted:
            self._fitted[index] = _fit_masks(self._masks[index], self.size)
        return self._classes[index], self._fitted[index]

    def scores(self, cam: torch.Tensor, index: int, cls: int) -> dict | None:
        """The scores of the displayed map ``cam`` ``(size, size)`` for class ``cls`` on image
        ``index``, by the scoreboard's functions (:mod:`gradcam_edu.metrics`): ``energy``
        (:func:`~gradcam_edu.metrics.energy_pointing_game`), ``pointing`` (a hit within
        :data:`~gradcam_edu.metrics.ZHANG_TOLERANCE_PX`, :func:`~gradcam_edu.metrics.
        pointing_game`) and ``target_share`` (:func:`~gradcam_edu.metrics.target_share`
        against the other object; None on a 1-object image). None when the image has no
        ground truth or no object of class ``cls``."""
        found = self.objects(index)
        if found is None or cls not in found[0]:
            return None
        classes, masks = found
        k = classes.index(cls)
        maps, target = cam[None].float(), masks[k][None]
        with torch_threads(1):
            out = {"energy": float(metrics.energy_pointing_game(maps, target)[0]),
                   "pointing": bool(metrics.pointing_game(maps, target,
                                                          metrics.ZHANG_TOLERANCE_PX)[0]),
                   "target_share": None}
            if len(classes) == 2:
                other = masks[1 - k][None]
                out["target_share"] = float(metrics.target_share(maps, target, other)[0])
        return out
