"""The verdict rule, the seed-and-image bootstrap and the contrasts, on hand-built evidence."""

import pytest
import torch

from gradcam_edu.evidence import Evidence, setting, setting_key
from gradcam_edu.verdict import (
    VERDICTS,
    Claim,
    Effect,
    changed_factors,
    contrast,
    derived,
    effect,
    format_claims,
    format_effects,
    judge,
    seed_bootstrap,
    seed_margin,
)

X = setting(layer="conv1")
Y = setting(layer="layer4.1.conv2")


def eff(d, lo, hi, clearer=X, other=Y, label="e"):
    return Effect(label, "energy", d, lo, hi, (d,), 10, 5, 1, dict(clearer), dict(other))


def cut(h="trained fc"):
    return setting(depth="cut", head=h), setting(depth="full", head=h)


# ----------------------------------------------------------------------------- the rule
def test_verdicts_are_the_five_words():
    assert VERDICTS == ("supported", "mixed", "confounded", "inconclusive", "unsupported")


def test_changed_factors_lists_differences_and_missing_keys():
    assert changed_factors({"a": "1", "b": "2"}, {"a": "1", "b": "3"}) == ["b"]
    assert changed_factors({"a": "1"}, {"a": "1", "c": "x"}) == ["c"]


def test_every_isolated_effect_above_the_margin_is_supported():
    v, reason = judge("layer", [eff(0.10, 0.05, 0.15), eff(0.20, 0.02, 0.3)], margin=0.01)
    assert v == "supported" and "+0.100 [+0.050, +0.150]" in reason


def test_some_isolated_effects_above_is_mixed_and_names_where():
    a = eff(0.10, 0.05, 0.15, *cut("random fc"), label="random")
    b = eff(-0.05, -0.08, -0.02, *cut(), label="trained")
    v, reason = judge("depth", [a, b])
    assert v == "mixed" and "only at random" in reason


def test_a_touching_interval_is_not_an_effect():
    # [0.02, 0.2] touches the margin: not shown, not ruled out either
    assert judge("layer", [eff(0.1, 0.02, 0.2)], margin=0.02)[0] == "inconclusive"
    assert judge("layer", [eff(0.1, 0.0201, 0.2)], margin=0.02)[0] == "supported"


def test_inconclusive_when_an_interval_still_reaches_above_the_margin():
    v, reason = judge("layer", [eff(0.0, -0.01, 0.01), eff(0.01, -0.02, 0.05)], margin=0.02)
    assert v == "inconclusive" and "some reach above it" in reason
    # every interval at or below the margin rules the effect out: unsupported
    v, reason = judge("layer", [eff(0.0, -0.01, 0.01), eff(0.01, -0.02, 0.02)], margin=0.02)
    assert v == "unsupported" and "every interval below the margin 0.02" in reason
    # a real source does not make an open question confounded
    src = eff(0.2, 0.1, 0.3, setting(depth="cut", layer="layer4.0.conv1"),
              setting(head="random fc", layer="layer4.1.conv2"), label="post")
    assert judge("depth", [eff(0.0, -0.01, 0.05, *cut())], src, margin=0.02)[0] == \
        "inconclusive"


def test_confounded_needs_a_source_that_varies_the_cause_and_more():
    iso = [eff(0.0, -0.02, 0.02, *cut())]
    src_many = eff(0.2, 0.1, 0.3, setting(depth="cut", layer="layer4.0.conv1"),
                   setting(head="random fc", layer="layer4.1.conv2"), label="post")
    v, reason = judge("depth", iso, src_many, margin=0.02)   # [-0.02, +0.02]: ruled out
    assert v == "confounded" and "head, layer" in reason
    # a source below the margin leaves the claim unsupported
    assert judge("depth", iso, src_many, margin=0.15)[0] == "unsupported"
    # a source that changes the cause only cannot make a claim confounded
    assert judge("depth", iso, eff(0.2, 0.1, 0.3, *cut()), margin=0.02)[0] == "unsupported"


def test_a_source_that_does_not_vary_the_cause_is_refused():
    with pytest.raises(ValueError, match="not the claimed cause 'skip_gradient'"):
        judge("skip_gradient", [eff(0, -1, 1, setting(skip_gradient="off"), setting())],
              eff(0.1, 0.05, 0.2))        # changes the layer only


def test_isolated_effects_must_change_the_cause_only():
    with pytest.raises(ValueError, match="must change only the claimed cause 'depth'"):
        judge("depth", [eff(0.1, 0.05, 0.2, setting(depth="cut", head="probe"), setting())])
    with pytest.raises(ValueError, match="at least one effect"):
        judge("depth", [])
    with pytest.raises(ValueError, match="margin"):
        judge("layer", [eff(0.1, 0.05, 0.2)], margin=-0.1)


def test_a_derived_effect_is_never_an_effect_and_says_so():
    d = derived("conv2", setting(skip_gradient="off"), setting(), "energy", "no skip path")
    assert d.text() == "0 by derivation" and not d.shows_effect(0) and not d.shows_opposite(0)
    v, reason = judge("skip_gradient", [d])
    assert v == "unsupported" and "0 by derivation" in reason
    with pytest.raises(ValueError, match="derivation"):
        derived("x", X, Y, "energy", "")


def test_opposite_is_named_when_every_interval_is_below():
    assert "the opposite holds" in judge("layer", [eff(-0.1, -0.2, -0.05)])[1]
    assert "some reach above" in judge("layer", [eff(-0.1, -0.2, 0.05)])[1]
    # a derived zero is not "the opposite"
    d = derived("conv2", X, Y, "energy", "no path")
    assert "the opposite" not in judge("layer", [d])[1]
    assert "the opposite holds" in judge("layer", [d, eff(-0.1, -0.2, -0.05)])[1]


# ----------------------------------------------------------------------------- intervals
def test_seed_bootstrap_by_hand():
    # 2 seeds x 4 pairs from 2 images: per-seed means 1 and 3, overall mean 2
    diff = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    mean, lo, hi, per_seed = seed_bootstrap(diff, torch.tensor([0, 0, 1, 1]), 4000, 0)
    assert mean == 2.0 and per_seed == (1.0, 3.0)
    # resampled seeds give means 1, 2 or 3 with probability 1/4, 1/2, 1/4
    assert lo == 1.0 and hi == 3.0


def test_seed_bootstrap_with_one_seed_covers_images_only():
    diff = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    mean, lo, hi, _ = seed_bootstrap(diff, torch.tensor([0, 0, 1, 1]), 4000, 0)
    assert mean == 0.5 and lo == 0.0 and hi == 1.0
    # pairs of one image move together: with one group per pair the interval is narrower
    _, lo4, hi4, _ = seed_bootstrap(diff, torch.arange(4), 4000, 0)
    assert lo4 == 0.0 and hi4 == 1.0 and lo4 <= 0.25


def test_seed_bootstrap_drops_nan_pairs_and_checks_shapes():
    diff = torch.tensor([[1.0, float("nan"), 3.0]])
    assert seed_bootstrap(diff, torch.arange(3), 100, 0)[0] == 2.0
    with pytest.raises(ValueError, match="diff: expected"):
        seed_bootstrap(torch.zeros(2, 3), torch.arange(4))
    with pytest.raises(ValueError, match="no pair"):
        seed_bootstrap(torch.full((1, 2), float("nan")), torch.arange(2))


def hand_evidence():
    """3 seeds, 4 pairs (images 0, 0, 1, 2): setting X scores 0.6/0.7/0.8 per seed, Y 0.5."""
    x = torch.tensor([[0.6] * 4, [0.7] * 4, [0.8] * 4])
    y = torch.full((3, 4), 0.5)
    scores = {setting_key(X): {"energy": x}, setting_key(Y): {"energy": y}}
    return Evidence(scores, torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 3, 4]),
                    (0, 1, 2), {})


def test_effect_and_contrast_on_hand_built_evidence():
    ev = hand_evidence()
    e = effect(ev, X, Y, "energy", "x - y", n_boot=500)
    assert e.difference == pytest.approx(0.2) and e.changed == ["layer"]
    assert e.per_seed == pytest.approx((0.1, 0.2, 0.3))
    assert (e.pairs, e.images, e.seeds) == (4, 3, 3)
    assert e.low == pytest.approx(0.1) and e.high == pytest.approx(0.3)
    c = contrast(ev, [(X, 0.5), (Y, 0.5)], "energy", "average")
    assert c.difference == pytest.approx(0.6) and c.changed == []
    with pytest.raises(ValueError, match="was not measured"):
        ev.get(setting(layer="layer3"), "energy")


def test_seed_margin_is_the_median_seed_sd_rounded_up():
    ev = hand_evidence()
    # X's seed means 0.6, 0.7, 0.8: sd 0.1; Y's: sd 0; median of (0.1, 0) = 0.05
    assert seed_margin(ev, "energy") == pytest.approx(0.05)
    one = Evidence(ev.scores, ev.image_index, ev.target_class, (0,), {})
    with pytest.raises(ValueError, match=">= 2 seeds"):
        seed_margin(one, "energy")


def test_claim_formats_effects_verdict_and_derivation():
    d = derived("conv2: off - on", setting(skip_gradient="off"), setting(), "energy",
                "the skip joins after conv2")
    c = Claim("a", "skip gradients make maps noisy", "skip_gradient", "energy", [d],
              margin=0.01)
    b = Claim("b", "conv1 is clearer", "layer", "energy", [eff(0.1, 0.05, 0.2, label="heads")],
              source=eff(0.1, 0.05, 0.2, label="post"), margin=0.01)
    text = format_claims([c, b])
    assert "derivation: the skip joins after conv2" in text
    assert "verdict: UNSUPPORTED" in text and "verdict: SUPPORTED" in text
    assert "source     post" in text and "10 (image, class) pairs from 5 images" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "seeds: +0.100" in format_effects([b.isolated[0]])


def test_describe_effects_says_which_side_of_the_margin():
    from gradcam_edu.verdict import describe_effects
    up = Effect("up", "energy", 0.1, 0.05, 0.15, (0.08, 0.1, 0.002))
    down = Effect("down", "energy", -0.1, -0.15, -0.05, (-0.1, -0.1, -0.1))
    flat = Effect("flat", "energy", 0.0, -0.01, 0.02, (0.0, 0.0, 0.0))
    text = describe_effects([up, down, flat], 0.01).splitlines()
    assert text[0] == ("up: +0.100 [+0.050, +0.150], positive beyond the margin (per-seed "
                       "means beyond it on 2 of 3 seeds).")
    assert "negative beyond the margin (per-seed means beyond it on 3 of 3" in text[1]
    assert text[2].endswith("not beyond the margin either way.")
