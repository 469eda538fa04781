"""The source post's claims as measured effects, and a rule that states each one's verdict.

Each claim says "maps are better under setting X than under setting Y, because of a cause".
Settings are dicts of factors (:mod:`gradcam_edu.evidence`: ``depth``, ``head``, ``layer``,
``skip_gradient``). An :class:`Effect` is the mean of a per-pair contrast of scores (e.g.
``score(X) - score(Y)``) over the same (image, class) pairs of every training seed, with a
95% interval from a two-stage bootstrap that resamples seeds and images
(:func:`seed_bootstrap`), so that it covers retraining as well as the choice of images.

**The rule** (:func:`judge`), with ``margin`` the smallest effect that counts
(:func:`seed_margin`: how much retraining alone moves a setting's mean score):

=============  ==============================================================================
supported      every *isolated* effect (the cause changed alone, in each setting of the other
               factors that was measured) lies above ``margin``
mixed          some isolated effects lie above ``margin``, others do not: it depends on the
               setting, and the reason names where it holds
confounded     no isolated effect can reach ``margin`` (every interval lies below it, or the
               effect is 0 by derivation), but the post's *source* comparison lies above it,
               and it changes the cause together with other factors: the difference the post
               saw is real and comes from those other factors
inconclusive   no isolated effect lies above ``margin``, but some interval still reaches above
               it: the data neither show the effect nor rule it out
unsupported    no isolated effect can reach ``margin`` (every interval lies below it, or the
               effect is 0 by derivation), and no source comparison shows a real difference
               that varies the cause with other factors
=============  ==============================================================================

An isolated effect must change the cause and nothing else, and a source comparison must vary
the cause (else :func:`judge` raises). An effect fixed by the structure of the network (e.g.
removing skip gradients cannot change the gradient at ``layer4.1.conv2``, which no skip
reaches) is a :func:`derived` effect: it carries its derivation and no interval, and is
reported as a derivation, never as a measurement.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .evidence import Evidence

VERDICTS = ("supported", "mixed", "confounded", "inconclusive", "unsupported")


def changed_factors(x: Mapping[str, str], y: Mapping[str, str]) -> list[str]:
    """Names of the factors whose values differ between two settings (sorted); a factor
    present in one setting only counts as changed."""
    return sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))


def _fmt(v: float) -> str:
    return f"{round(v, 3) + 0.0:+.3f}"          # + 0.0: a rounded -0.0 prints as +0.000


@dataclass(frozen=True)
class Effect:
    """A contrast of scores over the same pairs: ``difference`` and its 95% interval
    [``low``, ``high``] (positive: the claim's direction), ``per_seed`` means, and how many
    ``pairs``, ``images`` and ``seeds`` it covers. ``clearer`` / ``other``: the two settings
    of a simple comparison (None for a main effect or an interaction). ``derivation``: set
    for an effect fixed at 0 by the network's structure (then no interval is measured)."""

    label: str
    metric: str
    difference: float
    low: float
    high: float
    per_seed: tuple[float, ...] = ()
    pairs: int = 0
    images: int = 0
    seeds: int = 0
    clearer: dict[str, str] | None = None
    other: dict[str, str] | None = None
    derivation: str | None = None

    @property
    def changed(self) -> list[str]:
        """The factors that differ between the two settings (empty for a general contrast)."""
        if self.clearer is None or self.other is None:
            return []
        return changed_factors(self.clearer, self.other)

    def shows_effect(self, margin: float = 0.0) -> bool:
        """True when the whole interval lies above ``margin`` (never for a derived effect)."""
        return self.derivation is None and self.low > margin

    def shows_opposite(self, margin: float = 0.0) -> bool:
        """True when the whole interval lies below ``-margin``."""
        return self.derivation is None and self.high < -margin

    def text(self) -> str:
        """``+0.123 [+0.100, +0.150]`` (3 decimals), or ``0 by derivation`` when derived."""
        if self.derivation is not None:
            return "0 by derivation"
        return f"{_fmt(self.difference)} [{_fmt(self.low)}, {_fmt(self.high)}]"


def derived(label: str, clearer: Mapping[str, str], other: Mapping[str, str], metric: str,
            derivation: str) -> Effect:
    """An effect that is exactly 0 because of the network's structure; ``derivation`` says
    why (shown in full wherever the effect is reported)."""
    if not derivation:
        raise ValueError("derivation: expected the argument that makes the effect 0")
    return Effect(label, metric, 0.0, 0.0, 0.0, clearer=dict(clearer), other=dict(other),
                  derivation=derivation)


# ----------------------------------------------------------------------------- intervals
def seed_bootstrap(diff: torch.Tensor, groups: torch.Tensor, n_boot: int = 2000,
                   seed: int = 0) -> tuple[float, float, float, tuple[float, ...]]:
    """Mean of a per-pair contrast ``diff`` ``(S, P)`` (S seeds, the same P pairs each) and
    its 95% two-stage bootstrap interval: each resample draws S seeds with replacement and the
    images (``groups`` ``(P,)``, the pairs of one image stay together) with replacement, and
    averages the drawn seeds' means over the drawn images. NaN entries (a metric that does not
    apply to a pair) are left out. Returns ``(mean, low, high, per-seed means)``."""
    d = torch.as_tensor(diff, dtype=torch.float64)
    d = d[None] if d.ndim == 1 else d
    if d.ndim != 2 or d.shape[1] != len(groups):
        raise ValueError(f"diff: expected (seeds, {len(groups)}) contrasts, got {tuple(d.shape)}")
    if n_boot < 1:
        raise ValueError(f"n_boot: expected an int >= 1, got {n_boot}")
    keep = ~torch.isnan(d).any(0)
    if not keep.any():
        raise ValueError("diff: no pair has a finite contrast")
    d = d[:, keep]
    _, gid = torch.unique(torch.as_tensor(groups)[keep], return_inverse=True)
    k = int(gid.max()) + 1
    sums = torch.zeros(d.shape[0], k, dtype=torch.float64).index_add_(1, gid, d)
    counts = torch.zeros(k, dtype=torch.float64).index_add_(0, gid, torch.ones(len(gid),
                                                                           dtype=torch.float64))
    gen = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, k, (n_boot, k), generator=gen)
    seeds = torch.randint(0, d.shape[0], (n_boot, d.shape[0]), generator=gen)
    per_boot = sums[:, imgs].sum(-1) / counts[imgs].sum(-1)          # (S, n_boot)
    means = per_boot.gather(0, seeds.T).mean(0)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64))
    per_seed = tuple(float(v) for v in d.mean(1))
    return float(d.mean()), float(low), float(high), per_seed


def contrast(ev: Evidence, weights: Mapping[str, float] | Sequence[tuple[Mapping, float]],
             metric: str, label: str, n_boot: int = 2000, seed: int = 0) -> Effect:
    """The effect of a linear contrast ``sum_s w_s * score(s)`` of settings, per pair, over
    every seed of ``ev``: ``weights`` as ``[(setting, w), ...]``. Main effects and
    interactions of a factorial design are such contrasts (:func:`factorial_effects`)."""
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    if not items:
        raise ValueError("weights: expected at least one (setting, weight)")
    total = sum(w * ev.get(s, metric).double() for s, w in items)
    mean, low, high, per_seed = seed_bootstrap(total, ev.image_index, n_boot, seed)
    keep = ~torch.isnan(total).any(0)
    return Effect(label, metric, mean, low, high, per_seed, pairs=int(keep.sum()),
                  images=int(torch.unique(ev.image_index[keep]).numel()), seeds=len(ev.seeds))


def effect(ev: Evidence, clearer: Mapping[str, str], other: Mapping[str, str], metric: str,
           label: str = "", n_boot: int = 2000, seed: int = 0) -> Effect:
    """``score(clearer) - score(other)``: a simple comparison of two measured settings."""
    e = contrast(ev, [(clearer, 1.0), (other, -1.0)], metric, label, n_boot, seed)
    return Effect(**{**e.__dict__, "clearer": dict(clearer), "other": dict(other)})


def seed_margin(ev: Evidence, metric: str) -> float:
    """The smallest effect that counts for ``metric``: the median, over every measured
    setting, of the standard deviation across training seeds of the setting's mean score
    (how much retraining alone moves a score), rounded up to 0.005. Needs 2 seeds or more."""
    if len(ev.seeds) < 2:
        raise ValueError(f"ev: a margin from seed variation needs >= 2 seeds, got {ev.seeds}")
    sds = [float(t.double().nanmean(1).std()) for t in
           (per[metric] for per in ev.scores.values()) if not torch.isnan(t).all()]
    sd = float(torch.tensor(sds, dtype=torch.float64).quantile(0.5))
    return math.ceil(sd / 0.005 - 1e-9) * 0.005


# ----------------------------------------------------------------------------- the rule
def _check_isolated(cause: str, isolated: Sequence[Effect]) -> None:
    if not isolated:
        raise ValueError(f"isolated: expected at least one effect of {cause!r} alone")
    for e in isolated:
        if e.changed != [cause]:
            raise ValueError(f"isolated: {e.label!r} must change only the claimed cause "
                             f"{cause!r}, but it changes {e.changed or 'no named setting'}")


def judge(cause: str, isolated: Sequence[Effect], source: Effect | None = None,
          margin: float = 0.0) -> tuple[str, str]:
    """The verdict on a claim (one of :data:`VERDICTS`) and the reason in one sentence.

    ``cause``: the factor the claim names; ``isolated``: effects that change ``cause`` alone
    (one per setting of the other factors); ``source``: the comparison the post made (None
    when it made none that varies the cause). See the module docstring for the rule.
    """
    _check_isolated(cause, isolated)
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin: expected a finite number >= 0, got {margin}")
    if source is not None and cause not in source.changed:
        raise ValueError(f"source: {source.label!r} changes {source.changed}, not the claimed "
                         f"cause {cause!r}, so it cannot test the claim; pass source=None")
    above = [e for e in isolated if e.shows_effect(margin)]
    parts = "; ".join(f"{e.label}: {e.text()}" for e in isolated)
    bar = f"margin {margin:g}"
    if len(above) == len(isolated):
        return "supported", f"{cause} alone, every setting above the {bar} ({parts})."
    if above:
        where = ", ".join(e.label for e in above)
        return "mixed", f"{cause} alone is above the {bar} only at {where} ({parts})."
    ruled_out = all(e.derivation is not None or e.high <= margin for e in isolated)
    if all(e.derivation is not None for e in isolated):
        how = "0 by derivation"
    elif all(e.derivation is not None or e.shows_opposite(margin) for e in isolated):
        how = "the opposite holds"
    elif ruled_out:
        how = f"every interval below the {bar}"
    else:
        how = f"no interval above the {bar}, some reach above it"
    if not ruled_out:
        return "inconclusive", f"{cause} alone: {how} ({parts})."
    if source is not None and len(source.changed) > 1 and source.shows_effect(margin):
        others = [f for f in source.changed if f != cause]
        return "confounded", (f"{cause} alone: {how} ({parts}); the post's comparison "
                              f"({source.text()}) is real, so it comes with {', '.join(others)}.")
    src = f"; the post's comparison: {source.text()}" if source is not None else ""
    return "unsupported", f"{cause} alone: {how} ({parts}){src}."


@dataclass
class Claim:
    """One claim judged on one ``metric``: ``verdict`` in :data:`VERDICTS` and its
    ``reason``, from ``isolated`` effects and an optional ``source`` comparison."""

    key: str
    statement: str
    cause: str
    metric: str
    isolated: list[Effect]
    source: Effect | None = None
    margin: float = 0.0
    verdict: str = field(init=False)
    reason: str = field(init=False)

    def __post_init__(self) -> None:
        self.verdict, self.reason = judge(self.cause, self.isolated, self.source, self.margin)

    def effects(self) -> list[Effect]:
        """The source comparison (when there is one), then the isolated effects (the source
        once, when it is also one of them)."""
        head = [self.source] if self.source is not None else []
        return head + [e for e in self.isolated if e is not self.source]


def format_claims(claims: Sequence[Claim], width: int = 100) -> str:
    """A plain-text report (lines at most ``width`` characters): per claim its effects, the
    verdict with its reason, and for derived effects the derivation."""
    lines = []
    for c in claims:
        lines += textwrap.wrap(f"({c.key}) {c.statement} [{c.metric}, margin {c.margin:g}]",
                               width, subsequent_indent="    ")
        for e in c.effects():
            kind = "isolated" if e is not c.source else (
                "source=iso" if any(e is i for i in c.isolated) else "source")
            lines.append(f"    {kind:<11}{e.label:<53} {e.text()}")
            if e.derivation:
                lines += textwrap.wrap(f"derivation: {e.derivation}", width,
                                       initial_indent=" " * 15, subsequent_indent=" " * 15)
        lines += textwrap.wrap(f"verdict: {c.verdict.upper()}", width, initial_indent="    ")
    if claims:
        e = next(e for c in claims for e in c.effects() if e.derivation is None)
        lines += textwrap.wrap(
            f"mean paired difference over {e.pairs} (image, class) pairs from {e.images} images"
            f" and {e.seeds} training seeds; 95% intervals: bootstrap over seeds and images",
            width)
    return "\n".join(lines)


def format_effects(effects: Sequence[Effect], width: int = 100) -> str:
    """One line per effect: label, difference [95% interval], and the per-seed means (on a
    second line when the first would be longer than ``width``)."""
    w = max(len(e.label) for e in effects) + 2
    out = []
    for e in effects:
        seeds = "seeds: " + "  ".join(_fmt(v) for v in e.per_seed)
        line = f"{e.label:<{w}}{e.text():<26}"
        if len(line) + len(seeds) > width:          # never cut: the seeds go on their own line
            out += [line.rstrip(), " " * min(w, width - len(seeds)) + seeds]
        else:
            out.append(line + seeds)
    return "\n".join(out)


def describe_effects(effects: Sequence[Effect], margin: float) -> str:
    """One sentence per effect, for prose that must follow from the numbers: whether its
    interval lies above ``margin``, below ``-margin`` or neither, and on how many seeds the
    per-seed mean is on the same side."""
    out = []
    for e in effects:
        if e.derivation is not None:
            out.append(f"{e.label}: 0 by derivation.")
            continue
        if e.shows_effect(margin):
            side, n = "positive beyond the margin", sum(v > margin for v in e.per_seed)
        elif e.shows_opposite(margin):
            side, n = "negative beyond the margin", sum(v < -margin for v in e.per_seed)
        else:
            side, n = "not beyond the margin either way", None
        seeds = f" (per-seed means beyond it on {n} of {len(e.per_seed)} seeds)" if n is not None \
            else ""
        out.append(f"{e.label}: {e.text()}, {side}{seeds}.")
    return "\n".join(out)
