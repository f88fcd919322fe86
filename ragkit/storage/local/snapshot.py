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
from ragkit.storage.bm25 import BM25Index, Subcollection
from ragkit.storage.dense import DenseIndex
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

    @property
    def mask(self) -> np.ndarray:
        return self.bm25.mask

    @property
    def n_rows(self) -> int:
        return self.bm25.n_docs


def background_sample(vectors: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Up to ``BACKGROUND_SAMPLE`` evenly spaced rows (of ``mask``'s, in row order) for estimating a
    query's dense score distribution."""
    rows = np.flatnonzero(mask) if mask is not None else np.arange(len(vectors))
    if len(rows) > BACKGROUND_SAMPLE:
        rows = rows[np.linspace(0, len(rows) - 1, BACKGROUND_SAMPLE).astype(np.int64)]
    return np.ascontiguousarray(vectors[rows])


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

    def scope(self, mask: np.ndarray) -> Scope:
        """The :class:`Scope` of the rows in ``mask`` (callers cache it in :attr:`scopes`)."""
        return Scope(self.bm25.subcollection(mask), background_sample(self.dense.vectors, mask))

    def unfiltered_background(self) -> np.ndarray:
        """The background sample of every row, built once per snapshot (copying it per query would
        cost more than the search itself)."""
        if self.background is None:
            self.background = background_sample(self.dense.vectors)
        return self.background
