"""Gradient-flow numbers on vectors and a tiny network worked out by hand."""

import math

import pytest
import torch
from torch import nn

from gradcam_edu import gradflow
from gradcam_edu.gradflow import zero_gradient_share

pytestmark = pytest.mark.usefixtures("one_thread")


def test_block_flow_by_hand():
    # image 0: skip (1, 0), branch (1, 1), input gradient (2, 1);
    # image 1: skip (0, 2), branch (0, 0), input gradient (0, 2)
    g_skip = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    g_branch = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    f = gradflow._block_flow("b", "identity", g_skip, g_branch, g_skip + g_branch)
    r2 = math.sqrt(2)
    assert f.skip_norm.tolist() == pytest.approx([1.0, 2.0])
    assert f.branch_norm.tolist() == pytest.approx([r2, 0.0])
    assert f.input_norm.tolist() == pytest.approx([math.sqrt(5), 2.0])
    assert f.skip_share.tolist() == pytest.approx([1 / (1 + r2), 1.0])
    assert f.skip_projection.tolist() == pytest.approx([2 / 5, 1.0])        # <s, g> / |g|^2
    assert f.cosine[0].item() == pytest.approx(1 / r2) and math.isnan(f.cosine[1])
    assert f.reconstruction_error == 0.0
    row = f.row()
    assert row["skip_norm"] == pytest.approx(1.5) and row["branch_norm"] == pytest.approx(r2 / 2)
    assert row["skip_share"] == pytest.approx((1 / (1 + r2) + 1) / 2)
    assert row["cosine"] == pytest.approx(1 / r2)                           # NaN left out
    # a gradient that skip + branch do not rebuild is reported
    assert gradflow._block_flow("b", "identity", g_skip, g_branch,
                                g_skip).reconstruction_error == pytest.approx(1.0)


def test_zero_gradient_share_by_hand():
    # conv -> channels (x, -x); 2x2 max-pool; score = sum of the two pooled values. The score's
    # gradient at the conv output is 1 at the max of x (channel 0, pixel (1, 1)) and at the
    # max of -x (channel 1, pixel (0, 0)), 0 elsewhere: 6 of 8 entries, and the 2 positions
    # (0, 1), (1, 0) get no gradient in any channel
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
        model[3].weight.fill_(1.0)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    rows = {r["layer"]: r for r in zero_gradient_share(model.eval(), x, 0, layers=["0", "1"])}
    assert rows["0"] == {"layer": "0", "grid": (2, 2), "zero_entries": 0.75,
                         "zero_positions": 0.5}
    assert rows["1"] == {"layer": "1", "grid": (1, 1), "zero_entries": 0.0,
                         "zero_positions": 0.0}
