"""Every CAM formula on a tiny (A, G) worked out by hand, the display scaling, Score-CAM's
channel choice, and explain's maps free of the autograd graph."""

import math

import pytest
import torch
from torch import nn

from gradcam_edu import cams

pytestmark = pytest.mark.usefixtures("one_thread")


def t(*rows):
    """Channels of one image, each a 1 x w row: (1, C, 1, w)."""
    return torch.tensor([[list(r)] for r in rows])[None]


def test_grad_cam_pp_by_hand():
    # one channel A = (1, 3, 0), sum 4; G = (1, 2, -1): alpha = G^2 / (2 G^2 + sum(A) G^3)
    # = 1/6, 4/40, 1/(2 - 4); weight = sum alpha ReLU(G) = 1/6 + 2/10 + 0 = 11/30
    A, G = t((1.0, 3.0, 0.0)), t((1.0, 2.0, -1.0))
    assert torch.allclose(cams.grad_cam_pp(A, G), 11 / 30 * A[:, 0], rtol=1e-5)


def test_xgrad_cam_by_hand():
    # channel 0: A (1, 3), G (1, 1) -> weight (1 + 3) / 4 = 1; channel 1: A (2, 2), G (0, 1)
    # -> (0 + 2) / 4 = 1/2; map 1 * (1, 3) + 1/2 * (2, 2) = (2, 4)
    A, G = t((1.0, 3.0), (2.0, 2.0)), t((1.0, 1.0), (0.0, 1.0))
    assert torch.allclose(cams.xgrad_cam(A, G), torch.tensor([[[2.0, 4.0]]]), rtol=1e-5)


def test_grad_cam_hires_cam_and_layer_cam_by_hand():
    A, G = t((2.0, -1.0), (1.0, 1.0)), t((-1.0, 1.0), (0.5, 0.5))
    # Grad-CAM weights: mean G = 0 and 0.5 -> 0.5 * (1, 1)
    assert torch.allclose(cams.grad_cam(A, G), torch.tensor([[[0.5, 0.5]]]))
    # HiResCAM: sum_k G_k A_k = (-2 + 0.5, -1 + 0.5)
    assert torch.allclose(cams.hires_cam(A, G), torch.tensor([[[-1.5, -0.5]]]))
    # LayerCAM: sum_k ReLU(G_k) A_k = (0 + 0.5, -1 + 0.5)
    assert torch.allclose(cams.layer_cam(A, G), torch.tensor([[[0.5, -0.5]]]))


def test_eigen_cam_by_hand():
    # positions (0, 0), (0, 0), (3, 6); centred over positions: -(1, 2), -(1, 2), 2 (1, 2);
    # first component (1, 2) / sqrt(5): projections -sqrt(5), -sqrt(5), 2 sqrt(5), signed so
    # that the largest magnitude is positive
    A = t((0.0, 0.0, 3.0), (0.0, 0.0, 6.0))
    r5 = math.sqrt(5)
    assert torch.allclose(cams.eigen_cam(A), torch.tensor([[[-r5, -r5, 2 * r5]]]), atol=1e-5)
    assert torch.allclose(cams.eigen_cam(-A), torch.tensor([[[-r5, -r5, 2 * r5]]]), atol=1e-5)


def test_finalize_scales_each_map_by_its_own_min_and_max():
    raw = torch.tensor([[[1.0, 2.0], [3.0, 5.0]], [[0.0, 0.0], [0.0, 4.0]]])
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    assert torch.allclose(cams.finalize(raw), expected, atol=1e-6)
    assert torch.allclose(cams.finalize(-raw, relu=False)[0],
                          torch.tensor([[1.0, 0.75], [0.5, 0.0]]), atol=1e-6)


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(2, 3)).eval()


def test_score_cam_keeps_the_channels_of_largest_mean():
    # one channel kept: its softmax weight is exactly 1, so the map is that channel. Image 0:
    # channel 0 has the larger mean (1 vs 0.75), channel 1 the larger maximum (3); image 1:
    # channel 1 has the larger mean (0.6 vs 0.5), channel 0 the larger maximum (2)
    A = torch.zeros(2, 2, 2, 2)
    A[0, 0] = 1.0
    A[0, 1, 1, 1] = 3.0
    A[1, 0, 1, 1] = 2.0
    A[1, 1] = 0.6
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    raw = cams.score_cam(tiny_model(), x, A, target=[0, 2], max_channels=1)
    assert torch.equal(raw, torch.stack([A[0, 0], A[1, 1]]))


def test_explain_returns_maps_without_a_graph():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = cams.explain(tiny_model(), x, ["0"], 1, methods=("gradcam", "layercam", "gradcam++"))
    for m in maps["0"].values():
        assert not m.requires_grad and m.grad_fn is None
        m.numpy()                                   # usable as is, e.g. by matplotlib
