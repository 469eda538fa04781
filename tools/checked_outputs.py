"""How much do the notebooks' checked outputs move with the CPU's kernels and thread count?

    python tools/checked_outputs.py                       # native, avx2, default x 1, 2 threads
    python tools/checked_outputs.py --isa default --threads 1 --notebooks 03
    python tools/checked_outputs.py --against d7f6fcc   # no execution: REV's checked cells
                                                          # against today's committed outputs

Executes every committed notebook (its code, as nbval does) once per configuration: a torch
kernel level (``ATEN_CPU_CAPABILITY`` with the matching ``ONEDNN_MAX_CPU_ISA``; "native" sets
neither) and a torch thread count (forced in a first cell the tool adds; the notebooks
themselves set one thread). Then, for every cell marked ``# NBVAL_CHECK_OUTPUT`` and every
table such a cell checks against the record (:mod:`gradcam_edu.recorded`), it compares the
text output with the committed one and prints: whether the text is identical, and the
largest difference of any number in it across all configurations (numbers are compared
position by position; a cell whose words differ is reported as such).

Numbers here are measured on the machine that runs the tool; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ISA = {
    "native": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
NUMBER = re.compile(r"[-+]?\d+\.\d+|[-+]?\d+")
MARK = "NBVAL_CHECK_OUTPUT"


def cell_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def checked_cells(nb) -> dict[int, str]:
    """Outputs of the checked cells, and of the cells whose table a checked
    ``recorded.check`` cell compares with the course's record (the cell before it)."""
    cells = nb.cells
    keep = {i for i, c in enumerate(cells) if c.cell_type == "code" and MARK in c.source}
    keep |= {i - 1 for i in keep if "recorded.check(" in cells[i].source}
    return {i: cell_text(cells[i]) for i in sorted(keep)}


def execute(path: Path, isa: str, threads: int) -> tuple[dict[int, str], float]:
    nb = nbformat.read(path, as_version=4)
    run = copy.deepcopy(nb)
    setup = nbformat.v4.new_code_cell(
        f"import torch\ntorch.set_num_threads({threads})\n"
        "torch.set_num_threads = lambda n: None   # the tool's thread count wins")
    run.cells.insert(0, setup)
    saved = {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    os.environ.pop("ATEN_CPU_CAPABILITY", None)
    os.environ.pop("ONEDNN_MAX_CPU_ISA", None)
    os.environ.update(ISA[isa])
    t0 = time.perf_counter()
    try:
        NotebookClient(run, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    run.cells.pop(0)
    return checked_cells(run), time.perf_counter() - t0


def numbers(text: str) -> list[float]:
    return [float(v) for v in NUMBER.findall(text)]


def words(text: str) -> str:
    return " ".join(NUMBER.sub("#", text).split())


def report(name: str, committed: dict[int, str], runs: dict[str, dict[int, str]]) -> None:
    for i, expected in committed.items():
        texts = {cfg: r.get(i, "") for cfg, r in runs.items()}
        same = [cfg for cfg, t in texts.items() if t == expected]
        if any(words(t) != words(expected) for t in texts.values()):
            spread = "words differ"
        else:
            columns = [numbers(t) for t in (expected, *texts.values())]
            spread = max((max(col) - min(col) for col in zip(*columns, strict=True)),
                         default=0.0)
            spread = f"largest number difference {spread:.6g}"
        status = "identical" if len(same) == len(texts) else \
            f"differs in {', '.join(c for c in texts if c not in same)}"
        print(f"{name} cell {i:>3}: {status}; {spread}")


def against(rev: str, paths: list[Path]) -> None:
    """Every checked cell of the notebooks at ``rev``, found by its words among today's
    committed cells: identical, or which numbers changed."""
    import subprocess

    for path in paths:
        old = nbformat.reads(subprocess.check_output(
            ["git", "show", f"{rev}:notebooks/{path.name}"], cwd=ROOT).decode(), as_version=4)
        new = [cell_text(c) for c in nbformat.read(path, as_version=4).cells
               if c.cell_type == "code"]
        for i, text in checked_cells(old).items():
            match = [t for t in new if words(t) == words(text)]
            if not match:
                print(f"{path.stem} cell {i:>3} at {rev}: no cell of the same words today")
            elif text not in match:
                moved = [(a, b) for a, b in zip(numbers(text), numbers(match[0]), strict=True)
                         if a != b]
                print(f"{path.stem} cell {i:>3} at {rev}: numbers changed {moved}")
        print(f"{path.stem}: {len(checked_cells(old))} checked cells at {rev} compared")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isa", nargs="+", default=["native", "avx2", "default"],
                        choices=sorted(ISA))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--notebooks", nargs="*", default=[],
                        help="name prefixes (default: every notebook)")
    parser.add_argument("--against", metavar="REV",
                        help="compare REV's checked outputs with today's, executing nothing")
    args = parser.parse_args()
    paths = sorted(p for p in NOTEBOOKS.glob("[0-9]*.ipynb")
                   if not args.notebooks or any(p.stem.startswith(n) for n in args.notebooks))
    if args.against:
        against(args.against, paths)
        return
    for path in paths:
        committed = checked_cells(nbformat.read(path, as_version=4))
        runs = {}
        for isa, threads in itertools.product(args.isa, args.threads):
            runs[f"{isa}/{threads}t"], seconds = execute(path, isa, threads)
            print(f"{path.stem}: executed with {isa} kernels, {threads} thread(s) in "
                  f"{seconds:.0f} s", flush=True)
        report(path.stem, committed, runs)


if __name__ == "__main__":
    main()
