"""The committed notebooks as a learner meets them before running anything: no solution's
output gives an answer away, no predict-then-check cell shows its measurement, and each
notebook's time estimate is the one ``tools/course_time.py`` computes from its source."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
SOURCES = sorted((ROOT / "tools" / "notebooks").glob("[0-9]*.py"))


def _course_time():
    spec = importlib.util.spec_from_file_location("course_time", ROOT / "tools" / "course_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        out.append(o["text"] if "text" in o else str(data.get("text/plain", "")))
    return "".join(out)


def test_make_lab_shows_the_course_only():
    """``make lab`` opens notebooks/: the course, nothing that builds it."""
    shown = sorted(p.name for p in (ROOT / "notebooks").iterdir() if not p.name.startswith("."))
    assert shown == [p.name for p in NOTEBOOKS], shown


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_are_committed_unexecuted(notebook):
    nb = nbformat.read(notebook, as_version=4)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert solutions, "every notebook has exercises with solutions"
    for cell in solutions:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
        assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, cell.source[:80]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_stubs_are_committed_unexecuted(notebook):
    """The checker's message on a stub (the wrong starting answer) hints at the answer."""
    nb = nbformat.read(notebook, as_version=4)
    after = next(i for i, c in enumerate(nb.cells)
                 if c.cell_type == "markdown" and c.source.startswith("## Exercises"))
    stubs = [c for c in nb.cells[after:] if c.cell_type == "code"
             and "solution" not in c.metadata.get("tags", []) and "check_" in c.source]
    assert stubs
    for cell in stubs:
        assert "exercise" in cell.metadata.get("tags", []), cell.source[:80]
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_predictions_are_committed_unanswered(notebook):
    nb = nbformat.read(notebook, as_version=4)
    questions = [c for c in nb.cells if c.cell_type == "code" and "reveal(" in c.source]
    assert questions, "every notebook asks at least one predict-then-check question"
    for cell in questions:
        assert "my_prediction = None" in cell.source
        shown = _text(cell)
        assert "Commit first" in shown and "Your prediction" not in shown, shown


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_time_estimates_are_computed(source):
    course_time = _course_time()
    assert course_time.quoted(source) == course_time.minutes(source)


def test_time_estimate_by_hand(tmp_path):
    """130 words of prose (1 min) + 2 code cells (2 min) + one question (3 min) + one
    exercise (8 min) = 14 min -> rounded up to 15."""
    words = " ".join(["word"] * 127)
    (tmp_path / "01_x.py").write_text(
        "# %% [markdown]\n# about 5 minutes " + words + "\n\n"
        "# %%\nmy_prediction = None\nreveal(my_prediction, q)\n\n"
        "# %%\ncheck_answer(1)\n\n"
        '# %% tags=["solution"] jupyter={"source_hidden": true}\ncheck_answer(2)\n',
        encoding="utf-8")
    course_time = _course_time()
    source = tmp_path / "01_x.py"
    assert course_time.parts(source) == {"words": 130, "code cells": 2, "questions": 1,
                                         "exercises": 1}
    assert course_time.minutes(source) == 15
    course_time.write(source)
    assert course_time.quoted(source) == 15
