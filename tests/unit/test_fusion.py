"""Tests for ragkit.fusion: pure functions checked against values computed by hand."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from ragkit.errors import ConfigError
from ragkit.retrieval.fusion import (
    ADAPTIVE_RAMP,
    ADAPTIVE_SHIFT,
    ADAPTIVE_SOFTNESS,
    YIELD_WEIGHT,
    LegCandidates,
    adaptive_fusion,
    calibrate_bm25,
    calibrate_dense,
    convex_combination,
    distribution_based_fusion,
    expected_max_of_normals,
    normalize_scores,
    reciprocal_rank_fusion,
    yielded_weight,
)


def leg(ids, scores, fill=None) -> LegCandidates:  # type: ignore[no-untyped-def]
    """A leg from plain lists; ``fill`` maps other ids to the leg's exact score for them."""
    fill = dict(sorted((fill or {}).items()))
    return LegCandidates(
        np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float64),
        np.asarray(list(fill), dtype=np.int64) if fill else None,
        np.asarray(list(fill.values()), dtype=np.float64) if fill else None,
    )


EMPTY = leg([], [])
# Leg A returns ids 1, 2, 3; leg B returns 2 and 4. Used by the score-fusion tests below.
A = leg([1, 2, 3], [10.0, 6.0, 2.0])
B = leg([2, 4], [0.75, 0.25])


def as_dict(result: tuple[np.ndarray, np.ndarray]) -> dict[int, float]:
    ids, scores = result
    return dict(zip(ids.tolist(), scores.tolist()))


# --------------------------------------------------------------------------- reciprocal rank fusion


def test_rrf_default_k_and_equal_weights() -> None:
    a, b = leg([10, 20, 30], [3.0, 2.0, 1.0]), leg([20, 40], [0.9, 0.8])
    ids, scores = reciprocal_rank_fusion([a, b])
    assert ids.tolist() == [20, 10, 40, 30]
    expected = [0.5 / 62 + 0.5 / 61, 0.5 / 61, 0.5 / 62, 0.5 / 63]  # weights default to 1/legs
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


def test_rrf_weights_and_k() -> None:
    a, b = leg([10, 20, 30], [3.0, 2.0, 1.0]), leg([20, 40], [0.9, 0.8])
    got = as_dict(reciprocal_rank_fusion([a, b], k=1, weights=[1.0, 3.0]))
    assert got == pytest.approx({10: 1 / 2, 20: 1 / 3 + 3 / 2, 30: 1 / 4, 40: 3 / 3})
    ids, _ = reciprocal_rank_fusion([a, b], k=1, weights=[1.0, 3.0])
    assert ids.tolist() == [20, 40, 10, 30]
    assert as_dict(reciprocal_rank_fusion([a, b], k=0, weights=[1.0, 0.0])) == pytest.approx(
        {10: 1.0, 20: 0.5, 30: 1 / 3, 40: 0.0}
    )


def test_rrf_uses_ranks_not_scores_and_counts_an_id_once() -> None:
    a, b = leg([7, 8, 9], [100.0, 99.0, -5.0]), leg([9, 8], [0.2, 0.1])
    ids, scores = reciprocal_rank_fusion([a, b])
    assert sorted(ids.tolist()) == [7, 8, 9] and len(ids) == 3
    rescored = leg([7, 8, 9], [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(reciprocal_rank_fusion([rescored, b])[1], scores)
    expected = {7: 0.5 / 61, 8: 0.5 / 62 + 0.5 / 62, 9: 0.5 / 63 + 0.5 / 61}
    assert as_dict((ids, scores)) == pytest.approx(expected)


def test_rrf_ties_go_to_the_lower_id_and_empty_legs_are_fine() -> None:
    ids, _ = reciprocal_rank_fusion([leg([5], [1.0]), leg([3], [1.0])])
    assert ids.tolist() == [3, 5]
    ids, scores = reciprocal_rank_fusion([EMPTY, leg([4, 2], [0.9, 0.1])])
    assert ids.tolist() == [4, 2]
    np.testing.assert_allclose(scores, [0.5 / 61, 0.5 / 62])
    ids, scores = reciprocal_rank_fusion([EMPTY, EMPTY])
    assert ids.tolist() == [] and scores.tolist() == []


@pytest.mark.parametrize("weights", [[1.0], [1.0, -0.5], [1.0, float("nan")], [float("inf"), 1.0]])
def test_rrf_rejects_bad_weights(weights: list[float]) -> None:
    with pytest.raises(ConfigError, match="weights"):
        reciprocal_rank_fusion([A, B], weights=weights)


def test_rrf_rejects_negative_k() -> None:
    with pytest.raises(ConfigError, match="rrf_k"):
        reciprocal_rank_fusion([A, B], k=-1)


# --------------------------------------------------------------------------- normalization


def test_normalize_scores_by_hand() -> None:
    np.testing.assert_allclose(normalize_scores(np.array([2.0, 4.0, 6.0]), "minmax"), [0.0, 0.5, 1.0])
    std = math.sqrt(8 / 3)
    np.testing.assert_allclose(normalize_scores(np.array([2.0, 4.0, 6.0]), "zscore"), [-2 / std, 0, 2 / std])
    outlier = np.array([0.0] * 9 + [100.0])  # mean 10, std 30: the window is [-80, 100]
    np.testing.assert_allclose(normalize_scores(outlier, "dbsf"), [80 / 180] * 9 + [1.0])
    # Beyond 3 std is not clipped: the best candidates keep their order (Qdrant does the same).
    top = normalize_scores(np.array([0.0] * 40 + [90.0, 100.0]), "dbsf")
    assert top[-1] > top[-2] > 1.0
    for method, constant in (("minmax", 1.0), ("zscore", 0.0), ("dbsf", 0.5)):
        flat = normalize_scores(np.array([3.0, 3.0]), method)  # type: ignore[arg-type]
        np.testing.assert_array_equal(flat, [constant, constant])
        assert normalize_scores(np.array([]), method).tolist() == []  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="minmax"):
        normalize_scores(np.array([1.0]), "softmax")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- convex combination


def test_convex_minmax_imputes_a_missing_score_at_the_legs_minimum() -> None:
    # A by its own min-max (2..10): 1 -> 1, 2 -> .5, 3 -> 0, 4 (missed, imputed 2) -> 0.
    # B by its own min-max (.25..75): 2 -> 1, 4 -> 0, 1 and 3 (missed, imputed .25) -> 0.
    got = as_dict(convex_combination([A, B]))
    assert got == pytest.approx({1: 0.5, 2: 0.75, 3: 0.0, 4: 0.0})
    ids, _ = convex_combination([A, B], weights=[0.25, 0.75])
    assert ids.tolist() == [2, 1, 3, 4]  # 3 and 4 tie at 0: the lower id first
    assert as_dict(convex_combination([A, B], weights=[0.25, 0.75])) == pytest.approx(
        {1: 0.25, 2: 0.125 + 0.75, 3: 0.0, 4: 0.0}
    )


def test_convex_uses_fill_scores_for_ids_a_leg_missed() -> None:
    a = leg([1, 2, 3], [10.0, 6.0, 2.0], fill={4: 4.0, 99: 7.0})  # 99 is in no leg: ignored
    b = leg([2, 4], [0.75, 0.25], fill={1: 0.5, 3: 0.625})
    got = as_dict(convex_combination([a, b], weights=[0.25, 0.75]))
    # a: 4 -> (4 - 2) / 8 = .25; b: 1 -> (.5 - .25) / .5 = .5, 3 -> .75.
    assert got == pytest.approx({1: 0.25 + 0.375, 2: 0.125 + 0.75, 3: 0.5625, 4: 0.0625})
    # statistics come from the leg's own candidates, and a fill outside their range is clipped to [0, 1]
    high = leg([1, 2, 3], [10.0, 6.0, 2.0], fill={4: 50.0})
    assert as_dict(convex_combination([high, B], weights=[1.0, 0.0]))[4] == pytest.approx(1.0)


def test_convex_zscore_by_hand() -> None:
    std_a = statistics.pstdev([10.0, 6.0, 2.0])  # mean 6
    za = {1: 4 / std_a, 2: 0.0, 3: -4 / std_a, 4: -4 / std_a}  # 4 imputed at A's minimum, 2
    zb = {1: -1.0, 2: 1.0, 3: -1.0, 4: -1.0}  # mean .5, std .25; 1 and 3 imputed at .25
    got = as_dict(convex_combination([A, B], normalization="zscore"))
    assert got == pytest.approx({i: 0.5 * za[i] + 0.5 * zb[i] for i in za})


def test_dbsf_by_hand() -> None:
    mean_a, std_a = 6.0, statistics.pstdev([10.0, 6.0, 2.0])
    lo_a, width_a = mean_a - 3 * std_a, 6 * std_a
    na = {1: (10 - lo_a) / width_a, 2: (6 - lo_a) / width_a, 3: (2 - lo_a) / width_a, 4: (2 - lo_a) / width_a}
    lo_b, width_b = 0.5 - 0.75, 1.5  # mean .5, std .25
    nb = {i: ((0.75 if i == 2 else 0.25) - lo_b) / width_b for i in (1, 2, 3, 4)}  # 1, 3 imputed at .25
    expected = {i: 0.5 * na[i] + 0.5 * nb[i] for i in na}
    assert as_dict(distribution_based_fusion([A, B])) == pytest.approx(expected)
    assert as_dict(convex_combination([A, B], normalization="dbsf")) == pytest.approx(expected)
    ids, _ = distribution_based_fusion([A, B])
    assert ids.tolist() == [2, 1, 3, 4]


def test_convex_skips_empty_and_zero_weight_legs() -> None:
    assert as_dict(convex_combination([A, EMPTY])) == pytest.approx({1: 0.5, 2: 0.25, 3: 0.0})
    only_b = as_dict(convex_combination([A, B], weights=[0.0, 1.0]))
    assert only_b == pytest.approx({1: 0.0, 2: 1.0, 3: 0.0, 4: 0.0})
    with pytest.raises(ConfigError, match="minmax"):
        convex_combination([A, B], normalization="softmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="weights"):
        convex_combination([A, B], weights=[1.0, 2.0, 3.0])


def test_leg_candidates_are_validated() -> None:
    with pytest.raises(ValueError, match="length"):
        LegCandidates(np.array([1, 2]), np.array([1.0]))
    with pytest.raises(ValueError, match="fill"):
        LegCandidates(np.array([1]), np.array([1.0]), fill_ids=np.array([2]))


# --------------------------------------------------------------------------- calibration and adaptive fusion


def test_expected_max_of_normals_tracks_simulation() -> None:
    rng = np.random.default_rng(0)
    assert expected_max_of_normals(1) == expected_max_of_normals(2) == 0.0
    values = [expected_max_of_normals(n) for n in (10, 100, 1000, 4096)]
    assert values == sorted(values)
    for n, value in zip((100, 1000, 4096), values[1:]):
        simulated = rng.standard_normal((500, n)).max(axis=1).mean()
        assert abs(value - simulated) < 0.2, (n, value, simulated)


def test_calibrate_bm25_is_a_share_of_the_ideal_score_without_cap() -> None:
    np.testing.assert_allclose(calibrate_bm25(np.array([5.0, 10.0, 20.0]), 10.0), [0.5, 1.0, 2.0])
    assert calibrate_bm25(np.array([5.0, 1.0]), 0.0).tolist() == [0.0, 0.0]


def test_calibrate_dense_by_hand_and_for_collapsed_vectors() -> None:
    background = np.array([-1.0, 1.0] * 50)  # mean 0, std 1
    shift = expected_max_of_normals(100) - 1.0
    got = calibrate_dense(np.array([4.0, 2.0, 0.0]), background, 100, ramp=2.0, shift=1.0)
    np.testing.assert_allclose(got, [(4.0 - shift) / 2, (2.0 - shift) / 2, 0.0])
    flat = calibrate_dense(np.array([0.9, 0.9]), np.full(500, 0.9), 500, ramp=2.0, shift=1.0)
    assert flat.tolist() == [0.0, 0.0]


def noise_case(seed: int, n: int = 2000, n_bm25: int = 30):  # type: ignore[no-untyped-def]
    """BM25 finds 30 documents; the dense leg is random unit vectors. Fills are exact, as the retriever's."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = rng.standard_normal(384)
    cosine = vectors @ (query / np.linalg.norm(query))
    dense_ids = np.argsort(-cosine)[:100]
    bm25_ids = rng.choice(n, n_bm25, replace=False)
    bm25_scores = np.sort(rng.uniform(1.0, 10.0, n_bm25))[::-1]
    bm25_scores[0] = 12.0
    bm25_all = np.zeros(n)
    bm25_all[bm25_ids] = bm25_scores
    union = np.union1d(bm25_ids, dense_ids)
    bm25 = LegCandidates(bm25_ids, bm25_scores, union, bm25_all[union])
    dense = LegCandidates(dense_ids, cosine[dense_ids], union, cosine[union])
    return bm25, dense, cosine


@pytest.mark.parametrize("seed", range(5))
def test_adaptive_noise_dense_leg_cannot_displace_the_best_bm25_match(seed: int) -> None:
    bm25, dense, cosine = noise_case(seed)
    ids, _ = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=cosine, n_searched=len(cosine))
    assert ids[0] == bm25.ids[0]
    # with min-max fusion the same noise takes over the top (the problem adaptive fusion solves)
    ids_minmax, _ = convex_combination([bm25, dense], weights=[0.6, 0.4])
    assert sum(i in set(bm25.ids[:10].tolist()) for i in ids_minmax[:10].tolist()) < 10


def test_adaptive_noise_dense_leg_gets_no_say() -> None:
    for seed in range(5):
        bm25, dense, cosine = noise_case(seed)
        calibrated = calibrate_dense(
            dense.scores, cosine, len(cosine), ramp=ADAPTIVE_RAMP, shift=ADAPTIVE_SHIFT
        )
        # Almost every noise candidate calibrates to 0; the few extremes stay well below a real
        # match's calibrated score (1 and above).
        assert (calibrated > 0).mean() < 0.1 and calibrated.max() < 1.0, (seed, calibrated.max())
        ids, _ = adaptive_fusion(
            bm25, dense, bm25_ideal=10.0, dense_background=cosine, n_searched=len(cosine)
        )
        # BM25 keeps its top 10: noise may swap near-ties inside it but brings in at most two outsiders.
        assert len(set(ids[:10].tolist()) & set(bm25.ids[:10].tolist())) >= 8, seed
        assert ids[0] == bm25.ids[0], seed


def test_adaptive_collapsed_dense_leg_leaves_bm25_order_and_scores() -> None:
    bm25 = leg([5, 3, 8], [9.0, 4.0, 1.0], fill={1: 0.0, 2: 0.0})
    dense = leg([1, 2, 3], [0.5, 0.5, 0.5], fill={5: 0.5, 8: 0.5})
    flat = np.full(50, 0.5)
    ids, scores = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=flat, n_searched=50)
    assert ids.tolist()[:3] == [5, 3, 8]
    np.testing.assert_allclose(scores[:3], [0.6 * 0.9, 0.6 * 0.4, 0.6 * 0.1])
    assert scores[3:].tolist() == [0.0, 0.0]


def test_adaptive_strong_dense_evidence_counts() -> None:
    background = np.array([-0.1, 0.1] * 500)  # mean 0, std .1
    bm25 = leg([1, 2], [5.0, 4.0], fill={3: 0.0})
    dense = leg([3, 1], [0.8, 0.0], fill={2: 0.0})  # 3 is 8 std above the mean: far above noise
    ids, scores = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=background, n_searched=1000)
    assert ids.tolist() == [3, 1, 2]
    z_shift = expected_max_of_normals(1000) - ADAPTIVE_SHIFT
    excess = (8.0 - z_shift) / ADAPTIVE_RAMP
    assert scores[0] == pytest.approx(0.4 * ADAPTIVE_SOFTNESS * np.logaddexp(0.0, excess / ADAPTIVE_SOFTNESS))
    assert scores[0] == pytest.approx(0.4 * excess, rel=1e-3)  # far above noise, softplus is the identity


def test_adaptive_with_an_empty_leg_or_no_evidence() -> None:
    bm25 = leg([4, 2, 9], [8.0, 5.0, 2.0])
    dense = leg([7, 4], [0.9, 0.3])
    ids, scores = adaptive_fusion(bm25, EMPTY, bm25_ideal=10.0, dense_background=np.zeros(0), n_searched=0)
    assert ids.tolist() == [4, 2, 9]
    np.testing.assert_allclose(scores, [0.8, 0.5, 0.2])
    ids, scores = adaptive_fusion(EMPTY, dense, bm25_ideal=0.0, dense_background=np.zeros(0), n_searched=0)
    assert ids.tolist() == [7, 4]
    np.testing.assert_allclose(scores, [0.9, 0.3])
    ids, scores = adaptive_fusion(EMPTY, EMPTY, bm25_ideal=1.0, dense_background=np.zeros(0), n_searched=0)
    assert ids.tolist() == [] and scores.tolist() == []
    # neither leg above noise (no ideal score, flat background): plain min-max fusion decides
    flat = np.full(10, 0.3)
    ids, scores = adaptive_fusion(bm25, dense, bm25_ideal=0.0, dense_background=flat, n_searched=10)
    expected = convex_combination([bm25, dense], weights=[0.6, 0.4])
    np.testing.assert_array_equal(ids, expected[0])
    np.testing.assert_allclose(scores, expected[1])


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_adaptive_rejects_a_bad_weight(weight: float) -> None:
    with pytest.raises(ConfigError, match="weights"):
        adaptive_fusion(A, B, bm25_ideal=1.0, dense_background=np.array([0.0, 1.0]), n_searched=2,
                        weight=weight)


@pytest.mark.parametrize("seed", range(3))
def test_dbsf_ranks_exactly_like_convex_zscore_when_fills_are_exact(seed: int) -> None:
    # Unclipped DBSF is an affine map of the z-score; clipped, it tied the best candidates of each leg.
    bm25, dense, _ = noise_case(seed)
    for weights in ([0.5, 0.5], [0.3, 0.7]):
        dbsf_ids, _ = distribution_based_fusion([bm25, dense], weights=weights)
        z_ids, _ = convex_combination([bm25, dense], weights=weights, normalization="zscore")
        assert dbsf_ids.tolist() == z_ids.tolist()


@pytest.mark.parametrize("tied", [0.3, 0.7])
def test_a_leg_of_tied_scores_does_not_blow_up_filled_in_scores(tied: float) -> None:
    # Three equal BM25 scores can have a std of 1e-16 from rounding; dividing by it made the filled-in
    # score of a dense-only chunk about -1e12, so BM25 alone decided. Tied scores carry no spread.
    bm25 = leg([1, 2, 3], [tied] * 3, fill={4: 0.0})
    dense = leg([4, 1], [0.9, 0.1], fill={2: 0.05, 3: 0.0})
    for method in ("zscore", "dbsf"):
        ids, fused = convex_combination([bm25, dense], weights=[0.3, 0.7], normalization=method)  # type: ignore[arg-type]
        assert ids[0] == 4 and np.abs(fused).max() < 10


# --- yielding to a confident dense leg on short queries (issue 15: entity search) ---

@pytest.mark.parametrize(("terms", "dense_best", "expected"), [
    (9, 3.0, 0.4),  # a long query keeps the weight, however sure the dense leg
    (2, 0.3, 0.4),  # a short query with an unsure (or broken) dense leg too
    (2, 1.5, YIELD_WEIGHT),  # short and sure: the full yield
    (1, 9.0, YIELD_WEIGHT),
    (5, 1.0, 0.4 + (YIELD_WEIGHT - 0.4) * 0.5 * 0.5),  # halfway on both ramps
])
def test_yielded_weight_needs_a_short_query_and_a_sure_dense_leg(terms: int, dense_best: float,
                                                                 expected: float) -> None:
    assert yielded_weight(0.4, terms, dense_best) == pytest.approx(expected)


def test_yielded_weight_never_lowers_a_larger_weight() -> None:
    assert yielded_weight(0.9, 2, 3.0) == 0.9


def keyword_case() -> tuple[LegCandidates, LegCandidates, np.ndarray]:
    """Two-word query: 1 holds both words (BM25 share 1.0), 2 only one (share 0.5); the dense leg ranks
    2 first, both far above the background."""
    background = np.array([-0.1, 0.1] * 500)  # mean 0, std .1
    bm25 = leg([1, 2, 3], [10.0, 5.0, 4.0])
    dense = leg([2, 1, 3], [0.9, 0.8, 0.1])
    return bm25, dense, background


def test_adaptive_short_query_yields_to_a_sure_dense_leg() -> None:
    bm25, dense, background = keyword_case()
    ids, _ = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=background, n_searched=1000)
    assert ids[0] == 1  # without the query's length BM25's word count decides
    ids, _ = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=background, n_searched=1000,
                             query_terms=2)
    assert ids[0] == 2
    ids, _ = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=background, n_searched=1000,
                             query_terms=9)
    assert ids[0] == 1  # a long query: unchanged


@pytest.mark.parametrize("seed", range(3))
def test_adaptive_short_query_gives_a_noise_dense_leg_no_say(seed: int) -> None:
    bm25, dense, cosine = noise_case(seed)
    plain, _ = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=cosine, n_searched=len(cosine))
    short, _ = adaptive_fusion(bm25, dense, bm25_ideal=10.0, dense_background=cosine, n_searched=len(cosine),
                               query_terms=1)
    assert short[0] == bm25.ids[0]
    assert len(set(short[:10].tolist()) & set(plain[:10].tolist())) >= 9
