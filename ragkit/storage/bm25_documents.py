"""BM25 over whole documents, from the chunk postings, mixed into each chunk's score.

A document of several chunks is judged as a whole (one relevant page, one abstract), but a chunk
holds only part of its words: a section whose query words are spread over three chunks ranks below a
short chunk elsewhere that holds them all. bm25s and rank_bm25 index whole documents and beat
chunk-level BM25 by 0.015 to 0.05 nDCG@10 on multi-chunk documents (README, "BM25 on text in other
languages"). Mixing both (``BM25Params.document_weight``, 0.5) matched or beat the better of the two
on every collection measured, and left SciFact (about two chunks a document) and single-chunk
collections where they were.

A document's term frequencies and length are the sums over its chunks' postings, less each chunk's
*repeats* (the tokens of text another chunk of the document already holds: the overlap with the
chunk before, and the heading path and table header put in front of a later chunk, which are not the
document's text at all); its document frequencies count documents, N is the number of documents: an
index of the whole documents' token lists scores the same (tested). Without the repeats, a heading
counted once per chunk under it and overlaps twice (BM25 0.004 to 0.007 nDCG@10 below whole
documents on Spanish, Turkish, English and Italian docs). Only the repeats are stored (a segment from
before them has none, and sums as it did); the rest is derived per query from the postings of the
query's terms and a row -> document map.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ragkit.storage.bm25 import BM25Index, Postings, ScopedScores, idf, ideal_score, mean_okapi_idf, saturation


@dataclass(frozen=True, eq=False)
class Documents:
    """Which document each row is part of (``groups``: 0 .. n-1), and BM25's statistics over the
    documents with rows in ``mask`` (a filter's rows: the documents as a separate index of them has)."""

    groups: np.ndarray
    mask: np.ndarray | None
    n_docs: int
    length: np.ndarray  # per document: the tokens of its rows in mask
    avgdl: float
    mean_idf: float | None = None
    one_chunk_each: bool = False  # then a document's score is its chunk's, and mixing changes nothing
    repeats: BM25Index | None = None  # per row, the tokens its document holds in another row


def documents(
    index: BM25Index, groups: np.ndarray, mask: np.ndarray | None = None, repeats: BM25Index | None = None
) -> Documents:
    """The query-independent part, O(rows) (okapi: O(postings) more): build once per view or filter.
    ``repeats`` (rows as ``index``'s): the tokens each row shares with another row of its document."""
    size = int(groups.max()) + 1 if len(groups) else 0
    inside = np.ones(len(groups), bool) if mask is None else np.asarray(mask, bool)
    own = index.doc_len if repeats is None else index.doc_len - repeats.doc_len
    length = np.bincount(groups[inside], weights=own[inside], minlength=size)
    present = np.bincount(groups[inside], minlength=size) > 0
    n = int(present.sum())
    avgdl = float(length[present].mean()) if n else 1.0
    mean_idf = None
    if index.params.idf == "okapi":
        tf = index.tf
        term = np.repeat(np.arange(len(tf.indptr) - 1), np.diff(tf.indptr))
        rows = tf.indices.astype(np.int64)
        keep = inside[rows]
        stride = max(size, 1)  # one code per (term, document) pair: its distinct documents per term
        counts = np.bincount(np.unique(term[keep] * stride + groups[rows[keep]]) // stride)
        mean_idf = mean_okapi_idf(n, counts[counts > 0])
    return Documents(np.asarray(groups, np.int64), mask, n, length, avgdl, mean_idf, n == int(inside.sum()),
                     repeats if repeats is not None and repeats.tf.indptr[-1] else None)


def document_scores(index: BM25Index, query_tokens: Sequence[str], docs: Documents) -> tuple[np.ndarray, float]:
    """Every document's BM25 score for the query (rows outside ``docs.mask`` count for nothing) and the
    ideal score at document level. O(postings of the query's terms)."""
    scores = np.zeros(len(docs.length), np.float64)
    held: list[tuple[float, float]] = []
    k1, b, tf = index.params.k1, index.params.b, index.tf
    for term, count in Counter(query_tokens).items():
        col = index.vocab.get(term)
        if col is None:
            continue
        rows, freq = _own_postings(tf, col, docs.repeats, term)
        if docs.mask is not None:
            inside = docs.mask[rows]
            rows, freq = rows[inside], freq[inside]
        if not len(rows):
            continue
        doc_ids, doc_tf = _sum_by_document(docs.groups[rows], freq)
        if docs.repeats is not None:
            held_by = doc_tf > 0  # a term only a repeat held (a heading's words) is not in the document
            doc_ids, doc_tf = doc_ids[held_by], doc_tf[held_by]
            if not len(doc_ids):
                continue
        term_idf = float(idf(docs.n_docs, np.asarray([len(doc_ids)], np.float64), index.params, docs.mean_idf)[0])
        scores[doc_ids] += (count * term_idf) * saturation(doc_tf, docs.length[doc_ids], docs.avgdl, k1, b)
        held.append((term_idf, count))
    return scores, (ideal_score(*map(np.asarray, zip(*held))) if held else 0.0)


def _own_postings(tf: Postings, col: int, repeats: BM25Index | None, term: str) -> tuple[np.ndarray, np.ndarray]:
    """A term's postings (rows, frequencies), its repeats' frequencies as negative postings after them."""
    lo, hi = tf.indptr[col], tf.indptr[col + 1]
    rows, freq = tf.indices[lo:hi], tf.data[lo:hi]
    again = repeats.vocab.get(term) if repeats is not None else None
    if again is None:
        return rows, freq
    r = repeats.tf  # type: ignore[union-attr]
    lo, hi = r.indptr[again], r.indptr[again + 1]
    return np.concatenate([rows, r.indices[lo:hi]]), np.concatenate([freq, -np.asarray(r.data[lo:hi])])


def _sum_by_document(groups: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct documents of a term's postings and its frequency summed in each. Rows are numbered
    so that a document's are contiguous and in order: then the groups come sorted and runs are O(postings),
    else a sort."""
    steps = np.diff(groups)
    if bool((steps >= 0).all()):
        starts = np.concatenate(([0], np.flatnonzero(steps) + 1))
        return groups[starts], np.add.reduceat(np.asarray(freq, np.float64), starts)
    doc_ids, where = np.unique(groups, return_inverse=True)
    return doc_ids, np.bincount(where, weights=freq)


def mix_documents(chunks: ScopedScores, index: BM25Index, query_tokens: Sequence[str], docs: Documents,
                  weight: float) -> ScopedScores:
    """Each matching chunk's score as ``(1 - weight) x`` its own plus ``weight x`` its document's, the
    document's put on the chunk's scale (times chunk ideal / document ideal), so the calibrated score
    (share of the ideal) is the same mix of the two shares. Only chunks holding a query word match."""
    if weight <= 0 or chunks.ideal <= 0 or docs.one_chunk_each:  # the last: same numbers, 4 ms at 100k rows
        return chunks
    per_doc, doc_ideal = document_scores(index, query_tokens, docs)
    if doc_ideal <= 0:
        return chunks
    lifted = per_doc[docs.groups] * (chunks.ideal / doc_ideal)
    mixed = np.where(chunks.matched, (1.0 - weight) * chunks.scores + weight * lifted, 0.0)
    return ScopedScores(mixed, chunks.matched, chunks.ideal, chunks.unseen)
