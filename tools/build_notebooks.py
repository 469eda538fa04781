"""Build the course notebooks from their sources and execute them, outputs included.

    python tools/build_notebooks.py                 # every tools/notebooks/*.py
    python tools/build_notebooks.py 01 03           # the sources whose name starts so
    python tools/build_notebooks.py --record        # and rewrite tools/notebooks/recorded.json
    python tools/build_notebooks.py --prose 05      # copy changed markdown only, no kernel

``--record`` makes every ``recorded.check`` cell take the table it measures as the new record
(see :mod:`gradcam_edu.recorded`): do it when the science changed on purpose, and read the
diff of ``tools/notebooks/recorded.json`` before committing it.

Sources are jupytext "percent" scripts (easy to diff and review); the executed .ipynb files
in notebooks/ are what learners open and what nbval checks. Prints each notebook's time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "tools" / "notebooks"
OUT = ROOT / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_TEXT = "(a live widget: run this cell in JupyterLab to open it)"
HIDDEN_OUTPUTS = {"solution", "exercise"}
"""Tags of cells that run (nbval checks they still work) but are committed without outputs
and unexecuted: a solution's "Correct! ..." and the checker's hint on an exercise's starting
stub must not give the answer away before the learner has tried."""


def build(source: Path, timeout: int = 600) -> float:
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata.pop("jupytext", None)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(OUT)}}).execute()
    seconds = time.perf_counter() - start
    for i, cell in enumerate(nb.cells):  # stable ids, no timing metadata: clean diffs
        cell.id = f"cell-{i:03d}"
        cell.metadata.pop("execution", None)
        if HIDDEN_OUTPUTS & set(cell.metadata.get("tags", [])):
            cell.outputs, cell.execution_count = [], None
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME in data:  # shown where the saved widget state cannot be
                data["text/plain"] = WIDGET_TEXT
    nbformat.write(nb, OUT / f"{source.stem}.ipynb")
    return seconds


def copy_prose(source: Path) -> int:
    """Copy the markdown cells of ``source`` into its executed notebook, leaving every code
    cell and output alone; refuses when any code cell differs (then execute it). Returns the
    number of markdown cells changed."""
    new, path = jupytext.read(source), OUT / f"{source.stem}.ipynb"
    old = nbformat.read(path, as_version=4)
    kinds = [c.cell_type for c in new.cells], [c.cell_type for c in old.cells]
    code = ([c.source for c in new.cells if c.cell_type == "code"],
            [c.source for c in old.cells if c.cell_type == "code"])
    if kinds[0] != kinds[1] or code[0] != code[1]:
        sys.exit(f"{source.stem}: code cells changed; execute it instead (no --prose)")
    changed = 0
    for a, b in zip(new.cells, old.cells, strict=True):
        if a.cell_type == "markdown" and a.source != b.source:
            b.source, changed = a.source, changed + 1
    nbformat.write(old, path)
    return changed


def main(prefixes: list[str]) -> None:
    if "--record" in prefixes:
        prefixes = [p for p in prefixes if p != "--record"]
        os.environ["GRADCAM_EDU_RECORD"] = "1"          # inherited by the kernels
    prose = "--prose" in prefixes
    prefixes = [p for p in prefixes if p != "--prose"]
    sources = sorted(SRC.glob("*.py"))
    if prefixes:
        sources = [s for s in sources if any(s.stem.startswith(p) for p in prefixes)]
    if not sources:
        sys.exit(f"no notebook source matches {prefixes} in {SRC}")
    if prose:
        for source in sources:
            print(f"{source.stem}: {copy_prose(source)} markdown cell(s) updated")
        return
    for source in sources:
        seconds = build(source)
        print(f"{source.stem}: executed in {seconds:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
