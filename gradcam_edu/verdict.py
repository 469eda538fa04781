"""The source post's three claims as measurements, and a rule that states each one's verdict.

Each claim has the form "maps are clearer under setting X than under setting Y, because of a
cause". Settings are dicts of *factors* (``depth``, ``head``, ``layer``, ``skip_gradient``).
Two paired comparisons are measured on the same (image, class) pairs, each the mean
difference ``score(X) - score(Y)`` of a localisation score (default: the energy pointing game)
with its 95% paired-bootstrap interval over images (:func:`gradcam_edu.metrics.paired_bootstrap`):

* the **source** comparison: the two settings the post compared (they may differ in several
  factors at once);
* the **isolated** comparison: two settings that differ in the claimed cause and nothing else
  (when the source comparison already changes only the cause, it is its own isolated one).

The rule (:func:`judge`), with ``margin`` the smallest difference that counts (default 0):

=============  ==============================================================================
supported      the isolated interval lies above ``margin``: the cause alone makes maps clearer
confounded     the isolated interval does not, but the source interval does: the difference
               the post saw is real, and comes from the other factors that changed with it
unsupported    neither interval lies above ``margin``: no measurable effect, or the opposite
=============  ==============================================================================

:func:`measure_claims` runs every comparison on a trained torchvision-style ResNet
(:func:`claim_boards` scores the settings once, :func:`judge_claims` judges them for one
metric), with the model variants it needs built here: :func:`random_head` (the post's
examples 1-2 replaced the trained ``fc`` by a random one) and :func:`without_skip_gradient`
(the same forward, but no gradient flows back through any skip connection).
"""

from __future__ import annotations

import copy
import math
import textwrap
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from . import resnet
from .metrics import paired_bootstrap
from .scoreboard import METRICS, scoreboard
from .truncate import truncate

VERDICTS = ("supported", "unsupported", "confounded")


# ----------------------------------------------------------------------------- comparisons
def changed_factors(x: Mapping[str, str], y: Mapping[str, str]) -> list[str]:
    """Names of the factors whose values differ between two settings (sorted).

    A factor present in one setting only counts as changed.
    """
    return sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))


@dataclass(frozen=True)
class Comparison:
    """``score(clearer) - score(other)`` over the same pairs, with its 95% interval.

    ``clearer``: the setting the claim says gives clearer maps; ``other``: the one it is
    compared with. ``difference``, ``low``, ``high``: mean difference and its bootstrap
    interval (positive = the claim's direction); ``pairs`` / ``images``: how many (image,
    class) pairs and images were scored.
    """

    label: str
    clearer: dict[str, str]
    other: dict[str, str]
    metric: str
    difference: float
    low: float
    high: float
    pairs: int
    images: int

    @property
    def changed(self) -> list[str]:
        """The factors that differ between the two settings."""
        return changed_factors(self.clearer, self.other)

    def shows_effect(self, margin: float = 0.0) -> bool:
        """True when the whole 95% interval lies above ``margin`` (the claim's direction)."""
        return self.low > margin

    def text(self) -> str:
        """``+0.123 [+0.100, +0.150]``: the difference and its interval, 3 decimals."""
        def fmt(v: float) -> str:
            return f"{round(v, 3) + 0.0:+.3f}"      # + 0.0: a rounded -0.0 prints as +0.000

        return f"{fmt(self.difference)} [{fmt(self.low)}, {fmt(self.high)}]"


def compare(scores_clearer: torch.Tensor, scores_other: torch.Tensor,
            clearer: Mapping[str, str], other: Mapping[str, str], metric: str = "energy",
            groups: torch.Tensor | None = None, n_boot: int = 2000, seed: int = 0,
            label: str = "") -> Comparison:
    """Paired comparison of two settings scored on the same items.

    ``scores_clearer``, ``scores_other`` ``(M,)``: per-pair scores of the two settings, item i
    of one paired with item i of the other; pairs where either score is NaN are left out.
    ``groups`` ``(M,)``: the image of each pair, so that the pairs of one image are resampled
    together (default: every pair is its own image).
    """
    a = torch.as_tensor(scores_clearer, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(scores_other, dtype=torch.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"scores_other: expected {a.numel()} scores paired with scores_clearer,"
                         f" got {b.numel()}")
    g = (torch.arange(a.numel()) if groups is None
         else torch.as_tensor(groups).reshape(-1))
    if g.numel() != a.numel():
        raise ValueError(f"groups: expected one image id per pair ({a.numel()}), got {g.numel()}")
    keep = ~(torch.isnan(a) | torch.isnan(b))
    if not keep.any():
        raise ValueError("scores_clearer, scores_other: no pair has two finite scores")
    diff, low, high = paired_bootstrap(a[keep], b[keep], n_boot, seed, groups=g[keep])
    return Comparison(label=label, clearer=dict(clearer), other=dict(other), metric=metric,
                      difference=diff, low=low, high=high, pairs=int(keep.sum()),
                      images=int(torch.unique(g[keep]).numel()))


# ----------------------------------------------------------------------------- the rule
def judge(cause: str, source: Comparison, isolated: Comparison | None = None,
          margin: float = 0.0) -> tuple[str, str]:
    """The verdict on a claim, and the reason in one sentence built from the numbers.

    ``cause``: the factor the claim names; ``source``: the comparison the post made;
    ``isolated``: a comparison that changes ``cause`` only (None when ``source`` already
    does). Returns ``(verdict, reason)``, verdict one of :data:`VERDICTS` (see the module
    docstring for the rule).
    """
    if isolated is None:
        if source.changed != [cause]:
            raise ValueError(f"isolated: the source comparison changes {source.changed}, not "
                             f"only {cause!r}; give a comparison that changes {cause!r} alone")
        isolated = source
    if isolated.changed != [cause]:
        raise ValueError(f"isolated: must change only the claimed cause {cause!r}, but it "
                         f"changes {isolated.changed}")
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin: expected a finite number >= 0, got {margin}")
    iso = f"{cause} alone: {isolated.text()}"
    if isolated.shows_effect(margin):
        return "supported", f"{iso}, the interval lies above {margin:g}."
    how = "the opposite holds" if isolated.high < -margin else "no measurable effect"
    if isolated is source:
        return "unsupported", f"{iso}, {how}."
    src = f"the source comparison ({source.text()})"
    others = [f for f in source.changed if f != cause]
    if source.shows_effect(margin):
        return "confounded", (f"{iso}, {how}; {src} is real, so it comes with the other "
                              f"change(s): {', '.join(others) or 'other factors'}.")
    src_how = "the opposite" if source.high < -margin else "no measurable effect"
    return "unsupported", f"{iso}, {how}; {src} shows {src_how} either."


@dataclass
class Claim:
    """One claim of the post, measured: ``verdict`` in :data:`VERDICTS` and its ``reason``."""

    key: str
    statement: str
    cause: str
    source: Comparison
    isolated: Comparison | None
    margin: float = 0.0
    verdict: str = field(init=False)
    reason: str = field(init=False)

    def __post_init__(self) -> None:
        self.verdict, self.reason = judge(self.cause, self.source, self.isolated, self.margin)

    def comparisons(self) -> list[Comparison]:
        """The source comparison, then the isolated one when it is a different comparison."""
        return [self.source] + ([self.isolated] if self.isolated is not None else [])


STATEMENTS = {
    "a": "Grad-CAM inside a residual block (layer4.1.conv2) is noisy because gradient also "
         "flows through the skip connection",
    "b": "Grad-CAM at the first convolution (conv1) gives clearer maps than inside the last "
         "block",
    "c": "Cutting the network after layer4.0 gives clearer maps",
}
"""The three claims of the source post, in the course's words."""


def format_claims(claims: Sequence[Claim], width: int = 96) -> str:
    """A plain-text report, lines at most ``width`` characters: per claim its comparisons
    (difference and 95% interval, 3 decimals; the factors they change), the verdict and the
    reason."""
    lines = []
    for c in claims:
        lines += textwrap.wrap(f"({c.key}) {c.statement}", width, subsequent_indent="    ")
        for comp in c.comparisons():
            kind = "isolated" if comp is c.isolated else (
                "source" if c.isolated is not None else "one factor")
            lines.append(f"    {kind:<11}{comp.label:<40} {comp.text()}")
            lines.append(f"    {'':<11}changes: {', '.join(comp.changed)}")
        lines += textwrap.wrap(f"verdict: {c.verdict.upper()}. {c.reason}", width,
                               initial_indent="    ", subsequent_indent="      ")
    if claims:
        first = claims[0].source
        lines += textwrap.wrap(
            f"{first.metric}: mean paired difference X - Y over {first.pairs} (image, class) "
            f"pairs from {first.images} images; 95% intervals: paired bootstrap over images",
            width)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- model variants
def random_head(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose ``fc`` is a fresh ``nn.Linear`` of the same shape,
    initialised under ``seed`` (the post's ``model.fc = nn.Linear(512, 1000)``)."""
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise TypeError(f"model: expected a linear head named fc, got {type(fc).__name__}")
    out = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out.fc = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device,
                           dtype=fc.weight.dtype)
    return out.train(model.training)


def _forward_without_skip_gradient(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return resnet.block_forward(self, x, skip_gradient=False)


def without_skip_gradient(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose residual blocks add a *detached* skip.

    The forward pass computes exactly the same values (same activations, same logits); in the
    backward pass no gradient flows through any skip connection (identity or downsample), so
    every gradient reaches a layer through residual branches only. Blocks are torchvision
    ``BasicBlock`` / ``Bottleneck`` (:func:`gradcam_edu.resnet.is_block`), each running
    ``resnet.block_forward(block, x, skip_gradient=False)``; module names unchanged.
    """
    out = copy.deepcopy(model)
    blocks = [m for m in out.modules() if resnet.is_block(m)]
    if not blocks:
        raise TypeError(f"model: {type(model).__name__} has no torchvision residual block "
                        "(BasicBlock or Bottleneck)")
    for block in blocks:
        block.forward = types.MethodType(_forward_without_skip_gradient, block)
    return out


# ----------------------------------------------------------------------------- the measurements
def _factors(depth: str, head: str, layer: str, skip: str = "on") -> dict[str, str]:
    return {"depth": depth, "head": head, "layer": layer, "skip_gradient": skip}


def claim_boards(model: nn.Module, images: torch.Tensor, masks, classes, head_seed: int = 0,
                 batch_size: int = 16) -> dict:
    """The Grad-CAM scoreboards that claims a, b, c are judged on, all on the same pairs.

    ``images``, ``masks``, ``classes``: as for :func:`gradcam_edu.scoreboard.scoreboard` (e.g.
    from :func:`gradcam_edu.shapes.shapes_sample`). Keys: ``"full"`` (``conv1``,
    ``layer4.0.conv1``, ``layer4.1.conv2``, ``layer4.1``), ``"random fc"`` (the post's head,
    seeded by ``head_seed``; ``layer4.1.conv2``), ``"no skip gradient"``
    (:func:`without_skip_gradient`; ``layer4.1.conv2``) and ``"cut after layer4.0"`` (original
    ``fc``; ``layer4.0.conv1``).
    """
    def run(m: nn.Module, layers: list[str]):
        return scoreboard(m, images, masks, classes, layers, methods=("gradcam",), n_boot=10,
                          batch_size=batch_size)

    return {"full": run(model, ["conv1", "layer4.0.conv1", "layer4.1.conv2", "layer4.1"]),
            "random fc": run(random_head(model, head_seed), ["layer4.1.conv2"]),
            "no skip gradient": run(without_skip_gradient(model), ["layer4.1.conv2"]),
            "cut after layer4.0": run(truncate(model, "layer4.0", head="original"),
                                      ["layer4.0.conv1"])}


def judge_claims(boards: Mapping, metric: str = "energy", n_boot: int = 2000, seed: int = 0,
                 margin: float = 0.0) -> list[Claim]:
    """Claims a, b, c judged on :func:`claim_boards`' scores for one ``metric`` (a scoreboard
    metric: ``"energy"``, ``"pointing_tol"``, ``"pointing"``, ``"target_share"``).

    Comparisons (all Grad-CAM, same pairs, intervals bootstrapped over images):

    * (a) source: block output ``layer4.1`` vs ``layer4.1.conv2``; isolated: ``layer4.1.conv2``
      with the skip gradients removed (:func:`without_skip_gradient`) vs with them.
    * (b) ``conv1`` vs ``layer4.1.conv2`` (trained head): a one-factor comparison.
    * (c) source: the post's example 3 (cut after ``layer4.0``, original ``fc``, hooked at
      ``layer4.0.conv1``) vs its example 1 (full model, random ``fc``, ``layer4.1.conv2``);
      isolated: cut vs full model, both with the trained ``fc``, both at ``layer4.0.conv1``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    groups = boards["full"].image_index

    def s(key, layer):
        return boards[key].scores[(layer, "gradcam")][metric]

    def cmp(label, sa, a, sb, b):
        return compare(sa, sb, a, b, metric, groups, n_boot, seed, label)

    trained = "trained fc"
    a_src = cmp("layer4.1 vs layer4.1.conv2", s("full", "layer4.1"),
                _factors("full", trained, "layer4.1"), s("full", "layer4.1.conv2"),
                _factors("full", trained, "layer4.1.conv2"))
    a_iso = cmp("layer4.1.conv2: skip gradient off vs on",
                s("no skip gradient", "layer4.1.conv2"),
                _factors("full", trained, "layer4.1.conv2", "off"),
                s("full", "layer4.1.conv2"), _factors("full", trained, "layer4.1.conv2"))
    b_src = cmp("conv1 vs layer4.1.conv2", s("full", "conv1"), _factors("full", trained, "conv1"),
                s("full", "layer4.1.conv2"), _factors("full", trained, "layer4.1.conv2"))
    cut = "cut after layer4.0"
    c_src = cmp("post ex.3 vs post ex.1", s(cut, "layer4.0.conv1"),
                _factors(cut, trained, "layer4.0.conv1"),
                s("random fc", "layer4.1.conv2"), _factors("full", "random fc", "layer4.1.conv2"))
    c_iso = cmp("layer4.0.conv1: cut vs full model", s(cut, "layer4.0.conv1"),
                _factors(cut, trained, "layer4.0.conv1"),
                s("full", "layer4.0.conv1"), _factors("full", trained, "layer4.0.conv1"))
    return [
        Claim("a", STATEMENTS["a"], "skip_gradient", a_src, a_iso, margin),
        Claim("b", STATEMENTS["b"], "layer", b_src, None, margin),
        Claim("c", STATEMENTS["c"], "depth", c_src, c_iso, margin),
    ]


def measure_claims(model: nn.Module, images: torch.Tensor, masks, classes,
                   metric: str = "energy", n_boot: int = 2000, seed: int = 0,
                   head_seed: int = 0, margin: float = 0.0, batch_size: int = 16,
                   ) -> list[Claim]:
    """Measure claims a, b, c on a trained torchvision-style ResNet-18 with Grad-CAM:
    :func:`claim_boards` then :func:`judge_claims` (see both for the comparisons)."""
    boards = claim_boards(model, images, masks, classes, head_seed, batch_size)
    return judge_claims(boards, metric, n_boot, seed, margin)
