"""The block structure a :class:`~ragkit.ingest.chunking.Chunker` follows: sections and paragraphs.

:func:`markdown_blocks` reads it from Markdown syntax (ATX headings, ``#`` lines inside fenced code
blocks do not count); :func:`outline_blocks` takes the headings from an outline given with the text
(a PDF's bookmarks), so that a PDF line starting with ``#`` (a shell comment in a code sample) stays
text. Both are generators over the text, line by line: a document of millions of lines costs the
memory of one line and one block, not of a list of them.

Heading titles lose site markup (``## Title { #id }`` is ``Title``, :func:`ragkit.ingest.markup.clean_heading`).
Each block is ``(section number, headings, kind, start, end)``, with ``kind`` :data:`HEADING` or
:data:`PARAGRAPH`, spans untrimmed; blocks of one section are consecutive and share its number.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from ragkit.ingest.markup import clean_heading

__all__ = ["HEADING", "PARAGRAPH", "Block", "markdown_blocks", "outline_blocks", "parse_outline"]

logger = logging.getLogger(__name__)

HEADING, PARAGRAPH = 0, 1  # the chunker's piece levels of a heading line and a paragraph
Block = tuple[int, tuple[str, ...], int, int, int]

_HEADING_LINE = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t\r]*$")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t]+)#+$")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_NON_SPACE = re.compile(r"\S")


def _lines(text: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) of each line of ``text[start:stop]``, as ``split("\\n")`` would cut it."""
    stop = len(text) if stop is None else stop
    pos = start
    while pos <= stop:
        end = text.find("\n", pos, stop)
        end = stop if end < 0 else end
        yield pos, end
        pos = end + 1


def _blank(text: str, start: int, end: int) -> bool:
    return _NON_SPACE.search(text, start, end) is None


def markdown_blocks(text: str) -> Iterator[Block]:
    """The blocks of Markdown ``text``, sections cut at ATX headings."""
    number, headings = 0, ()
    path: list[tuple[int, str]] = []
    fence: tuple[str, int] | None = None
    para: list[int] | None = None  # [start, end] of the paragraph being read
    for start, end in _lines(text):
        if fence is not None:
            # A fence closes with the same character, at least as many of them, and nothing after.
            close = _FENCE.match(text, start, end)
            if close and close[1][0] == fence[0] and len(close[1]) >= fence[1] and _blank(text, close.end(), end):
                fence = None
        elif (opening := _FENCE.match(text, start, end)) is not None:
            fence = (opening[1][0], len(opening[1]))
        elif (heading := _HEADING_LINE.match(text, start, end)) is not None:
            if para is not None:
                yield number, headings, PARAGRAPH, para[0], para[1]
                para = None
            # clean_heading: a Document given as raw Markdown still gets headings without anchors
            level, title = len(heading[1]), clean_heading(_CLOSING_HASHES.sub("", heading[2] or ""))
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, title))
            number, headings = number + 1, tuple(t for _, t in path if t)
            yield number, headings, HEADING, start, end
            continue
        elif _blank(text, start, end):
            if para is not None:
                yield number, headings, PARAGRAPH, para[0], para[1]
                para = None
            continue
        # Blank lines inside a fence keep the code block in one paragraph.
        if para is None:
            para = [start, end]
        para[1] = end
    if para is not None:
        yield number, headings, PARAGRAPH, para[0], para[1]


def outline_blocks(text: str, outline: list[tuple[int, int, str]]) -> Iterator[Block]:
    """The blocks of ``text`` whose headings come from ``outline``, ``(offset, level, title)`` sorted by
    offset: a section starts at each offset; paragraphs are cut at blank lines, nothing is syntax."""
    bounds = [offset for offset, _, _ in outline if 0 < offset < len(text)]
    starts = [0, *bounds]
    path: list[tuple[int, str]] = []
    marks = iter(outline)
    mark = next(marks, None)
    for number, (lo, hi) in enumerate(zip(starts, [*bounds, len(text)])):
        while mark is not None and mark[0] <= lo:  # every outline entry at or before this section
            while path and path[-1][0] >= mark[1]:
                path.pop()
            path.append((mark[1], mark[2]))
            mark = next(marks, None)
        headings = tuple(t for _, t in path if t)
        para: list[int] | None = None
        for start, end in _lines(text, lo, hi):
            if _blank(text, start, end):
                if para is not None:
                    yield number, headings, PARAGRAPH, para[0], para[1]
                    para = None
            elif para is None:
                para = [start, end]
            else:
                para[1] = end
        if para is not None:
            yield number, headings, PARAGRAPH, para[0], para[1]


def parse_outline(value: Any, doc_id: str) -> list[tuple[int, int, str]] | None:
    """``[[offset, level, title], ...]`` metadata as sorted tuples, or ``None`` if malformed."""
    try:
        return sorted((int(offset), int(level), str(title)) for offset, level, title in value)
    except (TypeError, ValueError):
        logger.warning("document %s: ignoring malformed 'outline' metadata", doc_id)
        return None
