"""Published findings about CAM methods, each set beside what the course measures.

:func:`literature_table` builds one row per finding from the shipped evidence
(:mod:`gradcam_edu.evidence`: several training seeds, held-out images), with our number, its
95% interval over seeds and images where it is a measurement, and a plain word on whether we
agree. The randomisation sanity check is in the evidence too (3 seeds, 32 images); the
gradient flow at each block (:func:`gradcam_edu.gradflow.flow_table`) is passed in.

The rule for "agrees" is stated in each row's ``rule`` and applied by code.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import torch

from .evidence import SANITY_STAGES, Evidence, setting
from .verdict import effect, seed_bootstrap, seed_margin

__all__ = ["FINDINGS", "format_literature", "literature_table", "randomisation_rows"]

FINDINGS = {
    "gradcam-depth": ("Selvaraju et al., ICCV 2017 (Grad-CAM)",
                      "maps get progressively worse in earlier layers"),
    "hirescam": ("Draelos & Carin, 2020 (HiResCAM)",
                 "HiResCAM equals Grad-CAM only where the gradient is constant over space"),
    "layercam": ("Jiang et al., IEEE TIP 2021 (LayerCAM)",
                 "LayerCAM stays meaningful in shallow layers, where Grad-CAM does not"),
    "sanity": ("Adebayo et al., NeurIPS 2018",
               "Grad-CAM and the gradient pass cascading randomisation; Guided Backprop fails"),
    "centre": ("Zhang et al. 2018 / TorchRay",
               "a centre map is a strong pointing-game baseline (69.6% on VOC07): report it"),
    "short-paths": ("Veit et al., NeurIPS 2016",
                    "most gradient in a ResNet flows through short paths (the skips)"),
}
STAGES = ("layer1.1", "layer2.1", "layer3.1", "layer4.1")


def _row(key: str, ours: str, rule: str, agrees: str) -> dict:
    source, claim = FINDINGS[key]
    return {"key": key, "source": source, "finding": claim, "ours": ours, "rule": rule,
            "agreement": agrees}


def _depth_row(ev: Evidence, margin: float) -> dict:
    means = [float(ev.get(setting(layer=la), "energy").nanmean()) for la in STAGES]
    last = effect(ev, setting(layer=STAGES[-1]), setting(layer=STAGES[0]), "energy")
    monotone = all(b > a for a, b in zip(means, means[1:], strict=False))
    trend = ", ".join(f"{la} {m:.2f}" for la, m in zip(STAGES, means, strict=True))
    best = STAGES[max(range(len(means)), key=means.__getitem__)]
    word = ("agrees" if monotone and last.shows_effect(margin) else
            "partly" if last.shows_effect(margin) else "disagrees")
    return _row("gradcam-depth", f"energy by stage output: {trend}; {STAGES[-1]} - "
                f"{STAGES[0]} {last.text()}; best stage {best}",
                "agrees if the energy rises at every stage and the last minus the first is "
                "above the margin; partly if only the latter", word)


def _tiny(v: float, floor: float = 1e-5) -> str:
    """``v`` in scientific notation, or ``"< 1e-05"`` below ``floor``: float32 rounding, whose
    digits move with the CPU's kernels and the memory layout, is not printed as a finding."""
    return f"< {floor:.0e}" if abs(v) < floor else f"{v:.1e}"


def _hirescam_row(ev: Evidence, map_gaps: Mapping[str, float] | None) -> dict:
    same = (ev.get(setting(layer="layer4.1", method="hirescam"), "energy")
            - ev.get(setting(layer="layer4.1"), "energy")).abs().nan_to_num().max()
    inner = {m: effect(ev, setting(layer="layer3.1", method="hirescam"),
                       setting(layer="layer3.1"), m) for m in ("energy", "target_share")}
    scores = "; ".join(f"{m} {e.text()}" for m, e in inner.items())
    if map_gaps is None:
        return _row("hirescam", f"layer4.1: max |energy difference| {_tiny(float(same))}; "
                    f"layer3.1, HiResCAM - Grad-CAM: {scores}",
                    "a statement about maps: needs the map differences (map_gaps)", "not tested")
    return _row("hirescam", f"mean max |HiResCAM - Grad-CAM| of the displayed maps: layer4.1 "
                f"{_tiny(map_gaps['layer4.1'])} (pool + linear head: constant gradient), layer3.1 "
                f"{map_gaps['layer3.1']:.2f}; their scores at layer3.1: {scores}",
                "agrees if the maps are equal (< 1e-4) at layer4.1 and differ (> 0.1) at "
                "layer3.1", "agrees" if map_gaps["layer4.1"] < 1e-4 and
                map_gaps["layer3.1"] > 0.1 else "disagrees")


def _layercam_row(ev: Evidence, margin: float) -> dict:
    effs = [effect(ev, setting(layer=la, method="layercam"), setting(layer=la), "energy",
                   la) for la in ("layer1.1", "layer2.1")]
    above = sum(e.shows_effect(margin) for e in effs)
    uniform = float(ev.baselines["uniform_energy"].mean()) if ev.baselines else float("nan")
    lc = float(ev.get(setting(layer="layer1.1", method="layercam"), "energy").nanmean())
    return _row("layercam", "LayerCAM - Grad-CAM energy: " + "; ".join(
        f"{e.label} {e.text()}" for e in effs) + f"; LayerCAM at layer1.1 {lc:.2f} vs "
        f"uniform map {uniform:.2f}",
        "agrees if LayerCAM beats Grad-CAM beyond the margin at both shallow stages",
        "agrees" if above == 2 else "partly" if above else "disagrees")


def _centre_row(ev: Evidence) -> dict:
    centre = float(ev.baselines["centre_pointing_tol"].mean())
    gradcam = float(ev.get(setting(layer="layer4.1"), "pointing_tol").nanmean())
    return _row("centre", f"centre map, pointing within 15 px: {centre:.2f} (Grad-CAM at "
                f"layer4.1: {gradcam:.2f}); our objects are placed anywhere, so the centre "
                "is weak here", "reported beside every pointing score (not a test)",
                "reported")


def _paths_row(flows: Sequence[Mapping]) -> dict:
    shares = [float(f["skip_share"]) for f in flows]
    most = sum(s > 0.5 for s in shares)
    return _row("short-paths", f"skip share of the gradient's size at each block input: "
                f"{min(shares):.2f} to {max(shares):.2f}, above 0.5 at {most} of "
                f"{len(shares)} blocks", "Veit et al. count path lengths through the whole "
                "network; a share of the gradient at one block is not that, so it is shown "
                "for context only", "not tested")


def randomisation_rows(ev: Evidence, n_boot: int = 2000) -> list[dict]:
    """The shipped randomisation sanity check (every seed, :data:`gradcam_edu.evidence.
    SANITY_IMAGES` images) as rows ``{"stage", "method", "mean", "low", "high",
    "per_seed"}``, intervals bootstrapped over seeds and images, stages in order."""
    if not ev.randomisation:
        raise ValueError("ev: holds no randomisation measurements")
    rows = []
    for key, rho in ev.randomisation.items():
        stage, method = key.split("|")
        mean, low, high, per_seed = seed_bootstrap(rho, torch.arange(rho.shape[1]), n_boot)
        rows.append({"stage": stage, "method": method, "mean": mean, "low": low, "high": high,
                     "per_seed": per_seed, "spearman": rho[0], "seeds": rho.shape[0]})
    order = {s: i for i, s in enumerate(SANITY_STAGES)}
    return sorted(rows, key=lambda r: (order.get(r["stage"], len(order)), r["method"]))


SANITY_TOP = "layer4"
"""The stage at which the sanity rule is read: ``fc`` and the last stage randomised, the top of
the network, where Adebayo et al. saw Guided Backprop stay unchanged."""


def _sanity_row(rows: Sequence[Mapping]) -> dict:
    top = {r["method"]: r for r in rows if r["stage"] == SANITY_TOP}
    last = {}
    for r in rows:                          # the last (fully randomised) stage per method
        last[r["method"]] = r
    text = "; ".join(f"{m} {r['mean']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
                     for m, r in top.items())
    fc = ", ".join(f"{r['method']} {r['mean']:.2f}" for r in rows if r["stage"] == "fc")
    full = ", ".join(f"{m} {r['mean']:.2f}" for m, r in last.items())
    passes = {m: r["high"] < 0.5 for m, r in top.items()}
    expected = {"gradient": True, "gradcam": True, "guided_backprop": False}
    agree = all(passes.get(m) == want for m, want in expected.items() if m in passes)
    return _row("sanity", f"rank correlation with the trained map after randomising fc only: "
                f"{fc}; fc and {SANITY_TOP}: {text}; with every layer random: {full}",
                f"a method passes when its interval after randomising down to {SANITY_TOP} lies "
                "below 0.5; agrees if the gradient and Grad-CAM pass and Guided Backprop fails",
                "agrees" if agree else "disagrees")


def literature_table(ev: Evidence, flows: Sequence[Mapping] | None = None,
                     map_gaps: Mapping[str, float] | None = None) -> list[dict]:
    """One row per finding of :data:`FINDINGS` (the gradient-flow one when ``flows`` is
    given): source, finding, our number, the rule for agreement and the agreement word.
    ``map_gaps``: ``{"layer4.1": g, "layer3.1": g}``, the mean over images of the largest
    pixel difference between HiResCAM's and Grad-CAM's displayed maps (HiResCAM's finding is
    about maps; without it that row reads "not tested")."""
    margin = seed_margin(ev, "energy")
    rows = [_depth_row(ev, margin), _hirescam_row(ev, map_gaps), _layercam_row(ev, margin)]
    if ev.randomisation:
        rows.append(_sanity_row(randomisation_rows(ev)))
    if ev.baselines:
        rows.append(_centre_row(ev))
    if flows is not None:
        rows.append(_paths_row(flows))
    return rows


def format_literature(rows: Sequence[Mapping], width: int = 100) -> str:
    """The table as wrapped plain text, one block per finding."""
    out = []
    for r in rows:
        out += textwrap.wrap(f"{r['source']}: {r['finding']}", width)
        out += textwrap.wrap(f"ours: {r['ours']}", width, initial_indent="    ",
                             subsequent_indent="      ")
        out += textwrap.wrap(f"{r['agreement'].upper()} ({r['rule']})", width,
                             initial_indent="    ", subsequent_indent="      ")
    return "\n".join(out)
