"""Lecturers' slides: ``jupyter nbconvert --to slides`` (what ``make slides`` runs) builds a
reveal.js deck for every course notebook, with one ``<section>`` per slide and the stored
outputs (figures) inside."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> Path:
    """Every notebook converted in one nbconvert run (as ``make slides`` does)."""
    if not NOTEBOOKS:
        pytest.skip("no course notebooks in notebooks/ yet")
    out = tmp_path_factory.mktemp("slides")
    src = out / "notebooks"  # a snapshot: notebooks/ may be rebuilt while the test runs
    src.mkdir()
    for nb in NOTEBOOKS:
        shutil.copy2(nb, src / nb.name)
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "slides", "--output-dir",
           str(out), *(str(src / nb.name) for nb in NOTEBOOKS)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, f"nbconvert --to slides failed:\n{run.stderr[-3000:]}"
    return out


def _slide_type(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


@pytest.mark.parametrize("notebook", NOTEBOOKS or [None], ids=lambda p: p.name if p else "none")
def test_slides_deck(decks, notebook):
    deck = decks / f"{notebook.stem}.slides.html"
    assert deck.is_file(), f"no deck for {notebook.name} in {sorted(decks.iterdir())}"
    text = deck.read_text(encoding="utf-8")
    assert text.strip(), f"{deck.name} is empty"
    assert "Reveal.initialize" in text, f"{deck.name} does not start reveal.js"
    sections = len(re.findall(r"<section\b", text))
    nb = nbformat.read(decks / "notebooks" / notebook.name, as_version=4)
    shown = [c for c in nb.cells if _slide_type(c) != "skip"]
    # a new slide or sub-slide opens a <section> (a slide holding sub-slides nests them)
    starts = sum(_slide_type(c) in ("slide", "subslide") for c in shown)
    assert sections >= max(1, starts), (
        f"{deck.name}: {sections} <section> elements for {starts} slides and sub-slides")
    pngs = sum("image/png" in o.get("data", {}) for c in shown if c.cell_type == "code"
               for o in c.get("outputs", []))
    assert text.count("data:image/png;base64,") >= pngs, (
        f"{deck.name}: fewer embedded PNG figures than the notebook's {pngs}")
