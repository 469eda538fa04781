"""How long each notebook takes a learner, estimated from its source (printed per notebook).

    python tools/course_time.py                # print the estimates
    python tools/course_time.py --write 01 03  # and write them into those sources' first lines

The estimate counts what a learner does: reads the prose (130 words a minute, a pace for
technical text with formulas), reads, runs and reads the output of each code cell (1 min
each, waiting for the slow ones included), thinks about each predict-then-check question
(3 min) and solves each exercise (8 min); rounded up to 5 minutes.
Hidden solution cells and hidden check cells are not counted. Each notebook's first lines
quote this estimate ("about N minutes"); ``tests/test_course.py`` keeps them equal.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "tools" / "notebooks"
WORDS_PER_MINUTE = 130
MINUTES_PER_CODE_CELL = 1.0
MINUTES_PER_QUESTION = 3
MINUTES_PER_EXERCISE = 8


def _hidden(cell) -> bool:
    return bool(cell.metadata.get("jupyter", {}).get("source_hidden"))


def parts(source: Path) -> dict[str, int]:
    """Words of prose, visible code cells, predict questions and exercises of a source."""
    nb = jupytext.read(source)
    words = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells if c.cell_type == "markdown")
    code = [c for c in nb.cells if c.cell_type == "code" and not _hidden(c)]
    return {"words": words, "code cells": len(code),
            "questions": sum("reveal(" in c.source for c in code),
            "exercises": sum(bool(re.search(r"^check_\w+\(", c.source, re.M)) for c in code)}


def minutes(source: Path) -> int:
    """The estimate for one notebook source, rounded up to 5 minutes."""
    p = parts(source)
    total = (p["words"] / WORDS_PER_MINUTE + p["code cells"] * MINUTES_PER_CODE_CELL
             + p["questions"] * MINUTES_PER_QUESTION + p["exercises"] * MINUTES_PER_EXERCISE)
    return 5 * math.ceil(total / 5)


QUOTED = re.compile(r"about \d+ minutes")
"""How a source's first lines quote its estimate."""


def quoted(source: Path) -> int | None:
    """The estimate a source's first markdown cell quotes ("about N minutes"), or None."""
    head = source.read_text(encoding="utf-8")[:2000]
    found = QUOTED.search(head)
    return int(found.group(0).split()[1]) if found else None


def write(source: Path) -> None:
    text = source.read_text(encoding="utf-8")
    if not QUOTED.search(text[:2000]):
        sys.exit(f"{source.name}: no 'about N minutes' in its first lines")
    source.write_text(QUOTED.sub(f"about {minutes(source)} minutes", text, count=1),
                      encoding="utf-8")


def main(args: list[str]) -> None:
    sources = sorted(SOURCES.glob("[0-9]*.py"))
    prefixes = [a for a in args if a != "--write"]
    if prefixes:
        sources = [s for s in sources if any(s.stem.startswith(p) for p in prefixes)]
    if not sources:
        sys.exit(f"no notebook sources match {prefixes} in {SOURCES}")
    if "--write" in args:
        for s in sources:
            write(s)
    print(f"{'notebook':<32}{'words':>7}{'code':>6}{'questions':>11}{'exercises':>11}"
          f"{'minutes':>9}")
    for s in sources:
        p = parts(s)
        print(f"{s.stem:<32}{p['words']:>7}{p['code cells']:>6}{p['questions']:>11}"
              f"{p['exercises']:>11}{minutes(s):>9}")
    print(f"{'the course':<32}{'':>35}{sum(minutes(s) for s in sources):>9}")


if __name__ == "__main__":
    main(sys.argv[1:])
