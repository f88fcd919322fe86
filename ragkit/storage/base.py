"""The boundary between :class:`ragkit.Index` and a storage backend: its values and its protocols.

A :class:`Backend` stores documents, chunks, the file manifest and the embedding cache, applies one
atomic :class:`Changes` batch at a time, and opens a :class:`SearchView` for each search: one
consistent version of the searchable state, fed one :class:`Query`. ``storage/local/`` (SQLite + BM25
+ faiss files in one directory) and ``storage/milvus/`` implement it; a backend's settings
(:class:`StorageSettings`) are part of the config it stores, so nothing outside sets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ContextManager, Iterator, Mapping, Protocol, Sequence

import numpy as np

from ragkit.errors import RagkitError
from ragkit.storage.bm25 import BM25Params
from ragkit.storage.dense import DenseKind
from ragkit.storage.filters import Filters
from ragkit.types import Chunk, Document

# The embedding cache keeps vectors no chunk uses any more (a removed file that comes back, a rebuild
# with the same model, an undone --exclude then cost no embedding), trimmed after each write to:
CACHE_MAX_BYTES = 256 * 1024 * 1024  # of unused vectors: about 170,000 at 384 dimensions
CACHE_MAX_AGE_DAYS = 30.0  # since a vector was last stored or used (the local backend; Milvus keeps no ages)

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
    # per chunk, its tokens the document holds in another chunk or not at all (the overlap with the
    # chunk before, a heading path put in front): what BM25's document share must not count twice
    repeated: list[list[str]] | None = None


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


# How many evenly spaced rows (within a filter) sample a query's dense score distribution for adaptive
# fusion: enough for a stable mean and spread, cheap next to the search itself.
BACKGROUND_SAMPLE = 1024


@dataclass(frozen=True)
class LegStatistics:
    """Per-query numbers adaptive fusion needs to calibrate the legs (see ``fusion.adaptive_fusion``),
    over the rows a view searches (a filtered view's own: ``n_searched`` is how many it holds)."""

    bm25_ideal: float
    dense_background: np.ndarray
    n_searched: int
    bm25_unseen: float = 0.0  # the ideal-score weight of query words no chunk holds (for relevance)
    # the query's cosine to the documents of the background sample's rows (storage.dense_documents);
    # None where the backend keeps no row -> document map (Milvus)
    dense_document_background: np.ndarray | None = None


class StaleSnapshot(RagkitError):
    """Rows of the view a search holds were deleted by a newer commit: the search retries on a new view.

    A RagkitError with a message, for when the retries run out (writers committing faster than a
    search can read): the caller sees one clear error, not a list of row ids.
    """

    def __str__(self) -> str:
        rows = self.args[0] if self.args else []
        return (f"the index changed under this search again and again ({len(rows)} rows it was reading were "
                "removed by newer writes); retry the search when the writes settle")


@dataclass(frozen=True)
class StorageSettings:
    """What a backend needs to know to write and search: the dense index kind and BM25's constants.

    They are part of the index config the backend stores (:meth:`from_config`), so a backend reads
    them when it opens and again whenever the config is written; nothing outside sets them.
    """

    dense_kind: DenseKind = "flat"
    bm25: BM25Params = BM25Params()

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "StorageSettings":
        config = config or {}
        default = BM25Params()
        bm25 = BM25Params(k1=config.get("bm25_k1", default.k1), b=config.get("bm25_b", default.b),
                          idf=config.get("bm25_idf", default.idf),
                          document_weight=config.get("bm25_document_weight", default.document_weight))
        return cls(dense_kind=config.get("dense_index", "flat"), bm25=bm25)


@dataclass(frozen=True)
class Query:
    """What one search asks of storage, built once per search: BM25 tokens and the query's unit vector.

    ``vector`` is None for a BM25-only search (the query is then never embedded).
    """

    tokens: tuple[str, ...]
    vector: np.ndarray | None = None

    def needs_vector(self) -> np.ndarray:
        if self.vector is None:
            raise ValueError("this search was built without a query vector")
        return self.vector


class SearchView(Protocol):
    """One consistent version of an index's searchable state; row ids are positions within it.

    ``Backend.snapshot()`` opens one per search, so a search sees one version even while a writer
    commits. ``filtered`` narrows the view to rows matching ``filters`` and ranks them as a separate
    index of only those rows would: both legs apply it *before* their top-k cut, and its ``lexical``,
    ``exact_scores`` and ``statistics`` use the rows' own BM25 statistics (document frequencies, N,
    avgdl, unseen words) and dense background, so rows outside it move no score. ``exact_scores``,
    ``vectors`` and ``fetch`` read any row; ``document_scores`` gives the query's cosine to each row's
    document centroid (None where the backend cannot, or in a filtered view). ``fetch`` raises :class:`StaleSnapshot` when a newer commit
    removed a row.
    """

    @property
    def empty(self) -> bool: ...
    def filtered(self, filters: Filters | None) -> "SearchView": ...
    def lexical(self, query: Query, depth: int) -> LegCandidates: ...
    def dense(self, query: Query, depth: int) -> LegCandidates: ...
    def statistics(self, query: Query) -> LegStatistics: ...
    def exact_scores(self, query: Query, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def vectors(self, ids: np.ndarray) -> np.ndarray: ...
    def document_scores(self, query: Query, ids: np.ndarray) -> np.ndarray | None: ...
    def fetch(self, ids: Sequence[int]) -> list[Chunk]: ...


class Backend(Protocol):
    """Storage and search for one index: ``LocalBackend`` (``storage/local``), ``MilvusBackend``
    (``storage/milvus``). Constructors take ``settings`` (default: what the stored config says)."""

    settings: StorageSettings

    # config, manifest, embedding cache ----------------------------------------------------------
    def get_config(self) -> dict[str, Any] | None: ...
    def set_config(self, config: Mapping[str, Any]) -> None: ...
    def manifest(self, root: str) -> dict[str, FileEntry]: ...
    def document_roots(self, doc_ids: Sequence[str]) -> dict[str, str | None]: ...
    def document_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]: ...
    def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]: ...
    def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None: ...
    def gc(self, max_bytes: int | None = ..., max_age_days: float | None = ...) -> dict[str, int]: ...

    # writes and search ----------------------------------------------------------------------------
    def writer_lock(self, timeout: float | None) -> ContextManager[None]: ...
    def apply(self, changes: Changes) -> None: ...
    def snapshot(self) -> SearchView | None: ...

    # inspection -------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]: ...
    def iter_documents(self) -> Iterator[tuple[str, str, dict[str, Any]]]: ...
    def size_on_disk(self) -> int: ...
    def verify(self) -> list[str]: ...
    def close(self) -> None: ...
