"""The source post's three claims, built from the shipped evidence and judged by
:func:`gradcam_edu.verdict.judge` on two axes: localisation (``energy``: the share of the map's
mass on the object) and clarity (``clarity``: the Gini coefficient of the displayed map, 0 for
a flat map, near 1 when the mass sits on a few pixels; :func:`gradcam_edu.metrics.gini`).

    ev = load_evidence()                       # gradcam_edu.evidence
    for metric in ("energy", "clarity"):
        print(format_claims(measure_claims(ev, metric)))

The designs (every setting is measured for every seed, all with Grad-CAM):

* (a) the post: noise inside ``layer4.1`` comes from skip gradients. At ``layer4.1.conv2`` the
  effect of removing them is 0 by derivation (:data:`SKIP_DERIVATION`); where skip gradients
  do arrive (``layer4.0``, ``layer3.1``, ``conv1``) it is measured. The post's second reason,
  "conv2 holds only a residual", is the step from ``bn2`` to ``bn2 + skip``
  (:func:`inside_block_steps` separates BN, the addition and the ReLU).
* (b) ``conv1`` against ``layer4.1.conv2``, with the post's random ``fc`` (its comparison) and
  with the trained ``fc``.
* (c) cutting after ``layer4.0``: a factorial head (random fc / trained fc / probe) x hook point
  (``layer4.0.conv1`` / ``layer4.0``) x depth (full / cut); :func:`factorial_effects` gives its
  main effects and two-way interactions, the claim is judged on the six simple effects of depth.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import torch

from .evidence import FACTORS, Evidence, setting, setting_key
from .faithfulness import MODES
from .faithfulness_evidence import LAYER_GRIDS
from .faithfulness_evidence import LAYERS as FAITHFULNESS_LAYERS
from .verdict import Claim, Effect, contrast, derived, effect, seed_bootstrap, seed_margin

__all__ = ["HEADS", "HOOKS", "SKIP_DERIVATION", "STATEMENTS", "depth_effects", "purpose_table",
           "factorial_effects", "faithfulness_table", "isolated_effects", "post_decomposition",
           "inside_block_steps", "measure_claims"]

STATEMENTS = {
    "a": "Grad-CAM inside a residual block (layer4.1.conv2) is noisy because gradient also "
         "flows through the skip connection",
    "a2": "Where skip gradients do arrive, removing them gives better maps",
    "a3": "conv2 holds only a residual: adding the skip (bn2 -> bn2 + skip) gives better maps",
    "b": "Grad-CAM at the first convolution (conv1) gives clearer maps than inside the last "
         "block (layer4.1.conv2)",
    "c": "Cutting the network after layer4.0 gives clearer maps",
}
"""The claims, in the course's words (a2 and a3 are the two halves of the post's reasoning
for a that can be tested)."""

SKIP_DERIVATION = (
    "the skip joins layer4.1 at the sum bn2(conv2(.)) + skip, after conv2; the gradient of the "
    "score at conv2's output is d score/d sum * relu'(sum) * (bn2's per-channel scale), and no "
    "path from the score back to conv2 runs through the skip. Detaching the skip leaves every "
    "forward value, hence relu'(sum), unchanged, so the gradient and the map at conv2 are the "
    "same with and without skip gradients."
)
HEADS = ("random fc", "trained fc", "probe")
HOOKS = ("layer4.0.conv1", "layer4.0")


def inside_block_steps(ev: Evidence, metric: str, n_boot: int = 2000) -> list[Effect]:
    """The hook points of ``layer4.1`` one operation apart (trained head): ``bn2 - conv2``
    (batch norm), ``bn2 + skip - bn2`` (the addition), ``output - (bn2 + skip)`` (the ReLU),
    and ``output - conv2`` (all three)."""
    points = [("conv2", "layer4.1.conv2"), ("bn2", "layer4.1.bn2"),
              ("bn2 + skip", "layer4.1.pre_relu"), ("output", "layer4.1")]
    steps = [effect(ev, setting(layer=b), setting(layer=a), metric, f"{nb} - {na}", n_boot)
             for (na, a), (nb, b) in zip(points, points[1:], strict=False)]
    return steps + [effect(ev, setting(layer="layer4.1"), setting(layer="layer4.1.conv2"),
                           metric, "output - conv2 (all three)", n_boot)]


def _cell(head: str, hook: str, depth: str) -> dict[str, str]:
    return setting(depth=depth, head=head, layer=hook)


def factorial_effects(ev: Evidence, metric: str, n_boot: int = 2000) -> list[Effect]:
    """Claim (c)'s 3 x 2 x 2 design (head x hook point x depth; reference levels trained fc,
    ``layer4.0.conv1``, full): main effects (a level minus the reference, averaged over the
    other factors) and two-way interactions (the difference of one factor's effect between two
    levels of another, averaged over the third)."""
    out = []
    cells = [(h, k) for h in HEADS for k in HOOKS]
    out.append(contrast(ev, [(_cell(h, k, d), s / 6) for h, k in cells
                             for d, s in (("cut", 1), ("full", -1))],
                        metric, "depth: cut - full", n_boot))
    for h in ("random fc", "probe"):
        out.append(contrast(ev, [(_cell(hh, k, d), s / 4) for k in HOOKS for d in ("full", "cut")
                                 for hh, s in ((h, 1), ("trained fc", -1))],
                            metric, f"head: {h} - trained fc", n_boot))
    out.append(contrast(ev, [(_cell(h, kk, d), s / 6) for h in HEADS for d in ("full", "cut")
                             for kk, s in (("layer4.0", 1), ("layer4.0.conv1", -1))],
                        metric, "hook: layer4.0 - layer4.0.conv1", n_boot))
    dep = (("cut", 1), ("full", -1))
    out.append(contrast(ev, [(_cell(h, k, d), s * t / 3) for h in HEADS for d, s in dep
                             for k, t in (("layer4.0", 1), ("layer4.0.conv1", -1))],
                        metric, "depth x hook", n_boot))
    for h in ("random fc", "probe"):
        out.append(contrast(ev, [(_cell(hh, k, d), s * t / 2) for k in HOOKS for d, s in dep
                                 for hh, t in ((h, 1), ("trained fc", -1))],
                            metric, f"depth x head ({h})", n_boot))
        out.append(contrast(ev, [(_cell(hh, k, d), s * t / 2) for d in ("full", "cut")
                                 for k, s in (("layer4.0", 1), ("layer4.0.conv1", -1))
                                 for hh, t in ((h, 1), ("trained fc", -1))],
                            metric, f"hook x head ({h})", n_boot))
    return out


def depth_effects(ev: Evidence, metric: str, n_boot: int = 2000) -> list[Effect]:
    """Cut minus full model, the depth changed alone, at every head x hook point of
    claim (c)'s design (six simple effects)."""
    return isolated_effects(ev, "depth", "cut", "full", metric, n_boot)


def post_decomposition(ev: Evidence, metric: str, n_boot: int = 2000) -> list[Effect]:
    """The post's comparison (example 3 - example 1: random fc at ``layer4.1.conv2`` of the
    full model -> trained fc at ``layer4.0.conv1`` of the cut model) as one-factor steps, in
    both orders of the head and the hook point (the steps of each order sum to the whole),
    then the head x hook interaction: how much the hook step differs between the heads.
    Labels: ``A1`` head (random -> trained fc) at ``layer4.1.conv2``, ``A2`` hook point
    (``layer4.1.conv2`` -> ``layer4.0.conv1``) with the trained fc; ``B1`` / ``B2`` the same
    two steps in the other order; ``3`` depth (full -> cut)."""
    ex1 = setting(head="random fc", layer="layer4.1.conv2")
    mid_a = setting(layer="layer4.1.conv2")                         # head first
    mid_b = setting(head="random fc", layer="layer4.0.conv1")       # hook point first
    both = setting(layer="layer4.0.conv1")
    ex3 = setting(depth="cut", layer="layer4.0.conv1")
    steps = [("A1 head, at layer4.1.conv2", mid_a, ex1),      # random -> trained fc
             ("A2 hook point, trained fc", both, mid_a),      # conv2 -> layer4.0.conv1
             ("B1 hook point, random fc", mid_b, ex1),
             ("B2 head, at layer4.0.conv1", both, mid_b),
             ("3 depth, trained fc @ layer4.0.conv1", ex3, both)]
    out = [effect(ev, a, b, metric, label, n_boot) for label, a, b in steps]
    out.append(contrast(ev, [(both, 1.0), (mid_a, -1.0), (mid_b, -1.0), (ex1, 1.0)], metric,
                        "head x hook (A2 - B1)", n_boot))
    out.append(effect(ev, ex3, ex1, metric, "total: example 3 - example 1", n_boot))
    return out


def isolated_effects(ev: Evidence, cause: str, clearer: str, other: str, metric: str,
                     n_boot: int = 2000, skip: Sequence[str] = (),
                     name: str | None = None) -> list[Effect]:
    """Every measured comparison that changes ``cause`` alone, from ``other`` to ``clearer``
    (e.g. ``cause="layer"``, ``clearer="layer4.1.pre_relu"``, ``other="layer4.1.bn2"``):
    one effect per setting of the other factors in which both levels were measured (Grad-CAM
    only; ``skip``: layers left out, e.g. where the effect is a derivation). Found from the
    evidence's keys, so no measured setting can be left out by hand. Labels read
    ``"<head>[, cut][, skip gradient off][ @ layer]: <name>"``, ``name`` defaulting to
    ``"<clearer> - <other>"``."""
    if cause not in FACTORS or cause == "method":
        raise ValueError(f"cause: expected one of {FACTORS[:-1]}, got {cause!r}")
    name = name or f"{clearer} - {other}"
    out = []
    for key in sorted(ev.scores):
        s = dict(zip(FACTORS, key.split("|"), strict=True))
        if s[cause] != other or s["method"] != "gradcam" or s["layer"] in skip:
            continue
        up = {**s, cause: clearer}
        if setting_key(up) not in ev.scores:
            continue
        where = [s["head"]] + [text for f, value, text in (
            ("depth", "cut", "cut"), ("skip_gradient", "off", "skip gradient off"))
            if f != cause and s[f] == value]
        at = f" @ {s['layer']}" if cause != "layer" else ""
        out.append(effect(ev, up, s, metric, f"{', '.join(where)}{at}: {name}", n_boot))
    if not out:
        raise ValueError(f"cause: no measured setting changes {cause!r} alone from {other!r} "
                         f"to {clearer!r}")
    return out


def measure_claims(ev: Evidence, metric: str = "energy", margin: float | None = None,
                   n_boot: int = 2000) -> list[Claim]:
    """Claims a, a2, a3, b, c (see the module docstring) judged on ``metric``; ``margin``
    defaults to :func:`gradcam_edu.verdict.seed_margin` of that metric."""
    margin = seed_margin(ev, metric) if margin is None else margin
    off, on = (setting(layer="layer4.1.conv2", skip_gradient=v) for v in ("off", "on"))
    measured = ev.get(off, metric) - ev.get(on, metric)
    if measured.nan_to_num().abs().max() > 0:          # the derivation, checked on the data
        raise AssertionError("skip gradients changed the map at layer4.1.conv2: "
                             f"max |difference| {measured.abs().max():.3g}")
    a = Claim("a", STATEMENTS["a"], "skip_gradient", metric, [derived(
        "layer4.1.conv2: skip gradient off - on", off, on, metric, SKIP_DERIVATION)],
        margin=margin)
    a2 = Claim("a2", STATEMENTS["a2"], "skip_gradient", metric, isolated_effects(
        ev, "skip_gradient", "off", "on", metric, n_boot, skip=["layer4.1.conv2"],
        name="skip gradient off - on"), margin=margin)
    a3 = Claim("a3", STATEMENTS["a3"], "layer", metric, isolated_effects(
        ev, "layer", "layer4.1.pre_relu", "layer4.1.bn2", metric, n_boot,
        name="bn2 + skip - bn2"), margin=margin)
    b_iso = isolated_effects(ev, "layer", "conv1", "layer4.1.conv2", metric, n_boot)
    b_src = next(e for e in b_iso if e.other == setting(head="random fc", layer="layer4.1.conv2"))
    b = Claim("b", STATEMENTS["b"], "layer", metric, b_iso, source=b_src, margin=margin)
    c_iso = depth_effects(ev, metric, n_boot)
    c_src = effect(ev, _cell("trained fc", "layer4.0.conv1", "cut"),
                   setting(head="random fc", layer="layer4.1.conv2"), metric,
                   "post ex.3 - post ex.1", n_boot)
    c = Claim("c", STATEMENTS["c"], "depth", metric, c_iso, source=c_src, margin=margin)
    return [a, a2, a3, b, c]


PURPOSE_LAYERS = FAITHFULNESS_LAYERS   # the faithfulness evidence is scored at these layers
PURPOSE_METRICS = {"energy": "localisation", "clarity": "clarity",
                   "target_share": "class discrimination"}


def purpose_table(ev: Evidence, layers=PURPOSE_LAYERS, n_boot: int = 1000,
                  ceilings: dict[str, tuple[str, float]] | None = None) -> str:
    """Per layer (Grad-CAM, trained head, full model): the mean of each of
    :data:`PURPOSE_METRICS` with its 95% interval over seeds and images, then the layer that
    scores best on each (the best mean; ties within the margin are listed together).
    ``ceilings``: ``{layer: (grid, mean energy ceiling on the same pairs)}`` adds the grid,
    the ceiling (:func:`gradcam_edu.metrics.energy_ceiling`) and energy / ceiling, and a
    last line for the best energy / ceiling."""
    means: dict[str, dict[str, Effect]] = {}
    head = f"{'layer':<16}" + "".join(f"{m + ' [95% CI]':<24}" for m in PURPOSE_METRICS)
    if ceilings is not None:
        head += f"{'grid':>8}{'ceiling':>9}{'energy/ceiling':>16}"
    lines = [head.rstrip()]
    for la in layers:
        means[la] = {m: contrast(ev, [(setting(layer=la), 1.0)], m, la, n_boot)
                     for m in PURPOSE_METRICS}
        row = f"{la:<16}" + "".join(f"{e.difference:.2f} [{e.low:.2f}, {e.high:.2f}]".ljust(24)
                                    for e in means[la].values())
        if ceilings is not None:
            grid, ceiling = ceilings[la]
            row += f"{grid:>8}{ceiling:>9.2f}{means[la]['energy'].difference / ceiling:>16.2f}"
        lines.append(row.rstrip())
    for m, purpose in PURPOSE_METRICS.items():
        margin = seed_margin(ev, m)
        best = max(means[la][m].difference for la in layers)
        tops = [la for la in layers if means[la][m].difference >= best - margin]
        lines.append(f"best {purpose} ({m}, within the margin {margin:g} of the best): "
                     f"{', '.join(tops)}")
    if ceilings is not None:
        ratio = {la: means[la]["energy"].difference / ceilings[la][1] for la in layers}
        top = max(ratio.values())
        lines.append("best energy / ceiling (within 0.02 of the best): "
                     + ", ".join(la for la in layers if ratio[la] >= top - 0.02))
    return "\n".join(lines)


def faithfulness_table(fe, ev: Evidence, n_boot: int = 1000) -> str:
    """Deletion and insertion (faithfulness, ``fe``: a
    :class:`gradcam_edu.faithfulness_evidence.Faithfulness`) beside energy (localisation, from
    ``ev``, the mean) on the same (image, class) pairs and seeds, per (layer, method): mean
    [95% interval over seeds and images], and the paired deletion difference from the random
    map on the layer's own grid (negative: the map deletes better than blocks of noise of
    that size); then the model-free references; then the maps whose deletion beats their
    grid's random map beyond the seed margin, and the best mean of each column."""
    p = len(fe.image_index)
    if (tuple(fe.seeds) != tuple(ev.seeds) or not torch.equal(ev.image_index[:p], fe.image_index)
            or not torch.equal(ev.target_class[:p], fe.target_class)):
        raise ValueError("fe: its seeds and pairs must be ev's seeds and first pairs")
    heads = ("deletion [95% CI]", "minus random, same grid", "insertion [95% CI]")
    lines = [f"{'layer':<15}{'method':<9}{heads[0]:<23}{heads[1]:<25}{heads[2]:<23}energy"]
    means: dict[str, dict[tuple[str, str], float]] = {c: {} for c in MODES + ("energy",)}
    beats, margin = [], seed_margin(fe, "deletion")

    def cell(scores: torch.Tensor, width: int = 23, sign: str = "") -> tuple[float, str, float]:
        mean, low, high, _ = seed_bootstrap(scores, fe.image_index, n_boot)
        return mean, f"{mean:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]".ljust(width), high

    for la, m in (k.split("|") for k in fe.scores if not k.startswith("(reference)")):
        g = LAYER_GRIDS[la]
        noise = fe.get("(reference)", f"random {g}x{g}", "deletion")
        (d, d_txt, _), (_, dd_txt, dd_high), (i, i_txt, _) = (
            cell(fe.get(la, m, "deletion")), cell(fe.get(la, m, "deletion") - noise, 25, "+"),
            cell(fe.get(la, m, "insertion")))
        energy = float(ev.get(setting(layer=la, method=m), "energy")[:, :p].double().mean())
        means["deletion"][(la, m)], means["insertion"][(la, m)] = d, i
        means["energy"][(la, m)] = energy
        if dd_high < -margin:
            beats.append(f"{la} {m}")
        lines.append(f"{la:<15}{m:<9}{d_txt}{dd_txt}{i_txt}{energy:.3f}")
    for name in fe.meta.get("references", []):
        energy = {"centre": ev.baselines.get("centre_energy")}.get(name)
        e = f"{float(energy[:p].mean()):.3f}" if energy is not None else "-"
        d, i = (f"{float(fe.get('(reference)', name, mode).double().mean()):.3f}"
                for mode in MODES)
        lines.append(f"{'(ref) ' + name:<24}{d:<23}{'':<25}{i:<23}{e}")
    lines.append(f"deletion: lower is better; insertion: higher is better. {p} pairs from "
                 f"{len(torch.unique(fe.image_index))} images x {len(fe.seeds)} seeds, "
                 f"{fe.meta.get('steps')} steps; 95% intervals over seeds and images")
    lines += textwrap.wrap(f"deletion beats the random map of its grid beyond the margin "
                           f"{margin:g}: {', '.join(beats) or 'none'}", 100,
                           subsequent_indent="    ")
    for col, sign in (("deletion", -1.0), ("insertion", 1.0), ("energy", 1.0)):
        m = seed_margin(fe if col != "energy" else ev, col)
        best = max(sign * v for v in means[col].values())
        tops = [f"{la} {me}" for (la, me), v in means[col].items() if sign * v >= best - m]
        lines += textwrap.wrap(f"best mean {col} (within its seed margin {m:g}): "
                               f"{', '.join(tops)}", 100, subsequent_indent="    ")
    return "\n".join(lines)
