"""The record check: numbers within a tolerance, words and integers exact."""

import json

import pytest

from gradcam_edu import recorded

TABLE = "layer3   14x14   0.31 [0.28, 0.34]   supported\nlayer4    7x7   0.18 [0.17, 0.20]\n"


def test_kernel_noise_within_the_tolerance_passes():
    moved = TABLE.replace("0.31", "0.32").replace("0.20]", "0.19]")
    n, diffs = recorded.differences(moved, TABLE, tol=0.01)
    assert (n, diffs) == (12, [])     # 6 decimals, 6 integers (layer3, 14x14, layer4, 7x7)


def test_a_moved_number_a_flipped_word_or_a_new_grid_fails():
    assert recorded.differences(TABLE.replace("0.31", "0.36"), TABLE, 0.02)[1] == [
        "0.36 instead of 0.31"]            # 0.05 > 0.02 + one unit of the last digit
    assert recorded.differences(TABLE.replace("supported", "unsupported"), TABLE, 0.02)[1]
    assert recorded.differences(TABLE.replace("7x7", "14x14"), TABLE, 0.02)[1] == [
        "14 instead of 7", "14 instead of 7"]


def test_rounding_alone_never_counts():
    """0.2349 printed 0.23 and 0.2351 printed 0.24 differ by 0.0002: within tol=0."""
    assert recorded.differences("0.24", "0.23", tol=0.0)[1] == []
    assert recorded.differences("0.25", "0.23", tol=0.0)[1] == ["0.25 instead of 0.23"]
    assert recorded.differences("0.26", "0.23", tol=0.01)[1] == ["0.26 instead of 0.23"]


def test_check_prints_one_kernel_independent_line(tmp_path, monkeypatch, capsys):
    record = tmp_path / "recorded.json"
    record.write_text(json.dumps({"t": TABLE}))
    monkeypatch.setattr(recorded, "RECORD", record)
    monkeypatch.delenv(recorded.RECORD_ENV, raising=False)
    with recorded.tee() as out:
        print(TABLE.replace("0.18", "0.19"), end="")
    assert out.text == TABLE.replace("0.18", "0.19")
    capsys.readouterr()
    assert recorded.check("t", out.text, tol=0.01)
    assert capsys.readouterr().out == "t: as recorded, 12 numbers within ±0.01: True\n"
    assert not recorded.check("t", TABLE.replace("0.18", "0.30"), tol=0.01)
    assert "0.30 instead of 0.18" in capsys.readouterr().out
    with pytest.raises(KeyError, match="no recorded text 'missing'"):
        recorded.check("missing", TABLE, tol=0.01)
    monkeypatch.setenv(recorded.RECORD_ENV, "1")
    assert recorded.check("new", TABLE, tol=0.01)
    assert json.loads(record.read_text())["new"] == TABLE
    with pytest.raises(ValueError, match="tol: expected a finite number"):
        recorded.differences(TABLE, TABLE, tol=-1)
