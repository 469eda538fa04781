"""Targets: one class per image, one expander for repeated and selected images."""

import pytest
import torch

from gradcam_edu.targets import class_indices, select_target, target_scores


def test_target_scores_pick_one_logit_per_image():
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert target_scores(logits, 2).tolist() == [3.0, 6.0]
    assert target_scores(logits, [0, 1]).tolist() == [1.0, 5.0]
    assert target_scores(logits, lambda z: z[:, 0] - z[:, 1]).tolist() == [-1.0, -1.0]


def test_select_target_follows_selected_and_repeated_images():
    # images 2 and 0 of a batch of 3, each repeated twice in a row
    assert select_target([7, 8, 9], 3, index=[2, 0], repeats=2).tolist() == [9, 9, 7, 7]
    assert select_target(torch.tensor([7, 8, 9]), 3, repeats=3).tolist() == [7] * 3 + [8] * 3 \
        + [9] * 3
    assert select_target(4, 3, index=[1], repeats=5) == 4
    fn = lambda z: z[:, 0]  # noqa: E731
    assert select_target(fn, 3, repeats=2) is fn


@pytest.mark.parametrize("bad, error, message", [
    (True, TypeError, "target: expected a class index, got a bool"),
    ([1, 2], ValueError, "target: got 2 classes for a batch of 3 images"),
    (torch.tensor([0.5, 1.0, 2.0]), TypeError, "target: expected integer class indices"),
    ("cat", TypeError, "target: expected an int"),
])
def test_bad_targets_are_refused_by_name(bad, error, message):
    with pytest.raises(error, match=message):
        class_indices(bad, 3)


def test_out_of_range_class_names_the_range():
    with pytest.raises(IndexError, match=r"class index 3 is out of range.*0 to 2"):
        target_scores(torch.zeros(1, 3), 3)
