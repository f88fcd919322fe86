"""``ragkit.storage.dense.DenseIndex``: exact and HNSW inner-product search, masks, appends and row removal."""

from __future__ import annotations

import numpy as np
import pytest

from fakes import embed
from ragkit.errors import ConfigError
from ragkit.storage.dense import DENSE_KINDS, DenseIndex


def unit_rows(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", DENSE_KINDS)
def test_top_k_is_the_exact_nearest_rows_best_first(kind: str) -> None:
    vectors = unit_rows(200)
    query = unit_rows(1, seed=1)[0]
    ids, scores = DenseIndex(vectors, kind).top_k(query, 10)
    expected = np.argsort(-(vectors @ query), kind="stable")[:10]
    assert ids.dtype == np.int64 and len(ids) == 10
    assert ids.tolist() == expected.tolist()  # HNSW at this size (efSearch 128) is exact too
    assert np.allclose(scores, (vectors @ query)[ids], atol=1e-5)
    assert np.all(np.diff(scores) <= 1e-6)


@pytest.mark.parametrize("kind", DENSE_KINDS)
def test_a_mask_restricts_the_search_before_the_cut(kind: str) -> None:
    vectors = unit_rows(100)
    query = vectors[0]
    mask = np.zeros(100, dtype=bool)
    mask[[5, 50, 99]] = True
    ids, _ = DenseIndex(vectors, kind).top_k(query, 10, mask)
    assert sorted(ids.tolist()) == [5, 50, 99]
    assert DenseIndex(vectors, kind).top_k(query, 3, np.zeros(100, dtype=bool))[0].size == 0


def test_k_larger_than_the_rows_and_empty_indexes() -> None:
    vectors = unit_rows(3)
    ids, scores = DenseIndex(vectors).top_k(vectors[1], 50)
    assert ids[0] == 1 and scores[0] == pytest.approx(1.0, abs=1e-5) and sorted(ids.tolist()) == [0, 1, 2]
    assert DenseIndex(vectors).top_k(vectors[1], 0)[0].size == 0
    empty = DenseIndex(np.zeros((0, 16), np.float32))
    assert empty.n_rows == 0 and empty.top_k(vectors[0], 5)[0].size == 0


def test_append_and_keep_rows_give_new_indexes_and_leave_the_old_one() -> None:
    first = DenseIndex(unit_rows(4))
    more = unit_rows(2, seed=3)
    grown = first.append(more)
    assert (first.n_rows, grown.n_rows, grown.dimension) == (4, 6, 16)
    assert np.array_equal(grown.vectors[4:], more)
    kept = grown.keep_rows(np.array([True, False, True, False, False, True]))
    assert kept.n_rows == 3 and np.array_equal(kept.vectors[2], more[1])
    ids, _ = kept.top_k(more[1], 1)
    assert ids.tolist() == [2]  # row ids are positions in the new index
    with pytest.raises(ConfigError, match="dimension"):
        grown.append(unit_rows(1, dim=8))


def test_related_texts_rank_above_unrelated_ones_with_the_fake_vectors() -> None:
    texts = ["oxalic acid for varroa", "bees swarm in spring", "a swarm of bees"]
    index = DenseIndex(np.stack([embed(t) for t in texts]))
    ids, scores = index.top_k(embed("swarming bees"), 3)
    assert sorted(ids[:2].tolist()) == [1, 2] and ids[2] == 0 and scores[1] > scores[2]


def test_an_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="flat"):
        DenseIndex(unit_rows(2), "ivf")  # type: ignore[arg-type]
