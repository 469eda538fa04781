"""The CAM family as small functions of a layer's activations A and gradients G.

Every ``*_cam`` function takes ``A`` and ``G`` of shape ``(N, C, h, w)`` (G = d score / d A,
the class score taken before softmax) and returns the *raw, signed* map ``(N, h, w)`` at the
layer's resolution. :func:`finalize` turns a raw map into what is displayed: ReLU, per-image
min-max scaling to [0, 1] (an all-zero map stays zero, never NaN), bilinear upsampling to the
input size (``align_corners=False``).

Most methods differ only in how they weight the channels ``A_k``:

=============  ==========================================================================
Grad-CAM       w_k = mean over positions of G_k                         (Selvaraju 2017)
HiResCAM       no channel weight: sum_k G_k * A_k elementwise           (Draelos 2020)
Grad-CAM++     w_k = sum_ij a_ij ReLU(G_ij), a = G^2/(2G^2 + sum A G^3) (Chattopadhay 2018)
XGrad-CAM      w_k = sum_ij (A_ij / sum_ab A_ab) G_ij                   (Fu 2020)
LayerCAM       sum_k ReLU(G_k) * A_k elementwise                        (Jiang 2021)
Eigen-CAM      first principal component of A; no gradient, no class   (Muhammad 2020)
CAM            sum_k W_ck A_k with W the weights of a GAP + linear head (Zhou 2016)
Score-CAM      w_k = softmax_k of the score when the input is masked by A_k (Wang 2020)
=============  ==========================================================================
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .capture import capture
from .inference import inference_forward, masked_images
from .inputs import check_images, model_mode
from .targets import Target, class_indices, select_target, target_scores

EPS = 1e-7


def _weighted_sum(weights: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """sum_k w_k A_k for weights (N, C) -> (N, h, w)."""
    return torch.einsum("nc,nchw->nhw", weights, A)


def _check_A(A: torch.Tensor, name: str = "A") -> None:
    if not isinstance(A, torch.Tensor) or A.ndim != 4:
        what = "gradients" if name == "G" else "activations"
        shape = tuple(A.shape) if isinstance(A, torch.Tensor) else type(A).__name__
        raise ValueError(f"{name}: expected a layer's {what} of shape (N, C, h, w), got "
                         f"{shape} (a 4-D layer output: a conv or a block, not the head)")


def _check_AG(A: torch.Tensor, G: torch.Tensor | None) -> None:
    """``A`` (N, C, h, w) and, when given, ``G = d score / d A`` of exactly its shape."""
    _check_A(A)
    if G is not None:
        _check_A(G, "G")
        if G.shape != A.shape:
            raise ValueError(f"G: shape {tuple(G.shape)} differs from A's {tuple(A.shape)}; "
                             "G is d score / d A (batch, channels and grid must match)")


def _ag_method(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Every (A, G) method checks its arguments in this one place (:func:`_check_AG`)."""
    @functools.wraps(fn)
    def checked(A: torch.Tensor, G: torch.Tensor | None = None) -> torch.Tensor:
        _check_AG(A, G)
        return fn(A, G)
    return checked


@_ag_method
def grad_cam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: channel weights are the spatially averaged gradients."""
    return _weighted_sum(G.mean(dim=(2, 3)), A)


@_ag_method
def hires_cam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """HiResCAM: gradient times activation at every position, summed over channels."""
    return (G * A).sum(dim=1)


@_ag_method
def grad_cam_pp(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (closed form for an exponential score, as in the paper and grad-cam).
    Computed in float64: the denominator 2 G^2 + sum(A) G^3 comes close to zero at some
    positions, where float32 rounding alone moves the map by ~1e-4.
    """
    A64, G64 = A.double(), G.double()
    g2 = G64.pow(2)
    g3 = g2 * G64
    sum_A = A64.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_A * g3 + 1e-6)
    alpha = torch.where(G64 != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * G64.clamp(min=0)).sum(dim=(2, 3))
    return _weighted_sum(weights, A64).to(A.dtype)


@_ag_method
def xgrad_cam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM: gradients weighted by each position's share of the channel's activation."""
    sum_A = A.sum(dim=(2, 3), keepdim=True)
    weights = (G * A / (sum_A + EPS)).sum(dim=(2, 3))
    return _weighted_sum(weights, A)


@_ag_method
def layer_cam(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """LayerCAM: positive gradients times activations, elementwise."""
    return (G.clamp(min=0) * A).sum(dim=1)


@_ag_method
def eigen_cam(A: torch.Tensor, G: torch.Tensor | None = None) -> torch.Tensor:
    """Eigen-CAM: projection of each position's activation vector on the first principal
    component (activations centred over positions). Class-agnostic: ``G`` is ignored.

    The sign of a principal component is arbitrary; it is chosen so that the projection's
    largest magnitude is positive (the sign correction of Seg-Eigen-CAM, also in grad-cam).
    """
    n, c, h, w = A.shape
    X = A.reshape(n, c, h * w).transpose(1, 2).double()       # (N, positions, C)
    X = X - X.mean(dim=1, keepdim=True)
    _, _, Vh = torch.linalg.svd(X, full_matrices=False)
    proj = (X @ Vh[:, 0, :, None]).squeeze(-1)                  # (N, positions)
    flip = proj.min(dim=1).values.abs() > proj.max(dim=1).values.abs()
    proj = torch.where(flip[:, None], -proj, proj)
    return proj.reshape(n, h, w).to(A.dtype)


def class_activation_map(A: torch.Tensor, fc_weight: torch.Tensor,
                         classes: torch.Tensor | list[int] | int) -> torch.Tensor:
    """CAM (Zhou et al. 2016) for a GAP + linear head: sum_k W[c, k] A_k.

    ``fc_weight``: the head's weight ``(num_classes, C)``; ``classes``: one per image or an int.
    """
    _check_A(A)
    classes = class_indices(classes, A.shape[0])
    if classes is None:
        raise TypeError("classes: CAM needs class indices, not a callable target")
    if fc_weight.shape[1] != A.shape[1]:
        raise ValueError(f"fc_weight: has {fc_weight.shape[1]} inputs but the activations have "
                         f"{A.shape[1]} channels; CAM needs the layer that feeds the GAP + "
                         "linear head")
    return _weighted_sum(fc_weight[classes.to(fc_weight.device)].to(A.dtype), A)


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class MapContext:
    """What a method beyond (A, G) may need: the model, its input ``x`` ``(N, C, H, W)`` (as
    the model takes it), the target (see :mod:`gradcam_edu.targets`), Score-CAM's
    ``batch_size`` and ``max_channels``, and the model's ``logits`` on ``x`` (CAM checks with
    them that the layer is the one feeding the GAP + linear head)."""

    model: nn.Module | None = None
    x: torch.Tensor | None = None
    target: Target | None = None
    batch_size: int = 32
    max_channels: int | None = None
    logits: torch.Tensor | None = None


@dataclass(frozen=True)
class Method:
    """One CAM method: its ``title``, its function and what it needs.

    ``needs``: ``"gradient"`` (G from a backward), ``"forwards"`` (extra forwards of masked
    inputs), ``"head"`` (a GAP + linear head ``fc`` fed by the layer). A method that needs
    only the gradient (or nothing) is ``fn(A, G)``; one that needs more is
    ``fn(A, G, context)`` with a :class:`MapContext`. ``class_specific``: False for a map that
    does not depend on the class (Eigen-CAM).
    """

    title: str
    fn: Callable[..., torch.Tensor]
    needs: tuple[str, ...] = ("gradient",)
    class_specific: bool = True

    @property
    def from_capture(self) -> bool:
        """True when one capture's (A, G) is all the method needs."""
        return set(self.needs) <= {"gradient"}

    def __call__(self, A: torch.Tensor, G: torch.Tensor | None,
                 context: MapContext | None = None) -> torch.Tensor:
        if self.from_capture:
            _check_AG(A, G)
            return self.fn(A, G)
        if context is None or context.model is None:
            raise ValueError(f"model: {self.title} needs the model ({', '.join(self.needs)}); "
                             "pass model=, x= and target=")
        return self.fn(A, G, context)


def _score_cam(A: torch.Tensor, G: torch.Tensor | None, ctx: MapContext) -> torch.Tensor:
    return score_cam(ctx.model, ctx.x, A, ctx.target, batch_size=ctx.batch_size,
                     max_channels=ctx.max_channels)


def linear_head(model: nn.Module) -> nn.Linear:
    """The model's linear head ``fc`` (after global average pooling), for CAM."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise TypeError(f"model: CAM needs a GAP + linear head named fc, "
                        f"{type(model).__name__} has {type(fc).__name__}")
    return fc


def _cam(A: torch.Tensor, G: torch.Tensor | None, ctx: MapContext) -> torch.Tensor:
    fc = linear_head(ctx.model)
    if ctx.logits is not None and fc.in_features == A.shape[1]:
        with torch.no_grad():
            pooled = fc(A.detach().mean(dim=(2, 3)).to(fc.weight.dtype))
        logits = ctx.logits.detach().to(pooled)
        if not torch.allclose(pooled, logits, rtol=1e-3, atol=1e-4 * float(logits.abs().max())):
            raise ValueError("layer: CAM needs the layer whose global average pool feeds fc "
                             "(fc(mean of A) must give the logits; here it does not): for a "
                             "ResNet its last block or stage, e.g. 'layer4'")
    return class_activation_map(A, fc.weight.detach(), ctx.target)


METHODS: dict[str, Method] = {
    "gradcam": Method("Grad-CAM", grad_cam),
    "hirescam": Method("HiResCAM", hires_cam),
    "gradcam++": Method("Grad-CAM++", grad_cam_pp),
    "xgradcam": Method("XGrad-CAM", xgrad_cam),
    "layercam": Method("LayerCAM", layer_cam),
    "eigencam": Method("Eigen-CAM", eigen_cam, needs=(), class_specific=False),
    "scorecam": Method("Score-CAM", _score_cam, needs=("forwards",)),
    "cam": Method("CAM", _cam, needs=("head",)),
}
"""Every map method by the name the course, the explorer and the CLI use. A new method is one
function and one line here (see
``tests/test_cams.py::test_a_new_method_is_one_function_and_one_registry_line``)."""


class _View(Mapping):
    """A read-only live view of :data:`METHODS` (a method added there appears here too)."""

    def __init__(self, keep: Callable[[Method], bool], value: Callable[[Method], object]):
        self._keep, self._value = keep, value

    def _names(self) -> list[str]:
        return [n for n, m in METHODS.items() if self._keep(m)]

    def __getitem__(self, name: str):
        if name not in self._names():
            raise KeyError(name)
        return self._value(METHODS[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


GRADIENT_METHODS: Mapping[str, Callable] = _View(lambda m: m.from_capture, lambda m: m.fn)
"""The methods computed from one capture's (A, G) alone: name -> ``fn(A, G)``."""
METHOD_TITLES: Mapping[str, str] = _View(lambda m: True, lambda m: m.title)
"""Every method's display title: name -> title."""


def check_method(name: str, allowed: Sequence[str] | None = None, what: str = "method") -> Method:
    """The registered method ``name``; ``ValueError`` naming ``what`` and the valid choices
    (``allowed``, default every registered method) otherwise."""
    choices = list(allowed) if allowed is not None else list(METHODS)
    if isinstance(name, str) and name in METHODS and name not in choices:
        raise ValueError(f"{what}: {name!r} ({METHODS[name].title}, needs "
                         f"{', '.join(METHODS[name].needs) or 'nothing'}) is not available "
                         f"here; choose one of {', '.join(choices)}")
    if not isinstance(name, str) or name not in choices:
        close = difflib.get_close_matches(str(name), choices, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"{what}: unknown method {name!r}; {hint}choose one of "
                         f"{', '.join(choices)}")
    return METHODS[name]


def check_methods(names: Sequence[str] | str, allowed: Sequence[str] | None = None,
                  what: str = "methods") -> list[str]:
    """``names`` as a non-empty list of registered methods (see :func:`check_method`)."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"{what}: empty list; choose from "
                         f"{', '.join(allowed if allowed is not None else METHODS)}")
    for n in names:
        check_method(n, allowed, what)
    return names


def raw_map(method: str, A: torch.Tensor, G: torch.Tensor | None = None,
            model: nn.Module | None = None, x: torch.Tensor | None = None,
            target: Target | None = None, batch_size: int = 32,
            max_channels: int | None = None, logits: torch.Tensor | None = None,
            ) -> torch.Tensor:
    """The raw signed map ``(N, h, w)`` of any method of :data:`METHODS`.

    (A, G) methods need only ``A`` and ``G``; Score-CAM also ``model``, ``x`` and ``target``
    (``batch_size`` masked images per forward, the ``max_channels`` most active channels),
    CAM ``model`` (its ``fc``) and ``target``, and with ``logits`` it checks that the layer
    feeds the head.
    """
    m = check_method(method)
    if "gradient" in m.needs and G is None:
        raise ValueError(f"G: {m.title} needs the gradients of the layer (cap.backward first)")
    return m(A, G, MapContext(model, x, target, batch_size, max_channels, logits))


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1] with an epsilon: ``(N, h, w)`` -> ``(N, h, w)``.

    An all-zero map stays all zero (no division by zero, no NaN).
    """
    lo, hi = torch.aminmax(maps.reshape(maps.shape[0], -1), dim=1)
    lo, hi = lo[:, None, None], hi[:, None, None]
    # = (maps - lo) / (max(maps - lo) + EPS) in two passes: rounding keeps max(maps - lo) = hi - lo
    return (maps - lo).div_(hi - lo + EPS)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, h, w)`` maps to ``size`` (H, W), ``align_corners=False``."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear",
                         align_corners=False)[:, 0]


def _is_positive_int(v) -> bool:
    return hasattr(v, "__index__") and not isinstance(v, bool) and v > 0


def _check_size(size) -> None:
    """``size`` of :func:`finalize`: an int or ``(H, W)``, positive."""
    pair = (hasattr(size, "__len__") and not isinstance(size, str) and len(size) == 2
            and all(map(_is_positive_int, size)))
    if not (pair or _is_positive_int(size)):
        raise ValueError(f"size: expected (H, W), two positive ints, got {size!r}")


def finalize(raw: torch.Tensor, size: tuple[int, int] | None = None,
             relu: bool = True) -> torch.Tensor:
    """Raw signed map -> displayed map: ReLU, per-image min-max, bilinear upsampling.

    ``raw``: ``(N, h, w)`` (one map: ``raw[None]``); ``size``: ``(H, W)`` or None."""
    if not isinstance(raw, torch.Tensor) or raw.ndim != 3:
        if not isinstance(raw, torch.Tensor):
            raise TypeError(f"raw: expected a tensor of maps (N, h, w), got "
                            f"{type(raw).__name__}")
        hint = " (one map: add the batch axis, raw[None])" if raw.ndim == 2 else ""
        raise ValueError(f"raw: expected maps of shape (N, h, w), got {tuple(raw.shape)}{hint}")
    if size is not None:
        _check_size(size)
    maps = raw.clamp(min=0) if relu else raw
    maps = normalize(maps)
    return upsample(maps, size) if size is not None else maps


def _masked_scores(model: nn.Module, x: torch.Tensor, picked: torch.Tensor, target: Target,
                   batch_size: int) -> torch.Tensor:
    """The target score of image i masked by each of its channels ``picked[i]`` ``(N, k, h, w)``
    -> ``(N, k)``. Masks are made per batch (upsampled, min-max scaled), never all at once;
    batches mix images; an all-zero channel's mask is 0, so all of an image's all-zero
    channels share one forward of ``x * 0``; the batches run through
    :func:`gradcam_edu.inference.inference_forward` (a frozen copy of the model on the CPU)."""
    n, k = picked.shape[:2]
    dead = picked.flatten(2).abs().amax(-1) == 0
    img, pos = (~dead).nonzero(as_tuple=True)
    zero_img = dead.any(dim=1).nonzero()[:, 0]
    img, pos = torch.cat([img, zero_img]), torch.cat([pos, torch.full_like(zero_img, -1)])
    scores = []
    with torch.inference_mode():
        for start in range(0, len(img), batch_size):
            i, p = img[start:start + batch_size], pos[start:start + batch_size]
            masks = F.interpolate(picked[i, p.clamp(min=0), None], size=x.shape[-2:],
                                  mode="bilinear", align_corners=False)
            lo, hi = torch.aminmax(masks.flatten(1), dim=1)
            masks = (masks - lo[:, None, None, None]) / (hi - lo + EPS)[:, None, None, None]
            masks[p < 0] = 0
            logits = inference_forward(model, masked_images(x, i, masks))
            scores.append(target_scores(logits, select_target(target, n, index=i)))
    scores = torch.cat(scores).clone()                # a normal tensor, not an inference one
    out = scores.new_zeros(n, k)
    live = len(img) - len(zero_img)
    out[img[:live], pos[:live]] = scores[:live]
    per_image_zero = scores.new_zeros(n)
    per_image_zero[zero_img] = scores[live:]
    return torch.where(dead, per_image_zero[:, None], out)


@torch.no_grad()
def score_cam_scores(model: nn.Module, x: torch.Tensor, A: torch.Tensor, target: Target,
                     batch_size: int = 32, max_channels: int | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM before its softmax: ``(scores (N, k), channels (N, k, h, w))``, the target's
    logit for image i masked by each of its k channels ``A_k`` (upsampled bilinearly to the
    input size, min-max scaled to [0, 1] with ``+ 1e-7``), and those channels.
    ``max_channels``: keep the channels with the largest mean activation (None: all).
    ``batch_size``: masked images per forward (``benchmarks/bench_scorecam.py``)."""
    check_images(model, x)
    _check_A(A)
    n, c, h, w = A.shape
    if A.shape[0] != x.shape[0]:
        raise ValueError(f"A: activations for {A.shape[0]} images, but x has {x.shape[0]}")
    if A.device != x.device:
        raise ValueError(f"A: on {A.device}, but x is on {x.device}; put both on the model's "
                         "device")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    A = A.detach()
    channels = torch.arange(c, device=A.device).expand(n, c)
    if max_channels is not None and max_channels < c:
        channels = A.mean(dim=(2, 3)).topk(max_channels, dim=1).indices
    k = channels.shape[1]
    selected = A.gather(1, channels[..., None, None].expand(n, k, h, w))
    with model_mode(model):
        return _masked_scores(model, x, selected, target, batch_size), selected


def score_cam(model: nn.Module, x: torch.Tensor, A: torch.Tensor, target: Target,
              batch_size: int = 32, max_channels: int | None = None) -> torch.Tensor:
    """Score-CAM raw map ``(N, h, w)``: :func:`score_cam_scores`' channels weighted by the
    softmax of their scores (a baseline score subtracted from all would not change it)."""
    scores, selected = score_cam_scores(model, x, A, target, batch_size, max_channels)
    return _weighted_sum(scores.softmax(dim=1).to(A.dtype), selected)


def explain(model: nn.Module, x: torch.Tensor, layers, target: Target,
            methods=("gradcam",), upsample_to_input: bool = True,
            ) -> dict[str, dict[str, torch.Tensor]]:
    """Maps for many layers and methods from ONE forward and ONE backward.

    Returns ``maps[layer][method]`` of shape ``(N, H, W)`` (input size) in [0, 1], or at the
    layer's resolution when ``upsample_to_input`` is False. Methods: names of
    :data:`METHODS` (Score-CAM adds its masked forwards, CAM reads the model's ``fc``).
    """
    methods = check_methods(methods)
    size = tuple(x.shape[-2:]) if upsample_to_input else None
    with capture(model, layers) as cap:
        cap.forward(x)
        cap.backward(target)
        return {name: {m: finalize(raw_map(m, cap.activations[name].detach(),
                                           cap.gradients[name], model, x, target,
                                           logits=cap.logits), size)
                       for m in methods}
                for name in cap.layer_names}
