"""Ranking metrics: nDCG, recall, MRR, MAP and precision over ranked document ids.

Pure functions over plain ids and judgements; no I/O. The conventions are
trec_eval's, as used by pytrec_eval, BEIR and ranx (the tests check agreement
with ranx to 1e-9):

* **Relevance** is graded; a judgement ``> 0`` is relevant. A judgement ``<= 0``
  (TREC's "judged not relevant") counts as not relevant and adds nothing to
  the ideal DCG. ``R`` below is the number of relevant documents.
* **Rankings are deduplicated before the cut-off**: a document retrieved
  through several chunks counts once, at its best rank, and the next distinct
  document moves up. So duplicates can never push a metric above 1.
* ``ndcg@k``: linear gain ``rel / log2(rank + 1)`` (Järvelin & Kekäläinen 2002;
  trec_eval ``ndcg_cut``, ranx ``ndcg``), not Burges' ``2**rel - 1``. The ideal
  ranking sorts all relevant judgements, cut at ``k``.
* ``recall@k`` = relevant in top k / R (below 1 when R > k, as in trec_eval).
* ``precision@k`` = relevant in top k / k, even when fewer than k were retrieved.
* ``mrr@k`` = 1 / rank of the first relevant document within the top k.
* ``map@k`` is average precision *truncated* at k and divided by **R**, not by
  ``min(R, k)`` (trec_eval ``map_cut``, ranx ``map@k``, BEIR): a perfect
  ranking scores ``k / R`` when R > k. ``map`` without ``@k`` is full AP.

A name without ``@k`` means no cut-off. Queries with no relevant documents
score 0 on every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ragkit.errors import ConfigError, DatasetError

__all__ = [
    "Qrels",
    "Run",
    "average_precision",
    "dedupe_ranking",
    "doc_ranking_from_hits",
    "evaluate",
    "mrr_at_k",
    "ndcg_at_k",
    "per_query",
    "precision_at_k",
    "recall_at_k",
]

Qrels = Mapping[str, Mapping[str, int]]
"""query_id -> {doc_id: graded relevance}; a grade > 0 is relevant."""

Run = Mapping[str, Sequence[Any] | Mapping[str, float]]
"""query_id -> ranked doc ids (best first), hits with ``.doc_id`` in rank order,
or ``{doc_id: score}`` (sorted by descending score; ties keep insertion order)."""

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map")


def dedupe_ranking(ids: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each id, in order.

    >>> dedupe_ranking(["d1", "d2", "d1", "d3"])
    ['d1', 'd2', 'd3']
    """
    if isinstance(ids, str):
        # A bare string would be iterated character by character.
        raise TypeError("ranking must be a sequence of ids, not a single str")
    return list(dict.fromkeys(ids))


def doc_ranking_from_hits(hits: Sequence[Any], *, key: str = "doc_id") -> list[str]:
    """Deduplicated document ids (or sources, with ``key="source"``) of hits in rank order.

    Hits are objects with a ``doc_id`` attribute (:class:`ragkit.types.Hit`) or
    dicts with a ``"doc_id"`` key. A hit without a source keeps its rank but
    can match no source judgement.

    >>> doc_ranking_from_hits(index.search("q", k=20))  # doctest: +SKIP
    ['doc-7', 'doc-2', ...]
    """
    if key not in ("doc_id", "source"):
        raise ConfigError(f"key must be 'doc_id' or 'source', not {key!r}")
    ids = []
    for hit in hits:
        value = _hit_field(hit, key)
        if value is None:
            # Placeholder that no qrels id can equal, so later hits keep their ranks.
            value = "\x00" + str(_hit_field(hit, "doc_id"))
        ids.append(str(value))
    return dedupe_ranking(ids)


def _hit_field(hit: Any, key: str) -> Any:
    if isinstance(hit, Mapping):
        if key == "source" and "source" not in hit:
            return (hit.get("metadata") or {}).get("source")
        return hit.get(key)
    return getattr(hit, key)


def _relevant(relevant: Mapping[str, int]) -> dict[str, int]:
    return {doc: grade for doc, grade in relevant.items() if grade > 0}


def _top(ranking: Iterable[str], k: int | None) -> list[str]:
    ranked = dedupe_ranking(ranking)
    if k is None:
        return ranked
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"cut-off k must be a positive integer or None, not {k!r}")
    return ranked[:k]


def _dcg(gains: Sequence[float]) -> float:
    gains = np.asarray(gains, dtype=np.float64)
    return float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))


def ndcg_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    """Normalised DCG with linear gain, cut at ``k`` (None: no cut-off).

    >>> ndcg_at_k(["a", "x", "b"], {"a": 2, "b": 1}, k=10)  # (2/1 + 1/2) / (2/1 + 1/log2(3))
    0.950...
    """
    rel = _relevant(relevant)
    top = _top(ranking, k)
    if not rel:
        return 0.0
    ideal = sorted(rel.values(), reverse=True)[:k]
    return _dcg([rel.get(doc, 0) for doc in top]) / _dcg(ideal)


def recall_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    """Fraction of all relevant documents found in the top ``k``.

    >>> recall_at_k(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}, k=2)
    0.333...
    """
    rel = _relevant(relevant)
    top = _top(ranking, k)
    if not rel:
        return 0.0
    return sum(doc in rel for doc in top) / len(rel)


def precision_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    """Relevant documents in the top ``k``, divided by ``k`` (None: by the ranking's length).

    >>> precision_at_k(["a", "x"], {"a": 1}, k=4)
    0.25
    """
    rel = _relevant(relevant)
    top = _top(ranking, k)
    denominator = k if k is not None else len(top)
    if not rel or denominator == 0:
        return 0.0
    return sum(doc in rel for doc in top) / denominator


def mrr_at_k(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    """Reciprocal rank of the first relevant document in the top ``k``, else 0.

    >>> mrr_at_k(["x", "y", "a"], {"a": 1}, k=10)
    0.333...
    """
    rel = _relevant(relevant)
    for rank, doc in enumerate(_top(ranking, k), start=1):
        if doc in rel:
            return 1.0 / rank
    return 0.0


def average_precision(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None = None) -> float:
    """Average precision, truncated at ``k`` but always divided by R (trec_eval ``map_cut``).

    >>> average_precision(["a", "x", "b"], {"a": 1, "b": 1})  # (1/1 + 2/3) / 2
    0.833...
    """
    rel = _relevant(relevant)
    top = _top(ranking, k)
    if not rel:
        return 0.0
    hits, total = 0, 0.0
    for rank, doc in enumerate(top, start=1):
        if doc in rel:
            hits += 1
            total += hits / rank
    return total / len(rel)


_METRICS: dict[str, Callable[[Sequence[str], Mapping[str, int], int | None], float]] = {
    "map": average_precision,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
    "precision": precision_at_k,
    "recall": recall_at_k,
}


def _parse_metric(name: str) -> tuple[Callable[..., float], int | None]:
    """``"ndcg@10"`` -> (ndcg_at_k, 10); ``"map"`` -> (average_precision, None)."""
    base, _, cut = name.strip().lower().partition("@")
    if base not in _METRICS:
        raise ConfigError(
            f"unknown metric {name!r}; valid names are {', '.join(sorted(_METRICS))}, "
            "each optionally with a cut-off '@k' (e.g. 'ndcg@10', 'recall@100', 'map')"
        )
    if not cut:
        if "@" in name:
            raise ConfigError(f"metric {name!r}: missing cut-off after '@' (e.g. '{base}@10')")
        return _METRICS[base], None
    if not cut.isdigit() or int(cut) < 1:
        raise ConfigError(f"metric {name!r}: cut-off must be a positive integer, not {cut!r}")
    return _METRICS[base], int(cut)


def _as_ranking(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        # Score dicts (pytrec_eval/ranx style): stable sort, so ties keep insertion order.
        return [doc for doc, _ in sorted(value.items(), key=lambda item: -item[1])]
    if isinstance(value, str):
        raise TypeError("a run maps each query id to a sequence of ids, not a single str")
    return [item if isinstance(item, str) else str(_hit_field(item, "doc_id")) for item in value]


def per_query(
    run: Run, qrels: Qrels, metrics: str | Sequence[str] = DEFAULT_METRICS
) -> dict[str, dict[str, float]]:
    """Each metric for each query in ``qrels``: ``{query_id: {metric: value}}``.

    A query missing from the run scores 0; run queries absent from qrels are ignored.

    >>> per_query({"q1": ["a", "b"]}, {"q1": {"b": 1}}, ["mrr@10"])
    {'q1': {'mrr@10': 0.5}}
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    parsed = {name: _parse_metric(name) for name in names}  # fail on a bad name before any work
    results: dict[str, dict[str, float]] = {}
    for qid, relevant in qrels.items():
        ranking = _as_ranking(run.get(qid, ()))
        results[qid] = {name: float(fn(ranking, relevant, k)) for name, (fn, k) in parsed.items()}
    return results


def evaluate(run: Run, qrels: Qrels, metrics: str | Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the queries in ``qrels`` (a query missing from the run scores 0).

    >>> evaluate({"q1": ["a", "b"], "q2": ["c"]}, {"q1": {"b": 1}, "q2": {"d": 1}}, ["mrr@10"])
    {'mrr@10': 0.25}
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    scores = per_query(run, qrels, names)
    if not scores:
        # A mean over no queries would be NaN or a silent 0; both hide a loading mistake.
        raise DatasetError("qrels is empty: there are no judged queries to evaluate")
    return {name: float(np.mean([query[name] for query in scores.values()])) for name in names}
