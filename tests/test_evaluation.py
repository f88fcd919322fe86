"""ragkit.evaluation and `ragkit eval/tune`: measured on a small real index with labelled queries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragkit.datasets import EvalDataset
from ragkit.errors import ConfigError
from ragkit.evaluation import MIN_TUNING_QUERIES, evaluate_index, tune, tuning_grid

TOPICS = {
    "varroa": "Varroa mites feed on bee brood; treat with oxalic acid when the mite count passes three per hundred bees.",
    "swarm": "A colony swarms in late spring when crowded: the old queen leaves with half the workers.",
    "honey": "Extract honey when frames are capped and moisture is below eighteen percent, using a centrifugal extractor.",
    "wax": "Render beeswax by melting old comb in water and straining it through cloth into a mould.",
    "winter": "Overwintering colonies need about twenty kilograms of stores and good ventilation against damp.",
    "smoker": "A smoker calms bees by masking alarm pheromone; light it with pine needles and keep the smoke cool.",
}
QUESTIONS = {
    "varroa": ["how do I deal with mites", "oxalic acid treatment threshold", "parasites on brood"],
    "swarm": ["why do colonies swarm", "queen leaves with workers", "crowded hive in spring"],
    "honey": ["when to extract honey", "honey moisture level", "centrifugal extractor use"],
    "wax": ["how to render beeswax", "melting old comb", "straining wax into a mould"],
    "winter": ["how much food for winter", "overwintering stores", "damp and ventilation in winter"],
    "smoker": ["how to light a smoker", "why smoke calms bees", "alarm pheromone masking"],
}


@pytest.fixture(scope="module")
def topic_index(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from ragkit import Document, Index

    index = Index(tmp_path_factory.mktemp("eval") / "kb.ragkit", show_progress=False)
    index.add(Document(topic, text, {"source": f"{topic}.md"}) for topic, text in TOPICS.items())
    yield index
    index.close()


def dataset(n_per_topic: int = 3) -> EvalDataset:
    queries, qrels = {}, {}
    for topic, questions in QUESTIONS.items():
        for i, q in enumerate(questions[:n_per_topic]):
            queries[f"{topic}{i}"] = q
            qrels[f"{topic}{i}"] = {topic: 1}
    return EvalDataset(corpus=None, queries=queries, qrels=qrels, name="topics")


def test_evaluate_index_scores_each_mode_and_keeps_per_query_results(topic_index) -> None:  # type: ignore[no-untyped-def]
    data = dataset()
    for mode in ("bm25", "dense", "hybrid"):
        result = evaluate_index(topic_index, data, {"mode": mode})
        assert 0.0 <= result.scores["ndcg@10"] <= 1.0
        assert set(result.per_query) == set(data.queries)
    # Dense understands paraphrases ("parasites on brood") that share no term with the document.
    dense = evaluate_index(topic_index, data, {"mode": "dense"})
    assert dense.scores["mrr@10"] > 0.7


def test_tune_refuses_too_few_queries(topic_index) -> None:  # type: ignore[no-untyped-def]
    small = dataset(n_per_topic=1)
    assert len(small.queries) < MIN_TUNING_QUERIES
    with pytest.raises(ConfigError, match=f"at least {MIN_TUNING_QUERIES}"):
        tune(topic_index, small)


def test_tune_reports_train_and_heldout_and_never_accepts_worse_than_default(topic_index) -> None:  # type: ignore[no-untyped-def]
    data = dataset()
    # 18 queries: reuse them twice under other ids so training reaches the minimum.
    train = EvalDataset(None, {**data.queries, **{k + "b": v for k, v in data.queries.items()}},
                        {**data.qrels, **{k + "b": v for k, v in data.qrels.items()}}, "train")
    result = tune(topic_index, train, data, grid=tuning_grid()[:6], depths=(50,))
    assert result.train_score >= result.default_train_score - 1e-12  # the default is in the search space's reach
    assert result.heldout_score is not None and result.default_heldout_score is not None
    assert result.accepted == (result.heldout_score >= result.default_heldout_score)


def test_saved_settings_are_used_by_plain_search(tmp_path: Path, topic_index) -> None:  # type: ignore[no-untyped-def]
    topic_index.save_retrieval_settings({"method": "rrf", "rrf_k": 5, "weight": 0.5})
    try:
        assert topic_index.retriever().method == "rrf"
        from ragkit import Index

        reopened = Index(topic_index.path)
        assert reopened.retriever().settings()["rrf_k"] == 5
        hits = reopened.search("oxalic acid")
        expected = reopened.search("oxalic acid", method="rrf", rrf_k=5)
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in expected]
        with pytest.raises(ConfigError):
            reopened.save_retrieval_settings({"method": "bogus"})
    finally:
        topic_index.save_retrieval_settings({})


def test_cli_eval_on_a_beir_folder(tmp_path: Path) -> None:
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    with open(beir / "corpus.jsonl", "w") as fh:
        for topic, text in TOPICS.items():
            fh.write(json.dumps({"_id": topic, "title": topic, "text": text}) + "\n")
    data = dataset()
    with open(beir / "queries.jsonl", "w") as fh:
        for qid, q in data.queries.items():
            fh.write(json.dumps({"_id": qid, "text": q}) + "\n")
    with open(beir / "qrels" / "test.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, rel in data.qrels.items():
            for doc in rel:
                fh.write(f"{qid}\t{doc}\t1\n")
    out = tmp_path / "eval.json"
    per_query = tmp_path / "per_query.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", "eval", "--index", str(tmp_path / "kb.ragkit"), "--beir", str(beir),
         "--json", str(out), "--per-query", str(per_query), "-q", "--config", '{"method": "rrf"}'],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ndcg@10" in proc.stdout and "bm25" in proc.stdout
    results = json.loads(out.read_text())
    assert {r["name"] for r in results} >= {"bm25", "dense", "hybrid"}
    assert len(per_query.read_text().splitlines()) == len(results) * len(data.queries)
