"""Truncation and probes: what a new head starts from, the mode a cut keeps, the fit's
bookkeeping (standardisation folded back, per-example loss) and the feature pass's mode."""

import copy

import pytest
import torch
from torch import nn

from gradcam_edu.probes import cut_features, fit_linear_head
from gradcam_edu.truncate import truncate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_a_probe_starts_at_zero_logits(model, x):
    cut = truncate(model, "layer3.1", head="probe")
    assert torch.count_nonzero(cut.fc.weight) == 0 and torch.count_nonzero(cut.fc.bias) == 0
    with torch.no_grad():
        assert torch.equal(cut(x), torch.zeros(2, 6))


def test_the_cut_is_in_the_model_s_mode(model):
    cut = truncate(model, "layer4.0")
    assert cut.training is False and not any(m.training for m in cut.modules())
    train = copy.deepcopy(model).train()
    cut = truncate(train, "layer4.0")
    assert cut.training is True and all(m.training for m in cut.modules())


def test_a_resnet_without_fc_is_refused_by_name(model):
    body = nn.Module()
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "avgpool"):
        body.add_module(name, getattr(model, name))
    with pytest.raises(TypeError, match="has no fc"):
        truncate(body, "layer1.1", head="probe", num_classes=2)


def data():
    gen = torch.Generator().manual_seed(0)
    features = torch.rand(20, 3, generator=gen) * 5 + 2      # mean and scale far from 0 and 1
    labels = (torch.rand(20, 2, generator=gen) < 0.5).float()
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.randn(2, 3, generator=gen))
        head.bias.copy_(torch.randn(2, generator=gen))
    return head, features, labels


def test_fit_folds_the_standardisation_back_exactly():
    # no epoch: standardising the features and folding the scaling back into the head's
    # weights must give the head it started from, and entry 0 is that head's loss
    head, features, labels = data()
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    losses = fit_linear_head(head, features, labels, epochs=0)
    assert torch.allclose(head.weight, w0, atol=1e-5)
    assert torch.allclose(head.bias, b0, atol=1e-5)
    expected = nn.functional.binary_cross_entropy_with_logits(features @ w0.T + b0, labels)
    assert losses == pytest.approx([float(expected)], rel=1e-5)


def test_epoch_loss_is_the_mean_over_every_example():
    # lr = 0: the head never moves, so each epoch's mean loss over the 20 examples equals the
    # loss before training, whatever the batches (8 + 8 + 4)
    head, features, labels = data()
    losses = fit_linear_head(head, features, labels, epochs=2, lr=0.0, batch_size=8)
    assert losses[1:] == pytest.approx([losses[0]] * 2, rel=1e-5)


def test_cut_features_use_running_statistics_and_restore_the_mode(model, x):
    train = copy.deepcopy(model).train()
    feats, labels = cut_features(train, (x, torch.zeros(2, 6)), ["layer3.1"])
    assert train.training and labels.shape == (2, 6)
    with torch.no_grad():
        expected = truncate(model, "layer3.1", head="probe").features(x)
    assert torch.allclose(feats["layer3.1"], expected, atol=1e-6)
