"""Maximal marginal relevance: pick items that are relevant to a query but not to each other.

MMR (Carbonell & Goldstein, SIGIR 1998) builds the selection greedily; each step takes the
candidate with the highest

    lambda_ * relevance[i] - (1 - lambda_) * max(cosine(c_i, c_j) for j already selected)

``lambda_ = 1`` is plain relevance order, ``lambda_ = 0`` pure diversity. The few-shot example
selector and the retriever both use :func:`maximal_marginal_relevance`.

Example::

    order = maximal_marginal_relevance(query_vec, passage_vecs, None, k=5, lambda_=0.7)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragkit.errors import ConfigError

__all__ = ["maximal_marginal_relevance"]


def maximal_marginal_relevance(
    query_vector: np.ndarray | Sequence[float],
    candidate_vectors: np.ndarray | Sequence[Sequence[float]],
    relevance: np.ndarray | Sequence[float] | None,
    k: int,
    lambda_: float = 0.5,
) -> list[int]:
    """Indices of up to ``k`` candidates in MMR order, the first being the most relevant.

    ``relevance`` is each candidate's relevance to the query (e.g. a fused retrieval score);
    ``None`` means the cosine similarity of ``query_vector`` and each candidate. Redundancy is
    always the cosine similarity between candidate vectors, which need not be normalized.
    Keep ``relevance`` on a scale comparable to cosines (about 0..1) or one term dominates.
    Ties go to the lower index, so the result is deterministic.

    >>> vecs = [[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]]
    >>> maximal_marginal_relevance([1.0, 0.0], vecs, None, k=2, lambda_=0.3)
    [0, 2]
    >>> maximal_marginal_relevance([1.0, 0.0], vecs, None, k=2, lambda_=1.0)
    [0, 1]
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ConfigError(f"lambda_ must be in [0, 1], got {lambda_}")
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    cands = _unit_rows(np.asarray(candidate_vectors, dtype=np.float64))
    n = cands.shape[0]
    if relevance is None:
        query = _unit_rows(np.asarray(query_vector, dtype=np.float64).reshape(1, -1))[0]
        if n and query.shape[0] != cands.shape[1]:
            raise ConfigError(f"query has dimension {query.shape[0]}, candidates {cands.shape[1]}")
        rel = cands @ query if n else np.zeros(0)
    else:
        rel = np.asarray(relevance, dtype=np.float64).ravel()
        if rel.shape[0] != n:
            raise ConfigError(f"relevance has {rel.shape[0]} scores for {n} candidates")
    similarity = cands @ cands.T if n else np.zeros((0, 0))
    return _greedy(rel, similarity, min(k, n), lambda_)


def _greedy(rel: np.ndarray, similarity: np.ndarray, k: int, lambda_: float) -> list[int]:
    selected: list[int] = []
    available = np.ones(len(rel), dtype=bool)
    redundancy = np.full(len(rel), -np.inf)  # max similarity to anything selected so far
    for _ in range(k):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        gain = lambda_ * rel - (1.0 - lambda_) * penalty
        gain = np.where(available, gain, -np.inf)
        # Ties go to the more relevant candidate, then the lowest index. (A tiny lambda_ can round
        # every lambda_ * rel to 0, and the first pick must still be the most relevant.)
        tied = np.flatnonzero(gain == gain.max())
        best = int(tied[np.argmax(rel[tied])])
        selected.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, similarity[:, best])
    return selected


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    if matrix.ndim != 2:
        raise ConfigError(f"expected a 2-d array of vectors, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
