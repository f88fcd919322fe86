"""Tune an index's search to labelled queries: fusion settings, and optionally a query adapter
(:mod:`ragkit.retrieval.adapter`) and query associations (:mod:`ragkit.retrieval.association`).

:func:`tune` runs the steps in order: score the fusion grid on the training queries, refine the
candidate depth for the winner, keep the untuned default unless the winner beats it by
MIN_TUNING_GAIN, cross-validate associations, and check the choice on held-out queries.

>>> result = tune(index, train, heldout)                                     # doctest: +SKIP
>>> result.accepted, result.best                                             # doctest: +SKIP
(True, {'method': 'convex', 'normalization': 'zscore', 'weight': 0.6, 'query_adapter': False})
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.errors import ConfigError
from ragkit.evaluation.datasets import EvalDataset, split_queries
from ragkit.evaluation.measure import QueryCache, evaluate_over_untuned
from ragkit.progress import progress
from ragkit.retrieval.adapter import AdapterFit, fit_query_adapter
from ragkit.retrieval.association import QueryAssociations
from ragkit.storage.base import Query

if TYPE_CHECKING:
    from ragkit.index import Index

__all__ = [
    "ASSOCIATION_GRID", "ASSOCIATION_TOLERANCE", "MIN_TUNING_GAIN", "MIN_TUNING_QUERIES", "TuningResult",
    "cross_validate_associations", "fit_adapter", "split_for_tuning", "tune", "tuning_grid",
]

MIN_TUNING_QUERIES = 20  # below this, a weight chosen on the labels is mostly noise
# A fusion setting replaces the untuned default only if it beats it on the training queries by this much.
MIN_TUNING_GAIN = 0.002
# Association settings `tune --associate` tries (weight x threshold), see ragkit.retrieval.association.
ASSOCIATION_GRID = [{"association_weight": w, "association_threshold": t}
                    for w in (0.25, 0.5, 1.0, 2.0) for t in (0.4, 0.5, 0.6, 0.7)]
# The most `tune --associate` may cost questions about documents nobody labelled (mean metric loss
# in cross-validation): lifting documents for look-alike questions must not crowd out the answer.
ASSOCIATION_TOLERANCE = 0.002

# The tuning metric of hybrid search with some settings (over the untuned defaults) on a dataset.
Score = Callable[[EvalDataset, Mapping[str, Any]], float]
Trials = list[tuple[dict[str, Any], float]]


def tuning_grid() -> list[dict[str, Any]]:
    """The fusion settings ``tune`` searches: every method over its weight, normalization and k.
    (No "dbsf": it ranks exactly like convex z-score, see :func:`ragkit.retrieval.fusion.normalize_scores`.)"""
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
    trials: Trials
    accepted: bool
    reason: str
    adapter: AdapterFit | None = None  # fitted on the training queries when tune(adapter=True)
    associations: QueryAssociations | None = None  # the training queries, when tune(associate=True) chose them
    association_cv: Trials = field(default_factory=list)  # 2-fold scores


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
    training queries. With ``adapter=True`` a query adapter (:mod:`ragkit.retrieval.adapter`) is also
    fitted to the training queries; fusion settings are still chosen on the plain query vectors,
    because through an adapter trained on the same queries the dense leg looks better than it will
    be on documents the adapter has not seen (on SciFact that choice cost 0.014 on such documents).

    With ``associate=True`` the training questions themselves become search evidence
    (:mod:`ragkit.retrieval.association`), with the weight and threshold that score best in two-fold
    cross-validation (:func:`cross_validate_associations`); they are kept only if that beats the
    fusion settings alone.

    The choice is accepted only if it is not worse than the untuned default on the held-out
    queries, so tuning can never silently make search worse. Raises ConfigError below
    MIN_TUNING_QUERIES.
    """
    _require_enough_queries(train)
    cache = QueryCache(index, {**train.queries, **(heldout.queries if heldout else {})}, show_progress)
    fit = fit_adapter(index, train, cache, rank=adapter_rank, seed=seed, show_progress=show_progress) if adapter else None
    learned: dict[str, Any] = {"query_adapter": fit.adapter if fit else False}

    def score(ds: EvalDataset, settings: Mapping[str, Any]) -> float:
        return evaluate_over_untuned(index, ds, settings, metric, cache).scores[metric]

    trials = _score_grid(score, train, grid or tuning_grid(), show_progress)
    best, best_score = _refine_depth(score, train, trials, depths)
    default_train = score(train, {})
    best, best_score = _guard_gain(best, best_score, default_train)
    if fit is not None:
        best_score = score(train, {**best, **learned})
    best = {**best, "query_adapter": fit is not None}
    associations, association_cv = None, []
    if associate:
        chosen, association_cv = cross_validate_associations(index, train, cache, {**best, **learned}, metric, seed)
        if chosen is not None and chosen[1] > best_score:
            best, best_score = {**best, "associations": True, **chosen[0]}, chosen[1]
            associations = cache.associations(train)
    live = {**best, **learned, "associations": associations or False}
    heldout_score, default_heldout, accepted, reason = _check_heldout(score, heldout, live)
    return TuningResult(
        best, best_score, heldout_score, default_train, default_heldout, metric, trials, accepted, reason, fit,
        associations, association_cv,
    )


def split_for_tuning(
    dataset: EvalDataset, holdout: float, seed: int = 0, *, option: str = "holdout"
) -> tuple[EvalDataset, EvalDataset]:
    """``dataset`` split into training and held-out queries (``holdout`` is the held-out share).

    Raises a ConfigError saying how many were held out, and how many labels would be enough, when
    fewer than MIN_TUNING_QUERIES are left to train on; ``option`` is how the caller names ``holdout``.
    """
    train, heldout = split_queries(dataset, 1.0 - holdout, seed=seed)
    if len(train.queries) < MIN_TUNING_QUERIES:
        total = len(dataset.queries)
        need = next(n for n in range(MIN_TUNING_QUERIES, 100 * MIN_TUNING_QUERIES)
                    if math.floor((1.0 - holdout) * n + 0.5) >= MIN_TUNING_QUERIES) if holdout < 0.99 else None
        more = f"label at least {need} queries in all, " if need else ""
        raise ConfigError(
            f"tune needs at least {MIN_TUNING_QUERIES} labelled training queries, got {len(train.queries)}: "
            f"of the {total} given, {len(heldout.queries)} ({holdout:.0%}, {option} {holdout:g}) were held out "
            f"to check the choice; {more}or lower {option}. With fewer, chosen weights fit noise: keep the "
            "default (adaptive) fusion."
        )
    return train, heldout


def _require_enough_queries(train: EvalDataset) -> None:
    if len(train.queries) < MIN_TUNING_QUERIES:
        raise ConfigError(
            f"tune needs at least {MIN_TUNING_QUERIES} labelled training queries, got {len(train.queries)}; "
            "with fewer, chosen weights fit noise. Keep the default (adaptive) fusion or label more queries."
        )


def _score_grid(score: Score, train: EvalDataset, grid: Iterable[Mapping[str, Any]], show_progress: bool) -> Trials:
    """Each fusion setting of ``grid`` with its score on the training queries."""
    return [(dict(s), score(train, s)) for s in progress(list(grid), "tuning", show_progress)]


def _refine_depth(score: Score, train: EvalDataset, trials: Trials, depths: Sequence[int]) -> tuple[dict[str, Any], float]:
    """The best trial, its candidate depth refined: depth matters less than the fusion setting, so it
    is tried for the winner only (each try is appended to ``trials``)."""
    best, best_score = max(trials, key=lambda t: t[1])
    for depth in depths:
        trial = {**best, "depth": depth}
        trials.append((trial, score(train, trial)))
        if trials[-1][1] > best_score:
            best, best_score = trials[-1]
    return best, best_score


def _guard_gain(best: dict[str, Any], best_score: float, default_score: float) -> tuple[dict[str, Any], float]:
    """``best``, or the untuned default (``{}``) unless ``best`` beats it by MIN_TUNING_GAIN: a smaller
    gain is noise, and the default is known to hold."""
    if best_score < default_score + MIN_TUNING_GAIN:
        return {}, default_score
    return best, best_score


def _check_heldout(
    score: Score, heldout: EvalDataset | None, live: Mapping[str, Any]
) -> tuple[float | None, float | None, bool, str]:
    """The tuned and the default score on the held-out queries, whether the choice is accepted (not
    below the default there) and why."""
    if heldout is None or not heldout.queries:
        return None, None, True, "best on the training queries"
    tuned, default = score(heldout, live), score(heldout, {})
    if tuned < default:
        return tuned, default, False, (f"tuned settings score {tuned:.4f} on held-out queries, below the "
                                       f"default's {default:.4f}: keeping the default")
    return tuned, default, True, "best on the training queries"


def cross_validate_associations(
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
    view = index.snapshot()
    if view is None or view.empty:
        raise ConfigError(f"index {index.path} is empty: nothing to fit a query adapter to")
    qids = [q for q in dataset.queries if any(g > 0 for g in dataset.qrels.get(q, {}).values())]
    found = []
    for q in progress(qids, "adapter candidates", show_progress):
        query = Query(index.query_encoder.tokens(dataset.queries[q]), cache.vectors[q])
        found.append(np.union1d(view.lexical(query, depth).ids, view.dense(query, depth).ids))
    ids = np.unique(np.concatenate(found)) if found else np.array([], dtype=np.int64)
    records = view.fetch(ids.tolist())
    by_source = dataset.qrels_key == "source"
    keys = np.array([r.metadata.get("source") if by_source else r.doc_id for r in records], dtype=object)
    relevant = [frozenset(d for d, g in dataset.qrels[q].items() if g > 0) for q in qids]
    positives = []
    for rel, cand in zip(relevant, found):
        rows = np.searchsorted(ids, cand)
        positives.append(rows[np.isin(keys[rows], list(rel))])
    queries = np.stack([cache.vectors[q] for q in qids])
    return fit_query_adapter(queries, positives, view.vectors(ids), relevant, rank=rank, seed=seed)
