"""ragkit.evaluation and `ragkit eval/tune`: measured on a small real index with labelled queries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragkit.evaluation.datasets import EvalDataset
from ragkit.errors import ConfigError
from ragkit.evaluation.measure import evaluate_index
from ragkit.evaluation.tuning import MIN_TUNING_QUERIES, tune, tuning_grid

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
        from ragkit.retrieval.association import QueryAssociations

        labels = QueryAssociations.from_labels(["q"], np.ones((1, 384), np.float32), [["varroa"]])
        with pytest.raises(ConfigError, match="save_query_associations"):
            reopened.save_retrieval_settings({"associations": labels})
        assert reopened.config.retrieval == {"method": "rrf", "rrf_k": 5, "weight": 0.5}  # unchanged
        settings = reopened.retriever(weight=np.float32(0.25), associations=labels).settings()
        assert settings["weight"] == 0.25 and type(settings["weight"]) is float and settings["associations"] is True
        reopened.save_retrieval_settings(settings)  # what settings() gives can always be saved
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


def doubled(data: EvalDataset, name: str = "train") -> EvalDataset:
    """``data`` twice over (the copies reworded), to reach the tuning minimum with few topics."""
    queries = {**data.queries, **{k + "b": f"tell me {v}" for k, v in data.queries.items()}}
    qrels = {**data.qrels, **{k + "b": v for k, v in data.qrels.items()}}
    return EvalDataset(None, queries, qrels, name)


def test_tune_with_an_adapter_chooses_fusion_on_plain_vectors_and_keeps_the_guard(topic_index) -> None:  # type: ignore[no-untyped-def]
    from ragkit.evaluation.measure import UNTUNED_SETTINGS

    data = dataset()
    train = doubled(data)
    result = tune(topic_index, train, data, grid=tuning_grid()[:3], depths=(50,), adapter=True, adapter_rank=4)
    assert result.adapter is not None and result.adapter.n_validation > 0
    assert result.best["query_adapter"] is True
    # Trials are scored without the adapter (it was trained on these very queries).
    setting, trial_score = result.trials[1]
    plain = evaluate_index(topic_index, train, {"mode": "hybrid", **UNTUNED_SETTINGS, **setting}, metrics=["ndcg@10"])
    assert trial_score == pytest.approx(plain.scores["ndcg@10"])
    assert result.accepted == (result.heldout_score >= result.default_heldout_score)
    # The default is scored without any adapter: it matches a plain untuned evaluation.
    plain = evaluate_index(topic_index, data, {"mode": "hybrid", "query_adapter": False}, metrics=["ndcg@10"])
    assert result.default_heldout_score == pytest.approx(plain.scores["ndcg@10"])


def test_a_saved_query_adapter_is_applied_by_plain_search_after_reopening(topic_index) -> None:  # type: ignore[no-untyped-def]
    from ragkit import Index
    from ragkit.retrieval.adapter import QueryAdapter

    rng = np.random.default_rng(0)
    dim = topic_index.embedder.dimension
    adapter = QueryAdapter(rng.normal(size=(dim, 8)).astype(np.float32), rng.normal(size=(8, dim)).astype(np.float32))
    query = "how do I deal with mites"
    topic_index.save_query_adapter(adapter)
    try:
        reopened = Index(topic_index.path, show_progress=False)
        assert reopened.query_adapter is not None
        adapted = adapter.apply(reopened.embed_query(query))
        hits = reopened.search(query, mode="dense")
        by_hand = reopened.search(query, mode="dense", query_vector=reopened.embed_query(query))
        expected = reopened.search(query, mode="dense", query_vector=adapted, query_adapter=False)
        assert [h.dense_score for h in hits] == pytest.approx([h.dense_score for h in expected])
        assert [h.dense_score for h in by_hand] == pytest.approx([h.dense_score for h in expected])
        unadapted = reopened.search(query, mode="dense", query_adapter=False)
        assert [h.dense_score for h in unadapted] != pytest.approx([h.dense_score for h in hits])
        reopened.close()
    finally:
        topic_index.save_query_adapter(None)
    assert Index(topic_index.path, show_progress=False).query_adapter is None


def labelled_copy(tmp_path: Path, index, data: EvalDataset | None = None) -> tuple[Path, Path, EvalDataset]:  # type: ignore[no-untyped-def]
    """A copy of ``index`` to tune, and ``data`` (the doubled topic questions) as a labelled JSONL file."""
    import shutil

    index_dir = tmp_path / "kb.ragkit"
    shutil.copytree(index.path, index_dir)
    labelled = tmp_path / "labelled.jsonl"
    data = data or doubled(dataset())
    with open(labelled, "w") as fh:
        for qid, q in data.queries.items():
            fh.write(json.dumps({"question": q, "relevant_doc_ids": list(data.qrels[qid])}) + "\n")
    return index_dir, labelled, data


def test_cli_tune_with_an_adapter_saves_it_and_eval_reports_tuned_and_untuned(tmp_path: Path, topic_index) -> None:  # type: ignore[no-untyped-def]
    index_dir, labelled, data = labelled_copy(tmp_path, topic_index)
    out = tmp_path / "tune.json"
    cli = [sys.executable, "-m", "ragkit.cli"]
    proc = subprocess.run(cli + ["tune", "--index", str(index_dir), "--queries", str(labelled), "--adapter",
                                 "--adapter-rank", "4", "--json", str(out), "--force", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "query adapter: rank 4" in proc.stdout and "document-disjoint" in proc.stdout
    report = json.loads(out.read_text())
    assert report["best"]["query_adapter"] is True and report["heldout"] is not None
    from ragkit import Index

    with Index(index_dir, show_progress=False) as saved:
        assert saved.query_adapter is not None and saved.query_adapter.down.shape[1] == 4
        assert saved.retriever().query_adapter is True
    proc = subprocess.run(cli + ["eval", "--index", str(index_dir), "--queries", str(labelled), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "hybrid (untuned default)" in proc.stdout


def mislabelled(data: EvalDataset) -> EvalDataset:
    """Each question labelled with the *next* topic's document: answers neither leg can find, which
    only the labels themselves (associations) can supply."""
    topics = list(TOPICS)
    qrels = {q: {topics[(topics.index(next(iter(rel))) + 1) % len(topics)]: 1} for q, rel in data.qrels.items()}
    return EvalDataset(None, dict(data.queries), qrels, data.name + "-mislabelled")


def test_tune_with_associations_cross_validates_them_and_keeps_the_guard(topic_index) -> None:  # type: ignore[no-untyped-def]
    from ragkit.evaluation.tuning import ASSOCIATION_GRID

    # Questions the legs answer already: associations can add nothing, so tune must not keep them.
    plain = tune(topic_index, doubled(dataset()), grid=tuning_grid()[:3], depths=(50,), associate=True)
    assert [p for p, _ in plain.association_cv] == ASSOCIATION_GRID
    assert all(0.0 <= s <= 1.0 for _, s in plain.association_cv)
    assert plain.associations is None and "associations" not in plain.best
    # Labels the legs cannot find: the other fold's twin question supplies them, and they are kept.
    train, heldout = doubled(mislabelled(dataset())), mislabelled(dataset(n_per_topic=3))
    result = tune(topic_index, train, heldout, grid=tuning_grid()[:3], depths=(50,), associate=True)
    assert result.associations is not None and len(result.associations) == len(train.queries)
    assert result.best["associations"] is True
    assert result.train_score == max(s for _, s in result.association_cv) > result.default_train_score + 0.2
    assert result.accepted and result.heldout_score > result.default_heldout_score + 0.2


def test_saved_associations_are_used_by_plain_search_after_reopening(topic_index) -> None:  # type: ignore[no-untyped-def]
    from ragkit import Index
    from ragkit.retrieval.association import QueryAssociations

    question = "what do I need before my first hive inspection"
    before = topic_index.search(question, k=6)
    target = before[-1].doc_id
    topic_index.save_query_associations(
        QueryAssociations.from_labels([question], topic_index.embed_query(question)[None, :], [[target]]))
    try:
        with Index(topic_index.path, show_progress=False) as reopened:
            assert len(reopened.query_associations) == 1 and reopened.info()["query_associations"] == 1
            assert reopened.search(question, k=6)[0].doc_id == target
            assert reopened.search(question, k=6, associations=False)[0].doc_id == before[0].doc_id
    finally:
        topic_index.save_query_associations(None)
    with Index(topic_index.path, show_progress=False) as reopened:
        assert reopened.query_associations is None
        assert reopened.search(question, k=6)[0].doc_id == before[0].doc_id


def test_cli_tune_with_associate_saves_the_training_questions(tmp_path: Path, topic_index) -> None:  # type: ignore[no-untyped-def]
    index_dir, labelled, data = labelled_copy(tmp_path, topic_index, doubled(mislabelled(dataset())))
    out = tmp_path / "tune.json"
    cli = [sys.executable, "-m", "ragkit.cli"]
    proc = subprocess.run(cli + ["tune", "--index", str(index_dir), "--queries", str(labelled), "--associate",
                                 "--json", str(out), "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "labelled questions kept as evidence" in proc.stdout
    report = json.loads(out.read_text())
    assert len(report["association_cv"]) == 16 and report["best"]["associations"] is True
    assert report["heldout"] > report["default_heldout"]
    from ragkit import Index

    with Index(index_dir, show_progress=False) as saved:  # the 30 % held out by --holdout are not among them
        assert 0 < len(saved.query_associations) < len(data.queries)
    proc = subprocess.run(cli + ["eval", "--index", str(index_dir), "--queries", str(labelled), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "their 'hybrid' scores use their own labels" in proc.stderr
