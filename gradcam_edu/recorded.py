"""Checked numbers that hold on every CPU: a measured table against the course's record.

A notebook's numbers move with the CPU's SIMD kernels (``ATEN_CPU_CAPABILITY``): float32
sums are added in another order, and where a map is a small difference of large terms
(Grad-CAM at early layers) the displayed map moves by up to a few 1e-3, enough to flip a
printed 0.235 to 0.24 or a near-tie in the pointing game. Comparing printed text exactly
(nbval) then fails on a learner's laptop although nothing changed. So a notebook prints its
table in an unchecked cell, and a checked cell compares it with the recorded one::

    with recorded.tee() as board_text:       # prints as usual, and keeps the text
        print(board.to_text())
    # next cell, checked by nbval:
    recorded.check("02 scoreboard", board_text.text, tol=0.02)

:func:`check` prints one line that does not depend on the kernels: how many numbers it
compared, the tolerance, and whether every number lies within it of the recorded one and
every word (layer names, verdicts, headers) is the same. When the science changes (a verdict
flips, a layer's score moves by more than ``tol``) the line says ``False`` and lists the
differences, and nbval fails. Integers (counts, grid sizes) must match exactly.

The record is ``tools/notebooks/recorded.json``; ``python tools/build_notebooks.py --record``
rewrites it from a run (a deliberate act, like committing new outputs).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

RECORD = Path(__file__).resolve().parent.parent / "tools" / "notebooks" / "recorded.json"
RECORD_ENV = "GRADCAM_EDU_RECORD"
_NUMBER = re.compile(r"[-+]?\d+\.\d+|[-+]?\d+")


class Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy in :attr:`text`."""

    def __init__(self, stream):
        self._stream, self._parts = stream, []

    def write(self, s: str) -> int:
        self._parts.append(s)
        return self._stream.write(s)

    def flush(self) -> None:
        self._stream.flush()

    @property
    def text(self) -> str:
        return "".join(self._parts)


@contextlib.contextmanager
def tee() -> Iterator[Tee]:
    """Inside the block, ``print`` shows as usual and is also kept (``.text``)."""
    out = Tee(sys.stdout)
    with contextlib.redirect_stdout(out):
        yield out


def tokens(text: str) -> tuple[str, list[str]]:
    """``(words, numbers)``: the text with every number replaced by ``#`` (whitespace
    normalised), and the numbers as written."""
    return " ".join(_NUMBER.sub("#", text).split()), _NUMBER.findall(text)


def differences(text: str, recorded: str, tol: float) -> tuple[int, list[str]]:
    """Compare ``text`` with ``recorded``: ``(numbers compared, differences)``.

    Decimal numbers may differ by at most ``tol`` (plus one unit of the last printed
    digit, so that rounding itself never counts); integers and words must be equal.
    """
    if not isinstance(tol, int | float) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol: expected a finite number >= 0, got {tol!r}")
    words, got = tokens(text)
    words_rec, want = tokens(recorded)
    if words != words_rec or len(got) != len(want):
        return len(want), [f"the words differ: got {text.strip()[:200]!r}"]
    diffs = []
    for g, w in zip(got, want, strict=True):
        if "." not in w or "." not in g:
            if g != w:
                diffs.append(f"{g} instead of {w}")
            continue
        digits = len(w.split(".")[1])
        if abs(float(g) - float(w)) > tol + 10 ** -digits + 1e-12:
            diffs.append(f"{g} instead of {w}")
    return len(want), diffs


def _load() -> dict[str, str]:
    if not RECORD.is_file():
        return {}
    data = json.loads(RECORD.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{RECORD}: expected a JSON object of recorded texts")
    return data


def check(key: str, text: str, tol: float) -> bool:
    """Print whether ``text`` matches the record ``key`` within ``tol``; return it.

    With ``$GRADCAM_EDU_RECORD=1`` the text becomes the record first (used by
    ``tools/build_notebooks.py --record``).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text: expected the printed table (a non-empty str), got {text!r}")
    data = _load()
    if os.environ.get(RECORD_ENV) == "1":
        data[key] = text
        RECORD.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    if key not in data:
        raise KeyError(f"key: no recorded text {key!r} in {RECORD}; record it with "
                       "`python tools/build_notebooks.py --record`")
    n, diffs = differences(text, data[key], tol)
    ok = not diffs
    print(f"{key}: as recorded, {n} numbers within ±{tol:g}: {ok}")
    for d in diffs[:10]:
        print("   ", d)
    return ok
