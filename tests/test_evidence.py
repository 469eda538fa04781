"""The shipped evidence: it loads safely, and the code still measures what it holds."""

import json
import shutil

import pytest
import torch

from gradcam_edu import evidence, weights
from gradcam_edu.evidence import (
    DESIGN,
    SEEDS,
    Evidence,
    load_evidence,
    measure,
    save_evidence,
    setting,
    setting_key,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped():
    return load_evidence()


def test_shipped_evidence_covers_every_setting_and_seed(shipped):
    assert shipped.seeds == SEEDS
    n_settings = sum(len(layers) * len(evidence.METHODS.get(v, ("gradcam",)))
                     for v, layers in DESIGN.items())
    assert len(shipped.scores) == n_settings
    assert shipped.meta["n_images"] == 128
    assert len(torch.unique(shipped.image_index)) == 128
    for per_metric in shipped.scores.values():
        for t in per_metric.values():
            assert t.shape == (len(SEEDS), len(shipped.image_index))


def test_the_code_still_measures_what_the_file_holds(shipped):
    """Recompute the first 6 images of seed 0 for three variants and compare pair by pair."""
    design = {("full", "trained fc", "on"): ["layer4.1.conv2", "layer4.1"],
              ("cut", "probe", "on"): ["layer4.0"],
              ("full", "trained fc", "off"): ["layer4.0"]}
    fresh = measure(seeds=(0,), n_images=6, design=design)
    rows = shipped.image_index < 6
    assert torch.equal(fresh.image_index, shipped.image_index[rows])
    for key, per_metric in fresh.scores.items():
        for metric in ("energy", "clarity", "target_share"):
            got = per_metric[metric][0]
            want = shipped.scores[key][metric][0, rows]
            assert torch.allclose(got, want, atol=2e-3, equal_nan=True), (key, metric)


def test_round_trip_and_tamper_check(tmp_path):
    s = setting(layer="conv1")
    ev = Evidence({setting_key(s): {m: torch.full((2, 3), 0.25) for m in evidence.METRICS}},
                  torch.tensor([0, 0, 1]), torch.tensor([1, 2, 3]), (0, 1),
                  {"metrics": list(evidence.METRICS)})
    card = save_evidence(ev, tmp_path)
    back = load_evidence(tmp_path)
    assert back.seeds == (0, 1) and torch.equal(back.get(s, "energy"), ev.get(s, "energy"))
    assert json.loads((tmp_path / "evidence.json").read_text())["sha256"] == card["sha256"]
    blob = bytearray((tmp_path / "evidence.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "evidence.safetensors").write_bytes(bytes(blob))
    with pytest.raises(weights.ChecksumMismatchError, match="differs"):
        load_evidence(tmp_path)


def test_missing_or_oversized_files_are_refused(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="python -m gradcam_edu.evidence"):
        load_evidence(tmp_path)
    for name in ("evidence.safetensors", "evidence.json"):
        shutil.copy(weights.data_dir() / name, tmp_path / name)
    monkeypatch.setattr(evidence, "MAX_FILE_BYTES", 100)
    with pytest.raises(ValueError, match="more than the 100"):
        load_evidence(tmp_path)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="missing factor"):
        setting_key({"depth": "full"})
    with pytest.raises(ValueError, match="seeds"):
        measure(seeds=())
