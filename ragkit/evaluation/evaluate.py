"""Measure an index's retrieval on labelled queries, and tune its search to them: fusion settings,
and optionally a query adapter (:mod:`ragkit.adapter`) and query associations (:mod:`ragkit.association`).

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

from ragkit.retrieval.adapter import AdapterFit, fit_query_adapter
from ragkit.retrieval.association import QueryAssociations
from ragkit.evaluation.datasets import EvalDataset, split_queries
from ragkit.errors import ConfigError
from ragkit.evaluation.metrics import doc_ranking_from_hits, evaluate, per_query
from ragkit.progress import progress

if TYPE_CHECKING:
    from ragkit.index import Index

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map")
MIN_TUNING_QUERIES = 20  # below this, a weight chosen on the labels is mostly noise
# A fusion setting replaces the untuned default only if it beats it on the training queries by this much.
MIN_TUNING_GAIN = 0.002
# What search does on an index nobody tuned; tuning trials override parts of it, never saved settings.
UNTUNED_SETTINGS: dict[str, Any] = {
    "method": "adaptive", "weight": None, "normalization": "minmax", "rrf_k": 60.0, "depth": None,
    "query_adapter": False, "associations": False,
}
# Association settings `tune --associate` tries (weight x threshold), see ragkit.association.
ASSOCIATION_GRID = [{"association_weight": w, "association_threshold": t}
                    for w in (0.25, 0.5, 1.0, 2.0) for t in (0.4, 0.5, 0.6, 0.7)]
# The most `tune --associate` may cost questions about documents nobody labelled (mean metric loss
# in cross-validation): lifting documents for look-alike questions must not crowd out the answer.
ASSOCIATION_TOLERANCE = 0.002
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


class QueryCache:
    """Query vectors computed once and reused across every configuration evaluated."""

    def __init__(self, index: "Index", queries: Mapping[str, str], show_progress: bool) -> None:
        ids = list(queries)
        vectors = index.embedder.encode([queries[q] for q in ids], show_progress=show_progress)
        self.vectors = dict(zip(ids, vectors))

    def associations(self, dataset: EvalDataset) -> QueryAssociations:
        """``dataset``'s labelled questions, with their vectors, as search evidence."""
        qids = list(dataset.queries)
        relevant = [[d for d, g in dataset.qrels.get(q, {}).items() if g > 0] for q in qids]
        return QueryAssociations.from_labels([dataset.queries[q] for q in qids],
                                             np.stack([self.vectors[q] for q in qids]), relevant, dataset.qrels_key)


def evaluate_index(
    index: "Index",
    dataset: EvalDataset,
    settings: Mapping[str, Any],
    *,
    name: str = "",
    metrics: Sequence[str] = DEFAULT_METRICS,
    depth: int = 100,
    cache: QueryCache | None = None,
) -> EvalResult:
    """Run every query of ``dataset`` through ``index.search`` with ``settings`` and score the rankings.

    Chunk hits are turned into document rankings (a document found through several chunks counts once,
    at its best rank), by ``doc_id`` or by ``source`` path as the dataset's qrels are keyed.
    """
    settings = dict(settings)
    mode = settings.pop("mode", "hybrid")
    filters = settings.pop("filters", None)
    retriever = index.retriever(**settings)
    cache = cache or QueryCache(index, dataset.queries, show_progress=False)
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


def evaluate_over_untuned(
    index: "Index", dataset: EvalDataset, settings: Mapping[str, Any], metric: str, cache: QueryCache | None = None
) -> EvalResult:
    """Hybrid search with ``settings`` over the untuned defaults (never over settings saved in the
    index), scored on ``dataset``: how tuning scores each candidate."""
    return evaluate_index(index, dataset, {"mode": "hybrid", **UNTUNED_SETTINGS, **settings}, metrics=[metric],
                          cache=cache)


def tuning_grid() -> list[dict[str, Any]]:
    """The fusion settings ``tune`` searches: every method over its weight, normalization and k.
    (No "dbsf": it ranks exactly like convex z-score, see :func:`ragkit.fusion.normalize_scores`.)"""
    weights = [round(w, 2) for w in np.arange(0.1, 0.91, 0.1)]
    grid: list[dict[str, Any]] = [{"method": "adaptive", "weight": w} for w in weights]
    grid += [{"method": "convex", "normalization": n, "weight": w} for n in ("minmax", "zscore") for w in weights]
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
    adapter: AdapterFit | None = None  # fitted on the training queries when tune(adapter=True)
    associations: QueryAssociations | None = None  # the training queries, when tune(associate=True) chose them
    association_cv: list[tuple[dict[str, Any], float]] = field(default_factory=list)  # 2-fold scores


def tune(
    index: "Index",
    train: EvalDataset,
    heldout: EvalDataset | None = None,
    *,
    metric: str = "ndcg@10",
    grid: Iterable[Mapping[str, Any]] | None = None,
    depths: Sequence[int] = (50, 100, 200),
    adapter: bool = False,
    adapter_rank: int = 32,
    associate: bool = False,
    seed: int = 0,
    show_progress: bool = False,
) -> TuningResult:
    """Choose fusion settings on ``train``; check them on ``heldout`` against the untuned default.

    A fusion setting replaces the untuned default only if it beats it by MIN_TUNING_GAIN on the
    training queries. With ``adapter=True`` a query adapter (:mod:`ragkit.adapter`) is also fitted
    to the training queries; fusion settings are still chosen on the plain query vectors, because
    through an adapter trained on the same queries the dense leg looks better than it will be on
    documents the adapter has not seen (on SciFact that choice cost 0.014 on such documents).

    With ``associate=True`` the training questions themselves become search evidence
    (:mod:`ragkit.association`), with the weight and threshold that score best in two-fold
    cross-validation (each half's labels lift the other half's queries, so no query is scored with
    its own labels), among the points that cost queries about unlabelled documents at most
    ASSOCIATION_TOLERANCE; they are kept only if that beats the fusion settings alone.

    The choice is accepted only if it is not worse than the untuned default on the held-out
    queries, so tuning can never silently make search worse. Raises ConfigError below
    MIN_TUNING_QUERIES.
    """
    if len(train.queries) < MIN_TUNING_QUERIES:
        raise ConfigError(
            f"tune needs at least {MIN_TUNING_QUERIES} labelled training queries, got {len(train.queries)}; "
            "with fewer, chosen weights fit noise. Keep the default (adaptive) fusion or label more queries."
        )
    cache = QueryCache(index, {**train.queries, **(heldout.queries if heldout else {})}, show_progress)
    fit = fit_adapter(index, train, cache, rank=adapter_rank, seed=seed, show_progress=show_progress) if adapter else None
    learned: dict[str, Any] = {"query_adapter": fit.adapter if fit else False}

    def score(ds: EvalDataset, settings: Mapping[str, Any]) -> float:
        return evaluate_over_untuned(index, ds, settings, metric, cache).scores[metric]

    settings = list(grid or tuning_grid())
    trials = [(dict(s), score(train, s)) for s in progress(settings, "tuning", show_progress)]
    best, best_score = max(trials, key=lambda t: t[1])
    for depth in depths:  # candidate depth matters less; refine it for the winner only
        trial = {**best, "depth": depth}
        trials.append((trial, score(train, trial)))
        if trials[-1][1] > best_score:
            best, best_score = trials[-1]
    default_train = score(train, {})
    if best_score < default_train + MIN_TUNING_GAIN:  # a smaller gain is noise: keep the default, which is known to hold
        best, best_score = {}, default_train
    if fit is not None:
        best_score = score(train, {**best, **learned})
    best = {**best, "query_adapter": fit is not None}
    associations, association_cv = None, []
    if associate:
        chosen, association_cv = _cross_validate_associations(index, train, cache, {**best, **learned}, metric, seed)
        if chosen is not None and chosen[1] > best_score:
            best, best_score = {**best, "associations": True, **chosen[0]}, chosen[1]
            associations = cache.associations(train)
    live = {**best, **learned, "associations": associations or False}
    heldout_score = default_heldout = None
    accepted, reason = True, "best on the training queries"
    if heldout is not None and heldout.queries:
        heldout_score, default_heldout = score(heldout, live), score(heldout, {})
        if heldout_score < default_heldout:
            accepted = False
            reason = (f"tuned settings score {heldout_score:.4f} on held-out queries, below the default's "
                      f"{default_heldout:.4f}: keeping the default")
    return TuningResult(
        best, best_score, heldout_score, default_train, default_heldout, metric, trials, accepted, reason, fit,
        associations, association_cv,
    )


def _cross_validate_associations(
    index: "Index", train: EvalDataset, cache: QueryCache, base: Mapping[str, Any], metric: str, seed: int
) -> tuple[tuple[dict[str, Any], float] | None, list[tuple[dict[str, Any], float]]]:
    """Score each ASSOCIATION_GRID point with two folds: one half's labels lift the other half's queries.

    Returns the best point whose lifting costs the queries about *other* documents (none of their
    relevant documents labelled in the other half) at most ASSOCIATION_TOLERANCE on average, with its
    mean score; and every point's mean score.
    """
    first, second = split_queries(train, 0.5, seed=seed)
    folds = [(first, second), (second, first)]
    folds = [(ds, other) for ds, other in folds if ds.queries and other.queries]
    if not folds:
        return None, []

    def per_query_scores(ds: EvalDataset, settings: Mapping[str, Any]) -> dict[str, float]:
        result = evaluate_over_untuned(index, ds, {**base, **settings}, metric, cache)
        return {q: s[metric] for q, s in result.per_query.items()}

    plain, lifted_by, elsewhere = {}, {}, set()
    for ds, other in folds:
        plain.update(per_query_scores(ds, {}))
        lifted_by[ds.name] = cache.associations(other)
        labelled = {d for rel in other.qrels.values() for d, g in rel.items() if g > 0}
        elsewhere |= {q for q, rel in ds.qrels.items() if not any(g > 0 and d in labelled for d, g in rel.items())}
    results, feasible = [], []
    for point in ASSOCIATION_GRID:
        scores: dict[str, float] = {}
        for ds, _ in folds:
            scores.update(per_query_scores(ds, {**point, "associations": lifted_by[ds.name]}))
        mean = float(np.mean(list(scores.values())))
        results.append((dict(point), mean))
        cost = float(np.mean([plain[q] - scores[q] for q in elsewhere])) if elsewhere else 0.0
        if cost <= ASSOCIATION_TOLERANCE:
            feasible.append((dict(point), mean))
    return (max(feasible, key=lambda r: r[1]) if feasible else None), results


def fit_adapter(index: "Index", dataset: EvalDataset, cache: QueryCache, *, rank: int = 32,
                depth: int = 100, seed: int = 0, show_progress: bool = False) -> AdapterFit:
    """Fit a query adapter to ``dataset``'s judged queries. Candidates are what either leg retrieves
    for any of the queries (depth ``depth``): chunks of relevant documents among a query's own
    candidates are its positives, and all the others are negatives."""
    backend = index.backend
    snap = backend.snapshot()
    if snap is None or backend.is_empty(snap):
        raise ConfigError(f"index {index.path} is empty: nothing to fit a query adapter to")
    qids = [q for q in dataset.queries if any(g > 0 for g in dataset.qrels.get(q, {}).values())]
    found = []
    for q in progress(qids, "adapter candidates", show_progress):
        tokens = index.analyzer.tokenize(dataset.queries[q])
        lexical = backend.lexical_candidates(snap, tokens, depth, None).ids
        found.append(np.union1d(lexical, backend.dense_candidates(snap, cache.vectors[q], depth, None).ids))
    ids = np.unique(np.concatenate(found)) if found else np.array([], dtype=np.int64)
    records = backend.fetch(snap, ids.tolist())
    by_source = dataset.qrels_key == "source"
    keys = np.array([r.metadata.get("source") if by_source else r.doc_id for r in records], dtype=object)
    relevant = [frozenset(d for d, g in dataset.qrels[q].items() if g > 0) for q in qids]
    positives = []
    for rel, cand in zip(relevant, found):
        rows = np.searchsorted(ids, cand)
        positives.append(rows[np.isin(keys[rows], list(rel))])
    queries = np.stack([cache.vectors[q] for q in qids])
    return fit_query_adapter(queries, positives, backend.vectors(snap, ids), relevant, rank=rank, seed=seed)


def _describe(settings: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())
