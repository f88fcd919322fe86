"""Thumbs-down as retrieval evidence: the documents a rejected answer cited go down for similar questions.

A bare thumbs-down (no correction) on an answer says the passages it cited did not answer that
question. :func:`downvoted` collects those questions and cited documents (the newest judgement of a
question wins, so a later approval or correction cancels it), and :func:`guard_demotions` decides how
far they may push their documents down (:data:`DEMOTION_SHARES`, each a share of a lift, at most
:data:`~ragkit.retrieval.association.MAX_DEMOTION`): the largest share whose two-fold cross-validated
cost on the approved questions (each half lifted by the other half's associations, as ``tune
--associate`` scores them, with and without the demotions) is at most ``ASSOCIATION_TOLERANCE``.
No share passing means no demotion.

What the guard cannot see is the downvoted questions' own gain: nobody said which document would
have answered them. That gain is measured on the feedback test corpus (README, "Closing the loop").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.evaluation.datasets import EvalDataset, split_queries
from ragkit.evaluation.measure import QueryCache, evaluate_over_untuned
from ragkit.evaluation.tuning import ASSOCIATION_TOLERANCE
from ragkit.feedback.store import Feedback, FeedbackStore
from ragkit.retrieval.association import QueryAssociations

if TYPE_CHECKING:
    from ragkit.index import Index

__all__ = ["DEMOTION_SHARES", "DemotionChoice", "downvoted", "guard_demotions"]

logger = logging.getLogger(__name__)

# Demotion strengths the guard tries, strongest first (shares of a lift; see ragkit.retrieval.association).
DEMOTION_SHARES = (1.0, 0.5, 0.25)


def downvoted(store: FeedbackStore) -> dict[str, list[str]]:
    """``{query: documents its rejected answer cited}`` for questions whose newest judgement is a bare thumbs-down."""
    latest: dict[str, Feedback] = {}
    for item in store.all():
        if item.rating is not None or item.correction:
            latest[item.record.query] = item
    out = {}
    for query, item in latest.items():
        cited = item.record.cited_doc_ids()
        if item.rating == "down" and not item.correction and cited:
            out[query] = cited
    return out


class DemotionChoice:
    """What :func:`guard_demotions` chose: ``share`` (None: no demotion) and each tried share's cost."""

    def __init__(self, share: float | None, costs: dict[float, float], demotions: QueryAssociations | None) -> None:
        self.share, self.costs, self.demotions = share, costs, demotions

    def __repr__(self) -> str:
        return f"DemotionChoice(share={self.share}, costs={self.costs})"


def guard_demotions(index: Index, approved: EvalDataset, cache: QueryCache, settings: Mapping[str, Any],
                    rejected: Mapping[str, list[str]], *, metric: str = "ndcg@10", seed: int = 0) -> DemotionChoice:
    """The strongest demotion of ``rejected``'s documents that costs the approved questions at most
    ASSOCIATION_TOLERANCE in two-fold cross-validation (``settings``: fusion and association settings)."""
    if not rejected:
        return DemotionChoice(None, {}, None)
    questions = list(rejected)
    vectors = QueryCache(index, {str(i): q for i, q in enumerate(questions)}, False).vectors
    down = QueryAssociations.from_labels(questions, np.stack([vectors[str(i)] for i in range(len(questions))]),
                                         [rejected[q] for q in questions], approved.qrels_key)
    first, second = split_queries(approved, 0.5, seed=seed)
    folds = [(ds, cache.associations(other)) for ds, other in ((first, second), (second, first))
             if ds.queries and other.queries]

    def scores(extra: QueryAssociations | None) -> dict[str, float]:
        out: dict[str, float] = {}
        for ds, lifting in folds:
            assoc = lifting if extra is None else lifting.plus(extra)
            result = evaluate_over_untuned(index, ds, {**settings, "associations": assoc}, metric, cache)
            out.update({q: s[metric] for q, s in result.per_query.items()})
        return out

    plain, costs = scores(None), {}
    for share in DEMOTION_SHARES:
        demoted = scores(down.demoting(share))
        costs[share] = float(np.mean([plain[q] - demoted[q] for q in plain])) if plain else 0.0
        if costs[share] <= ASSOCIATION_TOLERANCE:
            logger.info("demoting %d downvoted answers' documents by %.2f (cross-validated %s cost %.4f)",
                        len(down), share, metric, costs[share])
            return DemotionChoice(share, costs, down.demoting(share))
    logger.info("no demotion: every share costs the approved questions more than %.3f %s (%s)",
                ASSOCIATION_TOLERANCE, metric, costs)
    return DemotionChoice(None, costs, None)
