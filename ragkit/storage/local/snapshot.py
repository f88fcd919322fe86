"""One committed segment version of a local index, loaded into memory, with its per-version caches.

A filter's :class:`Scope` (its rows, their BM25 statistics, their dense background sample) is
cached here per filter: it does not depend on the query, so a scoped search pays O(query terms)
more than an unfiltered one, not O(rows), and a new version (any commit) drops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragkit.storage.base import BACKGROUND_SAMPLE
from ragkit.storage.bm25 import BM25Index, ScopedScores, Subcollection
from ragkit.storage.bm25_documents import Documents, documents, mix_documents
from ragkit.storage.dense import DenseIndex
from ragkit.storage.dense_documents import Centroids, centroids
from ragkit.storage.util import LRU

# Filters whose Scope a snapshot keeps: a mask (one byte a row) and up to BACKGROUND_SAMPLE vectors
# each (1.5 MB at 384 dimensions), so at most ~50 MB; a server has a scope per principal or team.
SCOPE_CACHE = 32


@dataclass(frozen=True, eq=False)
class Scope:
    """The rows a filter keeps, searched as if they were the whole index: BM25 with their own
    statistics (``bm25``), and the dense background sample drawn from them alone."""

    bm25: Subcollection
    background: np.ndarray
    documents: Documents | None = None  # for BM25's document-level share; None when it is 0

    @property
    def mask(self) -> np.ndarray:
        return self.bm25.mask

    @property
    def n_rows(self) -> int:
        return self.bm25.n_docs


def document_ordinals(rows: np.ndarray, owner: dict[int, str]) -> np.ndarray:
    """Each row's document (``owner``: row id -> document id) as an ordinal numbered in row order: a
    document's rows are contiguous, so a term's postings come grouped (bm25_documents' fast path)."""
    names = [owner.get(int(r), f"\0{r}") for r in rows]
    _, first, inverse = np.unique(np.asarray(names, dtype=str), return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse].reshape(len(rows))


def background_rows(n_rows: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Up to ``BACKGROUND_SAMPLE`` evenly spaced rows (of ``mask``'s, in row order) for estimating a
    query's dense score distribution."""
    rows = np.flatnonzero(mask) if mask is not None else np.arange(n_rows)
    if len(rows) > BACKGROUND_SAMPLE:
        rows = rows[np.linspace(0, len(rows) - 1, BACKGROUND_SAMPLE).astype(np.int64)]
    return rows


def background_sample(vectors: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The vectors of :func:`background_rows`."""
    return np.ascontiguousarray(vectors[background_rows(len(vectors), mask)])


@dataclass
class Snapshot:
    """The searchable arrays of one segment version. Row ``i`` of every array is chunk ``rows[i]``.

    The per-version caches (chunk metadata for filters, each filter's :class:`Scope`, the unfiltered
    background sample) live here, so they are dropped with the version they describe.
    """

    version: int
    rows: np.ndarray
    bm25: BM25Index
    dense: DenseIndex
    records: list[dict[str, Any]] | None = None
    scopes: LRU[str, Scope] = field(default_factory=lambda: LRU(SCOPE_CACHE))
    background: np.ndarray | None = None
    store: Any = None  # the Store whose rows these are: a rebuild may swap another in while a search runs
    # per row, the tokens its document holds in another row (storage/bm25_documents); None: a segment
    # written before they were kept
    repeats: BM25Index | None = None
    groups: np.ndarray | None = None  # row -> document ordinal, read on first use
    all_documents: Documents | None = None
    centroids: Centroids | None = None  # of documents of several chunks, on first use
    background_documents: np.ndarray | None = None
    # a hybrid search asks for its query's BM25 three times; keyed by (tokens, scope), the scope itself
    # held so its id cannot be reused; several, since a server's threads search at once
    lexical_scores: LRU[tuple[tuple[str, ...], Scope | None], ScopedScores] = field(default_factory=lambda: LRU(8))

    def scope(self, mask: np.ndarray) -> Scope:
        """The :class:`Scope` of the rows in ``mask`` (callers cache it in :attr:`scopes`)."""
        docs = (documents(self.bm25, self.document_groups(), mask, self.repeats)
                if self.bm25.params.document_weight else None)
        return Scope(self.bm25.subcollection(mask), background_sample(self.dense.vectors, mask), docs)

    def row_centroids(self, rows: np.ndarray) -> np.ndarray:
        """The document centroid of each of ``rows``, NaN for a one-chunk document (built on first use;
        two threads may both build it, to the same result)."""
        if self.centroids is None:
            self.centroids = centroids(self.dense.vectors, self.document_groups())
        return self.centroids.of_rows(self.document_groups()[rows])

    def unfiltered_background_documents(self) -> np.ndarray:
        """The background sample's document centroids, built once per snapshot."""
        if self.background_documents is None:
            self.background_documents = self.row_centroids(background_rows(self.dense.n_rows))
        return self.background_documents

    def document_groups(self) -> np.ndarray:
        """Each row's document as an ordinal: stored with the segment since the document share; a segment
        written before has none, and reads the chunk table (what it holds now, so a row a newer commit
        removed meanwhile is a document of its own)."""
        if self.groups is None:
            self.groups = document_ordinals(self.rows, dict(self.store.query("SELECT row, doc_id FROM chunks")))
        return self.groups

    def lexical(self, tokens: tuple[str, ...], scope: Scope | None) -> ScopedScores:
        """BM25 for the query over the scope's rows (every row without one), with the whole document's
        share mixed in (kept for the last few queries: see :attr:`lexical_scores`)."""
        return self.lexical_scores.get_or_make((tokens, scope), lambda: self._lexical(tokens, scope))

    def _lexical(self, tokens: tuple[str, ...], scope: Scope | None) -> ScopedScores:
        chunks = self.bm25.whole(tokens) if scope is None else self.bm25.scoped(tokens, scope.bm25)
        weight = self.bm25.params.document_weight
        if weight:
            if scope is None and self.all_documents is None:
                self.all_documents = documents(self.bm25, self.document_groups(), repeats=self.repeats)
            docs = self.all_documents if scope is None else scope.documents
            chunks = mix_documents(chunks, self.bm25, tokens, docs, weight) if docs is not None else chunks
        return chunks

    def unfiltered_background(self) -> np.ndarray:
        """The background sample of every row, built once per snapshot (copying it per query would
        cost more than the search itself)."""
        if self.background is None:
            self.background = background_sample(self.dense.vectors)
        return self.background
