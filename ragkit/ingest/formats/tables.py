"""Tables as Markdown rows: how every loader writes a table, and how the chunker finds one.

A table becomes ``| a | b |`` lines under a ``| --- | --- |`` separator, one line per row (a cell's
newlines become spaces and its ``|`` is escaped), so a row is one line the chunker never splits and
the header is the first two lines, which a chunk starting inside the table repeats
(:mod:`ragkit.ingest.chunking`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["cell_text", "markdown_table", "table_spans"]

_ROW = re.compile(r"[ \t]*\|.*\|[ \t]*$")
_SEPARATOR = re.compile(r"[ \t]*\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*$")
_WS = re.compile(r"\s+")


def cell_text(value: Any) -> str:
    """One cell as table text: ``None`` blank, whole floats without ``.0``, whitespace runs one space."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _WS.sub(" ", str(value)).strip().replace("|", "\\|")


def markdown_table(rows: Iterable[Sequence[Any]]) -> str:
    """Rows (the first is the header) as a Markdown table; rows padded to the widest; ``""`` if none."""
    cells = [[cell_text(v) for v in row] for row in rows]
    if not cells:
        return ""
    width = max(len(r) for r in cells)
    lines = []
    for i, row in enumerate(cells):
        lines.append("| " + " | ".join(row + [""] * (width - len(row))) + " |")
        if i == 0:
            lines.append("|" + " --- |" * width)
    return "\n".join(lines)


def line_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each line in ``text[start:end]``, newline excluded, without copying the text."""
    pos = start
    while pos < end:
        stop = text.find("\n", pos, end)
        stop = end if stop < 0 else stop
        yield pos, stop
        pos = stop + 1


def table_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The Markdown tables in ``text[start:end]`` as ``(table_start, header_end, table_end)``: a header
    row, a separator row, then rows; every line a ``| ... |`` line. Read a line at a time."""
    before: tuple[int, int] | None = None  # the previous line, if it is a row
    table: list[int] | None = None  # [start, header_end, end] of the table being read
    for s, e in line_spans(text, start, end):
        row = _ROW.match(text, s, e) is not None
        if table is not None:
            if row:
                table[2] = e
                continue
            yield table[0], table[1], table[2]
            table = None
        elif before is not None and _SEPARATOR.match(text, s, e):
            table, before = [before[0], e, e], None
            continue
        before = (s, e) if row else None
    if table is not None:
        yield table[0], table[1], table[2]
