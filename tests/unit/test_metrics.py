"""Tests for ragkit.metrics: hand-computed cases, properties, and agreement with ranx."""

from __future__ import annotations

import doctest
import math
import random
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit.evaluation import metrics
from ragkit.errors import ConfigError, DatasetError
from ragkit.evaluation.metrics import (
    average_precision,
    dedupe_ranking,
    doc_ranking_from_hits,
    evaluate,
    mrr_at_k,
    ndcg_at_k,
    per_query,
    precision_at_k,
    recall_at_k,
)
from ragkit.types import Hit

# One ranking and its judgements, used by the hand-computed tests below.
# Ranks:      1    2    3    4    5
RANKING = ["a", "x", "b", "z", "c"]
RELEVANT = {"a": 2, "b": 1, "c": 1, "z": 0}  # z is judged not relevant; R = 3


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(metrics, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_ndcg_hand_computed() -> None:
    # DCG@5  = 2/log2(2) + 0 + 1/log2(4) + 0 + 1/log2(6) = 2 + 0.5 + 0.38685 = 2.88685
    # IDCG@5 = ideal gains [2, 1, 1] -> 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.63093 + 0.5 = 3.13093
    expected = (2 + 1 / 2 + 1 / math.log2(6)) / (2 + 1 / math.log2(3) + 1 / 2)
    assert ndcg_at_k(RANKING, RELEVANT, 5) == pytest.approx(expected, abs=1e-12)
    assert ndcg_at_k(RANKING, RELEVANT, 5) == pytest.approx(0.92204, abs=1e-5)
    # @2: DCG = 2/1 + 0; the ideal is cut at 2 too: 2/1 + 1/log2(3)
    assert ndcg_at_k(RANKING, RELEVANT, 2) == pytest.approx(2 / (2 + 1 / math.log2(3)), abs=1e-12)
    # Linear gain, not 2**rel - 1: a lone grade-2 doc at rank 2 gives (2/log2 3) / (2/1).
    assert ndcg_at_k(["x", "a"], {"a": 2}, 10) == pytest.approx(1 / math.log2(3), abs=1e-12)


def test_recall_precision_mrr_hand_computed() -> None:
    assert recall_at_k(RANKING, RELEVANT, 1) == pytest.approx(1 / 3)  # a
    assert recall_at_k(RANKING, RELEVANT, 3) == pytest.approx(2 / 3)  # a, b
    assert recall_at_k(RANKING, RELEVANT, 100) == pytest.approx(1.0)
    assert precision_at_k(RANKING, RELEVANT, 5) == pytest.approx(3 / 5)  # a, b, c
    assert precision_at_k(RANKING, RELEVANT, 10) == pytest.approx(3 / 10)  # divided by k, not by 5 retrieved
    assert precision_at_k(RANKING, RELEVANT, None) == pytest.approx(3 / 5)
    assert mrr_at_k(RANKING, RELEVANT, 10) == 1.0
    assert mrr_at_k(["x", "z", "b"], RELEVANT, 10) == pytest.approx(1 / 3)  # z (grade 0) is not a hit
    assert mrr_at_k(["x", "z", "b"], RELEVANT, 2) == 0.0


def test_average_precision_hand_computed() -> None:
    # Hits at ranks 1, 3, 5: precisions 1/1, 2/3, 3/5; AP = (1 + 2/3 + 3/5) / 3 = 34/45
    assert average_precision(RANKING, RELEVANT) == pytest.approx(34 / 45, abs=1e-12)
    # Truncated at 3: (1 + 2/3) / R=3 = 5/9
    assert average_precision(RANKING, RELEVANT, 3) == pytest.approx(5 / 9, abs=1e-12)
    # Truncated at 2: only rank 1 hits; divided by R=3 (trec_eval map_cut), not min(R, k)=2.
    assert average_precision(RANKING, RELEVANT, 2) == pytest.approx(1 / 3, abs=1e-12)


def test_no_relevant_documents_scores_zero() -> None:
    only_negative = {"a": 0, "b": -1}
    for fn in (ndcg_at_k, recall_at_k, precision_at_k, mrr_at_k, average_precision):
        assert fn(["a", "b"], only_negative, 10) == 0.0
        assert fn(["a", "b"], {}, 10) == 0.0
        assert fn([], {"a": 1}, 10) == 0.0


def test_negative_grade_does_not_enter_ideal_dcg() -> None:
    # If z (grade 0) or n (grade -1) entered the ideal, a perfect ranking would score below 1.
    assert ndcg_at_k(["a", "b"], {"a": 1, "b": 1, "z": 0, "n": -1}, 10) == pytest.approx(1.0)


def test_dedupe_keeps_first_occurrence() -> None:
    assert dedupe_ranking(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]
    with pytest.raises(TypeError):
        dedupe_ranking("d1")


def test_duplicates_never_exceed_one_and_collapse_before_cutoff() -> None:
    assert ndcg_at_k(["a", "a", "a"], {"a": 1}, 3) == 1.0
    assert recall_at_k(["a", "a", "a"], {"a": 1}, 3) == 1.0
    assert average_precision(["a", "a", "a"], {"a": 1}) == 1.0
    assert precision_at_k(["a", "a", "a"], {"a": 1}, 3) == pytest.approx(1 / 3)  # counted once
    # Deduplication happens before the cut-off: [a, a, b] is [a, b], so b is inside the top 2.
    assert recall_at_k(["a", "a", "b"], {"a": 1, "b": 1}, 2) == 1.0


def test_doc_ranking_from_hits_counts_a_document_once_at_its_best_rank() -> None:
    hits = [
        Hit(chunk_id="A#2", doc_id="A", text="", score=0.9, metadata={"source": "a.md"}),
        Hit(chunk_id="B#0", doc_id="B", text="", score=0.8),
        Hit(chunk_id="A#0", doc_id="A", text="", score=0.7, metadata={"source": "a.md"}),
        Hit(chunk_id="C#1", doc_id="C", text="", score=0.6, metadata={"source": "c.md"}),
    ]
    assert doc_ranking_from_hits(hits) == ["A", "B", "C"]
    # B has no source: it keeps rank 2 but matches nothing.
    by_source = doc_ranking_from_hits(hits, key="source")
    assert by_source[0] == "a.md" and by_source[2] == "c.md" and len(by_source) == 3
    assert doc_ranking_from_hits([h.to_dict() for h in hits]) == ["A", "B", "C"]
    with pytest.raises(ConfigError):
        doc_ranking_from_hits(hits, key="chunk")


def test_evaluate_means_over_qrels_queries_and_missing_queries_score_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": ["a"], "q3": ["b"]}  # q2 missing (scores 0); q3 not judged (ignored)
    assert evaluate(run, qrels, ["ndcg@10", "mrr@10"]) == {"ndcg@10": 0.5, "mrr@10": 0.5}
    assert per_query(run, qrels, ["mrr@10"]) == {"q1": {"mrr@10": 1.0}, "q2": {"mrr@10": 0.0}}
    assert evaluate(run, qrels, "recall@5") == {"recall@5": 0.5}
    assert set(evaluate(run, qrels)) == {"ndcg@10", "recall@100", "mrr@10", "map"}


def test_evaluate_accepts_hits_and_score_dicts() -> None:
    qrels = {"q1": {"b": 1}}
    hits = [
        Hit(chunk_id="a0", doc_id="a", text="", score=2.0),
        Hit(chunk_id="b0", doc_id="b", text="", score=1.0),
    ]
    assert evaluate({"q1": hits}, qrels, ["mrr"]) == {"mrr": 0.5}
    assert evaluate({"q1": {"a": 0.1, "b": 0.9}}, qrels, ["mrr"]) == {"mrr": 1.0}


@pytest.mark.parametrize("name", ["ndgc@10", "ndcg@0", "ndcg@x", "ndcg@", "recall@-1", ""])
def test_bad_metric_names_raise_config_error_listing_valid_names(name: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        evaluate({"q1": ["a"]}, {"q1": {"a": 1}}, [name])
    assert name in str(excinfo.value) or "unknown metric" in str(excinfo.value)
    if name.startswith("ndgc") or not name:
        assert "map, mrr, ndcg, precision, recall" in str(excinfo.value)


def test_bad_cutoff_and_empty_qrels() -> None:
    with pytest.raises(ConfigError):
        ndcg_at_k(["a"], {"a": 1}, 0)
    with pytest.raises(DatasetError):
        evaluate({"q1": ["a"]}, {}, ["map"])


# --- properties --------------------------------------------------------------------------------

DOC_IDS = [f"d{i}" for i in range(12)]
ALL_METRICS = (ndcg_at_k, recall_at_k, precision_at_k, mrr_at_k, average_precision)


@settings(max_examples=300, deadline=None)
@given(
    ranking=st.lists(st.sampled_from(DOC_IDS), max_size=30),  # duplicates allowed on purpose
    relevant=st.dictionaries(st.sampled_from(DOC_IDS), st.integers(-1, 3)),
    k=st.one_of(st.none(), st.integers(1, 25)),
)
def test_every_metric_lies_in_unit_interval(
    ranking: list[str], relevant: dict[str, int], k: int | None
) -> None:
    for fn in ALL_METRICS:
        assert 0.0 <= fn(ranking, relevant, k) <= 1.0 + 1e-12, fn.__name__


@settings(max_examples=300, deadline=None)
@given(
    relevant=st.dictionaries(st.sampled_from(DOC_IDS), st.integers(1, 3), min_size=1),
    k=st.integers(1, 25),
    data=st.data(),
)
def test_perfect_ranking_scores_one(relevant: dict[str, int], k: int, data: st.DataObject) -> None:
    ideal = sorted(relevant, key=lambda d: -relevant[d])
    rest = data.draw(st.permutations([d for d in DOC_IDS if d not in relevant]))
    ranking = ideal + list(rest)
    big_r = len(relevant)
    assert ndcg_at_k(ranking, relevant, k) == pytest.approx(1.0)
    assert mrr_at_k(ranking, relevant, k) == 1.0
    assert average_precision(ranking, relevant) == pytest.approx(1.0)
    # With a cut-off the trec_eval denominators show: R for recall and AP, k for precision.
    assert recall_at_k(ranking, relevant, k) == pytest.approx(min(1.0, k / big_r))
    assert average_precision(ranking, relevant, k) == pytest.approx(min(1.0, k / big_r))
    assert precision_at_k(ranking, relevant, k) == pytest.approx(min(1.0, big_r / k))


# --- agreement with ranx -------------------------------------------------------------------------


def _random_case(seed: int) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    """50 queries over 400 docs: grades 1-2 (plus some judged 0), rankings mixing in relevant docs."""
    rng = random.Random(seed)
    docs = [f"doc{i}" for i in range(400)]
    qrels, run = {}, {}
    for q in range(50):
        judged = rng.sample(docs, rng.randint(1, 25))
        grades = {d: rng.choice([0, 1, 1, 2]) for d in judged}
        if all(g == 0 for g in grades.values()) and q % 5:
            grades[judged[0]] = 1  # mostly queries with something relevant, a few without
        relevant = [d for d, g in grades.items() if g > 0]
        found = rng.sample(relevant, rng.randint(0, len(relevant)))
        others = rng.sample(docs, rng.randint(0, 150))
        ranking = dedupe_ranking(found + others)
        rng.shuffle(ranking)
        if not ranking:
            ranking = [docs[0]]
        qrels[f"q{q}"] = grades
        run[f"q{q}"] = ranking
    return qrels, run


@pytest.mark.slow  # importing ranx compiles numba code: seconds
@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_ranx(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    qrels, run = _random_case(seed)
    # ranx needs scores: descending by rank, so its sort reproduces our order exactly.
    rx_run = ranx.Run({q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in run.items()})
    rx_qrels = ranx.Qrels(qrels)
    names = [f"{m}@{k}" for m in ("ndcg", "recall", "precision", "mrr", "map") for k in (1, 5, 10, 100)]
    names += ["ndcg", "recall", "mrr", "map"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter inside ranx
        expected = ranx.evaluate(rx_qrels, rx_run, names, return_mean=False)
    ours = per_query(run, qrels, names)
    qids = list(rx_run.get_query_ids())  # ranx's per-query order
    for name in names:
        for i, qid in enumerate(qids):
            assert ours[qid][name] == pytest.approx(float(expected[name][i]), abs=1e-9), (name, qid)
    means = evaluate(run, qrels, names)
    for name in names:
        assert means[name] == pytest.approx(float(expected[name].mean()), abs=1e-9), name
