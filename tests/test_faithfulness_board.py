"""The faithfulness board: a case worked out by hand, the scoreboard's pair order, the same
numbers as one map at a time, nothing left behind, and clear errors."""

import pytest
import torch
from torch import nn

from gradcam_edu.cams import explain
from gradcam_edu.capture import hook_count
from gradcam_edu.faithfulness import curve_auc, deletion_auc, insertion_auc
from gradcam_edu.faithfulness_board import faithfulness_board
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.scoreboard import scoreboard


class TwoScores(nn.Module):
    """A 1x1 identity conv ("conv"), then score_c = sum(W_c * A): d score_c / d A = W_c."""

    probabilities = "sigmoid"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
        self.register_buffer("w", torch.tensor([[[1.0, 1.0], [1.0, 1.0]],
                                                [[4.0, 0.0], [0.0, -1.0]]]))

    def forward(self, x):
        return (self.conv(x) * self.w).sum(dim=(2, 3))


def auc(logits):
    return float(curve_auc(torch.sigmoid(torch.tensor(logits))))


def test_a_board_worked_out_by_hand():
    model = TwoScores().train()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[4.0, 3.0], [2.0, 1.0]]]])
    board = faithfulness_board(model, x, [[0, 1], [1]], ["conv"], steps=4, image_batch=1,
                               insertion_baseline="zeros")
    assert board.image_index.tolist() == [0, 0, 1] and board.target_class.tolist() == [0, 1, 1]
    # Every map of class 0 is x itself (G = 1): pixels go 4, 3, 2, 1 (image 0).
    # Class 1 (W = [[4, 0], [0, -1]]): Grad-CAM's map is 0.75 x (the same order); HiResCAM's
    # and LayerCAM's are W * x after ReLU: only x00 is positive, then ties in row order.
    expected = {
        "gradcam": ([[10, 6, 3, 1, 0], [0, 4, 4, 4, 0], [15, -1, -1, -1, 0]],
                    [[0, 4, 7, 9, 10], [0, -4, -4, -4, 0], [0, 16, 16, 16, 15]]),
        "hirescam": ([[10, 6, 3, 1, 0], [0, -4, -4, -4, 0], [15, -1, -1, -1, 0]],
                     [[0, 4, 7, 9, 10], [0, 4, 4, 4, 0], [0, 16, 16, 16, 15]]),
    }
    expected["layercam"] = expected["hirescam"]
    for method, (deletion, insertion) in expected.items():
        s = board.scores[("conv", method)]
        torch.testing.assert_close(s["deletion"], torch.tensor([auc(d) for d in deletion]),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(s["insertion"], torch.tensor([auc(i) for i in insertion]),
                                   atol=1e-6, rtol=0)
    assert model.training and hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


def box_masks(size=32):
    masks = torch.zeros(3, size, size, dtype=torch.bool)
    masks[0, 2:12, 2:12] = True
    masks[1, 18:30, 4:16] = True
    masks[2, 6:20, 16:30] = True
    return masks


def test_pairs_align_with_the_scoreboard_and_match_one_map_at_a_time():
    torch.manual_seed(0)
    model = resnet18_narrow(width=4).eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    m = box_masks()
    masks = [m[0:1], m[1:3], m[2:3], torch.stack([m[2], m[0]])]
    classes = [[1], [2, 4], [0], [5, 3]]
    layers = ["layer4", "layer3.1.conv2"]
    local = scoreboard(model, x, masks, classes, layers, batch_size=3, n_boot=10)
    faith = faithfulness_board(model, x, classes, layers, steps=4, image_batch=3, n_boot=10)
    assert faith.image_index.tolist() == local.image_index.tolist() == [0, 1, 1, 2, 3, 3]
    assert faith.target_class.tolist() == local.target_class.tolist() == [1, 2, 4, 0, 5, 3]
    faith.check_paired(local)
    assert faith.layers == local.layers and set(faith.scores) == set(local.scores)
    # the same numbers as one map at a time, on the maps of the same captures (a map from
    # another batch differs by rounding, enough to reorder nearly tied pixels)
    pair = {(i, s): p for p, (i, s) in enumerate([(0, 0), (1, 0), (1, 1), (2, 0), (3, 0),
                                                  (3, 1)])}
    scores = faith.scores[("layer3.1.conv2", "hirescam")]
    for batch in ([0, 1, 2], [3]):
        for slot in (0, 1):
            target = [classes[i][slot] if slot < len(classes[i]) else 0 for i in batch]
            maps = explain(model, x[batch], ["layer3.1.conv2"], target, ["hirescam"])
            maps = maps["layer3.1.conv2"]["hirescam"]
            for r, i in enumerate(batch):
                if slot < len(classes[i]):
                    one = (model, x[i:i + 1], maps[r:r + 1], classes[i][slot])
                    p = pair[(i, slot)]
                    assert float(scores["deletion"][p]) == pytest.approx(
                        float(deletion_auc(*one, steps=4)), abs=1e-6)
                    assert float(scores["insertion"][p]) == pytest.approx(
                        float(insertion_auc(*one, steps=4)), abs=1e-6)
    row = faith.rows[0]
    assert (row["layer"], row["method"], row["pairs"]) == (faith.layers[0], "gradcam", 6)
    assert row["deletion"] == pytest.approx(float(faith.scores[(faith.layers[0], "gradcam")]
                                                  ["deletion"].mean()))
    assert "6 (image, class) pairs from 4 images; 4 steps" in faith.to_text()
    same = faith.compare(("layer4", "gradcam"), ("layer4", "gradcam"), "deletion")
    assert (same["difference"], same["low"], same["high"], same["pairs"]) == (0, 0, 0, 6)
    other = faithfulness_board(model, x[:3], classes[:3], layers, steps=4)
    with pytest.raises(ValueError, match="other: not run on the same images"):
        faith.compare("layer4", "layer4", other=other)
    with pytest.raises(ValueError, match="metric: expected one of"):
        faith.compare("layer4", "layer4", "energy")


def test_the_board_refuses_bad_inputs():
    model, x = TwoScores().eval(), torch.rand(2, 1, 2, 2)
    board = {"steps": 2, "insertion_baseline": "zeros"}
    with pytest.raises(ValueError, match=r"classes: expected one list of class indices per "
                                         r"image \(2\), got 1"):
        faithfulness_board(model, x, [[0]], ["conv"], **board)
    with pytest.raises(ValueError, match=r"classes\[1\]: expected a list of class indices"):
        faithfulness_board(model, x, [[0], [True]], ["conv"], **board)
    with pytest.raises(ValueError, match=r"classes\[0\]: expected a list of class indices"):
        faithfulness_board(model, x, [[-1], [0]], ["conv"], **board)
    with pytest.raises(ValueError, match=r"classes\[0\]: expected a list of class indices"):
        faithfulness_board(model, x, [[0.5], [0]], ["conv"], **board)
    with pytest.raises(ValueError, match="names class 2, but the model has 2 classes"):
        faithfulness_board(model, x, [[0], [2]], ["conv"], **board)
    with pytest.raises(ValueError, match="classes: every list is empty"):
        faithfulness_board(model, x, [[], []], ["conv"], **board)
    with pytest.raises(ValueError, match="layers: the list of layers is empty"):
        faithfulness_board(model, x, [[0], [1]], [], **board)
    with pytest.raises(TypeError, match="layers: expected layer names"):
        faithfulness_board(model, x, [[0], [1]], [model.conv], **board)
    with pytest.raises(ValueError, match="layers: the model has no layer named 'cnv'"):
        faithfulness_board(model, x, [[0], [1]], ["cnv"], **board)
    with pytest.raises(ValueError, match="methods: 'scorecam'"):
        faithfulness_board(model, x, [[0], [1]], ["conv"], methods=["scorecam"], **board)
    with pytest.raises(ValueError, match="image_batch: expected an int >= 1"):
        faithfulness_board(model, x, [[0], [1]], ["conv"], image_batch=0, **board)
    with pytest.raises(ValueError, match="steps: expected an int >= 1"):
        faithfulness_board(model, x, [[0], [1]], ["conv"], steps=0)
    with pytest.raises(ValueError, match="images: expected a 4-D batch"):
        faithfulness_board(model, x[0], [[0]], ["conv"], **board)
    assert hook_count(model) == 0
