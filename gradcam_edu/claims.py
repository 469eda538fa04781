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

from .evidence import Evidence, setting
from .verdict import Claim, Effect, contrast, derived, effect, seed_margin

__all__ = ["HEADS", "HOOKS", "SKIP_DERIVATION", "STATEMENTS", "depth_effects", "purpose_table",
           "factorial_effects",
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
SKIP_LAYERS = ("layer4.0", "layer3.1", "conv1")


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
    return [effect(ev, _cell(h, k, "cut"), _cell(h, k, "full"), metric,
                   f"{h} @ {k}: cut - full", n_boot) for h in HEADS for k in HOOKS]


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
    a2 = Claim("a2", STATEMENTS["a2"], "skip_gradient", metric, [
        effect(ev, setting(layer=la, skip_gradient="off"), setting(layer=la), metric,
               f"{la}: skip gradient off - on", n_boot) for la in SKIP_LAYERS], margin=margin)
    a3 = Claim("a3", STATEMENTS["a3"], "layer", metric, [
        effect(ev, setting(layer="layer4.1.pre_relu"), setting(layer="layer4.1.bn2"), metric,
               "bn2 + skip - bn2", n_boot)], margin=margin)
    b_eff = {h: effect(ev, setting(head=h, layer="conv1"), setting(head=h, layer="layer4.1.conv2"),
                       metric, f"{h}: conv1 - layer4.1.conv2", n_boot)
             for h in ("random fc", "trained fc")}
    b = Claim("b", STATEMENTS["b"], "layer", metric, list(b_eff.values()),
              source=b_eff["random fc"], margin=margin)
    c_iso = depth_effects(ev, metric, n_boot)
    c_src = effect(ev, _cell("trained fc", "layer4.0.conv1", "cut"),
                   setting(head="random fc", layer="layer4.1.conv2"), metric,
                   "post ex.3 - post ex.1", n_boot)
    c = Claim("c", STATEMENTS["c"], "depth", metric, c_iso, source=c_src, margin=margin)
    return [a, a2, a3, b, c]


PURPOSE_LAYERS = ("conv1", "layer1.1", "layer2.1", "layer3.1", "layer4.0", "layer4.1.conv2",
                  "layer4.1")
PURPOSE_METRICS = {"energy": "localisation", "clarity": "clarity",
                   "target_share": "class discrimination"}


def purpose_table(ev: Evidence, layers=PURPOSE_LAYERS, n_boot: int = 1000) -> str:
    """Per layer (Grad-CAM, trained head, full model): the mean of each of
    :data:`PURPOSE_METRICS` with its 95% interval over seeds and images, then the layer that
    scores best on each (the best mean; ties within the margin are listed together)."""
    means: dict[str, dict[str, Effect]] = {}
    head = f"{'layer':<16}" + "".join(f"{m + ' [95% CI]':<24}" for m in PURPOSE_METRICS)
    lines = [head.rstrip()]
    for la in layers:
        means[la] = {m: contrast(ev, [(setting(layer=la), 1.0)], m, la, n_boot)
                     for m in PURPOSE_METRICS}
        lines.append(f"{la:<16}" + "".join(
            f"{e.difference:.2f} [{e.low:.2f}, {e.high:.2f}]".ljust(24)
            for e in means[la].values()).rstrip())
    for m, purpose in PURPOSE_METRICS.items():
        margin = seed_margin(ev, m)
        best = max(means[la][m].difference for la in layers)
        tops = [la for la in layers if means[la][m].difference >= best - margin]
        lines.append(f"best {purpose} ({m}, within the margin {margin:g} of the best): "
                     f"{', '.join(tops)}")
    return "\n".join(lines)
