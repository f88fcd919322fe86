"""ragkit.adapter: the learned query adapter, on synthetic vectors where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.retrieval.adapter import QueryAdapter, document_disjoint_split, fit_query_adapter
from ragkit.errors import ConfigError


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_validation_questions_share_no_relevant_document_with_training_questions() -> None:
    rng = np.random.default_rng(0)
    relevant = [frozenset(f"d{j}" for j in rng.choice(40, size=rng.integers(1, 3), replace=False)) for _ in range(200)]
    train, validation = document_disjoint_split(relevant, 0.2, seed=1)
    assert len(validation) == 40 and train
    held = set().union(*(relevant[i] for i in validation))
    assert not any(relevant[i] & held for i in train)
    assert not set(train) & set(validation)
    assert document_disjoint_split(relevant, 0.2, seed=1) == (train, validation)  # deterministic


def test_an_adapter_round_trips_through_json_exactly_and_maps_to_unit_vectors() -> None:
    rng = np.random.default_rng(0)
    adapter = QueryAdapter(rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(4, 16)).astype(np.float32))
    again = QueryAdapter.from_dict(adapter.to_dict())
    assert np.array_equal(again.down, adapter.down) and np.array_equal(again.up, adapter.up)
    q = unit(rng.normal(size=(5, 16)))
    out = adapter.apply(q)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.allclose(adapter.apply(q[0]), out[0], atol=1e-6)
    identity = QueryAdapter(np.zeros((16, 4), np.float32), np.zeros((4, 16), np.float32))
    assert np.allclose(identity.apply(q), q, atol=1e-6)
    with pytest.raises(ConfigError, match="16-d"):
        adapter.apply(np.ones(8))
    with pytest.raises(ConfigError, match="malformed"):
        QueryAdapter.from_dict({"dimension": 16, "rank": 4, "down": "!!", "up": ""})


def synthetic(n_docs: int = 300, n_queries: int = 400, dim: int = 32, seed: int = 0):  # type: ignore[no-untyped-def]
    """Questions are their document's vector seen through a fixed distortion plus noise: a map
    that undoes the distortion helps questions about any document, seen in training or not."""
    rng = np.random.default_rng(seed)
    docs = unit(rng.normal(size=(n_docs, dim)))
    distortion = np.eye(dim) + 1.6 * rng.normal(size=(dim, dim)) / np.sqrt(dim)
    answer = rng.integers(0, n_docs, size=n_queries)
    queries = unit(docs[answer] @ distortion + 0.2 * rng.normal(size=(n_queries, dim)))
    return docs, queries, answer


def accuracy(queries: np.ndarray, docs: np.ndarray, answer: np.ndarray) -> float:
    return float(np.mean(np.argmax(queries @ docs.T, axis=1) == answer))


@pytest.mark.slow  # fits an adapter on 400 synthetic questions: seconds
def test_fitting_learns_a_map_that_also_helps_questions_about_unseen_documents() -> None:
    docs, queries, answer = synthetic()
    positives = [np.array([a]) for a in answer]
    relevant = [frozenset({int(a)}) for a in answer]
    fit = fit_query_adapter(queries[:300], positives[:300], docs, relevant[:300], rank=16, max_steps=100)
    assert fit.steps > 0 and fit.validation_loss_after < fit.validation_loss_before
    # The last 100 questions were not used at all; keep only those about documents no training question had.
    seen = {int(a) for a in answer[:300]}
    fresh = np.array([i for i in range(300, 400) if int(answer[i]) not in seen])
    assert len(fresh) >= 10
    before = accuracy(queries[fresh], docs, answer[fresh])
    after = accuracy(fit.adapter.apply(queries[fresh]), docs, answer[fresh])
    assert after > before + 0.2, (before, after)


def test_when_no_step_helps_the_held_out_questions_the_adapter_is_the_identity() -> None:
    # Every question is its answer's own vector, but the training questions are labelled with wrong
    # answers: each step learns the wrong labels and hurts the (correctly labelled) validation
    # questions, so fitting must keep the identity.
    rng = np.random.default_rng(5)
    docs = unit(rng.normal(size=(300, 32)))
    answer = rng.integers(0, 300, size=200)
    relevant = [frozenset({int(a)}) for a in answer]
    _, validation = document_disjoint_split(relevant, 0.2, seed=0)
    labels = [np.array([a]) if i in validation else np.array([(a + 1 + rng.integers(0, 298)) % 300])
              for i, a in enumerate(answer)]
    fit = fit_query_adapter(docs[answer], labels, docs, relevant, rank=8, max_steps=40, folds=1)
    assert fit.steps == 0
    assert fit.validation_loss_after == fit.validation_loss_before
    assert np.allclose(fit.adapter.apply(docs[answer]), docs[answer], atol=1e-6)


def test_fit_rejects_mismatched_inputs_and_questions_without_positives() -> None:
    docs, queries, answer = synthetic(n_queries=50)
    with pytest.raises(ConfigError, match="one entry per question"):
        fit_query_adapter(queries, [np.array([a]) for a in answer][:10], docs, [frozenset({"x"})] * 50)
    with pytest.raises(ConfigError, match="too few"):
        fit_query_adapter(queries, [np.array([], dtype=int)] * 50, docs, [frozenset({"x"})] * 50)
    with pytest.raises(ConfigError, match="rank"):
        fit_query_adapter(queries, [np.array([a]) for a in answer], docs, [frozenset({"x"})] * 50, rank=0)
