"""The values that cross the boundary between :class:`ragkit.Index` and a storage backend.

A backend stores documents, chunks and the file manifest, and answers the two
retrieval legs (BM25 and dense) for a consistent snapshot. ``local.py`` is the
embedded implementation (SQLite + BM25 + faiss files in one directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ContextManager, Iterator, Mapping, Protocol, Sequence

import numpy as np

from ragkit.types import Chunk, Document


@dataclass(frozen=True)
class LegCandidates:
    """One leg's candidates, best first, and optionally its exact scores for other ids.

    ``fill_ids`` (sorted) and ``fill_scores`` give the leg's score for ids it did not return.
    """

    ids: np.ndarray
    scores: np.ndarray
    fill_ids: np.ndarray | None = None
    fill_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.scores):
            raise ValueError("LegCandidates: ids and scores differ in length")
        if (self.fill_ids is None) != (self.fill_scores is None):
            raise ValueError("LegCandidates: give both fill_ids and fill_scores, or neither")


@dataclass(frozen=True)
class FileEntry:
    """What the manifest remembers of an indexed file, to tell later whether it changed."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    doc_ids: tuple[str, ...]


@dataclass(frozen=True)
class PreparedDocument:
    """A document ready to store: its chunks, their BM25 tokens and their embedding vectors."""

    document: Document
    text_hash: str
    chunks: list[Chunk]
    tokens: list[list[str]]
    vectors: list[np.ndarray]
    embed_hashes: list[str]
    root: str | None = None


@dataclass(frozen=True)
class Changes:
    """One atomic write: documents to remove (by id), documents to add, manifest edits."""

    remove_doc_ids: tuple[str, ...] = ()
    add: tuple[PreparedDocument, ...] = ()
    upsert_files: tuple[tuple[str, FileEntry], ...] = ()  # (root, entry)
    remove_files: tuple[tuple[str, str], ...] = ()  # (root, path)

    @property
    def empty(self) -> bool:
        return not (self.remove_doc_ids or self.add or self.upsert_files or self.remove_files)


@dataclass(frozen=True)
class LegStatistics:
    """Per-query numbers adaptive fusion needs to calibrate the legs (see ``fusion.adaptive_fusion``)."""

    bm25_ideal: float
    dense_background: np.ndarray
    n_searched: int


# A stored chunk, as a backend's ``fetch`` returns it: the same value as what was indexed.
ChunkRecord = Chunk


class StaleSnapshot(Exception):
    """Rows of the snapshot a search holds were deleted by a newer commit: the search retries."""


class Backend(Protocol):
    """Storage and search for one index. ``LocalBackend`` (``local.py``) is the embedded one.

    ``snapshot()`` returns an opaque, consistent view of the searchable state (``None`` when
    empty); every search-side method takes it, so a search sees one version even while a writer
    commits. Row ids (``ids``) are whatever integers the backend uses within a snapshot.
    """

    dense_kind: str
    bm25_params: Any

    # config, manifest, cache ------------------------------------------------------------
    def get_config(self) -> dict[str, Any] | None: ...
    def set_config(self, config: Mapping[str, Any]) -> None: ...
    def manifest(self, root: str) -> dict[str, FileEntry]: ...
    def document_roots(self, doc_ids: Sequence[str]) -> dict[str, str | None]: ...
    def document_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]: ...
    def writer_lock(self, timeout: float | None) -> ContextManager[None]: ...
    def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]: ...
    def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None: ...

    # writes -------------------------------------------------------------------------------
    def apply(self, changes: Changes) -> None: ...

    # search ---------------------------------------------------------------------------------
    def snapshot(self) -> Any: ...
    def is_empty(self, snap: Any) -> bool: ...
    def filter_mask(self, snap: Any, filters: Mapping[str, Any] | None) -> Any: ...
    def lexical_candidates(self, snap: Any, tokens: list[str], depth: int, mask: Any) -> LegCandidates: ...
    def dense_candidates(self, snap: Any, vector: np.ndarray, depth: int, mask: Any) -> LegCandidates: ...
    def exact_scores(self, snap: Any, tokens: list[str], vector: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def leg_statistics(self, snap: Any, tokens: list[str], vector: np.ndarray, mask: Any) -> LegStatistics: ...
    def vectors(self, snap: Any, ids: np.ndarray) -> np.ndarray: ...
    def fetch(self, snap: Any, ids: Sequence[int]) -> list[ChunkRecord]: ...

    # inspection -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]: ...
    def iter_documents(self) -> Iterator[tuple[str, str, dict[str, Any]]]: ...
    def size_on_disk(self) -> int: ...
    def close(self) -> None: ...
