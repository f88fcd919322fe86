"""Tables in chunks: a row is never split, and a chunk that starts inside a table names its header.

A Markdown table (:mod:`ragkit.ingest.formats.tables`; every loader writes tables that way) that fits
one chunk is one piece, never cut. A larger one is chunked on its own, a run of whole rows per chunk:
the first chunk starts with the header rows; each later one gets them as ``table_header`` metadata
(chunk text stays ``document.text[start:end]``), which is embedded and BM25-indexed in front of the
rows, so a question about one cell finds the chunk holding both its row and the column names. The
header's tokens are reserved in each of those chunks' budgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from ragkit.ingest.formats.tables import line_spans, table_spans
from ragkit.ingest.pieces import TABLE, Piece, PieceCutter

__all__ = ["BigTable", "table_chunks", "table_pieces"]


class BigTable(NamedTuple):
    """A table too large for one chunk: where it starts, where its header rows end, where it ends."""

    start: int
    header_end: int
    end: int


def table_pieces(cut: PieceCutter, text: str, start: int, end: int, level: int) -> Iterator[Piece | BigTable]:
    """A block's pieces, each table in it as one TABLE piece, or a :class:`BigTable` if it does not fit."""
    pos = start
    if text.find("|", start, end) >= 0:
        for t_start, header_end, t_end in table_spans(text, start, end):
            yield from cut.block_pieces(text, pos, t_start, level)
            tokens = cut.count(text, t_start, t_end)
            yield Piece(t_start, t_end, tokens, TABLE) if tokens <= cut.limit else BigTable(t_start, header_end, t_end)
            pos = t_end
    yield from cut.block_pieces(text, pos, end, level)


def table_chunks(cut: PieceCutter, text: str, table: BigTable) -> Iterator[tuple[int, int, bool]]:
    """``(start, end, repeats_header)`` spans of whole rows; the first holds the header itself."""
    header_tokens = cut.count(text, table.start, table.header_end)
    repeat = header_tokens <= cut.limit // 2  # a header that fills half a chunk is not repeated
    budget = cut.limit - header_tokens - 1 if repeat else cut.limit
    chunk: list[tuple[int, int]] = [(table.start, table.header_end)]
    tokens = header_tokens
    first = True
    for row in line_spans(text, table.header_end + 1, table.end):
        row_tokens = cut.count(text, *row)
        room = cut.limit if first else budget
        if chunk and tokens + row_tokens + 1 > room:
            yield from _verified(cut, text, chunk, room, not first and repeat, repeat)
            chunk, tokens, first = [], 0, False
            room = budget
        if row_tokens > room:  # one row alone over the budget: cut it into runs of words
            for piece in cut.word_pieces(text, *row):
                yield piece.start, piece.end, repeat
            continue
        chunk.append(row)
        tokens += row_tokens + 1
    if chunk:
        yield from _verified(cut, text, chunk, cut.limit if first else budget, not first and repeat, repeat)


def _verified(cut: PieceCutter, text: str, rows: list[tuple[int, int]], room: int, repeat: bool,
              repeat_rest: bool) -> Iterator[tuple[int, int, bool]]:
    """The rows as one span, or more where the real count of the span is over (summed counts estimate)."""
    while rows:
        n = len(rows)
        while n > 1 and cut.count(text, rows[0][0], rows[n - 1][1]) > room:
            n -= 1
        yield rows[0][0], rows[n - 1][1], repeat
        rows, repeat = rows[n:], repeat_rest
