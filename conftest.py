"""Repository-wide pytest hook: when nbval runs the notebooks, print each one's time."""

from __future__ import annotations

from collections import defaultdict

_SECONDS: dict[str, float] = defaultdict(float)


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
    terminalreporter.write_line(f"{'all notebooks':<48} {sum(_SECONDS.values()):6.1f} s")
