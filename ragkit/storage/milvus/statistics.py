"""BM25 on Milvus: ragkit's own tokens in sparse vectors, scored with the one formula of ``storage/bm25.py``.

Milvus's own BM25 function analyses text server-side (Lite: the ``standard`` analyzer only, no
stemming or stopwords) and its hybrid search fuses with RRF or weighted sums only. Instead a chunk's
sparse vector holds ragkit's tokens (hashed to 32 bits, :func:`term_id`) weighted by BM25's tf part
(:func:`ragkit.storage.bm25.saturation` at the average length when it was written), and the query
vector holds ``count * idf`` from the statistics collection, so IDF is always current. Each
candidate's tf is recovered from its stored weight and the candidate re-scored exactly (current avgdl
and idf): scores equal the local backend's. What approximates: (1) the candidate set, ranked with the
avgdl of the time each chunk was written; (2) two terms whose hashes collide share statistics (about
``n_terms**2 / 2**33`` pairs: ~1 in a 100k-term vocabulary), also in okapi's mean IDF.

A filtered search scores within the filter's rows (as a collection of those rows alone would): their
document frequencies, chunk and token counts come from one scan of the rows' sparse vectors
(:func:`scope_totals`), once per filter and index generation; the statistics collection is not read.

``NAME_stats`` holds one row per term (its document frequency; term -1 counts chunks, -2 tokens). On
Milvus Lite (one writer) these are totals; a server's writers add insert-only delta rows instead (they
add up under concurrent ``--shard`` writers), folded by :func:`rebuild`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ragkit.storage.bm25 import BM25Params, idf, mean_okapi_idf, saturation, unseen_idf
from ragkit.storage.milvus.collections import DUMMY, MilvusCollections, key64

EMPTY_TERM = 2**32 - 2  # the sparse dimension of a chunk without terms (Milvus rejects empty vectors)
N_CHUNKS, N_TOKENS = -1, -2  # statistics rows that count chunks and tokens instead of a term
MIN_SEARCH_WEIGHT = 1e-6  # okapi's IDF can be <= 0; the IP search still has to find those matches


def term_id(term: str) -> int:
    """A token's sparse dimension: 32 bits of its BLAKE2b hash, below :data:`EMPTY_TERM`."""
    digest = hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % EMPTY_TERM


# -- weights and scores ------------------------------------------------------------------------------
def chunk_weights(tokens: Sequence[str], avgdl: float, params: BM25Params) -> tuple[dict[int, float], Counter[int]]:
    """A chunk's sparse vector (saturated tf per term, at ``avgdl``) and its term counts."""
    tf = Counter(term_id(t) for t in tokens)
    if not tf:
        return {EMPTY_TERM: 1.0}, tf
    terms = list(tf)
    weights = saturation(np.asarray([tf[t] for t in terms]), len(tokens), avgdl, params.k1, params.b)
    return dict(zip(terms, weights.tolist())), tf


def recovered_tf(weight: np.ndarray, dl: float, written_avgdl: float, params: BM25Params) -> np.ndarray:
    """The term frequencies behind stored weights (float32 in Milvus, hence the rounding)."""
    k1, b = params.k1, params.b
    if k1 == 0.0:
        return np.ones_like(weight)  # every tf saturates to 1: any tf scores the same
    written = k1 * (1.0 - b + b * dl / written_avgdl)
    with np.errstate(divide="ignore"):
        tf = np.where(weight < k1 + 1.0, np.round(weight * written / (k1 + 1.0 - weight)), 1e9)
    return np.maximum(tf, 1.0)


def score(row: Mapping[str, Any], weights: Mapping[int, float], avgdl: float, params: BM25Params) -> float:
    """Exact BM25 of a stored chunk (``sparse``, ``dl``, ``avgdl`` fields) for query weights ``count*idf``."""
    sparse = row["sparse"]
    hit = [(qw, sparse[t]) for t, qw in weights.items() if sparse.get(t)]
    if not hit:
        return 0.0
    qw, stored = np.asarray(hit, np.float64).T
    dl = float(row["dl"])
    tf = recovered_tf(stored, dl, row["avgdl"], params)
    return float(np.dot(qw, saturation(tf, dl, avgdl, params.k1, params.b)))


def query_idf(terms: Sequence[int], df: Mapping[int, int], n_chunks: int, params: BM25Params,
              mean_idf: float | None) -> dict[int, float]:
    """The IDF of each query term the index holds (``mean_idf``: okapi's, over the whole vocabulary)."""
    held = [t for t in terms if df.get(t, 0) > 0]
    values = idf(max(n_chunks, 1), np.asarray([df[t] for t in held], np.float64), params, mean_idf)
    return dict(zip(held, values.tolist()))


def unseen_weight(terms: Mapping[int, int], df: Mapping[int, int], n_chunks: int, params: BM25Params) -> float:
    """What the query terms (``terms``: id -> count) no chunk holds add to the ideal score, each at
    the IDF of an unseen word (see ``storage.bm25.bm25_unseen_weight``)."""
    absent = sum(c for t, c in terms.items() if df.get(t, 0) <= 0)
    return absent * unseen_idf(n_chunks, params) if absent else 0.0


@dataclass(frozen=True)
class ScopeTotals:
    """BM25's statistics of the rows a filter keeps: what a collection of only those rows would hold."""

    n_chunks: int
    n_tokens: int
    df: Mapping[int, int]
    mean_idf: float | None  # okapi's mean IDF over the terms these rows hold; None for Lucene's

    @property
    def avgdl(self) -> float:
        return self.n_tokens / self.n_chunks if self.n_chunks > 0 else 1.0


def scope_totals(cols: MilvusCollections, expr: str | None, params: BM25Params) -> ScopeTotals:
    """:class:`ScopeTotals` of the rows matching ``expr`` (None: no row), from one scan of them."""
    counts = chunk_counts(cols.scan("", expr, ["sparse", "dl"])) if expr is not None else Counter()
    n, tokens = counts.pop(N_CHUNKS, 0), counts.pop(N_TOKENS, 0)
    df = {t: c for t, c in counts.items() if c > 0}
    mean = mean_okapi_idf(max(n, 1), np.asarray(list(df.values()), np.float64)) if params.idf == "okapi" else None
    return ScopeTotals(n, tokens, df, mean)


def search_vector(weights: Mapping[int, float]) -> dict[int, float]:
    """The sparse query of the IP search: positive weights, so a term okapi gives IDF <= 0 still finds rows."""
    return {t: max(w, MIN_SEARCH_WEIGHT) for t, w in weights.items()}


# -- the statistics collection ---------------------------------------------------------------------
def stat_row(pk: int, term: int, delta: int, folded: bool) -> dict[str, Any]:
    return {"pk": pk, "term": term, "delta": int(delta), "folded": folded, "_v": DUMMY}


def chunk_counts(rows: Iterable[Mapping[str, Any]]) -> Counter[int]:
    """Document frequencies, chunk and token counts of chunk rows (``sparse`` and ``dl`` fields)."""
    counts: Counter[int] = Counter()
    for row in rows:
        counts.update(t for t in row["sparse"] if t != EMPTY_TERM)
        counts[N_CHUNKS] += 1
        counts[N_TOKENS] += int(row["dl"])
    return counts


def totals(cols: MilvusCollections, terms: Sequence[int]) -> Counter[int]:
    keys = [key64("total", str(t)) for t in terms]
    return Counter({r["term"]: r["delta"] for r in cols.rows_in("stats", "pk", keys, ["term", "delta"])})


def sums(cols: MilvusCollections, terms: Sequence[int], deltas: bool | None = None) -> dict[int, int]:
    """Document frequencies (and the chunk and token counts): folded totals plus unfolded deltas."""
    found = totals(cols, terms)
    if cols.meta("stats_deltas") if deltas is None else deltas:  # a server's writers, until rebuild() folds them
        for row in cols.rows_in("stats", "term", list(terms), ["term", "delta"], "folded == false", few=True):
            found[row["term"]] += row["delta"]
    return dict(found)


def vocabulary_doc_freq(cols: MilvusCollections, deltas: bool) -> np.ndarray:
    """The document frequency of every term the index holds: what okapi's mean IDF is taken over."""
    found: Counter[int] = Counter()
    for row in cols.scan("stats", "term >= 0" if deltas else "term >= 0 and folded == true", ["term", "delta"]):
        found[row["term"]] += row["delta"]
    return np.asarray([n for n in found.values() if n > 0], np.float64)


def mean_idf(cols: MilvusCollections, n_chunks: int, deltas: bool, params: BM25Params) -> float | None:
    """okapi's mean IDF over the vocabulary (None for Lucene's IDF, which needs none)."""
    if params.idf != "okapi":
        return None
    return mean_okapi_idf(max(n_chunks, 1), vocabulary_doc_freq(cols, deltas))


def write(cols: MilvusCollections, delta: Counter[int], exclusive: bool) -> None:
    """Exclusive (Milvus Lite): add into one total row per term. A server: insert-only delta rows."""
    delta = Counter({t: d for t, d in delta.items() if d})
    if not delta:
        return
    if not exclusive:
        cols.set_meta({"stats_deltas": True})
        cols.insert("stats", [stat_row(secrets.randbits(63), t, d, False) for t, d in delta.items()])
        return
    found = totals(cols, list(delta))
    found.update(delta)
    cols.upsert("stats", [stat_row(key64("total", str(t)), t, n, True) for t, n in found.items() if n])
    cols.delete("stats", [key64("total", str(t)) for t, n in found.items() if not n])


def rebuild(cols: MilvusCollections) -> None:
    """Recompute the statistics from the chunks, folded into one row per term."""
    counts = chunk_counts(cols.scan("", "pk >= 0", ["sparse", "dl"])) if cols.has() else Counter()
    cols.client.delete(cols.coll("stats"), filter="pk >= 0")
    cols.upsert("stats", [stat_row(key64("total", str(t)), t, n, True) for t, n in counts.items() if n])
    cols.flush("stats")
    cols.set_meta({"stats_deltas": False})
