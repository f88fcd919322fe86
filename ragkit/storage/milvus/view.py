"""``MilvusView``: the :class:`~ragkit.storage.base.SearchView` of a Milvus index.

Milvus has no snapshots a client can hold, so a view is one *generation* of the index (a token every
commit renews): the BM25 totals read once for it, and caches of rows, filter masks and dense
background samples that all views of that generation share. Row ids are chunk primary keys; a row a
newer commit deleted raises :class:`StaleSnapshot` and the search retries on a new view.

A filtered view searches the filter's rows as if they were the whole collection: BM25's document
frequencies, N, avgdl, okapi's mean IDF, the ideal score and unseen words come from those rows alone
(:func:`~ragkit.storage.milvus.statistics.scope_totals`, one scan of them per filter and generation),
and the dense background is sampled from them (``n_searched`` is their count).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ragkit.errors import FilterError
from ragkit.storage.base import BACKGROUND_SAMPLE, LegCandidates, LegStatistics, Query, StaleSnapshot, StorageSettings
from ragkit.storage.bm25 import ideal_score
from ragkit.storage.filters import Filters, check_range_kinds, compile_filters
from ragkit.storage.milvus import statistics as stats
from ragkit.storage.milvus.collections import MAX_PK, MilvusCollections
from ragkit.storage.milvus.expressions import passes, pk_in, translate
from ragkit.storage.util import LRU, filter_key
from ragkit.types import Chunk

logger = logging.getLogger(__name__)

ROW_CACHE = 20_000  # chunk rows (sparse weights, vectors) kept per generation
MASK_CACHE = 64  # filters (and their background samples) kept per generation
_UNSET = object()
_RANGE_KINDS = {"int": "number", "float": "number", "str": "text"}  # the catalogue's kinds, as ranges compare


@dataclass(frozen=True)
class Mask:
    """A filter as a Milvus boolean expression (``expr`` None: nothing matches)."""

    expr: str | None
    key: str


@dataclass
class Generation:
    """What every view of one index generation shares: BM25 totals, the field catalogue, caches."""

    token: str
    n_rows: int
    n_chunks: int  # from the statistics: the N and avgdl that BM25 uses
    n_tokens: int
    fields: dict[str, set[str]]
    deltas: bool  # unfolded statistics rows exist (a server's writers)
    df: dict[int, int] = field(default_factory=dict)
    rows: LRU[int, dict[str, Any]] = field(default_factory=lambda: LRU(ROW_CACHE))
    masks: LRU[str, Mask] = field(default_factory=lambda: LRU(MASK_CACHE))
    backgrounds: LRU[str, tuple[np.ndarray, int]] = field(default_factory=lambda: LRU(MASK_CACHE))
    scopes: LRU[str, stats.ScopeTotals] = field(default_factory=lambda: LRU(MASK_CACHE))
    mean_idf: Any = _UNSET  # okapi's mean IDF over the vocabulary, read on first use
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def avgdl(self) -> float:
        return self.n_tokens / self.n_chunks if self.n_chunks > 0 else 1.0


def read_generation(cols: MilvusCollections, token: str, fields: dict[str, set[str]]) -> Generation:
    deltas = bool(cols.meta("stats_deltas"))
    totals = stats.sums(cols, [stats.N_CHUNKS, stats.N_TOKENS], deltas)
    gen = Generation(token, cols.count(""), totals.get(stats.N_CHUNKS, 0), totals.get(stats.N_TOKENS, 0), fields, deltas)
    if gen.n_chunks != gen.n_rows:
        logger.warning("%s: BM25 statistics count %d chunks, the collection holds %d (a write is running, or one was "
                       "killed: re-sync, or call rebuild_statistics())", cols.name, gen.n_chunks, gen.n_rows)
    return gen


@dataclass(frozen=True)
class QueryTerms:
    """A query's terms that the index (or the filter's rows) holds, their counts in the query and their
    IDF, and the ideal-score weight of the query terms it does not hold (``unseen``)."""

    terms: tuple[int, ...]
    counts: np.ndarray
    idf: np.ndarray
    unseen: float = 0.0

    @property
    def weights(self) -> dict[int, float]:
        return dict(zip(self.terms, (self.counts * self.idf).tolist()))


class MilvusView:
    """One generation of a Milvus index, optionally narrowed by a filter (see the module docstring)."""

    def __init__(self, cols: MilvusCollections, settings: StorageSettings, gen: Generation,
                 mask: Mask | None = None) -> None:
        self.cols, self.settings, self.generation, self.mask = cols, settings, gen, mask

    @property
    def empty(self) -> bool:
        return self.generation.n_rows == 0

    def filtered(self, filters: Filters | None) -> "MilvusView":
        if not filters:
            return MilvusView(self.cols, self.settings, self.generation)
        mask = self.generation.masks.get_or_make(filter_key(filters), lambda: self._mask(filters))
        return MilvusView(self.cols, self.settings, self.generation, mask)

    # -- the legs ---------------------------------------------------------------------------------
    def lexical(self, query: Query, depth: int) -> LegCandidates:
        """Sparse IP search over-fetched by half, then exact BM25 re-scoring and the ``depth`` cut."""
        weights = self._terms(query.tokens).weights
        if not weights or self._matches_nothing():
            return _no_candidates()
        hits = self.cols.search("sparse", stats.search_vector(weights), depth + max(20, depth // 2), self._expr(),
                                ["sparse", "dl", "avgdl"], {})
        ids = np.asarray([h["pk"] for h in hits], np.int64)
        scores = np.asarray([self._score(self._remember(h["pk"], h["entity"]), weights) for h in hits], np.float64)
        order = np.lexsort((ids, -scores))[:depth]
        return LegCandidates(ids[order], scores[order])

    def dense(self, query: Query, depth: int) -> LegCandidates:
        if self._matches_nothing():
            return _no_candidates()
        params = {"params": {"ef": max(128, depth)}} if self.settings.dense_kind == "hnsw" else {}
        hits = self.cols.search("dense", np.asarray(query.needs_vector(), np.float32).tolist(), depth, self._expr(),
                                ["pk"], params)
        return LegCandidates(np.asarray([h["pk"] for h in hits], np.int64),
                             np.asarray([h["distance"] for h in hits], np.float64))

    def statistics(self, query: Query) -> LegStatistics:
        """BM25's ideal score and a uniform sample of up to ``BACKGROUND_SAMPLE`` dense vectors.

        The chunk keys are random, so ``pk < t`` selects a uniform sample without reading the rest.
        """
        sample, n = self.generation.backgrounds.get_or_make(self.mask.key if self.mask else "", self._background)
        vector = np.asarray(query.needs_vector(), np.float32)
        terms = self._terms(query.tokens)
        return LegStatistics(bm25_ideal=ideal_score(terms.idf, terms.counts),
                             dense_background=sample @ vector if len(sample) else np.zeros(0, np.float32),
                             n_searched=n, bm25_unseen=terms.unseen)

    # -- any row --------------------------------------------------------------------------------
    def exact_scores(self, query: Query, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each leg's exact score for ``ids``: BM25 from the stored tf weights, dense by dot product."""
        rows = self._rows(ids, ("sparse", "dense"))
        weights = self._terms(query.tokens).weights
        bm25 = np.asarray([self._score(r, weights) for r in rows], np.float64)
        if query.vector is None:
            return bm25, np.zeros(len(rows), np.float64)
        return bm25, _matrix(rows, len(query.vector)) @ np.asarray(query.vector, np.float32)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        rows = self._rows(ids, ("dense",))
        return _matrix(rows, len(rows[0]["dense"]) if rows else 0)

    def document_scores(self, query: Query, ids: np.ndarray) -> None:
        """None: no row -> document map is kept here, so the dense leg scores chunks alone."""
        return None

    def fetch(self, ids: Sequence[int]) -> list[Chunk]:
        """Chunk records by primary key, in the order given."""
        wanted = [int(i) for i in ids]
        fields = ["chunk_id", "doc_id", "text", "start", "end", "metadata"]
        found = {r["pk"]: r for r in self.cols.rows_in("", "pk", wanted, fields)}
        lost = [i for i in wanted if i not in found]
        if lost:
            raise StaleSnapshot(lost)
        return [Chunk(found[i]["chunk_id"], found[i]["doc_id"], found[i]["text"], found[i]["start"], found[i]["end"],
                      found[i]["metadata"] or {}) for i in wanted]

    # -- internals ------------------------------------------------------------------------------
    def _terms(self, tokens: Sequence[str]) -> QueryTerms:
        """The query's terms with their IDF (document frequencies cached for the generation, or the
        filter's rows' own)."""
        gen, params = self.generation, self.settings.bm25
        counts = Counter(stats.term_id(t) for t in tokens)
        scope = self._scope()
        if scope is not None:
            df, n, mean = scope.df, scope.n_chunks, scope.mean_idf
        else:
            missing = [t for t in counts if t not in gen.df]
            if missing:
                found = stats.sums(self.cols, missing, gen.deltas)
                gen.df.update({t: found.get(t, 0) for t in missing})
            df, n, mean = gen.df, gen.n_chunks, self._mean_idf()
        idf = stats.query_idf(list(counts), df, n, params, mean)
        terms = tuple(idf)
        return QueryTerms(terms, np.asarray([counts[t] for t in terms], np.float64),
                          np.asarray([idf[t] for t in terms], np.float64),
                          stats.unseen_weight(counts, df, max(n, 1), params))

    def _scope(self) -> stats.ScopeTotals | None:
        """The filter's rows' BM25 statistics (None unfiltered), scanned once per filter and generation."""
        mask = self.mask
        if mask is None:
            return None
        return self.generation.scopes.get_or_make(
            mask.key, lambda: stats.scope_totals(self.cols, mask.expr, self.settings.bm25))

    def _mean_idf(self) -> float | None:
        gen = self.generation
        if gen.mean_idf is _UNSET:
            with gen.lock:
                if gen.mean_idf is _UNSET:
                    gen.mean_idf = stats.mean_idf(self.cols, gen.n_chunks, gen.deltas, self.settings.bm25)
        return gen.mean_idf

    def _score(self, row: Mapping[str, Any], weights: Mapping[int, float]) -> float:
        scope = self._scope()
        avgdl = self.generation.avgdl if scope is None else scope.avgdl
        return stats.score(row, weights, avgdl, self.settings.bm25)

    def _matches_nothing(self) -> bool:
        return self.mask is not None and self.mask.expr is None

    def _expr(self) -> str:
        return self.mask.expr or "" if self.mask else ""

    def _remember(self, pk: int, entity: Mapping[str, Any]) -> dict[str, Any]:
        row = self.generation.rows.get(int(pk)) or {}
        row.update(entity)
        return self.generation.rows.put(int(pk), row)

    def _rows(self, ids: Sequence[int], need: Sequence[str]) -> list[dict[str, Any]]:
        """Stored fields of chunks by primary key (cached per generation); a missing key means a writer replaced it."""
        wanted = [int(i) for i in ids]
        found: dict[int, dict[str, Any]] = {}
        for pk in dict.fromkeys(wanted):
            row = self.generation.rows.get(pk)
            if row is not None and all(f in row for f in need):
                found[pk] = row
        missing = [i for i in dict.fromkeys(wanted) if i not in found]
        for row in self.cols.rows_in("", "pk", missing, ["sparse", "dl", "avgdl", "dense"]):
            found[row["pk"]] = self._remember(row["pk"], {k: v for k, v in row.items() if k != "pk"})
        lost = [i for i in wanted if i not in found]
        if lost:
            raise StaleSnapshot(lost)
        return [found[i] for i in wanted]

    def _background(self) -> tuple[np.ndarray, int]:
        expr = self.mask.expr if self.mask else ""
        n = self.cols.count("", expr) if expr is not None else 0
        cut = f"pk < {int(MAX_PK * BACKGROUND_SAMPLE / n)}" if n > BACKGROUND_SAMPLE else "pk >= 0"
        rows = self.cols.query("", f"({expr}) and {cut}" if expr else cut, ["dense"], limit=BACKGROUND_SAMPLE) if n else []
        dim = len(rows[0]["dense"]) if rows else 0
        return _matrix(rows, dim), n

    def _mask(self, filters: Filters) -> Mask:
        """The filter as a Milvus expression; conditions Milvus cannot say exactly are checked here."""
        compile_filters(filters)  # validates operators and operands
        gen = self.generation
        known = {"doc_id", "chunk_id", *gen.fields}
        for name in filters:
            if name not in known and gen.n_rows:
                raise FilterError(f"unknown filter field {name!r}; fields in this index: {', '.join(sorted(known))}")
        check_range_kinds(filters, lambda name: {_RANGE_KINDS[k] for k in gen.fields.get(name, ()) if k in _RANGE_KINDS})
        expr, post = translate(filters, gen.fields)
        return Mask(self._post_filter(expr, post) if post else expr, filter_key(filters))

    def _post_filter(self, expr: str, conditions: Filters) -> str | None:
        """Rows matching ``expr`` that also pass ragkit's own predicates, as ``pk in [...]`` (None: no row)."""
        tests = compile_filters(conditions)
        allowed = []
        for row in self.cols.scan("", expr, ["chunk_id", "doc_id", "metadata"]):
            record = {**(row["metadata"] or {}), "doc_id": row["doc_id"], "chunk_id": row["chunk_id"]}
            if all(passes(record.get(name), test) for name, test in tests):
                allowed.append(row["pk"])
        return pk_in(allowed) if allowed else None


def _no_candidates() -> LegCandidates:
    return LegCandidates(np.zeros(0, np.int64), np.zeros(0, np.float64))


def _matrix(rows: Sequence[Mapping[str, Any]], dim: int) -> np.ndarray:
    """The rows' dense vectors as an ``(n, dim)`` float32 array (also when there are none)."""
    return np.asarray([r["dense"] for r in rows], np.float32).reshape(len(rows), dim)
