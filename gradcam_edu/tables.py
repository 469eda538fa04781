"""Plain-text tables of dict rows, for the command-line reports and the notebooks."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_rows"]


def format_rows(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of dict rows: one column per key of ``columns`` (default: the keys
    of the first row), left-aligned, floats with 3 decimals, a missing value left blank."""
    if isinstance(rows, dict) or not all(isinstance(r, dict) for r in rows):
        raise TypeError("rows: expected a sequence of dicts (one per row)")
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    cells = [[f"{r.get(c, ''):.3f}" if isinstance(r.get(c), float) else str(r.get(c, ''))
              for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
