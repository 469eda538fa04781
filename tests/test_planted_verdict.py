"""The verdict rule on hand-built intervals (every branch, the margin on both comparisons),
compare() on a case whose interval is known exactly, and judge_claims on hand-built boards."""

import math
from types import SimpleNamespace

import pytest
import torch

from gradcam_edu.verdict import Comparison, compare, judge, judge_claims

BASE = {"depth": "full", "head": "trained", "layer": "layer4.1.conv2", "skip_gradient": "on"}


def interval(low, high, **changes) -> Comparison:
    """A comparison whose 95 % interval is [low, high], the settings differing in ``changes``."""
    return Comparison("", {**BASE, **changes}, BASE, "energy", (low + high) / 2, low, high,
                      pairs=10, images=10)


def test_judge_one_factor_branches():
    assert judge("layer", interval(0.05, 0.2, layer="conv1"))[0] == "supported"
    # an interval that only touches 0 is not above it
    assert judge("layer", interval(0.0, 0.1, layer="conv1"))[0] == "unsupported"
    # straddling 0: no measurable effect, although the low end is negative
    verdict, reason = judge("layer", interval(-0.1, 0.05, layer="conv1"))
    assert verdict == "unsupported"
    assert "no measurable effect" in reason and "opposite" not in reason
    # entirely below 0: the opposite
    verdict, reason = judge("layer", interval(-0.3, -0.1, layer="conv1"))
    assert verdict == "unsupported" and "the opposite holds" in reason
    # the margin: above 0.05 but not above 0.1
    assert judge("layer", interval(0.07, 0.2, layer="conv1"), margin=0.05)[0] == "supported"
    assert judge("layer", interval(0.07, 0.2, layer="conv1"), margin=0.1)[0] == "unsupported"


def test_judge_two_comparison_branches_and_the_margin_on_the_source():
    source = interval(0.1, 0.3, depth="cut", head="random")
    alone = interval(-0.05, 0.05, depth="cut")
    verdict, reason = judge("depth", source, alone)
    assert verdict == "confounded" and "head" in reason and "no measurable effect" in reason
    assert judge("depth", source, interval(0.02, 0.1, depth="cut"))[0] == "supported"
    # with margin 0.2 the source (low end 0.1) shows no effect either
    verdict, reason = judge("depth", source, alone, margin=0.2)
    assert verdict == "unsupported" and "no measurable effect either" in reason
    verdict, reason = judge("depth", interval(-0.4, -0.2, depth="cut", head="random"), alone)
    assert verdict == "unsupported" and "shows the opposite either" in reason


def test_compare_known_interval():
    # paired differences (0, 1, 1, 2): the mean of 4 resampled ones is Binomial(8, 1/2) / 4,
    # whose 2.5 % and 97.5 % quantiles are 1/4 and 7/4 (1/256 < 2.5 % < 9/256)
    other = torch.tensor([0.25, 0.5, 0.0, 0.25])
    c = compare(other + torch.tensor([0.0, 1.0, 1.0, 2.0]), other, {**BASE, "layer": "conv1"},
                BASE, n_boot=4000)
    assert (c.difference, c.low, c.high) == pytest.approx((1.0, 0.25, 1.75))
    assert c.pairs == 4 and c.images == 4 and c.changed == ["layer"]


def test_compare_counts_the_images_left_after_nan_pairs():
    a = torch.tensor([0.5, 0.5, 0.75, 0.25, math.nan, math.nan])
    b = torch.tensor([0.25, 0.25, 0.5, 0.0, 0.5, 0.5])
    c = compare(a, b, {**BASE, "layer": "conv1"}, BASE, groups=torch.tensor([0, 0, 1, 1, 2, 2]),
                n_boot=200)
    assert c.pairs == 4 and c.images == 2
    assert (c.difference, c.low, c.high) == (0.25, 0.25, 0.25)


def boards():
    """Scores of the settings claim_boards measures, by hand: conv1 is 0.1 above
    layer4.1.conv2, layer4.1 0.3 above it; no skip gradient changes nothing; the cut's
    layer4.0.conv1 equals the full model's; the random head is 0.1 below the trained one."""
    base = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)

    def board(**layers):
        return SimpleNamespace(scores={(la.replace("_", "."), "gradcam"): {"energy": v}
                                       for la, v in layers.items()},
                               image_index=torch.arange(4))

    return {"full": board(conv1=base + 0.1, layer4_0_conv1=base + 0.2, layer4_1_conv2=base,
                          layer4_1=base + 0.3),
            "random fc": board(layer4_1_conv2=base - 0.1),
            "no skip gradient": board(layer4_1_conv2=base.clone()),
            "cut after layer4.0": board(layer4_0_conv1=base + 0.2)}


def test_judge_claims_on_hand_built_boards():
    a, b, c = judge_claims(boards(), n_boot=200)
    assert a.isolated.difference == 0 and a.source.difference == pytest.approx(0.3)
    assert c.isolated.difference == 0 and c.source.difference == pytest.approx(0.3)
    assert b.source.difference == pytest.approx(0.1)
    assert (a.verdict, b.verdict, c.verdict) == ("confounded", "supported", "confounded")
    # margin 0.2: (b)'s 0.1 no longer counts, (a) and (c)'s sources (0.3) still do
    a, b, c = judge_claims(boards(), n_boot=200, margin=0.2)
    assert (a.verdict, b.verdict, c.verdict) == ("confounded", "unsupported", "confounded")
