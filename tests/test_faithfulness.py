"""Deletion / insertion score the probability the model itself gives; the batched curves
equal the one-map-at-a-time implementation they replaced, and are worked out by hand."""

import pytest
import torch
from torch import nn

from gradcam_edu.faithfulness import (
    blurred,
    curve_auc,
    perturbation_curve,
    perturbation_curves,
    saliency_ranks,
    step_counts,
)
from gradcam_edu.inputs import model_mode, run_model
from gradcam_edu.models import probabilities, probability_kind, resnet18_narrow
from gradcam_edu.targets import select_target, target_scores


class Linear(nn.Module):
    """score_c = sum(x * w_c): a model whose probabilities are easy to write down."""

    def __init__(self, kind=None):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 4, bias=False)
        if kind is not None:
            self.probabilities = kind

    def forward(self, x):
        return self.conv(x).flatten(1)


def test_single_label_models_are_scored_by_their_softmax():
    torch.manual_seed(0)
    model = Linear().eval()                      # says nothing: single-label, softmax
    x = torch.rand(2, 3, 4, 4)
    maps = torch.arange(16.0).reshape(1, 4, 4).expand(2, 4, 4)
    curve = perturbation_curve(model, x, maps, [0, 2], "deletion", steps=2)
    with torch.no_grad():
        start = model(x).softmax(-1)[[0, 1], [0, 2]]
        end = model(torch.zeros_like(x)).softmax(-1)[[0, 1], [0, 2]]
    torch.testing.assert_close(curve[:, 0], start)
    torch.testing.assert_close(curve[:, -1], end)        # all black: equal logits, p = 1/3
    torch.testing.assert_close(end, torch.full((2,), 1 / 3))


def test_multi_label_models_are_scored_by_their_sigmoid():
    torch.manual_seed(0)
    model = Linear("sigmoid").eval()
    x = torch.rand(1, 3, 4, 4)
    curve = perturbation_curve(model, x, torch.rand(1, 4, 4), 1, "deletion", steps=2)
    with torch.no_grad():
        torch.testing.assert_close(curve[0, 0], torch.sigmoid(model(x)[0, 1]))
    torch.testing.assert_close(curve[0, -1], torch.tensor(0.5))   # zero logit


# ----------------------------------------------------------------------------- the old loop
@torch.no_grad()
def old_perturbation_curve(model, x, maps, target, mode, steps=32, baseline=None,
                           batch_size=64):
    """The implementation before batching across maps (one map per image), kept verbatim as
    the reference the batched one must reproduce."""
    n, c, h, w = x.shape
    if baseline is None:
        baseline = "zeros" if mode == "deletion" else "blur"
    base = (baseline.to(x).expand_as(x) if isinstance(baseline, torch.Tensor)
            else torch.zeros_like(x) if baseline == "zeros" else blurred(x))
    order = maps.reshape(n, -1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(n, -1))
    rank = rank.reshape(n, 1, h, w)
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    jobs = [(i, k) for i in range(n) for k in range(steps + 1)]
    probs = torch.empty(n, steps + 1)
    sigmoid = probability_kind(model) == "sigmoid"
    with model_mode(model):
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            idx = torch.tensor([i for i, _ in chunk], device=x.device)
            cnt = torch.tensor([counts[k] for _, k in chunk], device=x.device)
            chosen = rank[idx] < cnt[:, None, None, None]
            if mode == "deletion":
                batch = torch.where(chosen, base[idx], x[idx])
            else:
                batch = torch.where(chosen, x[idx], base[idx])
            t = select_target(target, n, index=idx.cpu())
            logits = run_model(model, batch)
            if sigmoid:
                p = torch.sigmoid(target_scores(logits, t))
            else:
                p = target_scores(probabilities(model, logits), t)
            for (i, k), p_ik in zip(chunk, p.float().cpu(), strict=True):
                probs[i, k] = p_ik
    return probs


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_batched_curves_equal_the_old_loop(kind):
    torch.manual_seed(0)
    model = resnet18_narrow(width=4)
    model.probabilities = kind
    model.train()                                        # scored in eval mode, restored
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=gen)
    # 7 maps of 3 images, with ties (4 levels), one map repeated (a shared perturbation)
    maps = (torch.rand(7, 32, 32, generator=gen) * 4).floor()
    maps[6] = maps[2]
    index = torch.tensor([0, 2, 1, 1, 0, 2, 1])
    target = torch.tensor([0, 5, 3, 3, 1, 2, 4])
    new = perturbation_curves(model, x, maps, target, steps=5, image_index=index,
                              batch_size=4)
    assert model.training and all(m.training for m in model.modules())
    for mode in ("deletion", "insertion"):
        old = old_perturbation_curve(model, x[index], maps, target, mode, steps=5)
        assert new[mode].shape == (7, 6)
        torch.testing.assert_close(new[mode], old, atol=1e-6, rtol=0)
    assert not new["deletion"].is_inference()           # usable with autograd afterwards
    one = perturbation_curve(model, x, maps[:3], [0, 5, 3], "insertion", steps=5)
    torch.testing.assert_close(one, old_perturbation_curve(model, x, maps[:3], [0, 5, 3],
                                                           "insertion", steps=5),
                               atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- by hand
class WeightedPixels(nn.Module):
    """score = 0.1 x00 + 0.2 x01 + 0.3 x10 + 0.4 x11 (a multi-label model: sigmoid), counting
    the images it is given (in a forward pre-hook, which every forward runs: a model with a
    hook runs as itself, see :mod:`gradcam_edu.inference`)."""

    probabilities = "sigmoid"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]]))
        self.seen = 0
        self.register_forward_pre_hook(self.count)

    def count(self, module, inputs):
        self.seen += inputs[0].shape[0]

    def forward(self, x):
        return self.conv(x).flatten(1)


def test_curves_of_several_maps_per_image_by_hand():
    model = WeightedPixels().eval()
    x = torch.stack([torch.ones(1, 2, 2), 2 * torch.ones(1, 2, 2)])
    a = torch.tensor([[0.1, 0.9], [0.5, 0.3]])   # ranks x01 (0.2), x10 (0.3), x11 (0.4), x00
    b = torch.zeros(2, 2)                        # all tied: row-major x00, x01, x10, x11
    maps = torch.stack([a, b, a])                # map 2 = map 0 on the same image
    curves = perturbation_curves(model, x, maps, 0, steps=4, image_index=[1, 0, 1],
                                 insertion_baseline=torch.full((1, 2, 2), 0.5))
    # deletion (black): the score drops by 2 * weight (image 1) or 1 * weight (image 0)
    d_a, d_b = [2.0, 1.6, 1.0, 0.2, 0.0], [1.0, 0.9, 0.7, 0.4, 0.0]
    # insertion on a grey image (score 0.5): each revealed pixel adds (x - 0.5) * weight
    i_a, i_b = [0.5, 0.8, 1.25, 1.85, 2.0], [0.5, 0.55, 0.65, 0.8, 1.0]
    torch.testing.assert_close(curves["deletion"], torch.sigmoid(torch.tensor([d_a, d_b, d_a])),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(curves["insertion"], torch.sigmoid(torch.tensor([i_a, i_b, i_a])),
                               atol=1e-6, rtol=0)
    # images scored: original + 2 substrates per image (6), 3 inner steps x 2 modes for the
    # 2 distinct maps (12); map 2's perturbed images are map 0's
    assert model.seen == 18
    assert curve_auc(torch.tensor([[1.0, 0.5, 0.0]])).tolist() == [0.5]


def test_step_counts_and_ranks_by_hand():
    assert step_counts(4, 4) == [0, 1, 2, 3, 4]
    assert step_counts(4, 3) == [0, 1, 3, 4]            # round(4/3) = 1, round(8/3) = 3
    assert step_counts(10, 4) == [0, 2, 5, 8, 10]       # round(2.5) = 2, round(7.5) = 8
    ranks = saliency_ranks(torch.tensor([[[0.1, 0.9], [0.5, 0.9]]]))
    assert ranks.tolist() == [[3, 0, 2, 1]]              # ties by position: x01 before x11


def test_curves_refuse_bad_arguments():
    model, x = WeightedPixels().eval(), torch.ones(2, 1, 2, 2)
    maps = torch.rand(2, 2, 2)
    with pytest.raises(ValueError, match=r"maps: expected shape \(2, 2, 2\)"):
        perturbation_curves(model, x, maps[:1], 0)
    with pytest.raises(ValueError, match="maps: expected a tensor"):
        perturbation_curves(model, x, torch.rand(2, 3, 3), 0)
    with pytest.raises(ValueError, match="maps: contain NaN"):
        perturbation_curves(model, x, torch.full((2, 2, 2), float("nan")), 0)
    with pytest.raises(ValueError, match="image_index: expected 3 integer indices"):
        perturbation_curves(model, x, torch.rand(3, 2, 2), 0, image_index=[0, 1, 2])
    with pytest.raises(ValueError, match="image_index"):
        perturbation_curves(model, x, maps, 0, image_index=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="steps: expected an int >= 1"):
        perturbation_curves(model, x, maps, 0, steps=0)
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1"):
        perturbation_curves(model, x, maps, 0, batch_size=0)
    with pytest.raises(ValueError, match="modes"):
        perturbation_curves(model, x, maps, 0, modes=("erasure",))
    with pytest.raises(ValueError, match="insertion_baseline: expected 'zeros', 'blur'"):
        perturbation_curves(model, x, maps, 0, insertion_baseline="grey")
    with pytest.raises(ValueError, match="deletion_baseline: expected an image broadcastable"):
        perturbation_curves(model, x, maps, 0, deletion_baseline=torch.zeros(3, 5, 5))
    with pytest.raises(ValueError, match="mode: expected 'deletion' or 'insertion'"):
        perturbation_curve(model, x, maps, 0, "erasure")
    with pytest.raises(ValueError, match="target: got 3 classes"):
        perturbation_curves(model, x, maps, [0, 0, 0], deletion_baseline="zeros",
                            insertion_baseline="zeros")
