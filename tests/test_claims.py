"""The claims' designs on hand-built evidence whose effects are known exactly."""

import pytest
import torch

from gradcam_edu.claims import (
    factorial_effects,
    inside_block_steps,
    isolated_effects,
    measure_claims,
    post_decomposition,
)
from gradcam_edu.evidence import DESIGN, Evidence, setting, setting_key

PAIRS = torch.tensor([0, 0, 1, 2, 3, 4])     # 6 pairs from 5 images


def build(score, seeds=(0, 1, 2), jitter=0.0):
    """Evidence where setting s scores score(s) + jitter * seed on every pair."""
    scores = {}
    for (depth, head, skip), layers in DESIGN.items():
        for layer in layers:
            s = setting(depth, head, layer, skip)          # Grad-CAM
            rows = [torch.full((len(PAIRS),), score(s) + jitter * k) for k in range(len(seeds))]
            scores[setting_key(s)] = {m: torch.stack(rows) for m in ("energy", "clarity")}
    return Evidence(scores, PAIRS, torch.arange(len(PAIRS)), tuple(seeds), {})


def additive(s):
    """A factorial with known effects: cut +0.1, random fc -0.2, probe +0.05,
    layer4.0 vs layer4.0.conv1 +0.03, and a depth x hook interaction of +0.04."""
    v = 0.5
    v += 0.1 * (s["depth"] == "cut")
    v += {"random fc": -0.2, "trained fc": 0.0, "probe": 0.05}[s["head"]]
    v += 0.03 * (s["layer"] == "layer4.0")
    v += 0.04 * (s["depth"] == "cut" and s["layer"] == "layer4.0")
    inside = {"layer4.1.conv2": 0.0, "layer4.1.bn2": 0.01, "layer4.1.pre_relu": 0.11,
              "layer4.1": 0.08, "conv1": -0.1, "layer3.1": 0.0}
    v += inside.get(s["layer"], 0.0)
    v += 0.02 * (s["skip_gradient"] == "off" and s["layer"] != "layer4.1.conv2")
    return v


def test_factorial_effects_recover_the_built_effects():
    eff = {e.label: e for e in factorial_effects(build(additive), "energy", n_boot=200)}
    # depth: +0.1 everywhere, +0.04 more at layer4.0 (half of the hook levels): 0.12
    assert eff["depth: cut - full"].difference == pytest.approx(0.12)
    assert eff["head: random fc - trained fc"].difference == pytest.approx(-0.2)
    assert eff["head: probe - trained fc"].difference == pytest.approx(0.05)
    # hook: +0.03, and +0.04 in the cut half: 0.05
    assert eff["hook: layer4.0 - layer4.0.conv1"].difference == pytest.approx(0.05)
    assert eff["depth x hook"].difference == pytest.approx(0.04)
    for name in ("depth x head (random fc)", "depth x head (probe)", "hook x head (probe)"):
        assert eff[name].difference == pytest.approx(0.0, abs=1e-6)   # float32 scores


def test_inside_block_steps_separate_bn_addition_and_relu():
    steps = inside_block_steps(build(additive), "energy", n_boot=200)
    assert [round(e.difference, 6) for e in steps] == [0.01, 0.1, -0.03, 0.08]
    assert steps[1].label == "bn2 + skip - bn2" and steps[1].changed == ["layer"]


def test_claims_on_built_evidence():
    ev = build(additive, jitter=0.001)            # seed sd 0.001 -> margin 0.005
    a, a2, a3, b, c = measure_claims(ev, "energy", n_boot=200)
    assert a.margin == pytest.approx(0.005)
    assert a.verdict == "unsupported" and a.isolated[0].derivation
    assert a2.verdict == "supported"              # +0.02 at every layer skip gradients reach
    assert a3.verdict == "supported"              # the addition: +0.1
    assert b.verdict == "unsupported" and b.source is b.isolated[0]
    assert c.verdict == "supported" and len(c.isolated) == 6
    assert c.source.changed == ["depth", "head", "layer"]


def test_claims_mixed_and_confounded():
    def cut_helps_at_one_hook(s):
        return 0.5 + 0.1 * (s["depth"] == "cut" and s["layer"] == "layer4.0.conv1")

    *_, c = measure_claims(build(cut_helps_at_one_hook, jitter=0.001), "energy", n_boot=200)
    assert c.verdict == "mixed" and "layer4.0.conv1" in c.reason

    def head_only(s):                  # the post's comparison gains from the head alone
        return 0.5 + 0.2 * (s["head"] == "trained fc")

    *_, c = measure_claims(build(head_only, jitter=0.001), "energy", n_boot=200)
    assert c.verdict == "confounded" and "head, layer" in c.reason


def test_the_skip_derivation_is_checked_on_the_data():
    def broken(s):                     # a measurement that contradicts the derivation
        return 0.5 + 0.1 * (s["skip_gradient"] == "off")

    with pytest.raises(AssertionError, match="layer4.1.conv2"):
        measure_claims(build(broken, jitter=0.001), "energy")


def test_isolated_effects_find_every_measured_setting():
    ev = build(additive, jitter=0.001)
    a3 = isolated_effects(ev, "layer", "layer4.1.pre_relu", "layer4.1.bn2", "energy", 50,
                          name="bn2 + skip - bn2")
    assert [e.label for e in a3] == ["random fc: bn2 + skip - bn2",
                                     "trained fc: bn2 + skip - bn2"]       # both heads measured
    assert all(e.changed == ["layer"] for e in a3)
    assert [round(e.difference, 6) for e in a3] == [0.1, 0.1]
    skip = isolated_effects(ev, "skip_gradient", "off", "on", "energy", 50,
                            skip=["layer4.1.conv2"])
    assert sorted(e.label.split(":")[0] for e in skip) == [
        "trained fc @ conv1", "trained fc @ layer3.1", "trained fc @ layer4.0",
        "trained fc @ layer4.0.conv1"]
    assert len(isolated_effects(ev, "depth", "cut", "full", "energy", 50)) == 6
    with pytest.raises(ValueError, match="no measured setting"):
        isolated_effects(ev, "depth", "cut", "shallow", "energy")
    with pytest.raises(ValueError, match="cause"):
        isolated_effects(ev, "method", "hirescam", "gradcam", "energy")


def test_post_decomposition_steps_add_up_in_both_orders():
    def interacting(s):                # the hook point helps only with the trained head
        trained, off_conv2 = s["head"] == "trained fc", s["layer"] != "layer4.1.conv2"
        return 0.3 + 0.05 * trained + 0.02 * off_conv2 + 0.1 * (trained and off_conv2)

    eff = {e.label.split(" ")[0]: e.difference
           for e in post_decomposition(build(interacting, jitter=0.001), "energy", 50)}
    assert eff["A1"] == pytest.approx(0.05) and eff["A2"] == pytest.approx(0.12)
    assert eff["B1"] == pytest.approx(0.02) and eff["B2"] == pytest.approx(0.15)
    assert eff["head"] == pytest.approx(0.10)                    # "head x hook": A2 - B1
    assert eff["total:"] == pytest.approx(eff["A1"] + eff["A2"] + eff["3"])
    assert eff["total:"] == pytest.approx(eff["B1"] + eff["B2"] + eff["3"])
