"""Predict-then-check questions and new-measurement checkers (``gradcam_edu.exercises``),
on a model small enough to work every value out by hand.

The hand model: a 1x1 convolution copies the red channel to channel 0 and the green channel
to channel 1, a ReLU (module ``"1"``), a global average pool and a linear head with class 0
= ch0 - ch1 and class 1 = ch1 - ch0. On an image holding a red square and a green square of
equal size, Grad-CAM at ``"1"`` for class 0 is relu(A0 - A1) / hw: exactly the red square
(energy 1 on the red mask), while the plain sum A0 + A1 covers both squares (energy 0.5).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcam_edu.capture import hook_count
from gradcam_edu.evidence import Evidence, setting, setting_key
from gradcam_edu.exercises import measure, predict
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.truncate import truncate
from gradcam_edu.verdict import Effect

S = 16


def hand_model() -> nn.Module:
    conv = nn.Conv2d(3, 2, 1, bias=False)
    fc = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0], conv.weight[1, 1] = 1.0, 1.0
        fc.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()


def two_squares(n: int = 2):
    """n images, each a red square (rows 2-5, cols 2-5) and a green one (rows 9-12,
    cols 9-12); masks ordered red, green; classes [0, 1]."""
    x = torch.zeros(n, 3, S, S)
    x[:, 0, 2:6, 2:6] = 1.0
    x[:, 1, 9:13, 9:13] = 1.0
    red = torch.zeros(S, S, dtype=torch.bool)
    red[2:6, 2:6] = True
    green = torch.zeros(S, S, dtype=torch.bool)
    green[9:13, 9:13] = True
    return x, [torch.stack([red, green]) for _ in range(n)], [[0, 1] for _ in range(n)]


# ----------------------------------------------------------------------------- reveal
def counting_question(answer: str):
    calls = []

    def measure_() -> tuple[str, str]:
        calls.append(1)
        return answer, "the report"

    return predict.Question("Which?", ("higher", "about the same", "lower"), measure_), calls


def test_reveal_measures_nothing_before_a_prediction():
    q, calls = counting_question("higher")
    out = predict.reveal(None, q)
    assert out.held is None and calls == []
    assert "Commit first" in str(out) and "'about the same'" in str(out)


def test_reveal_refuses_an_answer_that_is_not_an_option():
    q, calls = counting_question("higher")
    out = predict.reveal("up", q)
    assert out.held is None and calls == [] and "my_prediction" in str(out)


def test_reveal_compares_the_prediction_with_the_measurement():
    q, calls = counting_question("lower")
    held, missed = predict.reveal("lower", q), predict.reveal("higher", q)
    assert held.held is True and str(held).startswith("Your prediction held")
    assert missed.held is False and "'lower', not 'higher'" in str(missed)
    assert "the report" in str(held) and len(calls) == 2


def test_an_unsettled_measurement_confirms_no_prediction():
    q, _ = counting_question(predict.UNSETTLED)
    out = predict.reveal("higher", q)
    assert out.held is False and "does not settle" in str(out)


@pytest.mark.parametrize("low, high, expected", [
    (0.02, 0.08, "higher"), (-0.08, -0.02, "lower"), (-0.01, 0.012, "about the same"),
    (0.01, 0.03, predict.UNSETTLED), (-0.03, 0.0, predict.UNSETTLED)])
def test_direction_reads_the_interval_against_the_margin(low, high, expected):
    e = Effect("e", "energy", (low + high) / 2, low, high)
    assert predict.direction(e, 0.015) == expected


def test_reveal_needs_a_question():
    with pytest.raises(ValueError, match="question"):
        predict.reveal("higher", "not a question")


# ----------------------------------------------------------------------------- questions
def test_gradient_weighting_by_hand():
    model = hand_model()
    x, masks, classes = two_squares()
    gc, plain = predict.activation_sum_energy(model, x, masks, classes, "1")
    assert torch.allclose(gc, torch.ones(2)) and torch.allclose(plain, torch.full((2,), 0.5))
    out = predict.reveal("lower", predict.gradient_weights_question(model, x, masks, classes, "1"))
    assert out.held is True
    assert "Grad-CAM 1.000, plain sum 0.500, a uniform map 0.062" in str(out)
    assert "-0.500 [-0.500, -0.500]" in str(out)
    assert hook_count(model) == 0


def test_evidence_question_on_hand_made_scores():
    a, b = setting(layer="conv1"), setting(layer="layer4.1")
    ev = Evidence(scores={setting_key(a): {"energy": torch.full((2, 3), 0.5)},
                          setting_key(b): {"energy": torch.full((2, 3), 0.2)}},
                  image_index=torch.tensor([0, 1, 2]), target_class=torch.tensor([0, 0, 1]),
                  seeds=(0, 1), meta={})
    out = predict.reveal("higher", predict.evidence_question("?", a, b, ev=ev))
    assert out.held is True
    assert "0.500 vs 0.200" in str(out) and "+0.300 [+0.300, +0.300]" in str(out)
    assert "3 pairs of 3 images and 2 training seeds" in str(out)


def test_the_course_questions_measure_the_shipped_evidence():
    for q in (predict.conv2_question(), predict.probe_question(), predict.layercam_question()):
        answer, report = q.measure()
        assert answer in (*q.options, predict.UNSETTLED) and "3 training seeds" in report


# ----------------------------------------------------------------------------- checkers
def test_wrong_object_rate_by_hand():
    model = hand_model()
    x, masks, classes = two_squares(3)
    masks[2] = masks[2].flip(0)        # image 2: the class-0 object's mask is the green one
    assert measure.wrong_object_rate(model, x, masks, classes, "1") == (pytest.approx(1 / 3),
                                                                        pytest.approx(2 / 3))
    assert measure.check_wrong_object_rate(1 / 3, model, x, masks, classes, "1")
    assert "object asked for" in str(measure.check_wrong_object_rate(2 / 3, model, x, masks,
                                                                     classes, "1"))
    assert "a count" in str(measure.check_wrong_object_rate(1, model, x, masks, classes, "1"))
    assert "expected one number" in str(measure.check_wrong_object_rate("a", model, x, masks,
                                                                        classes, "1"))


def test_target_shares_by_hand():
    model = hand_model()
    x, masks, _ = two_squares(1)
    assert measure.target_shares(model, x, masks[0], 0, ["1"]) == {"1": pytest.approx(1.0)}
    assert measure.check_target_shares({"1": 1.0}, model, x, masks[0], 0, layers=("1",))
    swapped = measure.check_target_shares({"1": 0.0}, model, x, masks[0], 0, layers=("1",))
    assert not swapped and "other object" in str(swapped)
    assert "keys" in str(measure.check_target_shares([1.0], model, x, masks[0], 0, layers=("1",)))
    with pytest.raises(ValueError, match="two masks"):
        measure.target_shares(model, x, masks[0][:1], 0, ["1"])


def test_cutting_after_the_last_block_agrees_everywhere():
    torch.manual_seed(0)
    model = resnet18_narrow(num_classes=6, width=4).eval()
    x = torch.rand(5, 3, 64, 64)
    assert measure.agreement(model, x, after="layer4.1") == 1.0
    value = measure.agreement(model, x, after="layer4.0")
    full = torch.sigmoid(model(x)) > 0.5
    assert measure.check_agreement(value, model, x, after="layer4.0")
    assert value * 5 == pytest.approx(round(value * 5))     # k of 5 images
    cut = torch.sigmoid(truncate(model, "layer4.0", head="original")(x)) > 0.5
    per_answer = float((full == cut).float().mean())
    if abs(per_answer - value) > 1e-6:
        assert "all six" in str(measure.check_agreement(per_answer, model, x, after="layer4.0"))


def test_map_difference_is_zero_where_the_gradient_is_constant():
    model = hand_model()
    x, _, _ = two_squares(2)
    assert measure.map_difference(model, x, [0, 1], "1") == pytest.approx(0.0, abs=1e-7)
    assert measure.check_map_difference(0.0, model, x, [0, 1], "1")
    assert not measure.check_map_difference(0.2, model, x, [0, 1], "1")


def test_seed_means_by_hand():
    s = setting(layer="conv1")
    ev = Evidence(scores={setting_key(s): {"energy": torch.tensor(
        [[0.1, 0.3, float("nan")], [0.5, 0.5, 0.2]])}},
        image_index=torch.tensor([0, 1, 2]), target_class=torch.tensor([0, 0, 1]),
        seeds=(0, 1), meta={})
    assert measure.seed_means(ev, s) == [pytest.approx(0.2), pytest.approx(0.4)]
    assert measure.check_seed_means([0.2, 0.4], ev, s)
    pooled = float(torch.tensor([0.1, 0.3, 0.5, 0.5, 0.2]).mean())
    assert "every seed at once" in str(measure.check_seed_means([pooled, pooled], ev, s))
    assert "2 numbers" in str(measure.check_seed_means(0.2, ev, s))


def test_random_fc_question_reads_clarity():
    answer, report = predict.random_fc_question().measure()
    assert report.startswith("clarity:") and answer in (*predict.DIRECTIONS, predict.UNSETTLED)


def test_map_difference_by_hand_where_the_methods_part():
    """A green square overlapping half of the red one: for class 0 Grad-CAM keeps
    relu(A0 - A1), the red-only 4 x 2 pixels; LayerCAM keeps relu(G) A = A0, the whole red
    4 x 4 square. The maps differ by -1 on the 8 overlap pixels of 16 x 16."""
    model = hand_model()
    x = torch.zeros(1, 3, S, S)
    x[:, 0, 2:6, 2:6] = 1.0
    x[:, 1, 2:6, 4:8] = 1.0
    methods = ("gradcam", "layercam")
    # (finalize's 1e-7 guard against a zero range moves the 1/hw maps' values by 3e-5)
    assert measure.map_difference(model, x, [0], "1", methods) == pytest.approx(8 / 256,
                                                                                 abs=1e-5)
    assert measure.check_map_difference(8 / 256, model, x, [0], "1", methods)
    signed = measure.check_map_difference(-8 / 256, model, x, [0], "1", methods)
    assert not signed and "signed" in str(signed)


def test_the_random_fc_question_says_how_many_maps_are_blank():
    a, b = setting(head="random fc", layer="conv1"), setting(head="random fc",
                                                            layer="layer4.1.conv2")
    ev = Evidence(scores={setting_key(a): {"clarity": torch.tensor([[0.0, 0.9, 0.8],
                                                                    [0.7, 0.9, 0.8]])},
                          setting_key(b): {"clarity": torch.tensor([[0.0, 0.0, 0.5],
                                                                    [0.0, 0.6, 0.5]])}},
                  image_index=torch.tensor([0, 1, 2]), target_class=torch.tensor([0, 0, 1]),
                  seeds=(0, 1), meta={})
    _, report = predict.random_fc_question(ev).measure()
    assert "conv1 1, layer4.1.conv2 3 of 6 (seed, pair) maps" in report
