"""Repository-wide pytest hook: when nbval runs the notebooks, print each one's time, their
sum, and the wall-clock time of the run (less than the sum when pytest-xdist runs several
notebooks at once)."""

from __future__ import annotations

import time
from collections import defaultdict

_SECONDS: dict[str, float] = defaultdict(float)
_START: list[float] = []


def pytest_sessionstart(session):
    _START.append(time.perf_counter())


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _SECONDS:
        return
    terminalreporter.section("notebook run time (nbval)")
    for path, seconds in sorted(_SECONDS.items()):
        terminalreporter.write_line(f"{path:<48} {seconds:6.1f} s")
    terminalreporter.write_line(f"{'all notebooks, summed':<48} {sum(_SECONDS.values()):6.1f} s")
    if _START:
        wall = time.perf_counter() - _START[0]
        terminalreporter.write_line(f"{'the whole run, wall clock':<48} {wall:6.1f} s")
