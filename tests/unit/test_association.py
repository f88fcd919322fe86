"""ragkit.association: labelled questions as evidence, the pure parts (strengths, lifting, storage)."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.retrieval.association import QueryAssociations, association_strengths, lift_scores
from ragkit.errors import ConfigError


def test_each_document_takes_the_strength_of_its_closest_question_above_the_threshold() -> None:
    similarities = np.array([0.9, 0.55, 0.3, 0.7])
    keys = [("a",), ("a", "b"), ("c",), ("b", "d")]
    got = association_strengths(similarities, keys, threshold=0.5)
    assert set(got) == {"a", "b", "d"}  # "c" only has a question below the threshold
    assert got["a"] == (pytest.approx(0.8), 0)  # (0.9 - 0.5) / (1 - 0.5), from question 0 not question 1
    assert got["b"] == (pytest.approx(0.4), 3) and got["d"] == (pytest.approx(0.4), 3)
    assert association_strengths(similarities, keys, threshold=0.95) == {}
    with pytest.raises(ConfigError, match="association_threshold"):
        association_strengths(similarities, keys, threshold=1.0)


def test_lifting_is_relative_to_the_spread_of_fused_scores_so_any_scale_ranks_alike() -> None:
    fused = np.array([0.9, 0.7, 0.4, 0.1])
    strengths = np.array([0.0, 0.0, 0.0, 0.5])
    lifted = lift_scores(fused, strengths, weight=1.0)
    assert np.array_equal(lifted[:3], fused[:3])
    assert lifted[3] == pytest.approx(0.1 + 0.5 * 0.8)
    for scale in (0.01, 30.0):  # RRF-sized and BM25-sized scores
        assert np.array_equal(np.argsort(-lift_scores(fused * scale, strengths, 1.0)), np.argsort(-lifted))
    assert lift_scores(np.array([2.0]), np.array([1.0]), 0.5)[0] == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="association_weight"):
        lift_scores(fused, strengths, -0.1)


def test_associations_round_trip_through_json_and_skip_unlabelled_questions() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    assoc = QueryAssociations.from_labels(["q0", "q1", "q2"], vectors, [["d2", "d1"], [], ["d3"]], key="source")
    assert assoc.questions == ("q0", "q2") and assoc.keys == (("d1", "d2"), ("d3",))
    again = QueryAssociations.from_dict(assoc.to_dict())
    assert again.questions == assoc.questions and again.keys == assoc.keys and again.key == "source"
    assert np.array_equal(again.vectors, vectors[[0, 2]])
    assert set(again.strengths(vectors[2], threshold=0.0)) >= {"d3"}  # its own question matches
    with pytest.raises(ConfigError, match="malformed"):
        QueryAssociations.from_dict({"questions": ["q"], "keys": [["d"]], "dimension": 8, "vectors": "!!"})
    with pytest.raises(ConfigError, match="one row per question"):
        QueryAssociations(("q",), vectors, (("d",),))


def test_mismatched_labels_and_unusable_weights_are_clear_errors() -> None:
    vectors = np.ones((3, 8), dtype=np.float32)
    with pytest.raises(ConfigError, match="2 questions, 2 label lists and vectors of shape"):
        QueryAssociations.from_labels(["a", "b"], vectors, [["d"], ["e"]])
    assert len(QueryAssociations.from_labels([], np.zeros((0, 8)), [])) == 0
    for weight in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="finite"):
            lift_scores(np.array([1.0, 0.5]), np.array([0.0, 1.0]), weight)
