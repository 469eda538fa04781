"""Predict, then check: questions whose measurement runs only after the learner commits.

In a notebook::

    my_prediction = None          # replace with one of the options printed below
    reveal(my_prediction, gradient_weights_question(model, images, masks, classes, LAYER))

While ``my_prediction`` is None the cell lists the options and measures nothing, so the
committed cell (and a reader who has not run it) shows no answer; later cells of the
notebook may print it, and the notebooks say so. With a prediction, the measurement runs and
the cell prints it beside the prediction.

Each ``*_question`` function returns a :class:`Question`; its ``measure`` is a real
measurement (the package's metrics and the verdict module's intervals), never a stored answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..cams import finalize, grad_cam
from ..capture import capture
from ..evidence import Evidence, load_evidence, setting
from ..metrics import energy_pointing_game
from ..verdict import Effect, effect, seed_bootstrap, seed_margin

__all__ = ["Question", "Revealed", "UNSETTLED", "reveal", "direction", "gradient_weights_question",
           "evidence_question", "conv2_question", "probe_question", "layercam_question",
           "random_fc_question"]

DIRECTIONS = ("higher", "about the same", "lower")


@dataclass(frozen=True)
class Question:
    """``text``: what to predict; ``options``: the answers to choose from; ``measure()`` ->
    ``(answer, report)``: the option the measurement supports and the measurement, printed."""

    text: str
    options: tuple[str, ...]
    measure: Callable[[], tuple[str, str]]


@dataclass(frozen=True)
class Revealed:
    """What :func:`reveal` says: ``held`` (the prediction matches the measurement; None when
    nothing was measured yet) and the message."""

    held: bool | None
    message: str

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return self.message


def reveal(prediction: object, question: Question) -> Revealed:
    """Run ``question``'s measurement once the learner has predicted one of its options."""
    if not isinstance(question, Question):
        raise ValueError(f"question: expected a Question, got {type(question).__name__}")
    listed = ", ".join(repr(o) for o in question.options)
    if prediction is None:
        return Revealed(None, f"{question.text}\nCommit first: set my_prediction to one of "
                        f"{listed}, then run this cell again. Nothing is measured until then.")
    if prediction not in question.options:
        return Revealed(None, f"my_prediction: expected one of {listed}, got {prediction!r}.")
    answer, report = question.measure()
    if answer == UNSETTLED:
        head = ("The measurement does not settle it: its interval reaches across the margin, "
                "so no prediction holds")
    elif prediction == answer:
        head = "Your prediction held"
    else:
        head = f"The measurement says {answer!r}, not {prediction!r}"
    return Revealed(prediction == answer, f"{head}.\n{report}")


UNSETTLED = "not settled"


def direction(e: Effect, margin: float) -> str:
    """``"higher"`` when the whole 95% interval of ``e`` lies above ``margin``, ``"lower"``
    when it lies below ``-margin``, ``"about the same"`` when it lies within
    ``[-margin, margin]``, and :data:`UNSETTLED` when it straddles ``margin`` or ``-margin``
    (this measurement cannot tell; no prediction holds)."""
    if e.shows_effect(margin):
        return "higher"
    if e.shows_opposite(margin):
        return "lower"
    if -margin <= e.low and e.high <= margin:
        return "about the same"
    return UNSETTLED


# ----------------------------------------------------------------------------- notebook 01
def _first_class_masks(masks: Sequence[torch.Tensor], classes: Sequence[Sequence[int]]
                       ) -> tuple[list[int], torch.Tensor]:
    if len(masks) != len(classes) or not masks:
        raise ValueError(f"masks, classes: expected one entry per image, got {len(masks)} "
                         f"and {len(classes)}")
    return [int(c[0]) for c in classes], torch.stack([m[0] for m in masks])


def activation_sum_energy(model: nn.Module, images: torch.Tensor,
                          masks: Sequence[torch.Tensor], classes: Sequence[Sequence[int]],
                          layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy ``(N,)`` inside each image's first object of Grad-CAM at ``layer`` for that
    object's class, and of the same map with every channel weight set to 1 (ReLU of the
    plain sum of activations, normalised and upsampled the same way)."""
    targets, first = _first_class_masks(masks, classes)
    with capture(model, [layer]) as cap:
        cap.forward(images)
        cap.backward(target=targets)
        A, G = cap.activations[layer].detach(), cap.gradients[layer]
    size = tuple(images.shape[-2:])
    gc = finalize(grad_cam(A, G), size=size)
    plain = finalize(A.sum(dim=1), size=size)
    return energy_pointing_game(gc, first), energy_pointing_game(plain, first)


def gradient_weights_question(model: nn.Module, images: torch.Tensor,
                              masks: Sequence[torch.Tensor], classes: Sequence[Sequence[int]],
                              layer: str, margin: float = 0.02) -> Question:
    """Does Grad-CAM's gradient weighting put more of the map on the object than the plain
    sum of the layer's activations? Interval: bootstrap over the images."""
    text = (f"Set every channel weight alpha_k of Grad-CAM at {layer} to 1 (keep the ReLU and "
            "the normalisation): the map becomes the plain sum of the activations, which "
            "knows nothing of the class. Does the gradient weighting add to what the "
            "activations already do? Is the plain sum's energy inside the object of the class "
            f"asked (first class of each image) higher, about the same (interval within "
            f"+-{margin}) or lower than Grad-CAM's?")

    def measure() -> tuple[str, str]:
        gc, plain = activation_sum_energy(model, images, masks, classes, layer)
        mean, low, high, _ = seed_bootstrap((plain - gc)[None], torch.arange(len(gc)))
        e = Effect("plain sum - Grad-CAM", "energy", mean, low, high)
        uniform = float(_first_class_masks(masks, classes)[1].double().mean())
        report = (f"energy over {len(gc)} images: Grad-CAM {float(gc.mean()):.3f}, plain sum "
                  f"{float(plain.mean()):.3f}, a uniform map {uniform:.3f} (the object's area); "
                  f"plain sum - Grad-CAM {e.text()} (95% interval over images)")
        return direction(e, margin), report

    return Question(text, DIRECTIONS, measure)


# ----------------------------------------------------------------------------- notebooks 02-05
def evidence_question(text: str, first: Mapping[str, str], second: Mapping[str, str],
                      metric: str = "energy", ev: Evidence | None = None,
                      caveat: Callable[[Evidence], str] | None = None) -> Question:
    """``score(first) - score(second)`` from the shipped evidence (3 training seeds x the
    held-out pairs): "higher" / "about the same" / "lower" beyond the seed margin of
    :func:`gradcam_edu.verdict.seed_margin`, with the two-stage interval of the verdict.
    ``caveat(ev)``: a line the report adds after the measurement (what it depends on)."""
    def measure() -> tuple[str, str]:
        data = load_evidence() if ev is None else ev
        e = effect(data, first, second, metric)
        margin = seed_margin(data, metric)
        a, b = (float(data.get(s, metric).nanmean()) for s in (first, second))
        report = (f"{metric}: {a:.3f} vs {b:.3f}; difference {e.text()} over {e.pairs} pairs "
                  f"of {e.images} images and {e.seeds} training seeds (95% interval; it counts "
                  f"beyond the margin {margin:.3f}).")
        if caveat is not None:
            report += "\n" + caveat(data)
        return direction(e, margin), report

    return Question(text, DIRECTIONS, measure)


def conv2_question(ev: Evidence | None = None) -> Question:
    """Notebook 02: Grad-CAM at ``layer4.1.conv2`` (the post's example 1) vs the block output."""
    return evidence_question(
        "With the trained head, is Grad-CAM's energy at layer4.1.conv2 (inside the last block, "
        "the post's example 1) higher, about the same or lower than at the block's output "
        "layer4.1?", setting(layer="layer4.1.conv2"), setting(layer="layer4.1"), ev=ev)


def probe_question(ev: Evidence | None = None) -> Question:
    """Notebook 03: the cut model's own probe vs the original fc, at ``layer4.0``."""
    return evidence_question(
        "Cut after layer4.0. Is Grad-CAM's energy at layer4.0 higher, about the same or lower "
        "with a linear probe trained for the cut model than with the original fc that the "
        "post keeps?", setting(depth="cut", head="probe", layer="layer4.0"),
        setting(depth="cut", head="trained fc", layer="layer4.0"), ev=ev)


def layercam_question(ev: Evidence | None = None) -> Question:
    """Notebook 04: LayerCAM vs Grad-CAM at ``layer3.1`` (notebook 02 shows ``conv1``)."""
    return evidence_question(
        "At layer3.1, halfway up the network, is LayerCAM's energy higher, about the same or "
        "lower than Grad-CAM's?", setting(layer="layer3.1", method="layercam"),
        setting(layer="layer3.1"), ev=ev)


def random_fc_question(ev: Evidence | None = None) -> Question:
    """Notebook 05: claim (b) as the post ran it, with its random fc: clarity (Gini) of
    Grad-CAM at ``conv1`` vs ``layer4.1.conv2``."""
    return evidence_question(
        "With the post's random fc, is Grad-CAM's map at conv1 clearer (a higher Gini: mass "
        "more concentrated) than at layer4.1.conv2, about as clear, or less clear?",
        setting(head="random fc", layer="conv1"),
        setting(head="random fc", layer="layer4.1.conv2"), metric="clarity", ev=ev,
        caveat=_blank_caveat)


def _blank_caveat(ev: Evidence) -> str:
    """How many of claim (b)'s random-fc maps are blank (Gini 0), which the mean counts."""
    blank = {la: ev.get(setting(head="random fc", layer=la), "clarity")
             for la in ("conv1", "layer4.1.conv2")}
    counts = ", ".join(f"{la} {int((g == 0).sum())}" for la, g in blank.items())
    n = next(iter(blank.values())).numel()
    return (f"But it counts blank maps (Gini 0): {counts} of {n} (seed, pair) maps. Section 3 "
            "measures the effect without them, and how often each layer's map is blank.")
