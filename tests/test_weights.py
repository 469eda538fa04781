"""Shipped weights: checksum verified before loading, clear errors, held-out accuracy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from gradcam_edu import models, shapes, weights
from gradcam_edu.train import average_precision, exact_match, mean_average_precision, predict

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
    # AP: ranks 1, 3 are positives -> (1/1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == (
        pytest.approx((1 + 2 / 3) / 2)
    )
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.7]])
    labels = np.array([[1, 0], [0, 1], [1, 0]])
    assert mean_average_precision(scores, labels) == pytest.approx((1.0 + 1.0) / 2)
    assert exact_match(scores, labels) == pytest.approx(2 / 3)


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
    probs = predict(weights.load_model(name), images)
    em = exact_match(probs, labels)
    p, n = card["held_out"]["exact_match"], len(labels)
    margin = max(0.03, 3 * (p * (1 - p) / n) ** 0.5)  # 3 binomial standard errors at n = 300
    assert em >= p - margin, (em, card["held_out"])
