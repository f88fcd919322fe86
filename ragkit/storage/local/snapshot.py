"""One committed segment version of a local index, loaded into memory, with its per-version caches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragkit.storage.bm25 import BM25Index
from ragkit.storage.dense import DenseIndex
from ragkit.storage.util import LRU


@dataclass
class Snapshot:
    """The searchable arrays of one segment version. Row ``i`` of every array is chunk ``rows[i]``.

    The per-version caches (chunk metadata for filters, filter masks, the unfiltered background
    sample) live here, so they are dropped with the version they describe.
    """

    version: int
    rows: np.ndarray
    bm25: BM25Index
    dense: DenseIndex
    records: list[dict[str, Any]] | None = None
    masks: LRU[str, np.ndarray] = field(default_factory=lambda: LRU(64))
    background: np.ndarray | None = None
    store: Any = None  # the Store whose rows these are: a rebuild may swap another in while a search runs
