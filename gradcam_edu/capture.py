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

Why the recorded tensor is safe from in-place ops: torchvision's ``ReLU(inplace=True)`` and
``out += identity`` overwrite some layers' outputs (``bn1``, ``bn2``) later in the same forward.
For such an output the hook hands a *clone* on to the rest of the network, which modifies the
clone, never the recorded tensor: the activation holds the value the layer produced, and the
gradient is the score's gradient with respect to it. Cloning every output would copy each, so
the capture learns, per model and per call, which outputs the rest of the forward modifies in
place (the clone handed on has a bumped version counter) and clones only those. An output
handed on as is is checked after every forward (its version counter must not have moved); if
it moved, the forward runs once more with that output cloned (in training mode BatchNorm's
running statistics then move twice), so a recording is never corrupted. Only writes through
``.data``, which bypass the version counter, would go unseen.

Bad input is refused before the forward (:func:`check_images`: shape, dtype, channels, NaN or
inf); a layer whose gradient is missing (all zero) or not finite is warned about by name.

A module that runs several times in one forward (the shared ``relu`` of a torchvision
``BasicBlock`` runs twice) is addressed per call: ``"layer4.1.relu#0"``, ``"layer4.1.relu#1"``.
"""

from __future__ import annotations

import contextlib
import difflib
import warnings
import weakref
from collections.abc import Sequence

import torch
from torch import nn

from .inputs import (
    HOOK_DICTS,
    check_images,
    hook_count,
    hook_ids,
    model_mode,
    run_model,
    warn_non_finite,
)
from .targets import Target, target_scores

__all__ = ["HOOK_DICTS", "Capture", "Target", "call_name", "capturable_layers", "capture",
           "check_images", "hook_count", "hook_ids", "input_gradient", "model_mode", "record",
           "resolve_layer", "run_model", "split_call", "target_scores"]

LayerSpec = str | nn.Module


# ----------------------------------------------------------------------------- small helpers
def _close_matches(name: str, choices: Sequence[str], n: int = 5) -> list[str]:
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not matches:  # fall back to names that share a prefix (e.g. "layer4.1.con" -> convs)
        matches = [c for c in choices if c.startswith(name.split(".")[0])][:n]
    return matches


def call_name(base: str, k: int, calls: int) -> str:
    """The capture name of call ``k`` of a module that ran ``calls`` times: ``base`` when it
    ran once, ``"base#k"`` otherwise (the inverse of :func:`split_call`)."""
    return base if calls == 1 else f"{base}#{k}"


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
        hint = _close_matches(base, [n for n in modules if n])
        raise ValueError(f"layers: the model has no layer named {base!r}. "
                         f"Closest names: {', '.join(hint) if hint else '(none)'}. "
                         "Valid names are those of model.named_modules().")
    return base, modules[base], call


_WRITTEN_IN_PLACE: weakref.WeakKeyDictionary[nn.Module, dict[str, bool]] = (
    weakref.WeakKeyDictionary())
"""Per model, per call ``"base#k"``: whether the rest of its forward modifies that output in
place (True: the capture hands on a clone). Learned from the clones handed on, checked on
every forward (see the module docstring)."""


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """False when some value may not be finite: one fused norm per tensor (an inf or NaN
    makes its norm non-finite; so may huge finite values, hence only a prefilter), a tenth
    of the cost of one check per tensor."""
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all())


# ------------------------------------------------------------------------------ the capture
class Capture:
    """Records layer outputs during :meth:`forward`, and their gradients in :meth:`backward`.

    Use through :func:`capture` (a ``with`` block) or :func:`record` (one forward, hooks
    gone at once, the graph kept for later backwards). After ``forward``: ``activations``
    maps each requested layer name to its output ``(N, C, h, w)`` and ``logits`` holds the
    model's output. After ``backward(target)``: ``gradients`` maps the same names to
    ``d score / d activation``. ``layer_names`` lists the names in forward order.

    ``keep_graph``: when True, leaving the ``with`` block removes the hooks and restores the
    model's mode but keeps the autograd graph, so :meth:`backward` still works (one backward
    per new class, no forward) until :meth:`release`.
    """

    def __init__(self, model: nn.Module, layers: Sequence[LayerSpec] | LayerSpec,
                 eval: bool = True, keep_graph: bool = False, _allow_empty: bool = False):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        layers = [layers] if isinstance(layers, str | nn.Module) else list(layers)
        if not layers and not _allow_empty:
            raise ValueError("layers: the list of layers is empty; name at least one, for "
                             "example 'layer4' (see model.named_modules())")
        self.model, self.eval, self.keep_graph = model, eval, keep_graph
        # requested name -> (module name, call index or None); modules hooked once each
        self._requests: dict[str, tuple[str, int | None]] = {}
        self._modules: dict[str, nn.Module] = {}
        # the calls whose output is read: base -> call indices (None: every call)
        self._wanted: dict[str, set[int] | None] = {}
        for layer in layers:
            base, module, call = resolve_layer(model, layer)
            key = base if call is None else f"{base}#{call}"
            self._requests[key] = (base, call)
            self._modules[base] = module
            wanted = self._wanted.setdefault(base, set())
            if call is None or wanted is None:
                self._wanted[base] = None
            else:
                wanted.add(call)
        self._written = _WRITTEN_IN_PLACE.setdefault(model, {})
        self._handed: list[tuple[str, torch.Tensor]] = []           # clones handed on
        self._kept: list[tuple[str, torch.Tensor, int]] = []        # outputs handed on as is
        self._calls: dict[str, list[torch.Tensor]] = {}
        self._order: list[tuple[int, str]] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._mode: contextlib.AbstractContextManager | None = None
        self._tracing = self._running = False
        self.activations: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}
        # the model's output, its (cloned) input, d score / d input, the scores: all tensors
        self.logits = self.input = self.input_gradient = self.scores = None

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
        """Remove every hook and restore the model's mode; drop the graph unless
        ``keep_graph`` (then :meth:`release` drops it)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        if not self.keep_graph:
            self.release()

    def release(self) -> None:
        """Keep the values, drop the autograd graph (no more backward passes)."""
        self.logits = None if self.logits is None else self.logits.detach()
        self.activations = {n: a.detach() for n, a in self.activations.items()}
        self.gradients = {n: g.detach() for n, g in self.gradients.items()}
        self.input = None if self.input is None else self.input.detach()

    def _hook(self, base: str):
        def hook(module: nn.Module, inputs, output):
            if not self._running:        # another forward inside the block (Score-CAM's
                return None              # masked batches): pass through, record nothing
            if not isinstance(output, torch.Tensor):
                if self._tracing:
                    return None
                raise TypeError(f"layers: {base!r} returns {type(output).__name__}, not a "
                                "tensor; capture a layer whose output is a single tensor")
            calls = self._calls.setdefault(base, [])
            key = f"{base}#{len(calls)}"
            self._order.append((len(self._order), key))
            calls.append(output)
            wanted = self._wanted[base]
            if self._tracing or (wanted is not None and len(calls) - 1 not in wanted):
                return None              # only its shape is read, or not read at all
            if self._written.get(key) is False:      # nothing downstream writes into it
                self._kept.append((key, output, output._version))
                return None
            # Unknown or written in place downstream: the rest of the network gets a clone,
            # the recorded tensor keeps the value this layer produced.
            handed = output.clone()
            self._handed.append((key, handed))
            return handed
        hook.from_capture = True   # a capture's own: inert outside its forward (see inference)
        return hook

    def _settle(self) -> bool:
        """After a forward: learn which outputs were written in place downstream (their clone
        changed); False when an output handed on as is was written (then run again)."""
        for key, handed in self._handed:
            self._written[key] = handed._version > 0
        broken = [key for key, t, version in self._kept if t._version != version]
        for key in broken:
            self._written[key] = True
        self._handed.clear()
        self._kept.clear()
        return not broken

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

    def _run(self, x: torch.Tensor, grad: bool = True) -> torch.Tensor:
        """One forward of ``x`` with the hooks recording (``grad``: build the graph)."""
        if self._mode is None:
            raise RuntimeError("capture: use it as a context manager "
                               "(with capture(model, layers) as cap: ...)")
        check_images(self.model, x)
        self.activations, self.gradients = {}, {}
        self.input_gradient = self.scores = None
        # A fresh leaf that requires grad: gradients flow even through frozen parameters,
        # and the caller's tensor is left alone.
        self.input = x.detach().clone().requires_grad_(True)
        while True:      # once more only when an output is newly found written in place
            self._calls.clear()
            self._order.clear()
            self._running = True
            try:
                with torch.enable_grad() if grad else torch.no_grad():
                    logits = run_model(self.model, self.input)
            except BaseException:
                self._handed.clear()
                self._kept.clear()
                raise
            finally:
                self._running = False
            if self._settle():
                break
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise TypeError("model: expected the model to return logits of shape "
                            f"(N, num_classes), got {getattr(logits, 'shape', type(logits))}")
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model once on ``x`` ``(N, C, H, W)``; returns the logits."""
        logits = self._run(x)
        for key, (base, call) in self._requests.items():
            self.activations[key] = self._pick(key, base, call)
        self._calls.clear()
        self.logits = logits
        if not bool(torch.isfinite(logits.detach()).all()):
            bad = [n for n in self.layer_names
                   if not bool(torch.isfinite(self.activations[n].detach()).all())]
            warn_non_finite("logits", bad[:1] or ["the model's output"])
        return logits

    def _pick(self, key: str, base: str, call: int | None) -> torch.Tensor:
        runs = self._calls.get(base, [])
        if not runs:
            raise RuntimeError(f"layers: {base!r} never ran in the forward pass, so it has "
                               "no activation (is it used by the model's forward?)")
        valid = ", ".join(f"'{base}#{k}'" for k in range(len(runs)))
        if call is None:
            if len(runs) > 1:
                raise ValueError(f"layers: {base!r} ran {len(runs)} times in one forward "
                                 f"(a module reused inside its parent); choose one call: "
                                 f"{valid}")
            return runs[0]
        if call >= len(runs):
            raise ValueError(f"layers: {key!r} asks for call {call}, but {base!r} ran "
                             f"{len(runs)} time(s); valid: {valid}")
        return runs[call]

    def trace(self, x: torch.Tensor, ndim: int | None = 4) -> list[str]:
        """Run the model once (no graph built) and return the capture names of every call of
        the hooked modules whose output is a tensor with ``ndim`` dimensions (None: any), in
        forward order, ``"name#k"`` for modules that ran several times."""
        self._tracing = True
        try:
            self._run(x, grad=False)
        finally:
            self._tracing = False
        counts = {b: len(v) for b, v in self._calls.items()}
        kept = {f"{b}#{k}" for b, v in self._calls.items() for k, t in enumerate(v)
                if ndim is None or t.ndim == ndim}
        names = [call_name(base, k, counts[base]) for _, key in self._order if key in kept
                 for base, k in [split_call(key)]]
        self._calls.clear()
        return names

    def backward(self, target: Target, input_gradient: bool = False) -> torch.Tensor:
        """Gradients of the target scores w.r.t. every captured activation (one backward).

        Can be called again with another target: the forward graph is kept until the
        capture closes (or until :meth:`release` with ``keep_graph``), so a new class costs
        one backward and no forward. Returns the scores ``(N,)`` that were differentiated.
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
            if not scores.requires_grad:
                raise ValueError("target: the scores do not depend on the logits (a callable "
                                 "that detaches them or returns a constant?)")
            grads = torch.autograd.grad(scores.sum(), tensors, retain_graph=True,
                                        allow_unused=True)
        self._warn_gradients(names, grads)
        self.gradients = {n: (g.detach() if g is not None else torch.zeros_like(a.detach()))
                          for n, a, g in zip(names, tensors, grads, strict=False)}
        if input_gradient:
            g = grads[-1]
            self.input_gradient = g.detach() if g is not None else torch.zeros_like(self.input)
        self.scores = scores.detach()
        return self.scores

    def _warn_gradients(self, names: list[str], grads: Sequence[torch.Tensor | None]) -> None:
        """Warn about layers whose gradient is missing (all zero) or not finite."""
        unused = [n for n, g in zip(names, grads, strict=False) if g is None]
        if unused:
            warnings.warn(f"layers: {', '.join(map(repr, unused))} got no gradient at all: "
                          "the output does not reach the target score, so its gradient and "
                          "maps are all zero", UserWarning, stacklevel=3)
        present = [(n, g) for n, g in zip(names, grads, strict=False) if g is not None]
        if present and not _all_finite([g for _, g in present]):
            bad = [n for n, g in present if not bool(torch.isfinite(g).all())]
            if bad:                   # the norm also overflows for huge finite values
                warn_non_finite("gradients", bad, level=4)

    def pullback(self, output: str, input: str, grad_output: torch.Tensor) -> torch.Tensor:
        """The vector-Jacobian product ``J^T v`` of captured ``output`` with respect to
        captured ``input`` (``v = grad_output``, shaped like ``output``): how a gradient at
        ``output`` reaches ``input`` along the paths between them only."""
        for name in (output, input):
            if name not in self.activations:
                raise ValueError(f"{'output' if name == output else 'input'}: {name!r} is not "
                                 f"a captured layer; captured: {', '.join(self.activations)}")
        if self.activations[output].grad_fn is None:
            raise RuntimeError("capture: the graph is gone (closed capture); pull back inside "
                               "the with-block")
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.activations[output], self.activations[input],
                                       grad_output, retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.activations[input].detach()) if g is None else g.detach()

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


def record(model: nn.Module, layers: Sequence[LayerSpec] | LayerSpec, x: torch.Tensor,
           eval: bool = True) -> Capture:
    """ONE forward of ``x`` recording ``layers``, returned with its graph kept.

    Every hook is already removed and the model's mode restored when this returns; the
    recording's ``backward(target)`` (and ``input_gradient=True``) works for as many targets
    as wanted, one backward each, until ``release()``. The explorer keeps one per image.
    """
    cap = Capture(model, layers, eval=eval, keep_graph=True)
    with cap:
        cap.forward(x)
    return cap


def input_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``d score / d x`` ``(N, C, H, W)`` for a batch (eval mode; no parameter ``.grad``)."""
    with Capture(model, [], _allow_empty=True) as cap:
        cap.forward(x)
        cap.backward(target, input_gradient=True)
        return cap.input_gradient


def capturable_layers(model: nn.Module, x: torch.Tensor,
                      kinds: tuple[type, ...] | None = None) -> list[str]:
    """Names of the layers with a 4-D tensor output, in forward order, with ``#k`` for
    modules that run several times. ``kinds`` keeps only modules of those types."""
    names = [n for n, m in model.named_modules()
             if n and (kinds is None or isinstance(m, kinds))]
    with Capture(model, names, _allow_empty=True) as cap:
        return cap.trace(x[:1])
