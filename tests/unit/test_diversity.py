"""Tests for ragkit.diversity: maximal marginal relevance, by hand and as properties."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ragkit.retrieval import diversity
from ragkit.retrieval.diversity import maximal_marginal_relevance
from ragkit.errors import ConfigError

# Two near-duplicates pointing along x, one vector along y, one in between.
VECS = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.7, 0.7]])
QUERY = np.array([1.0, 0.1])


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(diversity).failed == 0


def test_lambda_one_is_relevance_order() -> None:
    relevance = VECS @ QUERY / np.linalg.norm(VECS, axis=1) / np.linalg.norm(QUERY)
    expected = list(np.argsort(-relevance, kind="stable"))
    assert maximal_marginal_relevance(QUERY, VECS, None, k=4, lambda_=1.0) == expected


def test_diversity_skips_the_near_duplicate() -> None:
    by_relevance = maximal_marginal_relevance(QUERY, VECS, None, k=2, lambda_=1.0)
    diverse = maximal_marginal_relevance(QUERY, VECS, None, k=2, lambda_=0.5)
    assert set(by_relevance) == {0, 1}  # the two near-duplicates are the most relevant
    assert diverse[0] == by_relevance[0]
    assert diverse[1] not in (0, 1)  # MMR takes something different second


def test_given_relevance_replaces_query_similarity() -> None:
    # The query vector is ignored when relevance is given: candidate 2 is declared most relevant.
    assert maximal_marginal_relevance(QUERY, VECS, [0.1, 0.2, 0.9, 0.3], k=1)[0] == 2


def test_k_larger_than_candidates_and_zero() -> None:
    assert sorted(maximal_marginal_relevance(QUERY, VECS, None, k=10)) == [0, 1, 2, 3]
    assert maximal_marginal_relevance(QUERY, VECS, None, k=0) == []
    assert maximal_marginal_relevance(QUERY, np.zeros((0, 2)), None, k=3) == []


def test_ties_go_to_the_lower_index() -> None:
    same = np.ones((3, 2))
    assert maximal_marginal_relevance([1.0, 1.0], same, None, k=3) == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lambda_": 1.5}, "lambda_ must be in [0, 1]"),
        ({"k": -1}, "k must be >= 0"),
        ({"relevance": [1.0, 2.0]}, "2 scores for 4 candidates"),
        ({"query_vector": [1.0, 0.0, 0.0]}, "dimension 3"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    args = {"query_vector": QUERY, "candidate_vectors": VECS, "relevance": None, "k": 2, **kwargs}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        maximal_marginal_relevance(**args)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 12),
    k=st.integers(0, 15),
    lambda_=st.floats(0.0, 1.0),
)
def test_mmr_properties(data: st.DataObject, n: int, k: int, lambda_: float) -> None:
    floats = st.floats(-1.0, 1.0, allow_nan=False, width=32)
    vectors = data.draw(arrays(np.float64, (n, 3), elements=floats))
    relevance = data.draw(arrays(np.float64, (n,), elements=st.floats(0.0, 1.0, width=32)))
    picked = maximal_marginal_relevance(np.ones(3), vectors, relevance, k, lambda_)
    assert len(picked) == min(k, n)
    assert len(set(picked)) == len(picked)
    assert all(0 <= i < n for i in picked)
    if picked and lambda_ > 0:  # the first pick has no redundancy, so it is the most relevant
        assert relevance[picked[0]] == relevance.max()


def test_a_vanishing_lambda_still_picks_the_most_relevant_first() -> None:
    # 5e-324 * 0.5 rounds to 0.0: every gain ties, and the tie must go to relevance (found by hypothesis).
    picked = maximal_marginal_relevance(np.ones(3), np.zeros((2, 3)), np.array([0.0, 0.5]), 1, 5e-324)
    assert picked == [1]
