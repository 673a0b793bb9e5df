"""Plain-text tables for the command line (demo, inventory, inspect, benchmarks).

A column may be given a width: a longer cell is wrapped at spaces onto continuation lines (the row's
other cells blank there), and a word longer than the width ends with '…'. Nothing is cut silently.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence

ELLIPSIS = "…"


def shorten(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` characters, else its start ending with '…' (for labels that get one line)."""
    return text if len(text) <= width else text[:max(width - 1, 0)].rstrip() + ELLIPSIS


def wrap_cell(text: str, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` characters, broken at spaces; a longer word ends with '…'."""
    if len(text) <= width:
        return [text]
    words = [shorten(word, width) for word in text.split()]
    return textwrap.wrap(" ".join(words), width, break_long_words=False, break_on_hyphens=False) or [""]


def _lines_of(row: Sequence[str], limits: Sequence[int | None]) -> list[list[str]]:
    """One table row as its printed lines: wrapped cells continue below, the other cells blank."""
    cells = [wrap_cell(c, w) if w else [c] for c, w in zip(row, limits)]
    depth = max((len(c) for c in cells), default=1)
    return [[c[i] if i < len(c) else "" for c in cells] for i in range(depth)]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None,
                 max_widths: Mapping[str, int] | None = None) -> str:
    """Columns padded to their widest cell, numbers right-aligned, a rule under the header.
    ``max_widths``: header -> most characters a cell of that column takes on one line (wrapped beyond)."""
    limits = [(max_widths or {}).get(h) for h in headers]
    lines = [line for row in rows
             for line in _lines_of(["" if c is None else str(c) for c in row], limits)]
    widths = [len(h) for h in headers]
    for row in lines:
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
    out.extend(line(row) for row in lines)
    return "\n".join(out)
