"""The values ragkit passes around: documents, chunks, search hits and sync reports.

All are frozen dataclasses: a value never changes after it is made, so a hit
can be logged, cached or shown to a user and still mean what it meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Document:
    """A unit of source text, usually one file (or one JSONL record).

    ``metadata`` holds what the loader knows: ``source`` (path relative to the
    indexed folder), ``title``, and for PDFs ``pages``, a list of
    ``[start_offset, page_number]`` pairs marking where each page begins in ``text``.
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("Document.id must be a non-empty string")
        if not isinstance(self.text, str):
            raise TypeError(f"Document {self.id!r}: text must be str, not {type(self.text).__name__}")


@dataclass(frozen=True)
class Chunk:
    """A passage of a document, the unit that is indexed and retrieved.

    ``text == document.text[start:end]``. ``metadata`` carries ``source``,
    ``title``, ``headings`` (the Markdown heading path, outermost first) and
    ``page`` (1-based, PDFs only) where known, plus the document's own metadata.
    """

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"Chunk {self.id!r}: bad offsets start={self.start} end={self.end}")


@dataclass(frozen=True)
class Hit:
    """One search result, with the evidence for its rank.

    ``score`` is the final score in the mode searched (fused score for hybrid).
    ``bm25_score``/``bm25_rank`` and ``dense_score``/``dense_rank`` are each
    leg's raw score and 1-based rank among its candidates. Where a hybrid search's
    leg did not return the chunk, its rank is ``None`` and its score is the exact
    score that leg gives the chunk (what fusion used); both are ``None`` for a leg
    that was not searched. ``rerank_score`` is set when a cross-encoder
    reranked the results. ``association_score`` (0..1) and ``associated_question`` are set when
    the chunk's document was lifted because the query resembles a labelled question
    (see :mod:`ragkit.association`). ``relevance`` (0..1) is how likely the passage answers the query,
    on one scale for every collection (see :mod:`ragkit.retrieval.relevance`); ``None`` where a search
    had no calibrated evidence (a BM25-only search, a hit made by hand).
    """

    chunk_id: str
    doc_id: str
    text: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0
    start: int = 0
    end: int = 0
    bm25_score: float | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None
    dense_rank: int | None = None
    rerank_score: float | None = None
    association_score: float | None = None
    associated_question: str | None = None
    relevance: float | None = None

    @property
    def source(self) -> str | None:
        """The source path of the chunk's document, if it came from a file."""
        return self.metadata.get("source")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, plus ``source`` (as :attr:`source`) at the top level."""
        from dataclasses import asdict

        out = asdict(self)
        out["source"] = self.source
        return out


@dataclass(frozen=True)
class FailedFile:
    """A file a sync could not index, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`ragkit.Index.sync` did. Paths are relative to the synced folder."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    failed: tuple[FailedFile, ...] = ()
    chunks_embedded: int = 0
    chunks_total: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.renamed)

    def summary(self) -> str:
        """One line for humans, e.g. ``2 added, 1 updated, 0 removed, 40 unchanged, 1 failed``."""
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.renamed)} renamed",
            f"{len(self.removed)} removed",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.failed)} failed",
        ]
        return (
            ", ".join(parts)
            + f"; {self.chunks_embedded} chunks embedded, {self.chunks_total} in index ({self.seconds:.2f}s)"
        )
