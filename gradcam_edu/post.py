"""The source post's code, as it wrote it, what each of its bugs does, and the fixed path.

The post ("Why can't Grad-CAM visualize ResNet layer features?", in the course brief's
``source/``) computes Grad-CAM in numpy on torchvision's ResNet-18, for ImageNet class 282
("tiger cat"), at ``layer4[1].conv2`` (example 1), ``conv1`` (example 2) and
``layer4_0.conv1`` of a network cut after ``layer4[0]`` (example 3, :class:`ModifiedResNet`).
Its code does not run. This module keeps it as written where that is the point, runs each
bug and reports what happens, then does the same with the package::

    from gradcam_edu import post
    x = post.post_input(photo)                       # (1, 3, 224, 224): the post's transforms
    for bug in post.post_bugs(model, x, 282, "layer4.1.conv2"):
        print(bug.name, "->", bug.happens, "| fix:", bug.fix)
    heat = post.fixed_grad_cam(model, x, 282, "layer4.1.conv2")   # (1, 7, 7) in [0, 1]

One line differs from the post: its backward call on the score becomes a call of the
capture (:func:`gradcam_edu.capture.input_gradient`), because in this package only the
capture differentiates a model (and it writes no parameter ``.grad``). The error the post meets
comes on the next line, ``layer.grad``, and is the same either way.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from unittest import mock

import matplotlib.cm as cm
import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms

from . import cams, faithfulness, metrics, models, viz
from .capture import input_gradient, model_mode, record
from .truncate import truncate

__all__ = ["Bug", "ModifiedResNet", "POST_PREPROCESS", "POST_TARGET", "batch_axis_indexing",
           "compare_layers", "fixed_display", "fixed_examples", "fixed_grad_cam", "grad_cam",
           "grad_cam_numpy", "jet_display", "module_grad", "nan_case", "post_bugs",
           "post_display", "post_input", "post_raw_map", "pretrained_true", "random_fc",
           "run_post_grad_cam", "top_classes", "variable_today"]

POST_TARGET = 282
"""The post's ``target_class``: ImageNet's "tiger cat"."""

POST_PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
"""The post's preprocessing, as written (torchvision's v1 transforms)."""

COURSE_LAYERS = ("conv1", "layer4.1.conv2", "layer4.0 (cut)", "layer4")
"""The comparison of :func:`compare_layers`: the post's two layers, the output of the kept
block of the cut model, and the last block's output (where Grad-CAM is CAM)."""


def post_input(image: Image.Image) -> torch.Tensor:
    """A PIL image -> ``(1, 3, 224, 224)`` by the post's transforms (``unsqueeze(0)``)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"image: expected a PIL image, got {type(image).__name__}")
    return POST_PREPROCESS(image.convert("RGB")).unsqueeze(0)


# ----------------------------------------------------------------------------- as written
def grad_cam(model, input_tensor, target_class, layer):
    """The post's ``grad_cam``, line for line but for its backward (see the module
    docstring). ``layer`` is an ``nn.Module``, as in the post: it raises ``AttributeError``
    at ``layer.grad``. Like the post, it puts ``model`` in eval mode and sets
    ``input_tensor.requires_grad``; :func:`run_post_grad_cam` undoes both."""
    model.eval()
    input_tensor.requires_grad_(True)
    output = model(input_tensor)

    score = output[:, target_class].squeeze()
    input_gradient(model, input_tensor, target_class)    # the post: score.backward()
    del score

    gradients = layer.grad.detach().cpu().numpy()
    activations = layer.detach().cpu().numpy()

    return grad_cam_numpy(activations, gradients)


def post_raw_map(activations: np.ndarray, gradients: np.ndarray,
                 fix_indexing: bool = False) -> np.ndarray:
    """The post's map before its ReLU: activations and gradients ``(N, C, h, w)`` ->
    ``(N, h, w)``, the channel *mean* of ``alpha_k A_k`` (Grad-CAM's sum / C). As written
    (``fix_indexing=False``) it indexes ``pooled_gradients[i]``, a row of the batch axis;
    ``fix_indexing=True`` weights channel ``i`` of every image by its own pooled gradient."""
    activations = np.array(activations, dtype=np.float32)    # the post scales it in place
    pooled_gradients = np.mean(gradients, axis=(2, 3))       # (N, C)

    for i in range(activations.shape[1]):
        if fix_indexing:
            activations[:, i, :, :] *= pooled_gradients[:, i, None, None]
        else:
            activations[:, i, :, :] *= pooled_gradients[i]

    return np.mean(activations, axis=1)


def grad_cam_numpy(activations: np.ndarray, gradients: np.ndarray,
                   fix_indexing: bool = False) -> np.ndarray:
    """The numpy part of the post's ``grad_cam``: :func:`post_raw_map`, its ReLU, then its
    division by the maximum (of the whole batch), kept: an all-zero map gives NaN."""
    heatmap = post_raw_map(activations, gradients, fix_indexing)
    heatmap = np.maximum(heatmap, 0)
    heatmap /= np.max(heatmap)

    return heatmap


def post_display(heatmap: np.ndarray, h: int = 224, w: int = 224) -> Image.Image:
    """The post's display, as written: ``cm.jet`` of the heatmap, to uint8, PIL, resized.
    On the ``(1, h, w)`` heatmap the post has, ``cm.jet`` gives ``(1, h, w, 4)`` and PIL
    raises ``TypeError``; the post never overlays the map on the image either."""
    heatmap = np.uint8(cm.jet(heatmap) * 255)
    heatmap = Image.fromarray(heatmap).resize((w, h), resample=Image.Resampling.BILINEAR)
    return heatmap


class ModifiedResNet(nn.Module):
    """The post's example 3, as written: ``original_model`` up to ``layer4[0]`` (its modules
    shared, not copied), then its ``avgpool`` and ``fc``. The same network as
    ``truncate(original_model, after="layer4.0")``, whose module names are the full model's
    (``layer4.0.conv1`` where this one says ``layer4_0.conv1``)."""

    def __init__(self, original_model):
        super(ModifiedResNet, self).__init__()    # noqa: UP008  (as the post wrote it)
        self.conv1 = original_model.conv1
        self.bn1 = original_model.bn1
        self.relu = original_model.relu
        self.maxpool = original_model.maxpool
        self.layer1 = original_model.layer1
        self.layer2 = original_model.layer2
        self.layer3 = original_model.layer3
        self.layer4_0 = original_model.layer4[0]
        self.avgpool = original_model.avgpool
        self.fc = original_model.fc

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4_0(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.fc(x)
        return x


# ----------------------------------------------------------------------------- each bug
@dataclass(frozen=True)
class Bug:
    """One of the post's bugs: what the post wrote, what happens when it runs, the fix."""

    name: str
    happens: str
    fix: str


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0].strip() if str(err) else ''}"


def _check_layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in modules or not layer:
        raise ValueError(f"layer: expected a layer name of model.named_modules(), such as "
                         f"'layer4.1.conv2', got {layer!r}")
    return modules[layer]


def run_post_grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str):
    """Run the post's :func:`grad_cam` on a copy of ``x`` with the module ``layer`` names;
    the model's train/eval flags are restored. Returns the heatmap, or the exception it
    raised (``AttributeError``: an ``nn.Module`` has no ``.grad``)."""
    module = _check_layer(model, layer)
    with model_mode(model, eval=True):
        try:
            return grad_cam(model, x.detach().clone(), target, module)
        except AttributeError as err:
            return err


def module_grad(model: nn.Module, x: torch.Tensor, target: int, layer: str) -> str:
    """Bug 1, as it happens: the exception of the post's ``layer.grad``."""
    out = run_post_grad_cam(model, x, target, layer)
    return _error(out) if isinstance(out, BaseException) else "no error"


def _activations_gradients(model: nn.Module, x: torch.Tensor, target: int,
                           layer: str) -> tuple[np.ndarray, np.ndarray]:
    """The layer's output and d score / d output ``(N, C, h, w)``, from the capture."""
    _check_layer(model, layer)
    cap = record(model, [layer], x)
    cap.backward(target)
    cap.release()
    return cap.activations[layer].numpy(), cap.gradients[layer].numpy()


def batch_axis_indexing(activations: np.ndarray, gradients: np.ndarray) -> list[str]:
    """Bug 2: ``pooled_gradients`` is ``(N, C)``, so ``pooled_gradients[i]`` is image ``i``'s
    row of C weights. Returns what the post's loop raises, and what ``pooled_gradients[1]``
    raises for a batch of one (the loop's second step, had the first passed)."""
    pooled = np.mean(gradients, axis=(2, 3))
    found = [f"pooled_gradients has shape {pooled.shape}"]
    try:
        grad_cam_numpy(activations, gradients)
        found.append("the loop ran")
    except (ValueError, IndexError) as err:
        found.append(f"at i = 0: {_error(err)}")
    try:
        pooled[1]
        found.append("pooled_gradients[1] exists")
    except IndexError as err:
        found.append(f"at i = 1: {_error(err)}")
    return found


def top_classes(model: nn.Module, x: torch.Tensor, k: int = 3) -> list[tuple[int, float]]:
    """``k`` best ``(class, probability)`` of image 0 (sigmoid or softmax, as the model says)."""
    with torch.no_grad(), model_mode(model, eval=True):
        probs = models.probabilities(model, model(x))[0]
    top = probs.topk(k)
    return list(zip(top.indices.tolist(), top.values.tolist(), strict=True))


def random_fc(model: nn.Module, x: torch.Tensor, seed: int = 0,
              k: int = 3) -> tuple[nn.Module, list, list]:
    """Bug 3: ``model.fc = nn.Linear(512, 1000)`` (the model's own sizes when they differ)
    on a copy of ``model`` (seeded). Returns the copy and the top ``k`` classes before and
    after: the new head is random, its "explanation" explains noise."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"model: expected a ResNet whose head `fc` is nn.Linear, got "
                         f"{type(fc).__name__}")
    post = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        post.fc = nn.Linear(fc.in_features, fc.out_features)    # the post: (512, 1000)
    return post, top_classes(model, x, k), top_classes(post, x, k)


def nan_case(model: nn.Module, x: torch.Tensor, layers: tuple[str, ...],
             tries: int = 20) -> tuple[str, int, np.ndarray] | None:
    """Bug 4, found honestly: the first ``(layer, class, heatmap)`` for which the post's
    (index-fixed) Grad-CAM is all zero after its ReLU, so ``heatmap /= np.max(heatmap)``
    gives NaN. Classes are tried from the least likely up (``tries`` of them, one backward
    each); None when no tried class gives an all-zero map."""
    with torch.no_grad(), model_mode(model, eval=True):
        order = model(x)[0].argsort().tolist()[:tries]
    for layer in layers:
        _check_layer(model, layer)
        cap = record(model, [layer], x)
        try:
            for c in order:
                cap.backward(c)
                A, G = cap.activations[layer].detach(), cap.gradients[layer]
                if bool((cams.grad_cam(A, G) <= 0).all()):
                    with np.errstate(invalid="ignore"):
                        heat = grad_cam_numpy(A.numpy(), G.numpy(), fix_indexing=True)
                    return layer, c, heat
        finally:
            cap.release()
    return None


def jet_display(heatmap: np.ndarray) -> str:
    """Bug 5: what ``cm.jet`` makes of the post's ``(1, h, w)`` heatmap, and what PIL says."""
    coloured = np.uint8(cm.jet(heatmap) * 255)
    try:
        post_display(heatmap)
        return f"cm.jet gives {coloured.shape}; PIL accepted it"
    except TypeError as err:
        return f"cm.jet gives {coloured.shape}; Image.fromarray: {_error(err)}"


def pretrained_true() -> str:
    """Bug 6a: what ``models.resnet18(pretrained=True)`` does in this torchvision, without
    any download: warnings are errors (torchvision warns before it fetches weights) and its
    weight loader is replaced by one that refuses, so nothing reaches the network."""
    def refuse(*args, **kwargs):
        raise RuntimeError("download refused (the course never downloads)")
    with warnings.catch_warnings(), mock.patch.object(
            torchvision.models._api, "load_state_dict_from_url", refuse):
        warnings.simplefilter("error")
        try:
            torchvision.models.resnet18(pretrained=True)
        except (UserWarning, TypeError, ValueError, RuntimeError) as err:
            return _error(err)
    return "built without a warning"


def variable_today(x: torch.Tensor) -> str:
    """Bug 6b: ``Variable(x)`` is a plain ``torch.Tensor`` today, sharing ``x``'s memory."""
    v = torch.autograd.Variable(x)
    return (f"Variable(x) is a {type(v).__module__}.{type(v).__name__}; same memory as x: "
            f"{v.data_ptr() == x.data_ptr()}")


def _sizes(model: nn.Module) -> str:
    """How the random head is built when the model's sizes are not the post's."""
    fc = model.fc
    if (fc.in_features, fc.out_features) == (512, 1000):
        return ""
    return f"(here nn.Linear({fc.in_features}, {fc.out_features}), this model's sizes) "


def post_bugs(model: nn.Module, x: torch.Tensor, target: int, layer: str,
              class_names: list[str] | None = None) -> list[Bug]:
    """Every bug of the post's code, run on ``model`` (a torchvision-style ResNet), the
    input ``x`` ``(1, 3, H, W)``, class ``target`` and capture name ``layer``
    (``class_names``: to name the top classes)."""
    name = (lambda c: f"{c} {class_names[c]!r}") if class_names else str
    A, G = _activations_gradients(model, x, target, layer)
    _, before, after = random_fc(model, x)
    found = nan_case(model, x, (layer, "layer4"))
    nan = ("no all-zero map among the classes tried" if found is None else
           f"class {name(found[1])} at {found[0]}: every value <= 0, ReLU gives 0, 0 / 0 -> "
           f"{int(np.isnan(found[2]).sum())} NaN of {found[2].size}")
    with np.errstate(invalid="ignore"):
        heat = grad_cam_numpy(A, G, fix_indexing=True)
    return [
        Bug("layer.grad, layer.detach() on a module", module_grad(model, x, target, layer),
            "record the layer's output and its gradient: capture(model, [name])"),
        Bug("pooled_gradients[i] (batch axis)", "; ".join(batch_axis_indexing(A, G)),
            "pooled_gradients[:, i, None, None], or cams.grad_cam(A, G)"),
        Bug("model.fc = nn.Linear(512, 1000)", _sizes(model) +
            f"top class {name(before[0][0])} (p = {before[0][1]:.3f}) becomes "
            f"{name(after[0][0])} (p = {after[0][1]:.3f})", "keep the trained fc"),
        Bug("heatmap /= np.max(heatmap)", nan, "divide by max + eps (cams.normalize)"),
        Bug("cm.jet(heatmap) on (1, h, w)", jet_display(heat),
            "colour heatmap[0], upsample, blend over the image (viz.overlay)"),
        Bug("models.resnet18(pretrained=True)", pretrained_true(),
            "models.torchvision_resnet('resnet18', weights='imagenet')"),
        Bug("Variable(input_tensor)", variable_today(x), "drop it: tensors track gradients"),
    ]


# ----------------------------------------------------------------------------- fixed
def fixed_grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str) -> np.ndarray:
    """The post's Grad-CAM with its bugs fixed: activations and gradients from the capture,
    channel ``i`` weighted by its own pooled gradient, summed over channels (the post's mean
    is this sum / C: the normalisation cancels the factor), ReLU, then the package's min-max
    with an epsilon (an all-zero map stays zero, no NaN). ``(N, h, w)`` in [0, 1] at the
    layer's grid: ``cams.explain(model, x, [layer], target, upsample_to_input=False)``."""
    A, G = _activations_gradients(model, x, target, layer)
    pooled = G.mean(axis=(2, 3))                               # (N, C): one weight a channel
    heatmap = np.maximum(np.sum(A * pooled[:, :, None, None], axis=1), 0)
    return cams.normalize(torch.from_numpy(heatmap)).numpy()


def fixed_display(image: torch.Tensor, cam: torch.Tensor) -> np.ndarray:
    """The post's display, fixed: ``cam`` ``(H, W)`` (or ``(h, w)``, upsampled) coloured by
    the course's perceptually uniform map (:data:`gradcam_edu.viz.HEAT_CMAP`, not the post's
    jet) and blended over ``image`` ``(3, H, W)`` in [0, 1] -> float ``(H, W, 3)``."""
    cam = torch.as_tensor(cam, dtype=torch.float32)
    if cam.shape != image.shape[-2:]:
        cam = cams.upsample(cam[None], tuple(image.shape[-2:]))[0]
    return viz.overlay(image, cam.clamp(0, 1), cmap=viz.HEAT_CMAP, alpha=0.5)


def fixed_examples(model: nn.Module, x: torch.Tensor, target: int) -> dict[str, torch.Tensor]:
    """The post's three examples, fixed: the trained head, Grad-CAM from the capture, the cut
    by :func:`gradcam_edu.truncate.truncate` (the post's example 3 network, named as the full
    model). Returns ``{title: map (H, W) in [0, 1]}`` for image 0."""
    cut = truncate(model, after="layer4.0")
    full = cams.explain(model, x, ["layer4.1.conv2", "conv1"], target)
    return {
        "1 · layer4.1.conv2": full["layer4.1.conv2"]["gradcam"][0],
        "2 · conv1": full["conv1"]["gradcam"][0],
        "3 · cut: layer4.0.conv1": cams.explain(cut, x, ["layer4.0.conv1"],
                                                target)["layer4.0.conv1"]["gradcam"][0],
    }


def compare_layers(model: nn.Module, x: torch.Tensor, target: int,
                   mask: torch.Tensor | None = None, steps: int = 16) -> dict[str, dict]:
    """The course's comparison (:data:`COURSE_LAYERS`) for image 0 of ``x`` ``(1, 3, H, W)``:
    per layer its Grad-CAM map ``(H, W)``, the map's grid, its clarity (Gini), its deletion
    score (area under the class probability as its top pixels are zeroed, ``steps`` steps;
    lower is better) and, with the object's ``mask`` ``(H, W)``, its energy share on it. The
    cut model (after ``layer4.0``) keeps the trained head, as the post's example 3 does."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x: expected one image (1, 3, H, W), got {tuple(x.shape)}")
    size = tuple(x.shape[-2:])
    cut = truncate(model, after="layer4.0")
    full = cams.explain(model, x, ["conv1", "layer4.1.conv2", "layer4"], target,
                        upsample_to_input=False)
    cut_map = cams.explain(cut, x, ["layer4.0"], target, upsample_to_input=False)
    grids = {la: (model, full[la]["gradcam"]) for la in ("conv1", "layer4.1.conv2", "layer4")}
    grids["layer4.0 (cut)"] = (cut, cut_map["layer4.0"]["gradcam"])
    out = {}
    for name in COURSE_LAYERS:
        net, small = grids[name]
        m = cams.upsample(small, size)         # = cams.explain's map at the input's size
        row = {"map": m[0], "grid": tuple(small.shape[-2:]), "gini": float(metrics.gini(m)[0]),
               "deletion": float(faithfulness.deletion_auc(net, x, m, target, steps)[0])}
        if mask is not None:
            row["energy"] = float(metrics.energy_pointing_game(m, mask[None].bool())[0])
        out[name] = row
    return out
