"""A chunk's document as dense evidence: the unit mean of the document's chunk vectors (its centroid).

A query about a page often matches the page as a whole better than any one of its chunks: a chunk
that holds the answer's details may say little of what the page is about. BM25 already scores a chunk
half by its whole document (:mod:`ragkit.storage.bm25_documents`); fusion does the same for the dense
leg with these centroids (``fusion.mix_document_share``). Derived at query time from the stored
vectors and each row's document, so existing indexes get it too; single-chunk documents are their
own centroid, so a collection of them ranks exactly as before.
"""

from __future__ import annotations

import numpy as np


def centroids(vectors: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """One unit vector per document ordinal in ``groups`` (row -> ordinal): the mean of its rows'. A
    document of one chunk has none (NaN): its chunk is all the evidence there is, and fusion keeps its
    cosine as it is."""
    n = int(groups.max()) + 1 if len(groups) else 0
    sums = np.zeros((n, vectors.shape[1] if vectors.ndim == 2 else 0), np.float64)
    np.add.at(sums, groups, vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    means = sums / np.where(norms > 0, norms, 1.0)
    means[np.bincount(groups, minlength=n) < 2] = np.nan
    return means.astype(np.float32)
