"""The verdict rule on synthetic score arrays, and the model variants it measures with."""

import pytest
import torch
from torchvision.models.resnet import Bottleneck

from gradcam_edu import resnet
from gradcam_edu.capture import capture
from gradcam_edu.verdict import (
    VERDICTS,
    Claim,
    changed_factors,
    compare,
    format_claims,
    judge,
    measure_claims,
    random_head,
    without_skip_gradient,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def scores(mean, n=60, spread=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (mean + spread * torch.randn(n, generator=gen)).clamp(0, 1)


def no_effect(seed=0):
    """Two paired score arrays whose differences are +-0.05 around exactly 0."""
    base = scores(0.5, seed=seed)
    signs = torch.tensor([1.0, -1.0]).repeat(30)
    return base + 0.05 * signs, base


BASE = {"depth": "full", "head": "trained", "layer": "layer4.1.conv2", "skip_gradient": "on"}


def setting(**changes):
    return {**BASE, **changes}


def comparison(better, worse, label="", **changes):
    return compare(better, worse, setting(**changes), BASE, label=label, n_boot=500)


# ----------------------------------------------------------------------------- comparisons
def test_changed_factors_lists_differences_and_missing_keys():
    assert changed_factors(BASE, BASE) == []
    assert changed_factors(setting(layer="conv1", head="random"), BASE) == ["head", "layer"]
    assert changed_factors({"a": "1"}, {"b": "1"}) == ["a", "b"]


def test_compare_is_paired_and_its_interval_brackets_the_mean():
    other = scores(0.4, seed=1)
    c = comparison(other + 0.1, other, layer="conv1")
    assert c.difference == pytest.approx(0.1)
    assert c.low == pytest.approx(0.1) and c.high == pytest.approx(0.1)  # constant difference
    noisy = comparison(scores(0.5, seed=2), scores(0.4, seed=3), layer="conv1")
    assert noisy.low < noisy.difference < noisy.high
    assert noisy.changed == ["layer"]
    assert noisy.pairs == 60 and noisy.images == 60


def test_compare_groups_pairs_by_image_and_drops_nan():
    a, b = scores(0.6), scores(0.5, seed=1)
    a[3] = float("nan")
    groups = torch.arange(60) // 2
    c = compare(a, b, setting(layer="conv1"), BASE, groups=groups, n_boot=200)
    assert c.pairs == 59 and c.images == 30


def test_compare_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="expected 60 scores"):
        compare(scores(0.5), scores(0.5, n=59), BASE, BASE)


# ----------------------------------------------------------------------------- the rule
def test_one_factor_effect_is_supported():
    c = comparison(scores(0.6), scores(0.4, seed=1), layer="conv1")
    verdict, reason = judge("layer", c)
    assert verdict == "supported"
    assert "+0.2" in reason and "layer alone" in reason


def test_one_factor_without_effect_is_unsupported():
    c = comparison(*no_effect(), layer="conv1")
    assert judge("layer", c)[0] == "unsupported"


def test_opposite_effect_is_unsupported_and_says_so():
    c = comparison(scores(0.3), scores(0.6, seed=1), layer="conv1")
    verdict, reason = judge("layer", c)
    assert verdict == "unsupported" and "opposite" in reason


def test_effect_only_when_other_factors_change_is_confounded():
    source = comparison(scores(0.7), scores(0.4, seed=1), label="post",
                        head="random", layer="layer4.0.conv1", depth="cut")
    base = scores(0.5, seed=2)
    isolated = comparison(base, base, label="alone", depth="cut")   # exactly no effect
    verdict, reason = judge("depth", source, isolated)
    assert verdict == "confounded"
    assert "head, layer" in reason and "no measurable effect" in reason


def test_isolated_effect_is_supported_even_with_a_confounded_source():
    source = comparison(scores(0.7), scores(0.4, seed=1), head="random", depth="cut")
    isolated = comparison(scores(0.6, seed=3), scores(0.45, seed=4), depth="cut")
    assert judge("depth", source, isolated)[0] == "supported"


def test_no_effect_anywhere_is_unsupported():
    source = comparison(*no_effect(1), head="random", depth="cut")
    isolated = comparison(*no_effect(2), depth="cut")
    verdict, reason = judge("depth", source, isolated)
    assert verdict == "unsupported" and "either" in reason


def test_margin_raises_the_bar():
    c = comparison(scores(0.45), scores(0.4, seed=1), layer="conv1")
    assert judge("layer", c)[0] == "supported"
    assert judge("layer", c, margin=0.2)[0] == "unsupported"
    with pytest.raises(ValueError, match="margin"):
        judge("layer", c, margin=-1)


def test_isolated_comparison_must_change_the_cause_only():
    two = comparison(scores(0.6), scores(0.4, seed=1), layer="conv1", head="random")
    with pytest.raises(ValueError, match="changes \\['head', 'layer'\\]"):
        judge("layer", two)                       # source changes two factors, no isolated
    with pytest.raises(ValueError, match="only the claimed cause 'depth'"):
        judge("depth", two, comparison(scores(0.6), scores(0.4), layer="conv1"))


def test_claim_computes_its_verdict_and_formats():
    c = Claim("b", "conv1 is clearer", "layer",
              comparison(scores(0.3), scores(0.6, seed=1), label="conv1 vs conv2",
                         layer="conv1"), None)
    assert c.verdict in VERDICTS and c.verdict == "unsupported"
    text = format_claims([c])
    assert "(b) conv1 is clearer" in text and "UNSUPPORTED" in text
    assert "one factor" in text and "60 (image, class)" in text
    assert max(len(line) for line in text.splitlines()) <= 96


# ----------------------------------------------------------------------------- model variants
@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def grads(model, x, layers):
    with capture(model, layers) as cap:
        logits = cap.forward(x)
        cap.backward(1)
        return logits.detach(), cap.activations, cap.gradients


def test_without_skip_gradient_keeps_the_forward_and_cuts_skip_paths(model, x):
    layers = ["layer4.1.conv2", "layer3.1.conv2", "layer4.0.conv1"]
    logits, acts, g = grads(model, x, layers)
    logits2, acts2, g2 = grads(without_skip_gradient(model), x, layers)
    assert torch.allclose(logits, logits2, atol=1e-6)
    for name in layers:
        assert torch.allclose(acts[name], acts2[name], atol=1e-6)
    # no skip lies between layer4.1.conv2 and the logits: its gradient is unchanged
    assert torch.allclose(g["layer4.1.conv2"], g2["layer4.1.conv2"], atol=1e-7)
    # deeper layers lose the gradient that came through layer4's skips
    assert not torch.allclose(g["layer3.1.conv2"], g2["layer3.1.conv2"], atol=1e-6)


def test_without_skip_gradient_runs_the_block_forward_without_the_skip():
    torch.manual_seed(0)
    net = torch.nn.Sequential(Bottleneck(16, 4), torch.nn.Flatten()).eval()
    h = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    cut = without_skip_gradient(net)
    assert cut[0].forward.__self__ is cut[0] and net[0].forward.__self__ is net[0]
    (got,) = torch.autograd.grad(cut(h).sum(), h)
    (expected,) = torch.autograd.grad(resnet.block_forward(net[0], h, False).sum(), h)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, torch.autograd.grad(net(h).sum(), h)[0], atol=1e-4)


def test_without_skip_gradient_rejects_a_model_without_blocks():
    with pytest.raises(TypeError, match="no torchvision residual block"):
        without_skip_gradient(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


def test_random_head_is_seeded_and_leaves_the_model_alone(model):
    before = model.fc.weight.clone()
    a, b = random_head(model, seed=1), random_head(model, seed=1)
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.fc.weight, model.fc.weight)
    assert torch.equal(model.fc.weight, before)
    assert torch.equal(a.layer4[1].conv2.weight, model.layer4[1].conv2.weight)


def test_measure_claims_runs_end_to_end(model):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 64, 64, generator=gen)
    masks = [torch.zeros(1, 64, 64, dtype=torch.bool) for _ in range(4)]
    for i, m in enumerate(masks):
        m[0, 8 + 4 * i:40, 10:44] = True
    classes = [[i % 6] for i in range(4)]
    claims = measure_claims(model, images, masks, classes, n_boot=100)
    assert [c.key for c in claims] == ["a", "b", "c"]
    assert all(c.verdict in VERDICTS for c in claims)
    a = claims[0]
    # the skip sends no gradient to conv2 of the last block: exactly no difference
    assert a.isolated.difference == 0 and a.isolated.low == 0 and a.isolated.high == 0
    assert claims[2].source.changed == ["depth", "head", "layer"]
    assert claims[2].isolated.changed == ["depth"]
