"""Deletion / insertion score the probability the model itself gives."""

import torch
from torch import nn

from gradcam_edu.faithfulness import perturbation_curve


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
