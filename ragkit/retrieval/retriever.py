"""``HybridRetriever``: both retrieval legs, fusion, and the evidence behind every hit.

A search runs in these steps, each optional step off by default:

1. filters narrow the storage view to the matching rows, which both legs apply *before* their top-k cut;
2. each leg fetches ``depth`` candidates (default ``max(100, 10 * k)``);
3. fusion scores the union (see :mod:`ragkit.retrieval.fusion`); missing leg scores are
   filled with the exact score that leg gives the chunk, and the hit shows that score (rank None);
   every candidate gets a relevance in [0, 1] (see :mod:`ragkit.retrieval.relevance`); with
   ``min_score``, candidates whose fused score is below it (``"auto"``: whose relevance is below
   :data:`~ragkit.retrieval.relevance.AUTO_THRESHOLD`) are dropped;
4. where the index holds labelled questions (``ragkit tune --associate``), candidates of
   documents labelled for a similar question are lifted (see :mod:`ragkit.retrieval.association`);
5. optional MMR diversification and cross-encoder reranking of the top;
6. optional grouping: best chunk per document, or neighbouring chunks merged; where that leaves
   fewer than ``k`` hits (a few documents' chunks filled the pool), steps 5 and 6 run again on twice
   as many fused candidates, until ``k`` or every candidate is used. A document ranks by its best
   chunk's fused score: fusing each leg's best chunk per document instead measured worse on SciFact
   train (``benchmarks/scifact.py --study``).

The retriever depends on a :class:`~ragkit.retrieval.source.SearchSource` (what ``Index`` offers: a
storage view, a query encoder, learned state), never on ``Index`` itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ragkit.errors import ConfigError
from ragkit.retrieval.adapter import QueryAdapter
from ragkit.retrieval.association import QueryAssociations, lift_scores
from ragkit.retrieval.diversity import maximal_marginal_relevance
from ragkit.retrieval.fusion import (
    DENSE_DOCUMENT_SHARE,
    adaptive_fusion,
    convex_combination,
    distribution_based_fusion,
    document_share,
    reciprocal_rank_fusion,
    unique_ids,
    yield_possible,
)
from ragkit.retrieval.grouping import group_hits
from ragkit.retrieval.relevance import AUTO_THRESHOLD, is_auto, relevance
from ragkit.retrieval.rerank import rerank
from ragkit.retrieval.settings import SEARCH_MODES, RetrievalSettings, SearchMode, check_choice
from ragkit.retrieval.source import LearnedState, SearchSource, positions
from ragkit.storage.base import LegCandidates, LegStatistics, Query, SearchView, StaleSnapshot
from ragkit.storage.filters import Filters
from ragkit.types import Hit

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 20_000  # longer queries are cut: BM25 cost grows with terms, and the model truncates anyway
_RETRIES = 5  # a writer may commit between opening the view and reading its rows


@dataclass(frozen=True)
class _Ranked:
    """The ranked candidates of one search and the evidence each hit will carry."""

    ids: np.ndarray
    scores: np.ndarray
    bm25: LegCandidates | None
    dense: LegCandidates | None
    lifted: dict[int, tuple[float, str]]
    relevance: np.ndarray | None = None  # aligned with ids; None: no calibrated evidence (BM25 only)


class HybridRetriever:
    """Fusion settings held for reuse, e.g. by a chat app serving many queries.

    The keyword options are those of :class:`~ragkit.retrieval.settings.RetrievalSettings`:
    ``method`` ``"adaptive"`` (default; per-query calibrated weights, see
    :func:`ragkit.retrieval.fusion.adaptive_fusion`), ``"rrf"``, ``"convex"`` or ``"dbsf"``;
    ``weight`` is the dense leg's share; ``query_adapter`` and ``associations`` use the index's
    learned ones when it has them (True), ignore them (False), or use the one given.

    >>> retriever = HybridRetriever(index, method="rrf", rrf_k=60)   # doctest: +SKIP
    >>> hits = retriever.search("varroa treatment", k=5)               # doctest: +SKIP
    >>> hits[0].bm25_rank, hits[0].dense_rank                          # doctest: +SKIP
    (1, 3)
    """

    def __init__(self, source: SearchSource, **settings: Any) -> None:
        self.source = source
        self.config = RetrievalSettings.from_dict(settings)

    def __getattr__(self, name: str) -> Any:  # retriever.method, retriever.weight, ... read the settings
        if name != "config" and name in RetrievalSettings.__dataclass_fields__:
            return getattr(self.config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (what ``ragkit tune`` saves); a given adapter or
        associations object shows as True."""
        return self.config.to_dict()

    def search(
        self, query: str, k: int = 10, *, mode: SearchMode = "hybrid", filters: Filters | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; see the module docstring for the steps.

        ``query_vector`` skips embedding the query (pass one made by the index's model).
        """
        check_choice("search mode", mode, SEARCH_MODES)
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        query = (query or "")[:MAX_QUERY_CHARS].encode("utf-8", "replace").decode("utf-8")  # lone surrogates
        if not query.strip():
            return []
        for _ in range(_RETRIES):
            try:
                return self._search(query, k, mode, filters, query_vector)
            except StaleSnapshot:
                logger.debug("index changed during search; retrying on the new version")
        return self._search(query, k, mode, filters, query_vector)

    def _search(
        self, text: str, k: int, mode: str, filters: Filters | None, vector: np.ndarray | None
    ) -> list[Hit]:
        view = self.source.snapshot()
        if view is None or view.empty:
            return []
        learned = self.source.learned_state()
        query, raw = self.source.query_encoder.encode(
            text, with_vector=mode != "bm25" or self.config.mmr,  # MMR compares vectors, also for BM25
            vector=vector, adapter=self._adapter(learned))
        pool = self._pool(k)
        depth = self.config.depth or max(100, 10 * k)
        ranked = self._rank(view, view.filtered(filters), query, raw, mode, learned, depth, text)
        ids, scores, rel = ranked.ids, ranked.scores, ranked.relevance
        keep = self._kept(scores, rel)
        if keep is not None:  # before the cut, so MMR and reranking see only these
            ids, scores, rel = ids[keep], scores[keep], None if rel is None else rel[keep]
        while True:
            hits = self._top(view, text, query, ranked, ids, scores, rel, pool)
            if len(hits) >= k or pool >= len(ids) or not self.config.group_by:
                return [replace(h, rank=i + 1) for i, h in enumerate(hits[:k])]
            pool = min(len(ids), 2 * pool)  # grouped into fewer than k: a few documents held the pool

    def _top(
        self, view: SearchView, text: str, query: Query, ranked: _Ranked, ids: np.ndarray, scores: np.ndarray,
        rel: np.ndarray | None, pool: int,
    ) -> list[Hit]:
        """The best ``pool`` candidates as hits, diversified, reranked and grouped as configured."""
        relevant = {} if rel is None else dict(zip(ids[:pool].tolist(), rel[:pool].tolist()))
        ids, scores = ids[:pool], scores[:pool]
        if self.config.mmr and len(ids) > 1:
            ids, scores = self._diversify(view, query.needs_vector(), ids, scores, pool)
        hits = _hits(view, ids, scores, ranked, relevant)
        if self.config.reranker:
            hits = rerank(self.config.reranker, text, hits)
        return group_hits(hits, self.config.group_by)

    def _kept(self, scores: np.ndarray, rel: np.ndarray | None) -> np.ndarray | None:
        """Which candidates ``min_score`` keeps (None: all): a number cuts the fused score, "auto" the
        relevance; with no calibrated evidence (a BM25-only search) "auto" keeps all."""
        cut = self.config.min_score
        if cut is None or (is_auto(cut) and rel is None):
            return None
        return rel >= AUTO_THRESHOLD if is_auto(cut) else scores >= cut  # type: ignore[operator]

    def _pool(self, k: int) -> int:
        """How many fused candidates go on to MMR, reranking and grouping."""
        cfg = self.config
        return max(k, cfg.rerank_depth if cfg.reranker else 0, 3 * k if (cfg.mmr or cfg.group_by) else 0)

    def _rank(
        self, view: SearchView, scoped: SearchView, query: Query, raw: np.ndarray | None, mode: str,
        learned: LearnedState, depth: int, text: str,
    ) -> _Ranked:
        bm25 = scoped.lexical(query, depth) if mode in ("hybrid", "bm25") else None
        dense = scoped.dense(query, depth) if mode in ("hybrid", "dense") else None
        if bm25 is None:
            return _Ranked(dense.ids, dense.scores, None, dense, {},  # type: ignore[union-attr]
                           relevance(None, dense.scores))  # type: ignore[union-attr]
        if dense is None:
            return _Ranked(bm25.ids, bm25.scores, bm25, None, {})
        bm25, dense = _with_exact_fill(scoped, query, bm25, dense)  # the scope's statistics, as the legs
        stats = scoped.statistics(query)
        fused_dense, fused_stats = self._with_documents(scoped, query, dense, stats)
        ids, fused = self._fuse(fused_stats, bm25, fused_dense, len(set(query.tokens)), text, learned)
        ids, fused, lifted = self._associate(view, raw, ids, fused, learned)  # type: ignore[arg-type]
        return _Ranked(ids, fused, bm25, dense, lifted, _hybrid_relevance(ids, bm25, dense, stats))

    def _adapter(self, learned: LearnedState) -> QueryAdapter | None:
        given = self.config.query_adapter
        return given if isinstance(given, QueryAdapter) else (learned.query_adapter if given else None)

    def _associations(self, learned: LearnedState) -> QueryAssociations | None:
        given = self.config.associations
        if isinstance(given, QueryAssociations):
            return given
        return learned.query_associations if given else None

    def _associate(
        self, view: SearchView, vector: np.ndarray, ids: np.ndarray, fused: np.ndarray, learned: LearnedState,
    ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[float, str]]]:
        """Lift candidates of documents labelled for questions like this one; their evidence by row."""
        assoc = self._associations(learned)
        if assoc is None or not len(ids) or self.config.association_weight == 0:
            return ids, fused, {}
        if assoc.dimension != len(vector):
            raise ConfigError(f"query associations are {assoc.dimension}-d, the query vector {len(vector)}-d")
        strengths = assoc.strengths(vector, self.config.association_threshold)
        if not strengths:  # the usual case for a new kind of question: nothing to fetch
            return ids, fused, {}
        records = view.fetch(positions(ids))
        keys = [r.doc_id if assoc.key == "doc_id" else r.metadata.get("source") for r in records]
        found = [strengths.get(key) for key in keys]  # type: ignore[arg-type]
        if not any(found):
            return ids, fused, {}
        strength = np.array([f[0] if f else 0.0 for f in found])
        lifted = lift_scores(fused, strength, self.config.association_weight)
        order = np.lexsort((ids, -lifted))
        evidence = {int(i): (f[0], assoc.questions[f[1]]) for i, f in zip(ids, found) if f}
        return ids[order], lifted[order], evidence

    def _with_documents(
        self, view: SearchView, query: Query, dense: LegCandidates, stats: LegStatistics,
    ) -> tuple[LegCandidates, LegStatistics]:
        """For adaptive fusion, the dense leg with each chunk's document centroid mixed in
        (``fusion.document_share``; its background stays the chunks'); as it is for other methods or
        where the backend keeps no document map. Hits and relevance keep the chunk's own cosine."""
        if self.config.method != "adaptive" or stats.dense_document_background is None or dense.fill_ids is None:
            return dense, stats
        scores = view.document_scores(query, dense.fill_ids)
        if scores is None:
            return dense, stats
        mixed = document_share(dense, scores, stats.dense_background, stats.dense_document_background,
                               DENSE_DOCUMENT_SHARE)
        return mixed, stats

    def _fuse(
        self, stats: LegStatistics, bm25: LegCandidates, dense: LegCandidates, query_terms: int, text: str,
        learned: LearnedState,
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        legs, weights = [bm25, dense], [1.0 - cfg.weight, cfg.weight]  # type: ignore[operator]
        if cfg.method == "rrf":
            return reciprocal_rank_fusion(legs, k=cfg.rrf_k, weights=weights)
        if cfg.method == "convex":
            return convex_combination(legs, weights=weights, normalization=cfg.normalization)
        if cfg.method == "dbsf":
            return distribution_based_fusion(legs, weights=weights)
        return adaptive_fusion(
            bm25, dense, bm25_ideal=stats.bm25_ideal, dense_background=stats.dense_background,
            n_searched=stats.n_searched, weight=cfg.weight, query_terms=query_terms,  # type: ignore[arg-type]
            query_fragmentation=self.source.query_encoder.fragmentation(text)
            if yield_possible(query_terms, learned.corpus_fragmentation) else None,
            corpus_fragmentation=learned.corpus_fragmentation, dense_competence=learned.dense_competence,
        )

    def _diversify(
        self, view: SearchView, vector: np.ndarray, ids: np.ndarray, fused: np.ndarray, pool: int
    ) -> tuple[np.ndarray, np.ndarray]:
        relevance = (fused - fused.min()) / (np.ptp(fused) or 1.0)
        order = maximal_marginal_relevance(vector, view.vectors(ids), relevance, pool, self.config.mmr_lambda)
        return ids[order], fused[order]


def _with_exact_fill(
    view: SearchView, query: Query, bm25: LegCandidates, dense: LegCandidates
) -> tuple[LegCandidates, LegCandidates]:
    """Both legs with their exact scores for every id of the union: fusion needs them for ids a
    leg missed (instead of a guess), and the hits show them."""
    union = unique_ids(np.concatenate([bm25.ids, dense.ids]))
    if not len(union):
        return bm25, dense
    bm25_fill, dense_fill = view.exact_scores(query, union)
    return (LegCandidates(bm25.ids, bm25.scores, union, bm25_fill),
            LegCandidates(dense.ids, dense.scores, union, dense_fill))


def _hybrid_relevance(
    ids: np.ndarray, bm25: LegCandidates, dense: LegCandidates, stats: LegStatistics
) -> np.ndarray:
    """Relevance of each ranked id from both legs' exact scores (the fills cover every candidate)."""
    def exact(leg: LegCandidates) -> np.ndarray:
        return leg.fill_scores[np.searchsorted(leg.fill_ids, ids)]  # type: ignore[arg-type, index]

    if not len(ids):
        return np.zeros(0)
    ideal = stats.bm25_ideal + stats.bm25_unseen  # query words no chunk holds count against (relevance.py)
    share = exact(bm25) / ideal if ideal > 0 else np.zeros(len(ids))
    return relevance(share, exact(dense))


def _hits(
    view: SearchView, ids: np.ndarray, fused: np.ndarray, ranked: _Ranked, relevant: dict[int, float]
) -> list[Hit]:
    """Hits for the chosen rows, each with its legs' scores and ranks, any association lift and its
    relevance."""
    records = view.fetch(positions(ids))
    bm25, dense = _Evidence(ranked.bm25), _Evidence(ranked.dense)
    hits = []
    for pos, score, rec in zip(ids, fused, records):
        strength, question = ranked.lifted.get(int(pos), (None, None))
        hits.append(Hit(
            chunk_id=rec.id, doc_id=rec.doc_id, text=rec.text, score=float(score), metadata=rec.metadata,
            start=rec.start, end=rec.end, bm25_score=bm25.score(int(pos)), bm25_rank=bm25.rank(int(pos)),
            dense_score=dense.score(int(pos)), dense_rank=dense.rank(int(pos)),
            association_score=strength, associated_question=question, relevance=relevant.get(int(pos)),
        ))
    return hits


class _Evidence:
    """One leg's rank and score for a row: its own candidates first, else its exact fill-in score."""

    def __init__(self, leg: LegCandidates | None) -> None:
        self.leg = leg
        self.ranks = {} if leg is None else {int(i): r + 1 for r, i in enumerate(leg.ids)}
        fill = None if leg is None else leg.fill_ids
        self.fill = {} if fill is None else {int(i): float(v) for i, v in zip(fill, leg.fill_scores)}  # type: ignore[union-attr, arg-type]

    def rank(self, pos: int) -> int | None:
        return self.ranks.get(pos)

    def score(self, pos: int) -> float | None:
        rank = self.ranks.get(pos)
        if rank is not None:
            return float(self.leg.scores[rank - 1])  # type: ignore[union-attr]
        return self.fill.get(pos)
