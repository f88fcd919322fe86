"""Measure an index's retrieval on labelled queries, and tune its fusion settings to them.

>>> from ragkit.datasets import load_beir
>>> test = load_beir("scifact", "test", corpus=False)                           # doctest: +SKIP
>>> evaluate_index(index, test, {"mode": "bm25"}).scores["ndcg@10"]          # doctest: +SKIP
0.6886
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from .datasets import EvalDataset
from .errors import ConfigError
from .metrics import doc_ranking_from_hits, evaluate, per_query
from .progress import progress

if TYPE_CHECKING:
    from .index import Index

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map")
MIN_TUNING_QUERIES = 20  # below this, a weight chosen on the labels is mostly noise
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "bm25": {"mode": "bm25"},
    "dense": {"mode": "dense"},
    "hybrid": {"mode": "hybrid"},
}


@dataclass(frozen=True)
class EvalResult:
    """Mean scores of one configuration, and each query's scores for error analysis."""

    name: str
    settings: Mapping[str, Any]
    scores: Mapping[str, float]
    per_query: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


class _QueryCache:
    """Query vectors computed once and reused across every configuration evaluated."""

    def __init__(self, index: "Index", queries: Mapping[str, str], show_progress: bool) -> None:
        ids = list(queries)
        vectors = index.embedder.encode([queries[q] for q in ids], show_progress=show_progress)
        self.vectors = dict(zip(ids, vectors))


def evaluate_index(
    index: "Index",
    dataset: EvalDataset,
    settings: Mapping[str, Any],
    *,
    name: str = "",
    metrics: Sequence[str] = DEFAULT_METRICS,
    depth: int = 100,
    cache: _QueryCache | None = None,
) -> EvalResult:
    """Run every query of ``dataset`` through ``index.search`` with ``settings`` and score the rankings.

    Chunk hits are turned into document rankings (a document found through several chunks counts once,
    at its best rank), by ``doc_id`` or by ``source`` path as the dataset's qrels are keyed.
    """
    settings = dict(settings)
    mode = settings.pop("mode", "hybrid")
    filters = settings.pop("filters", None)
    retriever = index.retriever(**settings)
    cache = cache or _QueryCache(index, dataset.queries, show_progress=False)
    run: dict[str, list[str]] = {}
    for qid, text in dataset.queries.items():
        hits = retriever.search(text, k=depth, mode=mode, filters=filters, query_vector=cache.vectors[qid])
        run[qid] = doc_ranking_from_hits(hits, key=dataset.qrels_key)
    return EvalResult(
        name=name or _describe({"mode": mode, **settings}),
        settings={"mode": mode, **settings},
        scores=evaluate(run, dataset.qrels, metrics),
        per_query=per_query(run, dataset.qrels, metrics),
    )


def tuning_grid() -> list[dict[str, Any]]:
    """The fusion settings ``tune`` searches: every method over its weight, normalization and k."""
    weights = [round(w, 2) for w in np.arange(0.1, 0.91, 0.1)]
    grid: list[dict[str, Any]] = [{"method": "adaptive", "weight": w} for w in weights]
    grid += [{"method": "convex", "normalization": n, "weight": w} for n in ("minmax", "zscore") for w in weights]
    grid += [{"method": "dbsf", "weight": w} for w in weights]
    grid += [{"method": "rrf", "rrf_k": k, "weight": w} for k in (10, 30, 60, 100) for w in (0.3, 0.5, 0.7)]
    return grid


@dataclass(frozen=True)
class TuningResult:
    best: Mapping[str, Any]
    train_score: float
    heldout_score: float | None
    default_train_score: float
    default_heldout_score: float | None
    metric: str
    trials: list[tuple[dict[str, Any], float]]
    accepted: bool
    reason: str


def tune(
    index: "Index",
    train: EvalDataset,
    heldout: EvalDataset | None = None,
    *,
    metric: str = "ndcg@10",
    grid: Iterable[Mapping[str, Any]] | None = None,
    depths: Sequence[int] = (50, 100, 200),
    show_progress: bool = False,
) -> TuningResult:
    """Choose fusion settings on ``train``; check them on ``heldout`` against the untuned default.

    The choice is accepted only if it is not worse than the default on the held-out queries, so
    tuning can never silently make search worse. Raises ConfigError below MIN_TUNING_QUERIES.
    """
    if len(train.queries) < MIN_TUNING_QUERIES:
        raise ConfigError(
            f"tune needs at least {MIN_TUNING_QUERIES} labelled training queries, got {len(train.queries)}; "
            "with fewer, chosen weights fit noise. Keep the default (adaptive) fusion or label more queries."
        )
    cache = _QueryCache(index, {**train.queries, **(heldout.queries if heldout else {})}, show_progress)
    score = lambda ds, s: evaluate_index(index, ds, {"mode": "hybrid", **s}, metrics=[metric], cache=cache).scores[metric]
    trials = [(dict(s), score(train, s)) for s in progress(list(grid or tuning_grid()), "tuning", show_progress)]
    best, best_score = max(trials, key=lambda t: t[1])
    for depth in depths:  # candidate depth matters less; refine it for the winner only
        trial = {**best, "depth": depth}
        trials.append((trial, score(train, trial)))
        if trials[-1][1] > best_score:
            best, best_score = trials[-1]
    default_train = score(train, {})
    heldout_score = default_heldout = None
    accepted, reason = True, "best on the training queries"
    if heldout is not None and heldout.queries:
        heldout_score, default_heldout = score(heldout, best), score(heldout, {})
        if heldout_score < default_heldout:
            accepted = False
            reason = (f"tuned settings score {heldout_score:.4f} on held-out queries, below the default's "
                      f"{default_heldout:.4f}: keeping the default")
    return TuningResult(best, best_score, heldout_score, default_train, default_heldout, metric, trials, accepted, reason)


def _describe(settings: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())
