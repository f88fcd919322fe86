"""A chunk's document as dense evidence: the unit mean of the document's chunk vectors (its centroid).

A query about a page often matches the page as a whole better than any one of its chunks: a chunk
that holds the answer's details may say little of what the page is about. BM25 already scores a chunk
half by its whole document (:mod:`ragkit.storage.bm25_documents`); fusion does the same for the dense
leg with these centroids (``fusion.document_share``). Derived per snapshot from the stored vectors and
each row's document, so existing indexes get it too. A document of one chunk has no centroid: its
chunk is all the evidence there is, so a collection of such documents ranks exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Centroids:
    """The centroids of the documents of two or more chunks: ``slot[g]`` is document ordinal ``g``'s
    row in ``vectors``, or -1 (one chunk). Only those are kept: a collection of one-chunk documents
    holds none."""

    slot: np.ndarray
    vectors: np.ndarray

    def of_rows(self, groups: np.ndarray) -> np.ndarray:
        """The centroid of each row's document (``groups``: the rows' ordinals); NaN for one chunk."""
        slots = self.slot[groups]
        out = np.full((len(groups), self.vectors.shape[1]), np.nan, np.float32)
        has = slots >= 0
        out[has] = self.vectors[slots[has]]
        return out


def centroids(vectors: np.ndarray, groups: np.ndarray) -> Centroids:
    """The :class:`Centroids` of ``vectors`` grouped by ``groups`` (row -> document ordinal)."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    dimension = vectors.shape[1] if vectors.ndim == 2 else 0
    shared = np.flatnonzero(np.bincount(groups, minlength=n_groups) >= 2)
    slot = np.full(n_groups, -1, np.int64)
    slot[shared] = np.arange(len(shared))
    rows = np.flatnonzero(slot[groups] >= 0)
    if not len(rows):
        return Centroids(slot, np.zeros((0, dimension), np.float32))
    owner = slot[groups[rows]]
    if np.any(np.diff(owner) < 0):  # ordinals are numbered in row order, so this is rare
        order = np.argsort(owner, kind="stable")
        rows, owner = rows[order], owner[order]
    # each document's rows summed in one pass (np.add.at took seconds at 100k rows; scipy's sparse
    # product would make every search import scipy)
    sums = np.add.reduceat(vectors[rows], np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])).astype(np.float64)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return Centroids(slot, (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32))
