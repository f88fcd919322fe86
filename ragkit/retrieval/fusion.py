"""Fusion of ranked candidate lists from several retrieval legs, as pure functions.

Each leg hands over its candidates as ``LegCandidates(ids, scores)``, best
first. Every function returns ``(ids, fused_scores)`` over the *union* of the
candidates, best first; an id found by several legs appears once.

A chunk one leg did not return has no score from that leg. The callers in
ragkit pass ``fill`` scores: the exact score that leg gives the chunk, which
the local backend can compute cheaply (a BM25 posting lookup, one dot
product). Where no exact score is available the missing score is imputed as
the leg's lowest candidate score: an upper bound on the true score, since the
chunk ranked below every candidate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ragkit.errors import ConfigError
from ragkit.retrieval.settings import ADAPTIVE_WEIGHT, NORMALIZATIONS, Normalization
from ragkit.storage.base import LegCandidates

# adaptive_fusion defaults, chosen on SciFact train queries and controlled degradations (see README).
ADAPTIVE_RAMP = 2.0
ADAPTIVE_SHIFT = 0.5
ADAPTIVE_SOFTNESS = 0.25
# Yielding to a confident dense leg on short queries (see yielded_weight), chosen on SciFact train and
# an entity-description collection (benchmarks/entities.py; README "a default that holds").
YIELD_TERMS = (8, 2)  # distinct query terms: from 8 on no yield, at 2 or fewer the full yield
YIELD_EVIDENCE = (0.5, 1.5)  # the dense leg's best calibrated score: no yield up to 0.5, full from 1.5
YIELD_WEIGHT = 0.75  # the dense share at full yield
# How finely the model's tokenizer cuts text (ragkit.text.tokens.fragmentation), chosen on SciFact train,
# the entity descriptions and the language sets (README, "a default that holds"):
FAMILIAR_QUERY = (0.95, 0.75)  # the query's: the full yield at 0.75 or below (English), none from 0.95
FAMILIAR_CORPUS = (1.0, 0.9)  # and the corpus's: the full yield at 0.9 or below, none from 1.0
UNKNOWN_CORPUS = (2.0, 1.3)  # the corpus's: the dense share itself is full up to 1.3, 0 from 2.0
# The dense leg's known-item MRR as a share of BM25's (ragkit.retrieval.competence): the dense share is
# full from 0.3, none at 0.1. Under all-MiniLM-L6-v2: English 0.40-0.44 (SciFact, React docs), Spanish
# 0.31-0.40, Chinese 0.13-0.18; a 96-probe measure varies by about 0.04.
DENSE_COMPETENCE = (0.1, 0.3)
# The document centroid's share of the dense leg's score under adaptive fusion (document_share).
DENSE_DOCUMENT_SHARE = 0.5
# Background rows in documents of several chunks needed to estimate the centroid cosines' spread: with
# two or three, one chunk's calibrated score could jump from noise to far above every other.
MIN_DOCUMENT_BACKGROUND = 32


def _union(legs: Sequence[LegCandidates]) -> np.ndarray:
    ids = [leg.ids for leg in legs if len(leg.ids)]
    if not ids:
        return np.zeros(0, dtype=np.int64)
    return unique_ids(np.concatenate(ids))  # dedupe: one entry per chunk, whatever found it


def unique_ids(ids: np.ndarray) -> np.ndarray:
    """``np.unique(ids)`` without its first-use import of numpy.ma (20 ms of every CLI search)."""
    ids = np.sort(ids)
    return ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids


def _aligned_scores(leg: LegCandidates, union: np.ndarray) -> np.ndarray:
    """The leg's score for each id of ``union``: own score, else fill, else the leg's minimum."""
    floor = float(leg.scores.min()) if len(leg.scores) else 0.0
    out = np.full(len(union), floor, dtype=np.float64)
    if leg.fill_ids is not None and len(leg.fill_ids) and len(union):
        pos = np.clip(np.searchsorted(leg.fill_ids, union), 0, len(leg.fill_ids) - 1)
        found = leg.fill_ids[pos] == union
        out[found] = leg.fill_scores[pos[found]]  # type: ignore[index]
    if len(leg.ids):
        out[np.searchsorted(union, leg.ids)] = leg.scores
    return out


def _sorted(union: np.ndarray, fused: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((union, -fused))  # ties: lower id first, deterministic
    return union[order], fused[order]


def reciprocal_rank_fusion(
    legs: Sequence[LegCandidates], *, k: float = 60.0, weights: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted RRF: ``sum_leg w_leg / (k + rank_leg)``, rank 1-based; a leg that missed an id adds 0.

    k=60 is from Cormack, Clarke & Büttcher (SIGIR 2009); here it is a parameter.
    """
    if k < 0:
        raise ConfigError(f"rrf_k must be >= 0, got {k}")
    weights = _check_weights(weights, len(legs))
    union = _union(legs)
    fused = np.zeros(len(union), dtype=np.float64)
    for leg, weight in zip(legs, weights):
        if len(leg.ids):
            pos = np.searchsorted(union, leg.ids)
            fused[pos] += weight / (k + np.arange(1, len(leg.ids) + 1))
    return _sorted(union, fused)


def normalize_scores(scores: np.ndarray, method: Normalization) -> np.ndarray:
    """Map one leg's scores to a comparable scale.

    ``minmax``: to [0, 1] by the candidates' min and max. ``zscore``: (s - mean) / std.
    ``dbsf``: distribution-based score fusion (Mazzeschi 2023; Qdrant): mean - 3 std -> 0 and
    mean + 3 std -> 1, so one outlier does not squash the rest. Not clipped, as in Qdrant: a leg's
    best candidates are exactly the ones beyond 3 std, and clipping would tie them.
    """
    scores = np.asarray(scores, dtype=np.float64)
    return _normalize_against(scores, scores, method) if len(scores) else scores


def convex_combination(
    legs: Sequence[LegCandidates],
    *,
    weights: Sequence[float] | None = None,
    normalization: Normalization = "minmax",
) -> tuple[np.ndarray, np.ndarray]:
    """``sum_leg w_leg * normalized_score_leg`` over the union of candidates.

    Normalization statistics come from each leg's own candidates (what the leg
    returned), so adding filled-in scores for other ids does not shift them.
    """
    weights = _check_weights(weights, len(legs))
    union = _union(legs)
    fused = np.zeros(len(union), dtype=np.float64)
    for leg, weight in zip(legs, weights):
        if not len(leg.ids) or weight == 0:
            continue
        raw = _aligned_scores(leg, union)
        fused += weight * _normalize_against(raw, leg.scores, normalization)
    return _sorted(union, fused)


def distribution_based_fusion(
    legs: Sequence[LegCandidates], *, weights: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-based score fusion: convex combination of ``dbsf``-normalized scores."""
    return convex_combination(legs, weights=weights, normalization="dbsf")


def _normalize_against(values: np.ndarray, reference: np.ndarray, method: Normalization) -> np.ndarray:
    """Normalize ``values`` with the statistics of ``reference`` (a leg's own candidate scores)."""
    reference = np.asarray(reference, dtype=np.float64)
    if method == "zscore":
        mean, std = reference.mean(), _spread(reference)
        return (values - mean) / std if std > 0 else np.zeros_like(values)
    if method == "minmax":
        lo, hi = reference.min(), reference.max()
        if hi <= lo:
            return np.where(values >= hi, 1.0, 0.0)
        return np.clip((values - lo) / (hi - lo), 0.0, 1.0)  # a filled-in score below the candidates -> 0
    if method == "dbsf":
        mean, std = reference.mean(), _spread(reference)
        if std <= 0:
            return np.where(values >= mean, 0.5, 0.0)
        return (values - (mean - 3 * std)) / (6 * std)
    raise ConfigError(f"unknown normalization {method!r}; valid: {', '.join(NORMALIZATIONS)}")


def _spread(scores: np.ndarray) -> float:
    """The standard deviation, or 0 where it is only rounding error (tied scores can give 1e-16, and
    dividing by that would blow a filled-in score up to 1e12 and let one leg decide everything)."""
    std = float(scores.std())
    return std if std > 1e-9 * max(1.0, float(np.abs(scores).max())) else 0.0


def _check_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n if n else 0.0)
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != n or np.any(w < 0) or not np.isfinite(w).all():
        raise ConfigError(f"weights must be {n} non-negative numbers (one per leg), got {list(weights)}")
    return w


def expected_max_of_normals(n: int) -> float:
    """E[max of n standard normal draws] (Gumbel approximation): the top z-score pure noise reaches."""
    if n < 3:
        return 0.0
    a = math.sqrt(2.0 * math.log(n))
    return a - (math.log(math.log(n)) + math.log(4.0 * math.pi)) / (2.0 * a)


def calibrate_bm25(scores: np.ndarray, ideal: float) -> np.ndarray:
    """BM25 scores as a share of the query's ideal score (every query term matched once in an
    average-length document). A leg that matches few query terms scores low *in absolute terms*,
    which is what lets a weak lexical leg fall back behind a strong dense one. Not capped: a cap
    would tie the best matches and throw away BM25's order among them."""
    if ideal <= 0:
        return np.zeros_like(scores, dtype=np.float64)
    return np.asarray(scores, dtype=np.float64) / ideal


def calibrate_dense(
    scores: np.ndarray, background: np.ndarray, n_searched: int, *, ramp: float, shift: float,
    softness: float = 0.0,
) -> np.ndarray:
    """Cosine scores as evidence above noise: the z-score against the query's score distribution over the
    collection, minus what the best of ``n_searched`` random scores would reach (``shift`` below it),
    per ``ramp`` standard deviations, floored at 0. Random or collapsed vectors score ~0 everywhere.

    ``softness`` > 0 replaces the hard floor by a softplus of that temperature, so candidates just
    below the noise line keep a small, ordered score instead of all tying at 0.
    """
    background = np.asarray(background, dtype=np.float64)
    std = background.std() if len(background) > 1 else 0.0
    if std <= 1e-9:
        return np.zeros_like(scores, dtype=np.float64)
    z = (np.asarray(scores, dtype=np.float64) - background.mean()) / std
    excess = (z - (expected_max_of_normals(n_searched) - shift)) / ramp
    if softness > 0:
        return softness * np.logaddexp(0.0, excess / softness)
    return np.clip(excess, 0.0, None)


def document_share(
    leg: LegCandidates, document_scores: np.ndarray, background: np.ndarray, document_background: np.ndarray,
    share: float = DENSE_DOCUMENT_SHARE,
) -> LegCandidates:
    """The dense leg with each chunk's cosine mixed with its document centroid's: ``(1 - share)`` own,
    ``share`` the document's, each as a z-score against its own background sample (``background``:
    the chunks' cosines, ``document_background``: their documents'), then put back on the chunk
    cosines' scale, so the leg is still calibrated against ``background``. ``document_scores`` is
    aligned with ``leg.fill_ids`` (the candidates' union, so every candidate is covered).

    A chunk of a page that is about the query gains: on multi-chunk documentation pages (React's docs
    in five languages) the default gained 0.013 to 0.025 nDCG@10 offline, SciFact train 0.004
    (README). A chunk whose document has no centroid (NaN: one chunk) keeps its own score. Mixing
    z-scores, not cosines, and only over documents of several chunks keeps noise at noise level: a
    mix of two draws varies no more than one, so no row's noise exceeds what the calibration allows
    for (mixed cosines against a mixed background let single-chunk documents' noise through: -0.006
    and -0.009 on SciFact with random or collapsed vectors)."""
    mean, std = _moments(background)
    doc_mean, doc_std = _moments(document_background)
    if std <= 1e-9 or doc_std <= 1e-9 or np.count_nonzero(~np.isnan(document_background)) < MIN_DOCUMENT_BACKGROUND:
        return leg  # too few sampled rows in documents of several chunks to know the centroids' spread
    own_z = (np.asarray(leg.fill_scores, np.float64) - mean) / std
    doc_z = (np.asarray(document_scores, np.float64) - doc_mean) / doc_std
    mixed = np.where(np.isnan(doc_z), own_z, (1.0 - share) * own_z + share * doc_z)  # NaN: a one-chunk document
    fill = mean + std * mixed
    own = fill[np.searchsorted(leg.fill_ids, leg.ids)]  # type: ignore[arg-type]
    return LegCandidates(leg.ids, own, leg.fill_ids, fill)  # ids keep the chunks' order: fusion reads scores


def _moments(sample: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the sample's numbers (NaN: rows without the evidence)."""
    sample = np.asarray(sample, np.float64)
    sample = sample[~np.isnan(sample)]
    return (float(sample.mean()), float(sample.std())) if len(sample) > 1 else (0.0, 0.0)


def _ramp(x: float, start: float, end: float) -> float:
    """0 at ``start``, 1 at ``end``, linear between (either direction) and flat beyond."""
    return min(1.0, max(0.0, (x - start) / (end - start)))


def yielded_weight(
    weight: float, query_terms: int, dense_best: float, *, query_fragmentation: float | None = None,
    corpus_fragmentation: float | None = None, dense_competence: float | None = None,
) -> float:
    """The dense share for one query: ``weight``, raised towards :data:`YIELD_WEIGHT` when the query is
    short *and* the dense leg is sure of its best candidate *and* the model knows the query's language;
    lowered to 0 when the model cannot read the corpus.

    BM25's calibrated score is the share of the query's terms a passage holds, so with two or three
    terms it moves in steps of a third or a half: a passage that holds the words outranks one that
    means the same in other words by more than any cosine difference. On keyword queries over short
    descriptions (entity search) that lost 0.04 nDCG@10 below dense alone. Length alone is no evidence
    that dense is better (short claims full of rare terms are BM25's best case), so the yield also
    needs the dense leg's best calibrated score well above noise; a broken or unsure dense leg
    (calibrated ~0) gets no extra say.

    The model's sureness means little in a language it hardly knows: on section headings of Spanish,
    Chinese or Russian docs the yield cost 0.01 to 0.02 below BM25 alone. ``query_fragmentation`` (the
    model's tokens per estimated token of the query) tells: the yield shrinks from 0.75 to none at 0.95,
    and from a corpus fragmentation of 0.9 to none at 1.0 (code identifiers in a Spanish page read as
    English: the query alone does not tell).
    A corpus the model cuts into more than twice the pieces (Arabic, Russian under an English vocabulary,
    ``corpus_fragmentation``) gets no dense share at all: its vectors put wrong passages above noise.
    A model can also hold a script's characters without knowing the language (Chinese under an English
    vocabulary: one token per ideograph, fragmentation 1): ``dense_competence``, how well the dense leg
    finds a document from a few of its own words compared with BM25, scales the dense share from none
    at 0.1 to all at 0.3 (:data:`DENSE_COMPETENCE`). None (not measured, or an embedder without its own
    tokenizer): no change.
    """
    short = _ramp(float(query_terms), *YIELD_TERMS)
    sure = _ramp(float(dense_best), *YIELD_EVIDENCE)
    familiar = 1.0 if query_fragmentation is None else _ramp(query_fragmentation, *FAMILIAR_QUERY)
    known = 1.0
    if corpus_fragmentation is not None:
        familiar *= _ramp(corpus_fragmentation, *FAMILIAR_CORPUS)
        known = _ramp(corpus_fragmentation, *UNKNOWN_CORPUS)
    if dense_competence is not None:
        known *= _ramp(dense_competence, *DENSE_COMPETENCE)
    return (weight + max(0.0, YIELD_WEIGHT - weight) * short * sure * familiar) * known


def yield_possible(query_terms: int, corpus_fragmentation: float | None) -> bool:
    """Whether :func:`yielded_weight` could yield for this query at all: else the query's fragmentation
    changes nothing, and the retriever need not load the model's tokenizer to count it (90 ms of a CLI
    search)."""
    return query_terms < YIELD_TERMS[0] and (corpus_fragmentation is None or corpus_fragmentation < FAMILIAR_CORPUS[0])


def adaptive_fusion(
    bm25: LegCandidates,
    dense: LegCandidates,
    *,
    bm25_ideal: float,
    dense_background: np.ndarray,
    n_searched: int,
    weight: float = ADAPTIVE_WEIGHT,
    ramp: float = ADAPTIVE_RAMP,
    shift: float = ADAPTIVE_SHIFT,
    softness: float = ADAPTIVE_SOFTNESS,
    query_terms: int | None = None,
    query_fragmentation: float | None = None,
    corpus_fragmentation: float | None = None,
    dense_competence: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ragkit's default: a convex combination of *calibrated* scores, so each query weighs the legs by
    how much evidence each actually found, with no labels.

    Min-max or z-score normalization stretch every leg to the same range whatever its quality, so a
    useless leg (random vectors, a language the model does not know, no matching terms) still gets
    half the say. Here each leg's score is put on an absolute scale first (:func:`calibrate_bm25`,
    :func:`calibrate_dense`): a leg that found nothing convincing contributes ~0 and the other
    decides; when both found strong evidence, both count. ``weight`` is the dense share; given
    ``query_terms`` (distinct analysed query terms), a short query yields more of it to a confident
    dense leg, and the fragmentations (how finely the model cuts the query and the corpus) and the
    dense leg's known-item competence say whether the model knows the language (:func:`yielded_weight`).
    """
    weight = float(_check_weights([1.0 - weight, weight], 2)[1])
    union = _union([bm25, dense])
    if not len(dense.ids):
        return _sorted(union, calibrate_bm25(_aligned_scores(bm25, union), bm25_ideal))
    if not len(bm25.ids):
        return _sorted(union, _aligned_scores(dense, union))
    b = calibrate_bm25(_aligned_scores(bm25, union), bm25_ideal)
    d = calibrate_dense(
        _aligned_scores(dense, union), dense_background, n_searched, ramp=ramp, shift=shift, softness=softness
    )
    if query_terms is not None and len(d):
        weight = yielded_weight(weight, query_terms, float(d.max()), query_fragmentation=query_fragmentation,
                                corpus_fragmentation=corpus_fragmentation, dense_competence=dense_competence)
    fused = (1.0 - weight) * b + weight * d
    if not fused.any():  # neither leg above noise: fall back to plain min-max fusion
        return convex_combination([bm25, dense], weights=[1.0 - weight, weight])
    return _sorted(union, fused)
