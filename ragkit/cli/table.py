"""The one table renderer of the CLI: plain text, aligned, fitted to the terminal width.

Every command that prints a table (``search``, ``info``, ``eval``, ``tune``) uses
:func:`render_table`, so header and rows always share one set of column widths; numbers are
right-aligned, text left-aligned. When the table is wider than the terminal, the widest text
column is cut (with ``…``) until it fits; numbers are never cut.

>>> print(render_table(["configuration", "ndcg@10"], [["bm25", 0.5], ["hybrid (untuned default)", 0.75]]))
configuration             ndcg@10
bm25                       0.5000
hybrid (untuned default)   0.7500
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

__all__ = ["format_cell", "render_table", "terminal_width"]

GAP = "  "
MIN_TEXT = 8  # a cut text column keeps at least this many characters
ELLIPSIS = "…"


def terminal_width(default: int = 100) -> int:
    """Columns of the terminal (``$COLUMNS`` first); ``default`` when output is not a terminal."""
    return shutil.get_terminal_size((default, 24)).columns


def format_cell(value: Any, digits: int = 4) -> str:
    """A cell's text: floats with ``digits`` decimals, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int | None = None, digits: int = 4,
    right: Sequence[int] = (),
) -> str:
    """``rows`` under ``headers``, columns aligned, at most ``width`` (default: the terminal's) wide.

    Number columns, and the columns listed in ``right`` (numbers already formatted), are right-aligned.
    """
    cells = [[format_cell(v, digits) for v in row] for row in rows]
    numeric = [i in right or (bool(rows) and all(_is_number(row[i]) for row in rows)) for i in range(len(headers))]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    _fit(widths, numeric, width if width is not None else terminal_width())
    lines = [_line(headers, widths, numeric), *(_line(r, widths, numeric) for r in cells)]
    return "\n".join(line.rstrip() for line in lines)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _fit(widths: list[int], numeric: list[bool], limit: int) -> None:
    """Narrow the widest text columns, in place, until the row fits ``limit`` (or cannot narrow more)."""
    while sum(widths) + len(GAP) * (len(widths) - 1) > limit:
        text = [i for i, n in enumerate(numeric) if not n and widths[i] > MIN_TEXT]
        if not text:
            return
        widest = max(text, key=lambda i: widths[i])
        excess = sum(widths) + len(GAP) * (len(widths) - 1) - limit
        widths[widest] = max(MIN_TEXT, widths[widest] - excess)


def _line(cells: Sequence[str], widths: list[int], numeric: list[bool]) -> str:
    out = []
    for text, w, num in zip(cells, widths, numeric):
        if len(text) > w:
            text = text[: w - 1] + ELLIPSIS
        out.append(text.rjust(w) if num else text.ljust(w))
    return GAP.join(out)
