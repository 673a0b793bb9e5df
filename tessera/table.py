"""Plain-text tables for the command line (demo, inventory, inspect, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> str:
    """Columns padded to their widest cell, numbers right-aligned, a rule under the header."""
    rows = [["" if c is None else str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def is_number(text: str) -> bool:
        return text.replace(".", "", 1).replace("%", "").replace("-", "", 1).strip().isdigit()

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if is_number(c) else c.ljust(w) for c, w in zip(cells, widths)]
        return "  ".join(parts).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(list(headers)))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in rows)
    return "\n".join(out)
