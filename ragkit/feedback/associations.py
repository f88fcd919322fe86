"""Approved answers as retrieval evidence: ``ragkit tune --from-feedback``.

An approved answer's query (what was searched for it) and the documents it cites are a labelled
question, the same thing ``ragkit tune --associate`` learns from: :func:`feedback_dataset` turns the
feedback into an :class:`~ragkit.evaluation.datasets.EvalDataset`, and :func:`tune_from_feedback`
runs :func:`ragkit.evaluation.tuning.tune` on it with the index's current fusion settings fixed, so
the only thing learned is whether (and how strongly) these questions lift their documents for similar
queries. The guard is tune's own: two-fold cross-validation that must beat no associations without
costing the other questions more than ``ASSOCIATION_TOLERANCE``, then a held-out check.

Why only associations: the cited documents were found by the current ranking, so tuning fusion
weights on them would mostly teach the ranking to agree with itself.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError
from ragkit.evaluation.datasets import EvalDataset
from ragkit.evaluation.measure import QueryCache
from ragkit.evaluation.tuning import MIN_TUNING_QUERIES, TuningResult, split_for_tuning, tune
from ragkit.feedback.demotion import downvoted, guard_demotions
from ragkit.feedback.store import FeedbackStore

if TYPE_CHECKING:
    from ragkit.index import Index

__all__ = ["FUSION_KEYS", "feedback_dataset", "minimum_approved", "saved_settings", "tune_from_feedback"]

# Saved retrieval settings that are fusion choices (kept as they are by tune --from-feedback).
FUSION_KEYS = ("method", "weight", "normalization", "rrf_k", "depth")


def feedback_dataset(store: FeedbackStore) -> EvalDataset:
    """Approved answers that cite at least one document, as labelled queries (newest per query wins)."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[str, str] = {}
    for item in store.approved():
        cited = item.cited_doc_ids
        if not cited:
            continue
        qid = f"feedback-{item.id}"
        old = seen.pop(item.record.query, None)
        if old is not None:
            del queries[old], qrels[old]
        seen[item.record.query] = qid
        queries[qid] = item.record.query
        qrels[qid] = {doc: 1 for doc in cited}
    return EvalDataset(None, queries, qrels, f"feedback ({store.path})")


def minimum_approved(holdout: float) -> int:
    """Approved, citing answers needed so that MIN_TUNING_QUERIES remain after holding out ``holdout``."""
    return next(n for n in range(MIN_TUNING_QUERIES, 100 * MIN_TUNING_QUERIES)
                if math.floor((1.0 - holdout) * n + 0.5) >= MIN_TUNING_QUERIES)


def tune_from_feedback(index: Index, store: FeedbackStore | None = None, *, holdout: float = 0.3,
                       metric: str = "ndcg@10", seed: int = 0, show_progress: bool = False,
                       demote: bool = True) -> TuningResult:
    """Cross-validate the approved answers as query associations (see the module docstring).

    When the guard keeps the associations, the result's ``associations`` hold every approved answer,
    the held-out ones included, and (``demote``) the bare thumbs-down answers' questions as demotions
    of the documents they cited, as strong as :func:`~ragkit.feedback.demotion.guard_demotions`
    allows (none when it allows none). Raises a ConfigError naming how many approved answers there
    are and how many are needed.
    """
    store = store or FeedbackStore.for_index(index)
    dataset = feedback_dataset(store)
    need = minimum_approved(holdout)
    if len(dataset.queries) < need:
        raise ConfigError(
            f"tune --from-feedback needs at least {need} approved answers that cite a document ({MIN_TUNING_QUERIES} "
            f"to learn from, {holdout:.0%} held out to check); {store.path} has {len(dataset.queries)}. Approve more "
            "answers (thumbs up, or a correction citing its passages) in the playground")
    train, heldout = split_for_tuning(dataset, holdout, seed=seed, option="--holdout")
    fusion = {k: v for k, v in (index.config.retrieval or {}).items() if k in FUSION_KEYS}
    result = tune(index, train, heldout, metric=metric, grid=[fusion], depths=(), associate=True, seed=seed,
                  show_progress=show_progress)
    if result.associations is None or not result.accepted:
        return result
    # The held-out answers checked the choice; once it holds, every approved answer is kept as evidence.
    cache = QueryCache(index, dataset.queries, show_progress)
    everything = cache.associations(dataset)
    if demote:
        chosen = {k: v for k, v in result.best.items() if k.startswith("association")}
        choice = guard_demotions(index, dataset, cache, {**fusion, **chosen}, downvoted(store), metric=metric, seed=seed)
        if choice.demotions is not None:
            everything = everything.plus(choice.demotions)
    return replace(result, associations=everything)


def saved_settings(index: Index, result: TuningResult) -> dict[str, Any]:
    """The retrieval settings to save after ``result``: the index's own, plus the association choice."""
    settings = {k: v for k, v in (index.config.retrieval or {}).items() if not k.startswith("association")}
    if result.associations is not None:
        settings.update({k: v for k, v in result.best.items() if k.startswith("association")})
    return settings
