"""Citation markers: number the passages of a prompt, and find which ones an answer cites.

Each passage put into a prompt gets a marker ``[1]``, ``[2]``, ... in rank order, and the prompt
keeps a map from marker to :class:`Citation`. :func:`extract_citations` reads an answer and returns
the citations it actually used, in order of first mention::

    prompt = builder.build(question, hits)
    answer = llm(prompt.messages)
    for c in extract_citations(answer, prompt):      # or prompt.cited(answer)
        print(c.marker, c.source, c.page)

Recognised forms: ``[1]``, ``[1][3]``, ``[1, 2]``, ``[1; 2]``, ranges ``[2-4]`` / ``[2–4]``.
Numbers with no passage behind them are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ragkit.types import Hit

__all__ = ["Citation", "citations_for", "extract_citations"]

SNIPPET_CHARS = 200

# A bracket holding numbers separated by commas/semicolons, each optionally a range a-b.
_NUM = r"\d+(?:\s*[-–]\s*\d+)?"
_BRACKET = re.compile(rf"\[\s*({_NUM}(?:\s*[,;]\s*{_NUM})*)\s*\]")
_PART = re.compile(r"(\d+)(?:\s*[-–]\s*(\d+))?")
_RANGE_LIMIT = 1000  # "[1-99999999]" is not a citation anyone means


@dataclass(frozen=True)
class Citation:
    """The source behind one marker: where the passage came from and what it said."""

    marker: int
    chunk_id: str
    doc_id: str
    source: str | None
    page: int | None
    title: str | None
    text: str
    score: float

    def __post_init__(self) -> None:
        if self.marker < 1:
            raise ValueError(f"Citation marker must be >= 1, got {self.marker}")

    @property
    def label(self) -> str:
        """The marker as it appears in text: ``[3]``."""
        return f"[{self.marker}]"

    @property
    def snippet(self) -> str:
        """The first ~200 characters of the passage, cut at a word boundary."""
        text = " ".join(self.text.split())
        if len(text) <= SNIPPET_CHARS:
            return text
        cut = text.rfind(" ", 0, SNIPPET_CHARS)
        return text[: cut if cut > 0 else SNIPPET_CHARS] + "…"

    @classmethod
    def from_hit(cls, marker: int, hit: Hit, text: str | None = None) -> Citation:
        """A citation for ``hit``; ``text`` overrides the hit's text (e.g. when it was truncated)."""
        meta = hit.metadata
        return cls(
            marker=marker,
            chunk_id=hit.chunk_id,
            doc_id=hit.doc_id,
            source=meta.get("source"),
            page=meta.get("page"),
            title=meta.get("title"),
            text=hit.text if text is None else text,
            score=hit.score,
        )


def citations_for(hits: Iterable[Hit], texts: Iterable[str | None] | None = None) -> dict[int, Citation]:
    """Markers 1..n for ``hits`` in the order given (optionally with the text actually shown)."""
    hits = list(hits)
    shown = list(texts) if texts is not None else [None] * len(hits)
    return {
        i: Citation.from_hit(i, hit, text)
        for i, (hit, text) in enumerate(zip(hits, shown, strict=True), start=1)
    }


def extract_citations(answer: str, prompt: Any) -> list[Citation]:
    """Citations ``answer`` refers to, in order of first mention, each once.

    ``prompt`` is a :class:`~ragkit.prompting.Prompt` or a ``{marker: Citation}`` mapping.

    >>> c = {n: Citation(n, f"c{n}", "d", None, None, None, "t", 1.0) for n in (1, 2, 3)}
    >>> [x.marker for x in extract_citations("Yes [3][1], see [1, 2] and [7].", c)]
    [3, 1, 2]
    """
    citations: Mapping[int, Citation] = prompt if isinstance(prompt, Mapping) else prompt.citations
    seen: dict[int, Citation] = {}
    for match in _BRACKET.finditer(answer):
        for number in _numbers(match.group(1)):
            if number in citations and number not in seen:
                seen[number] = citations[number]
    return list(seen.values())


def _numbers(inside: str) -> list[int]:
    """The numbers in a bracket's contents: ``"1, 3-5"`` -> ``[1, 3, 4, 5]``."""
    out: list[int] = []
    for lo, hi in _PART.findall(inside):
        start, stop = int(lo), int(hi or lo)
        out.extend(range(start, stop + 1) if 0 <= stop - start < _RANGE_LIMIT else [start])
    return out
