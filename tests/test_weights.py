"""Shipped weights: checksum verified before loading, clear errors, held-out accuracy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import gradcam_edu.cli
from gradcam_edu import models, shapes, weights
from gradcam_edu.classification import (
    accuracy,
    average_precision,
    evaluate,
    exact_match,
    iter_batches,
    mean_average_precision,
    predict,
)
from gradcam_edu.truncate import TruncatedResNet

SHIPPED = ["plaincnn-shapes", "resnet18-shapes"]


@pytest.fixture()
def copy_of(tmp_path):
    """Copy some of a shipped model's files into tmp_path; returns that folder."""

    def _copy(name: str, files: tuple[str, ...] = ("safetensors", "json")):
        for ext in files:
            shutil.copy(weights.data_dir() / f"{name}.{ext}", tmp_path / f"{name}.{ext}")
        return tmp_path

    return _copy


def test_shipped_models_are_listed():
    assert set(SHIPPED) <= set(weights.available_models())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_with_verified_checksum(name):
    card = weights.model_card(name)
    path = weights.data_dir() / f"{name}.safetensors"
    assert weights.sha256_file(path) == card["sha256"]
    for key in ("architecture", "kwargs", "training", "held_out", "torch_version"):
        assert key in card
    assert card["held_out"]["n_images"] >= 1000
    model = weights.load_model(name)
    assert not model.training
    with torch.no_grad():
        assert model(torch.rand(2, 3, 224, 224)).shape == (2, 6)


@pytest.mark.parametrize("name", weights.available_models())
def test_every_shipped_card_loads(name):
    card = weights.model_card(name)
    assert card["architecture"] in weights.ARCHITECTURES
    model = weights.load_model(name)
    assert models.probability_kind(model) == "sigmoid"
    if card["architecture"] == "truncated_resnet":
        assert isinstance(model, TruncatedResNet) and model.cut == card["kwargs"]["after"]


def _edited_card(copy_of, name: str, **changes):
    """A copy of a shipped model whose card has ``changes`` (weights unchanged, so the
    checksum still matches); returns the copy's folder and its card file."""
    folder = copy_of(name)
    card_path = folder / f"{name}.json"
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))
    return folder, card_path


def test_a_card_naming_code_is_refused_and_nothing_runs(copy_of, monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(gradcam_edu.cli, "main", lambda *a, **k: ran.append((a, k)))
    monkeypatch.setitem(weights.ARCHITECTURES, "resnet18_narrow",
                        lambda *a, **k: ran.append("builder"))
    folder, card_path = _edited_card(copy_of, "resnet18-shapes",
                                     architecture="gradcam_edu.cli:main",
                                     kwargs={"argv": ["models"]})
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError) as err:
        weights.load_model("resnet18-shapes", data=folder)
    message = str(err.value)
    assert str(card_path) in message and "'gradcam_edu.cli:main'" in message
    assert "resnet18_narrow" in message and "truncated_resnet" in message
    assert ran == [] and sorted(p.name for p in folder.iterdir()) == before


def test_a_nested_base_architecture_is_refused_before_any_call(copy_of, monkeypatch):
    called = []
    monkeypatch.setitem(weights.ARCHITECTURES, "truncated_resnet",
                        lambda **k: called.append(k))
    card = weights.model_card("resnet18-shapes-cut-layer3.1-probe")
    kwargs = {**card["kwargs"], "base_architecture": "gradcam_edu.cli:main"}
    folder, card_path = _edited_card(copy_of, "resnet18-shapes-cut-layer3.1-probe",
                                     kwargs=kwargs)
    with pytest.raises(ValueError, match="base_architecture: unknown architecture") as err:
        weights.load_model("resnet18-shapes-cut-layer3.1-probe", data=folder)
    assert str(card_path) in str(err.value) and called == []


@pytest.mark.parametrize("kwargs", [["num_classes", 6], "width=16", None, 3])
def test_kwargs_must_be_a_json_object(copy_of, kwargs):
    folder, card_path = _edited_card(copy_of, "resnet18-shapes", kwargs=kwargs)
    with pytest.raises(ValueError, match="kwargs: expected a JSON object") as err:
        weights.load_model("resnet18-shapes", data=folder)
    assert str(card_path) in str(err.value)


def test_unknown_architecture_names_the_card_and_the_registry(copy_of):
    folder, card_path = _edited_card(copy_of, "plaincnn-shapes", architecture="resnet19")
    with pytest.raises(ValueError) as err:
        weights.load_model("plaincnn-shapes", data=folder)
    message = str(err.value)
    assert str(card_path) in message and "'resnet19'" in message
    assert str(sorted(weights.ARCHITECTURES)) in message
    with pytest.raises(ValueError, match="architecture: unknown"):
        weights.save_model(models.plain_cnn(), "x", {"architecture": "gradcam_edu.cli:main",
                                                     "kwargs": {}}, data=folder)
    assert not (folder / "x.json").exists()


def test_register_architecture(monkeypatch):
    monkeypatch.setattr(weights, "ARCHITECTURES", dict(weights.ARCHITECTURES))
    weights.register_architecture("tiny_resnet", lambda: models.resnet18_narrow(width=4))
    assert weights.architecture("tiny_resnet")().fc.in_features == 32
    with pytest.raises(TypeError, match="builder"):
        weights.register_architecture("bad", "gradcam_edu.cli:main")
    with pytest.raises(ValueError, match="name"):
        weights.register_architecture("", models.plain_cnn)


def test_altered_file_raises_checksum_error(copy_of, monkeypatch):
    folder = copy_of("resnet18-shapes")
    path = folder / "resnet18-shapes.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 1  # one flipped bit deep inside a tensor
    path.write_bytes(bytes(blob))
    with pytest.raises(weights.ChecksumMismatchError, match="altered or corrupted") as err:
        weights.load_model("resnet18-shapes", data=folder)
    assert str(path) in str(err.value) and "expected sha256" in str(err.value)
    monkeypatch.setenv("GRADCAM_EDU_DATA", str(folder))  # the env var route, same verdict
    with pytest.raises(weights.ChecksumMismatchError):
        weights.load_model("resnet18-shapes")


def test_missing_weight_file_or_card_raise_naming_the_file(copy_of, tmp_path):
    copy_of("plaincnn-shapes", files=("json",))
    with pytest.raises(FileNotFoundError, match="plaincnn-shapes.safetensors"):
        weights.load_model("plaincnn-shapes", data=tmp_path)
    copy_of("resnet18-shapes", files=("safetensors",))
    with pytest.raises(FileNotFoundError, match="resnet18-shapes.json"):
        weights.load_model("resnet18-shapes", data=tmp_path)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="resnet18-shapes"):
        weights.load_model("resnet19-shapes")


def test_save_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = models.resnet18_narrow(num_classes=6, width=4).eval()
    card = weights.save_model(
        model, "tiny", {"architecture": "resnet18_narrow", "kwargs": {"width": 4}, "epochs": 0},
        data=tmp_path,
    )
    assert card["sha256"] == weights.sha256_file(tmp_path / "tiny.safetensors")
    assert json.loads((tmp_path / "tiny.json").read_text()) == card
    assert weights.available_models(tmp_path) == ["tiny"]
    loaded = weights.load_model("tiny", data=tmp_path)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    with pytest.raises(ValueError, match="do not rebuild"):
        weights.save_model(model, "bad", {"architecture": "plain_cnn", "kwargs": {}}, tmp_path)


def test_metrics_on_hand_made_cases():
    with pytest.raises(ValueError, match="labels"):
        exact_match(np.zeros((2, 3)), np.zeros((3, 2)))
    # AP: ranks 1, 3 are positives -> (1/1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == (
        pytest.approx((1 + 2 / 3) / 2)
    )
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.7]])
    labels = np.array([[1, 0], [0, 1], [1, 0]])
    assert mean_average_precision(scores, labels) == pytest.approx((1.0 + 1.0) / 2)
    assert exact_match(scores, labels) == pytest.approx(2 / 3)
    logits = torch.logit(torch.tensor(scores))
    assert accuracy(logits, torch.tensor(labels)) == pytest.approx(
        {"exact_match": 2 / 3, "mAP": 1.0})
    # softmax: rows [0.69, 0.31], [0.35, 0.65], [0.475, 0.525]: the third image is wrong
    assert accuracy(logits, torch.tensor(labels), "softmax")["exact_match"] == pytest.approx(
        2 / 3)
    with pytest.raises(ValueError, match="kind"):
        accuracy(logits, torch.tensor(labels), "relu")


def test_predict_and_evaluate_on_a_known_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2, bias=False))
    model.probabilities = "sigmoid"
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.ones(12), -torch.ones(12)]))
    images = np.zeros((5, 2, 2, 3), dtype=np.uint8)
    images[:2] = 255                                      # logits (+12, -12) for images 0-1
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 0], [0, 1]], dtype=np.float32)
    model.train()
    logits, y = predict(model, (images, labels), batch_size=2)
    assert model.training                                 # the mode is restored
    assert torch.allclose(logits[:, 0], torch.tensor([12.0, 12.0, 0, 0, 0]))
    assert torch.equal(y, torch.from_numpy(labels))
    scores = evaluate(model, (images, labels))
    # sigmoid(0) = 0.5 is not above the threshold: images 0-3 are right, image 4 misses class 1
    assert scores["n_images"] == 5 and scores["exact_match"] == pytest.approx(4 / 5)
    assert [x.shape for x, _ in iter_batches((images, labels), 2)] == [(2, 3, 2, 2)] * 2 + [
        (1, 3, 2, 2)]
    with pytest.raises(TypeError, match="data"):
        predict(model, images)
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches((images, labels), 0))


@pytest.fixture(scope="module")
def fresh_images():
    """300 images the models never saw: split "val", indices 1000-1299 (training used
    "train"; per-epoch monitoring used "val" 0-499)."""
    images, labels = shapes.render_many(0, "val", range(1000, 1300))
    return images, labels


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_reach_their_card_on_fresh_images(name, fresh_images):
    images, labels = fresh_images
    card = weights.model_card(name)
    em = evaluate(weights.load_model(name), (images, labels))["exact_match"]
    p, n = card["held_out"]["exact_match"], len(labels)
    margin = max(0.03, 3 * (p * (1 - p) / n) ** 0.5)  # 3 binomial standard errors at n = 300
    assert em >= p - margin, (em, card["held_out"])


def test_the_card_says_how_logits_become_probabilities(copy_of):
    """Shipped cards say sigmoid (multi-label shapes); a card saying softmax is obeyed; a
    card saying anything else is refused, naming the card."""
    assert models.probability_kind(weights.load_model("resnet18-shapes")) == "sigmoid"
    folder, _ = _edited_card(copy_of, "plaincnn-shapes", probabilities="softmax")
    model = weights.load_model("plaincnn-shapes", data=folder)
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(models.probabilities(model, logits), torch.full((1, 6), 1 / 6))
    folder, card_path = _edited_card(copy_of, "plaincnn-shapes", probabilities="tanh")
    with pytest.raises(ValueError, match="probabilities must be one of") as err:
        weights.load_model("plaincnn-shapes", data=folder)
    assert str(card_path) in str(err.value)
