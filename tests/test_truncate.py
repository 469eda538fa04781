"""Truncated ResNets: names kept, heads checked, probes trained, shipped files reloaded."""

import numpy as np
import pytest
import torch

from gradcam_edu import models, probes, weights
from gradcam_edu.capture import capture
from gradcam_edu.models import resnet18_narrow
from gradcam_edu.probes import (
    STANDARD_CUTS,
    cut_features,
    load_truncated,
    probe_name,
    train_probe,
    train_probes,
    variant_accuracy,
)
from gradcam_edu.tables import format_rows
from gradcam_edu.truncate import TruncatedResNet, cut_points, truncate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resnet18_narrow().eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_cut_after_layer4_is_the_full_model(model, x):
    cut = truncate(model, "layer4")
    with torch.no_grad():
        assert torch.allclose(cut(x), model(x), atol=1e-6)
    assert set(cut.state_dict()) == set(model.state_dict())


def test_names_and_shapes_are_kept(model, x):
    cut = truncate(model, "layer4.0")
    names = {n for n, _ in cut.named_modules()}
    assert {"conv1", "layer3.1.conv2", "layer4.0", "layer4.0.downsample.0", "fc"} <= names
    assert "layer4.1" not in names
    assert set(cut.state_dict()) < set(model.state_dict())
    with capture(cut, ["layer4.0", "layer3.1.conv2"]) as cap:
        logits = cap.forward(x)
        cap.backward(1)
        assert logits.shape == (2, 6)
        assert cap.activations["layer4.0"].shape == (2, 128, 2, 2)
    assert truncate(model, "layer3", head="probe").cut == "layer3"
    assert truncate(model, "layer3", head="probe").fc.in_features == 64
    assert truncate(model, "layer2.1", head="probe", num_classes=3)(x).shape == (2, 3)


def test_truncated_model_keeps_the_probability_kind(model):
    assert models.probability_kind(model) == "sigmoid"
    assert models.probability_kind(truncate(model, "layer3.1", head="probe")) == "sigmoid"
    plain = torch.nn.Module()
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "avgpool", "fc"):
        plain.add_module(name, getattr(model, name))
    assert models.probability_kind(truncate(plain, "layer1.1", head="probe")) == "softmax"
    again = truncate(truncate(model, "layer4.0"), "layer3", head="probe")     # a cut of a cut
    assert again.cut == "layer3" and models.probability_kind(again) == "sigmoid"


def test_truncated_model_is_a_deep_copy(model):
    cut = truncate(model, "layer4.0")
    with torch.no_grad():
        cut.conv1.weight.zero_()
        cut.fc.weight.zero_()
    assert model.conv1.weight.abs().sum() > 0 and model.fc.weight.abs().sum() > 0


def test_original_head_where_channels_fit_else_a_clear_error(model):
    assert truncate(model, "layer4.0").head == "original"
    with pytest.raises(ValueError, match=r"128 input channels.*outputs 64.*head='probe'"):
        truncate(model, "layer3.1")


def test_bad_cut_names_close_matches(model):
    with pytest.raises(ValueError, match=r"after: 'layer4\.2'.*layer4\.1"):
        truncate(model, "layer4.2")
    with pytest.raises(ValueError, match="block boundary"):
        truncate(model, "layer4.1.conv2")
    with pytest.raises(ValueError, match="head"):
        truncate(model, "layer4.0", head="linear")
    assert cut_points(model)[:3] == ["layer1.0", "layer1.1", "layer1"]
    assert cut_points(truncate(model, "layer2.0", head="probe"))[-2:] == ["layer2.0", "layer2"]
    with pytest.raises(TypeError, match="after"):
        truncate(model, 4)
    with pytest.raises(ValueError, match="num_classes"):
        truncate(model, "layer3.1", head="probe", num_classes=0)
    with pytest.raises(TypeError, match="model: expected a torchvision-style ResNet"):
        truncate(torch.nn.Linear(2, 2), "layer1.0")


def test_probe_training_reduces_the_loss_and_freezes_the_body(model):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 64, 64, generator=gen)
    labels = (torch.rand(64, 6, generator=gen) < 0.3).float()
    cut = truncate(model, "layer3.1", head="probe")
    body = {k: v.clone() for k, v in cut.state_dict().items() if not k.startswith("fc.")}
    fit = train_probe(cut, (images, labels), epochs=30, seed=0)
    assert fit.train_images == 64
    assert fit.losses[-1] < 0.8 * fit.losses[0]
    assert all(torch.equal(v, cut.state_dict()[k]) for k, v in body.items())
    again = truncate(model, "layer3.1", head="probe")
    train_probe(again, (images, labels), epochs=30, seed=0)
    assert torch.allclose(again.fc.weight, cut.fc.weight)        # seeded
    rows = variant_accuracy(model, (images[:16], labels[:16]), cuts=["layer4.0", "layer3.1"],
                            probes={"layer3.1": cut})
    assert [r["variant"] for r in rows] == ["full", "cut-layer4.0-original", "cut-layer3.1-probe"]
    with torch.no_grad():
        probs = torch.sigmoid(cut(images[:16]))
    exact = float(((probs > 0.5) == (labels[:16] > 0.5)).all(dim=1).float().mean())
    assert rows[2]["exact_match"] == pytest.approx(exact) and rows[2]["images"] == 16
    table = format_rows(rows, ["variant", "exact_match"])
    assert table.splitlines()[0].split() == ["variant", "exact_match"]
    assert table.splitlines()[3].split() == ["cut-layer3.1-probe", f"{exact:.3f}"]


def test_probe_ships_and_reloads_with_checksum(model, x, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADCAM_EDU_DATA", str(tmp_path))
    cut = truncate(model, "layer2.1", head="probe")
    torch.nn.init.normal_(cut.fc.weight)
    weights.save_model(cut, "tiny-cut-layer2.1-probe", card_extra={
        "architecture": "truncated_resnet",
        "kwargs": {"base_architecture": "resnet18_narrow",
                   "base_kwargs": {"num_classes": 6, "width": 16}, "after": "layer2.1"}})
    loaded = load_truncated("tiny-cut-layer2.1-probe")
    assert isinstance(loaded, TruncatedResNet) and loaded.cut == "layer2.1"
    assert loaded.probabilities == "sigmoid"
    with torch.no_grad():
        assert torch.allclose(loaded(x), cut.eval()(x), atol=1e-6)


def test_one_feature_pass_serves_every_cut(model, x):
    feats, labels = cut_features(model, (x, torch.zeros(2, 6)), ["layer2.1", "layer3", "layer4.0"])
    assert labels.shape == (2, 6)
    for c in ("layer2.1", "layer3", "layer4.0"):
        with torch.no_grad():
            expected = truncate(model, c, head="probe").features(x)
        assert torch.allclose(feats[c], expected, atol=1e-6)
    u8 = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()     # uint8 NHWC too
    feats_u8, _ = cut_features(model, (u8, np.zeros((2, 6))), ["layer3"], batch_size=1)
    with torch.no_grad():
        expected = truncate(model, "layer3", head="probe").features(torch.from_numpy(u8).permute(
            0, 3, 1, 2).float() / 255)
    assert torch.allclose(feats_u8["layer3"], expected, atol=1e-6)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(16, 3, 64, 64, generator=gen)
    y = (torch.rand(16, 6, generator=gen) < 0.3).float()
    shared = train_probes(model, (images, y), ["layer3.1"], epochs=5, seed=0)["layer3.1"][0]
    alone = truncate(model, "layer3.1", head="probe")
    train_probe(alone, (images, y), epochs=5, seed=0)
    assert torch.allclose(shared.fc.weight, alone.fc.weight, atol=1e-6)


@pytest.mark.parametrize("cut", STANDARD_CUTS)
def test_shipped_probe_is_built_on_the_shipped_base(cut):
    name = probe_name(cut)
    if name not in weights.available_models():
        pytest.skip(f"{name} not shipped ({probes.BUILD_COMMAND} builds it)")
    card = weights.model_card(name)
    assert card["cut"] == cut and card["held_out"]["n_images"] >= 1000
    assert card["architecture"] == "truncated_resnet"
    assert card["probe"]["command"] == probes.BUILD_COMMAND
    base = weights.model_card(card["base_model"])
    assert card["base_sha256"] == base["sha256"], (
        f"{name} was trained on another {card['base_model']}; rebuild the probes with "
        f"{probes.BUILD_COMMAND}")
    probe, full = load_truncated(name), weights.load_model(card["base_model"])
    body = {k: v for k, v in probe.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in body.items())
