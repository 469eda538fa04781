"""One forward, one backward: record many layers' activations and gradients at once.

    with capture(model, ["layer4.1", "layer4.1.conv2", "conv1"]) as cap:
        logits = cap.forward(images)          # (N, num_classes); one forward for all layers
        cap.backward(target=[3, 1, 0])        # one backward: d score / d activation, every layer
        A = cap.activations["layer4.1"]       # (N, C, h, w), the layer's output
        G = cap.gradients["layer4.1"]         # (N, C, h, w), d score / d A
        cap.backward(target=5)                # another class: one more backward, no forward

Why hooks: an ``nn.Module`` has no ``.grad``; a layer's output exists only while the forward
runs. A forward hook records it, and ``torch.autograd.grad`` differentiates the target score
with respect to exactly the recorded tensors (no parameter ``.grad`` is written).

Why the recorded tensor is safe from in-place ops: the hook keeps the module's output and hands
a *clone* on to the rest of the network. torchvision's ``ReLU(inplace=True)`` and
``out += identity`` then modify the clone, never the recorded tensor, so the activation holds
the value the layer produced and the gradient is the gradient of the score with respect to
that same value.

A module that runs several times in one forward (the shared ``relu`` of a torchvision
``BasicBlock`` runs twice) is addressed per call: ``"layer4.1.relu#0"``, ``"layer4.1.relu#1"``.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

Target = int | Sequence[int] | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
LayerSpec = str | nn.Module


# ----------------------------------------------------------------------------- small helpers
def _close_matches(name: str, choices: Sequence[str], n: int = 5) -> list[str]:
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not matches:  # fall back to names that share a prefix (e.g. "layer4.1.con" -> convs)
        matches = [c for c in choices if c.startswith(name.split(".")[0])][:n]
    return matches


def split_call(name: str) -> tuple[str, int | None]:
    """``"layer4.1.relu#1"`` -> ``("layer4.1.relu", 1)``; ``"layer4"`` -> ``("layer4", None)``."""
    if "#" not in name:
        return name, None
    base, _, k = name.rpartition("#")
    if not k.isdigit():
        raise ValueError(f"layers: {name!r} has a call index that is not a number; "
                         f"write it as {base + '#0'!r}")
    return base, int(k)


def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module, int | None]:
    """Return ``(module name, module, call index or None)`` for a layer name or module object."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module, None
        raise ValueError(f"layers: the module {type(layer).__name__} given is not part of the "
                         "model (look it up in model.named_modules())")
    if not isinstance(layer, str):
        raise TypeError(f"layers: expected layer names (str) or nn.Module objects, "
                        f"got {type(layer).__name__}")
    base, call = split_call(layer)
    modules = dict(model.named_modules())
    if base not in modules or base == "":
        names = [n for n in modules if n]
        hint = _close_matches(base, names)
        raise ValueError(f"layers: the model has no layer named {base!r}. "
                         f"Closest names: {', '.join(hint) if hint else '(none)'}. "
                         "Valid names are those of model.named_modules().")
    return base, modules[base], call


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def check_images(model: nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """Clear errors for the input mistakes a learner makes most."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (N, C, H, W), "
                        f"got {type(x).__name__} (convert a PIL image with "
                        "torchvision.transforms.functional.to_tensor)")
    if x.ndim != 4:
        hint = " (add the batch axis with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise ValueError(f"{name}: expected a 4-D batch (N, C, H, W), got shape "
                         f"{tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype} "
                        "(scale uint8 images to [0, 1] first)")
    conv = first_conv(model)
    if conv is not None and x.shape[1] != conv.in_channels:
        raise ValueError(f"{name}: the model's first convolution expects {conv.in_channels} "
                         f"channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if torch.isnan(x).any():
        raise ValueError(f"{name}: the input contains NaN values")


def target_scores(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The score to explain, one per image: ``(N,)``.

    ``target`` is an int (one class for every image), a sequence or 1-D tensor of ints (one class
    per image, same length as the batch) or a callable ``f(logits) -> (N,)`` (or a scalar).
    Scores are taken before any softmax, as Grad-CAM prescribes.
    """
    n, num_classes = logits.shape[0], logits.shape[-1]
    if callable(target) and not isinstance(target, torch.Tensor):
        scores = target(logits)
        if not isinstance(scores, torch.Tensor):
            raise TypeError("target: the callable must return a tensor of scores, got "
                            f"{type(scores).__name__}")
        return scores.reshape(-1) if scores.ndim else scores.reshape(1)
    if isinstance(target, bool):
        raise TypeError("target: expected a class index, got a bool")
    if isinstance(target, int):
        classes = torch.full((n,), target, dtype=torch.long)
    else:
        try:
            classes = torch.as_tensor(target, dtype=torch.long).reshape(-1)
        except (TypeError, ValueError) as err:
            raise TypeError("target: expected an int, a sequence of ints (one per image) or a "
                            f"callable on the logits, got {type(target).__name__}") from err
        if classes.numel() != n:
            raise ValueError(f"target: got {classes.numel()} classes for a batch of {n} images; "
                             "give one int for all images or exactly one class per image")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise IndexError(f"target: class index {int(classes[bad][0])} is out of range; the "
                         f"model has {num_classes} classes (0 to {num_classes - 1})")
    classes = classes.to(logits.device)
    return logits.gather(1, classes[:, None]).squeeze(1)


@contextlib.contextmanager
def model_mode(model: nn.Module, eval: bool = True) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (when ``eval``) and restore every module's flag on exit."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        if eval:
            model.eval()
        yield model
    finally:
        for m, training in saved:
            m.training = training


# ------------------------------------------------------------------------------ the capture
class Capture:
    """Records layer outputs during :meth:`forward`, and their gradients in :meth:`backward`.

    Use through :func:`capture`. After ``forward``: ``activations`` maps each requested layer
    name to its output ``(N, C, h, w)`` and ``logits`` holds the model's output. After
    ``backward(target)``: ``gradients`` maps the same names to ``d score / d activation``.
    ``layer_names`` lists the names in the order the layers ran (forward order).
    """

    def __init__(self, model: nn.Module, layers: Sequence[LayerSpec] | LayerSpec,
                 eval: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(layers, str | nn.Module):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise ValueError("layers: the list of layers is empty; name at least one, for "
                             "example 'layer4' (see model.named_modules())")
        self.model = model
        self.eval = eval
        # requested name -> (module name, call index or None); modules hooked once each
        self._requests: dict[str, tuple[str, int | None]] = {}
        self._modules: dict[str, nn.Module] = {}
        for layer in layers:
            base, module, call = resolve_layer(model, layer)
            key = base if call is None else f"{base}#{call}"
            self._requests[key] = (base, call)
            self._modules[base] = module
        self._calls: dict[str, list[torch.Tensor]] = {}
        self._order: list[tuple[int, str]] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._mode: contextlib.AbstractContextManager | None = None
        self.activations: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}
        self.logits: torch.Tensor | None = None
        self.input: torch.Tensor | None = None
        self.input_gradient: torch.Tensor | None = None
        self.scores: torch.Tensor | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Capture:
        self._mode = model_mode(self.model, self.eval)
        self._mode.__enter__()
        try:
            for base, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._hook(base)))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook, restore the model's mode and drop the graph."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        # Keep the values, drop the autograd graph kept alive for further backward passes.
        self.logits = None if self.logits is None else self.logits.detach()
        self.activations = {n: a.detach() for n, a in self.activations.items()}
        self.gradients = {n: g.detach() for n, g in self.gradients.items()}
        if self.input is not None:
            self.input = self.input.detach()

    def _hook(self, base: str):
        def hook(module: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layers: {base!r} returns {type(output).__name__}, not a "
                                "tensor; capture a layer whose output is a single tensor")
            calls = self._calls.setdefault(base, [])
            self._order.append((len(self._order), f"{base}#{len(calls)}"))
            calls.append(output)
            # The rest of the network gets a clone: in-place ops downstream modify the clone,
            # the recorded tensor keeps the value this layer produced.
            return output.clone()
        return hook

    # -- passes -----------------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        """Requested layer names in the order they ran in the forward pass."""
        first_run = {}
        for i, key in self._order:
            first_run.setdefault(key, i)
        def position(name):
            base, call = self._requests[name]
            return first_run.get(f"{base}#{call or 0}", len(first_run))
        return sorted(self._requests, key=position)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model once on ``x`` ``(N, C, H, W)``; returns the logits."""
        if self._mode is None:
            raise RuntimeError("capture: use it as a context manager "
                               "(with capture(model, layers) as cap: ...)")
        check_images(self.model, x)
        self._calls.clear()
        self._order.clear()
        self.activations, self.gradients = {}, {}
        self.input_gradient = self.scores = None
        # A fresh leaf that requires grad: gradients flow even through frozen parameters,
        # and the caller's tensor is left alone.
        self.input = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(self.input)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise TypeError("model: expected the model to return logits of shape "
                            f"(N, num_classes), got {getattr(logits, 'shape', type(logits))}")
        for key, (base, call) in self._requests.items():
            runs = self._calls.get(base, [])
            if not runs:
                raise RuntimeError(f"layers: {base!r} never ran in the forward pass, so it has "
                                   "no activation (is it used by the model's forward?)")
            if call is None:
                if len(runs) > 1:
                    choices = ", ".join(f"'{base}#{k}'" for k in range(len(runs)))
                    raise ValueError(f"layers: {base!r} ran {len(runs)} times in one forward "
                                     f"(a module reused inside its parent); choose one call: "
                                     f"{choices}")
                self.activations[key] = runs[0]
            else:
                if call >= len(runs):
                    raise ValueError(f"layers: {key!r} asks for call {call}, but {base!r} ran "
                                     f"{len(runs)} time(s); valid: "
                                     + ", ".join(f"'{base}#{k}'" for k in range(len(runs))))
                self.activations[key] = runs[call]
        self._calls.clear()
        self.logits = logits
        return logits

    def backward(self, target: Target, input_gradient: bool = False) -> torch.Tensor:
        """Gradients of the target scores w.r.t. every captured activation (one backward).

        Can be called again with another target: the forward graph is kept until the
        capture closes, so a new class costs one backward and no forward.
        Returns the scores ``(N,)`` that were differentiated.
        """
        if self.logits is None or self.logits.grad_fn is None:
            raise RuntimeError("capture: call cap.forward(x) inside the with-block before "
                               "cap.backward(target)")
        names = list(self.activations)
        tensors = [self.activations[n] for n in names]
        if input_gradient:
            tensors.append(self.input)
        with torch.enable_grad():  # also inside a caller's torch.no_grad()
            scores = target_scores(self.logits, target)
            grads = torch.autograd.grad(scores.sum(), tensors, retain_graph=True,
                                        allow_unused=True)
        self.gradients = {n: (g if g is not None else torch.zeros_like(a))
                          for n, a, g in zip(names, tensors, grads, strict=False)}
        if input_gradient:
            g = grads[-1]
            self.input_gradient = g if g is not None else torch.zeros_like(self.input)
        self.scores = scores.detach()
        return self.scores

    def detached(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Activations and gradients without the graph (safe to keep after the capture)."""
        return ({n: a.detach() for n, a in self.activations.items()},
                {n: g.detach() for n, g in self.gradients.items()})


def capture(model: nn.Module, layers: Sequence[LayerSpec] | LayerSpec,
            eval: bool = True) -> Capture:
    """Context manager recording ``layers`` of ``model`` in one forward and one backward.

    ``layers``: names as in ``model.named_modules()`` (``"layer4.1.conv2"``), ``"name#k"`` for
    the k-th call of a module that runs several times, or module objects.
    ``eval``: put the model in eval mode while capturing (restored on exit).
    Every hook is removed on exit, also when the forward or backward raises.
    """
    return Capture(model, layers, eval=eval)


def capturable_layers(model: nn.Module, x: torch.Tensor,
                      kinds: tuple[type, ...] | None = None) -> list[str]:
    """Names of the layers with a 4-D tensor output, in forward order, with ``#k`` for
    modules that run several times. ``kinds`` keeps only modules of those types."""
    records: list[str] = []
    counts: dict[str, int] = {}
    handles = []

    def make(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                k = counts.get(name, 0)
                counts[name] = k + 1
                records.append(f"{name}#{k}")
        return hook

    for name, module in model.named_modules():
        if name and (kinds is None or isinstance(module, kinds)):
            handles.append(module.register_forward_hook(make(name)))
    try:
        with model_mode(model), torch.no_grad():
            check_images(model, x)
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return [r.split("#")[0] if counts[r.split("#")[0]] == 1 else r for r in records]
