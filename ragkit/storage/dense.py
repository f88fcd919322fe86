"""Dense vector index: unit vectors in faiss, inner product = cosine similarity.

``kind="flat"`` (default) is exact search. ``kind="hnsw"`` is faiss's HNSW
graph, approximate and faster on large collections; HNSW cannot delete, so an
update rebuilds the graph from the stored vectors.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ragkit.errors import ConfigError

DenseKind = Literal["flat", "hnsw"]
DENSE_KINDS = ("flat", "hnsw")


class DenseIndex:
    """Row-aligned unit vectors and the faiss index searching them.

    >>> vectors = np.eye(3, dtype=np.float32)
    >>> ids, scores = DenseIndex(vectors).top_k(np.array([1, 0, 0], np.float32), 2)
    >>> ids.tolist(), scores.round(3).tolist()
    ([0, 1], [1.0, 0.0])
    """

    def __init__(self, vectors: np.ndarray, kind: DenseKind = "flat", hnsw_m: int = 32) -> None:
        if kind not in DENSE_KINDS:
            raise ConfigError(f"dense index kind must be one of {DENSE_KINDS}, got {kind!r}")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.kind = kind
        self.hnsw_m = hnsw_m
        self._faiss = None

    @property
    def n_rows(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    @property
    def faiss_index(self):  # type: ignore[no-untyped-def]
        """Built on first use: opening an index to add documents never pays for it."""
        if self._faiss is None:
            self._faiss = _build_faiss(self.vectors, self.kind, self.hnsw_m)
        return self._faiss

    def set_faiss_index(self, index) -> None:  # type: ignore[no-untyped-def]
        self._faiss = index

    def append(self, vectors: np.ndarray) -> "DenseIndex":
        if len(vectors) and self.n_rows and vectors.shape[1] != self.dimension:
            raise ConfigError(f"vector dimension {vectors.shape[1]} does not match the index's {self.dimension}")
        stacked = np.vstack([self.vectors, vectors]) if self.n_rows else np.asarray(vectors, np.float32)
        return DenseIndex(stacked, self.kind, self.hnsw_m)

    def keep_rows(self, keep: np.ndarray) -> "DenseIndex":
        return DenseIndex(self.vectors[keep], self.kind, self.hnsw_m)

    def top_k(
        self, query: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row ids and cosine scores of the ``k`` nearest rows (restricted to ``mask``), best first."""
        import faiss

        if self.n_rows == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(k, self.n_rows)
        params = None
        if mask is not None:
            allowed = np.flatnonzero(mask)
            if len(allowed) == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            k = min(k, len(allowed))
            bitmap = np.packbits(mask, bitorder="little")  # must outlive the search: faiss keeps a raw pointer
            selector = faiss.IDSelectorBitmap(self.n_rows, faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersHNSW(sel=selector) if self.kind == "hnsw" else faiss.SearchParameters(sel=selector)
        scores, ids = self.faiss_index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]


def _build_faiss(vectors: np.ndarray, kind: DenseKind, hnsw_m: int):  # type: ignore[no-untyped-def]
    import faiss

    dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(vectors)
    return index
