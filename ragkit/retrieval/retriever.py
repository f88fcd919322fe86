"""``HybridRetriever``: both retrieval legs, fusion, and the evidence behind every hit.

A search runs in these steps, each optional step off by default:

1. filters become one row mask that both legs apply *before* their top-k cut;
2. each leg fetches ``depth`` candidates (default ``max(100, 10 * k)``);
3. fusion scores the union (see :mod:`ragkit.fusion`); missing leg scores are
   filled with the exact score that leg gives the chunk;
4. where the index holds labelled questions (``ragkit tune --associate``), candidates of
   documents labelled for a similar question are lifted (see :mod:`ragkit.association`);
5. optional MMR diversification and cross-encoder reranking of the top;
6. optional grouping: best chunk per document, or neighbouring chunks merged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

from ragkit.retrieval.adapter import QueryAdapter
from ragkit.retrieval.association import QueryAssociations, lift_scores
from ragkit.errors import ConfigError, ModelNotAvailableError
from ragkit.storage.filters import Filters
from ragkit.retrieval.fusion import (
    ADAPTIVE_WEIGHT,
    NORMALIZATIONS,
    LegCandidates,
    adaptive_fusion,
    convex_combination,
    distribution_based_fusion,
    reciprocal_rank_fusion,
)
from ragkit.storage.base import StaleSnapshot
from ragkit.types import Hit

if TYPE_CHECKING:
    from ragkit.index import Index
    from ragkit.storage.local.backend import Snapshot

logger = logging.getLogger(__name__)

FusionMethod = Literal["adaptive", "rrf", "convex", "dbsf"]
FUSION_METHODS = ("adaptive", "rrf", "convex", "dbsf")
MODES = ("hybrid", "bm25", "dense")
GROUPINGS = (None, "document", "neighbors")
MAX_QUERY_CHARS = 20_000  # longer queries are cut: BM25 cost grows with terms, and the model truncates anyway


class HybridRetriever:
    """Fusion settings held for reuse, e.g. by a chat app serving many queries.

    ``weight`` is the dense leg's share (BM25 gets ``1 - weight``; default 0.4 for
    "adaptive", 0.5 otherwise). ``method``:
    ``"adaptive"`` (default; per-query calibrated weights, see
    :func:`ragkit.fusion.adaptive_fusion`), ``"rrf"``, ``"convex"`` or ``"dbsf"``.
    ``query_adapter`` and ``associations``: use the index's learned query adapter and labelled
    questions when it has them (True), ignore them (False), or use the one given.

    >>> retriever = HybridRetriever(index, method="rrf", rrf_k=60)   # doctest: +SKIP
    >>> hits = retriever.search("varroa treatment", k=5)               # doctest: +SKIP
    >>> hits[0].bm25_rank, hits[0].dense_rank                          # doctest: +SKIP
    (1, 3)
    """

    def __init__(
        self,
        index: "Index",
        *,
        method: FusionMethod = "adaptive",
        weight: float | None = None,
        normalization: str = "minmax",
        rrf_k: float = 60.0,
        depth: int | None = None,
        mmr: bool = False,
        mmr_lambda: float = 0.7,
        group_by: str | None = None,
        reranker: str | None = None,
        rerank_depth: int = 50,
        query_adapter: bool | QueryAdapter = True,
        associations: bool | QueryAssociations = True,
        association_weight: float = 1.0,
        association_threshold: float = 0.5,
    ) -> None:
        if method not in FUSION_METHODS:
            raise ConfigError(f"unknown fusion method {method!r}; valid: {', '.join(FUSION_METHODS)}")
        if weight is None:
            weight = ADAPTIVE_WEIGHT if method == "adaptive" else 0.5
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"weight (the dense leg's share) must be in [0, 1], got {weight}")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")
        if group_by not in GROUPINGS:
            raise ConfigError(f"group_by must be one of {GROUPINGS}, got {group_by!r}")
        if depth is not None and depth < 1:
            raise ConfigError(f"depth must be >= 1, got {depth}")
        if not 0.0 <= mmr_lambda <= 1.0:
            raise ConfigError(f"mmr_lambda must be in [0, 1], got {mmr_lambda}")
        if not 0.0 <= association_weight < float("inf"):  # also refuses NaN
            raise ConfigError(f"association_weight must be a finite number >= 0, got {association_weight}")
        if not 0.0 <= association_threshold < 1.0:
            raise ConfigError(f"association_threshold must be in [0, 1), got {association_threshold}")
        self.index = index
        self.method = method
        self.weight = weight
        self.normalization = normalization
        self.rrf_k = rrf_k
        self.depth = depth
        self.mmr = mmr
        self.mmr_lambda = mmr_lambda
        self.group_by = group_by
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.query_adapter = query_adapter
        self.associations = associations
        self.association_weight = association_weight
        self.association_threshold = association_threshold

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (what ``ragkit tune`` saves); a given adapter or
        associations object shows as True."""
        keys = ("method", "weight", "normalization", "rrf_k", "depth", "mmr", "mmr_lambda", "group_by",
                "reranker", "rerank_depth", "query_adapter", "associations", "association_weight",
                "association_threshold")
        out = {key: getattr(self, key) for key in keys}
        out["query_adapter"], out["associations"] = bool(self.query_adapter), bool(self.associations)
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in out.items()}

    def search(
        self, query: str, k: int = 10, *, mode: str = "hybrid", filters: Filters | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; see the module docstring for the steps.

        ``query_vector`` skips embedding the query (pass one made by the index's model).
        """
        if mode not in MODES:
            raise ConfigError(f"unknown search mode {mode!r}; valid: {', '.join(MODES)}")
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        query = (query or "")[:MAX_QUERY_CHARS].encode("utf-8", "replace").decode("utf-8")  # lone surrogates
        if not query.strip():
            return []
        for _ in range(5):  # a writer may commit between loading the arrays and reading the rows
            try:
                return self._search(query, k, mode, filters, query_vector)
            except StaleSnapshot:
                logger.debug("index changed during search; retrying on the new version")
        return self._search(query, k, mode, filters, query_vector)

    def _search(
        self, query: str, k: int, mode: str, filters: Filters | None, vector: np.ndarray | None
    ) -> list[Hit]:
        backend = self.index.backend
        snap = backend.snapshot()
        if snap is None or backend.is_empty(snap):
            return []
        mask = backend.filter_mask(snap, filters)
        depth = self.depth or max(100, 10 * k)
        pool = max(k, self.rerank_depth if self.reranker else 0, 3 * k if (self.mmr or self.group_by) else 0)
        bm25 = dense = None
        lifted: dict[int, tuple[float, str]] = {}
        tokens = self.index.analyzer.tokenize(query)
        if mode in ("hybrid", "bm25"):
            bm25 = backend.lexical_candidates(snap, tokens, depth, mask)
        if mode in ("hybrid", "dense"):
            raw = self.index.embed_query(query) if vector is None else vector
            vector = self._adapted(raw)
            dense = backend.dense_candidates(snap, vector, depth, mask)
        if mode == "bm25":
            ids, fused = bm25.ids, bm25.scores  # type: ignore[union-attr]
        elif mode == "dense":
            ids, fused = dense.ids, dense.scores  # type: ignore[union-attr]
        else:
            ids, fused = self._fuse(snap, tokens, vector, bm25, dense, mask)  # type: ignore[arg-type]
            ids, fused, lifted = self._associate(snap, raw, ids, fused)
        ids, fused = ids[:pool], fused[:pool]
        if self.mmr and len(ids) > 1:
            if vector is None:
                vector = self._query_vector(query, None)
            ids, fused = self._diversify(snap, vector, ids, fused, pool)
        hits = self._hits(snap, ids, fused, bm25, dense, lifted)
        if self.reranker:
            hits = self._rerank(query, hits)
        if self.group_by == "document":
            hits = _best_per_document(hits)
        elif self.group_by == "neighbors":
            hits = _merge_neighbors(hits)
        return [_with_rank(h, i + 1) for i, h in enumerate(hits[:k])]

    def _query_vector(self, query: str, given: np.ndarray | None) -> np.ndarray:
        """The query's vector (embedded unless given), through the query adapter if there is one."""
        return self._adapted(self.index.embed_query(query) if given is None else given)

    def _adapted(self, vector: np.ndarray) -> np.ndarray:
        adapter = self.query_adapter if isinstance(self.query_adapter, QueryAdapter) else (
            self.index.query_adapter if self.query_adapter else None)
        return vector if adapter is None else adapter.apply(vector)

    def _associate(
        self, snap: "Snapshot", vector: np.ndarray, ids: np.ndarray, fused: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[float, str]]]:
        """Lift candidates of documents labelled for questions like this one; their evidence by row."""
        assoc = self.associations if isinstance(self.associations, QueryAssociations) else (
            self.index.query_associations if self.associations else None)
        if assoc is None or not len(ids) or self.association_weight == 0:
            return ids, fused, {}
        if assoc.dimension != len(vector):
            raise ConfigError(f"query associations are {assoc.dimension}-d, the query vector {len(vector)}-d")
        strengths = assoc.strengths(vector, self.association_threshold)
        if not strengths:  # the usual case for a new kind of question: nothing to fetch
            return ids, fused, {}
        records = self.index.backend.fetch(snap, [int(i) for i in ids])
        keys = [r.doc_id if assoc.key == "doc_id" else r.metadata.get("source") for r in records]
        found = [strengths.get(key) for key in keys]  # type: ignore[arg-type]
        if not any(found):
            return ids, fused, {}
        lifted = lift_scores(fused, np.array([f[0] if f else 0.0 for f in found]), self.association_weight)
        order = np.lexsort((ids, -lifted))
        evidence = {int(i): (f[0], assoc.questions[f[1]]) for i, f in zip(ids, found) if f}
        return ids[order], lifted[order], evidence

    def _fuse(
        self, snap: "Snapshot", tokens: list[str], vector: np.ndarray, bm25: LegCandidates,
        dense: LegCandidates, mask: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        union = np.union1d(bm25.ids, dense.ids)
        if len(union):  # exact scores for ids a leg missed, instead of a guess
            bm25_fill, dense_fill = self.index.backend.exact_scores(snap, tokens, vector, union)
            bm25 = LegCandidates(bm25.ids, bm25.scores, union, bm25_fill)
            dense = LegCandidates(dense.ids, dense.scores, union, dense_fill)
        legs = [bm25, dense]
        weights = [1.0 - self.weight, self.weight]
        if self.method == "rrf":
            return reciprocal_rank_fusion(legs, k=self.rrf_k, weights=weights)
        if self.method == "convex":
            return convex_combination(legs, weights=weights, normalization=self.normalization)  # type: ignore[arg-type]
        if self.method == "dbsf":
            return distribution_based_fusion(legs, weights=weights)
        stats = self.index.backend.leg_statistics(snap, tokens, vector, mask)
        return adaptive_fusion(
            bm25, dense, bm25_ideal=stats.bm25_ideal, dense_background=stats.dense_background,
            n_searched=stats.n_searched, weight=self.weight,
        )

    def _diversify(
        self, snap: "Snapshot", vector: np.ndarray, ids: np.ndarray, fused: np.ndarray, pool: int
    ) -> tuple[np.ndarray, np.ndarray]:
        from ragkit.retrieval.diversity import maximal_marginal_relevance

        relevance = (fused - fused.min()) / (np.ptp(fused) or 1.0)
        vectors = self.index.backend.vectors(snap, ids)
        order = maximal_marginal_relevance(vector, vectors, relevance, pool, self.mmr_lambda)
        return ids[order], fused[order]

    def _hits(
        self, snap: "Snapshot", ids: np.ndarray, fused: np.ndarray, bm25: LegCandidates | None,
        dense: LegCandidates | None, lifted: dict[int, tuple[float, str]],
    ) -> list[Hit]:
        records = self.index.backend.fetch(snap, [int(i) for i in ids])
        bm25_rank = _ranks(bm25)
        dense_rank = _ranks(dense)
        hits = []
        for pos, score, rec in zip(ids, fused, records):
            pos = int(pos)
            b = bm25_rank.get(pos)
            d = dense_rank.get(pos)
            strength, question = lifted.get(pos, (None, None))
            hits.append(Hit(
                chunk_id=rec.id, doc_id=rec.doc_id, text=rec.text, score=float(score), metadata=rec.metadata,
                start=rec.start, end=rec.end,
                bm25_score=None if b is None else float(bm25.scores[b - 1]),  # type: ignore[union-attr]
                bm25_rank=b,
                dense_score=None if d is None else float(dense.scores[d - 1]),  # type: ignore[union-attr]
                dense_rank=d, association_score=strength, associated_question=question,
            ))
        return hits

    def _rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        from dataclasses import replace

        model = _cross_encoder(self.reranker)  # type: ignore[arg-type]
        if not hits:
            return hits
        scores = model.predict([(query, h.text) for h in hits], show_progress_bar=False)
        reranked = [replace(h, rerank_score=float(s), score=float(s)) for h, s in zip(hits, scores)]
        return sorted(reranked, key=lambda h: -h.score)


def _ranks(leg: LegCandidates | None) -> dict[int, int]:
    return {} if leg is None else {int(i): r + 1 for r, i in enumerate(leg.ids)}


def _with_rank(hit: Hit, rank: int) -> Hit:
    from dataclasses import replace

    return replace(hit, rank=rank)


def _best_per_document(hits: Sequence[Hit]) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.doc_id not in seen:
            seen.add(hit.doc_id)
            out.append(hit)
    return out


def _merge_neighbors(hits: Sequence[Hit]) -> list[Hit]:
    """Merge hits of the same document whose character spans touch or overlap into one passage.

    The merged passage keeps the best hit's score and evidence; its text is the chunks'
    texts joined in document order (overlapping text is not repeated).
    """
    from dataclasses import replace

    merged: list[Hit] = []
    for hit in hits:
        for i, kept in enumerate(merged):
            if kept.doc_id == hit.doc_id and hit.start <= kept.end + 1 and kept.start <= hit.end + 1:
                first, second = (kept, hit) if kept.start <= hit.start else (hit, kept)
                overlap = max(0, first.end - second.start)
                text = first.text + ("" if overlap else "\n") + second.text[overlap:] if second.end > first.end else first.text
                merged[i] = replace(kept, text=text, start=first.start, end=max(first.end, second.end))
                break
        else:
            merged.append(hit)
    return merged


_CROSS_ENCODERS: dict[str, Any] = {}


def _cross_encoder(name: str) -> Any:
    if name not in _CROSS_ENCODERS:
        from sentence_transformers import CrossEncoder

        from ragkit.text.embedding import resolve_model_path

        try:
            _CROSS_ENCODERS[name] = CrossEncoder(resolve_model_path(name), device="cpu")
        except Exception as exc:
            raise ModelNotAvailableError(
                f"cannot load cross-encoder {name!r} ({exc}); offline, pass a local path or a model in the "
                "Hugging Face cache"
            ) from exc
    return _CROSS_ENCODERS[name]
