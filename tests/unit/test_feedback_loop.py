"""The feedback loop while serving (ragkit.feedback.refresh, Index.reload_learned): ratings posted to a
running server become query associations in a background thread and its /search uses them without a
restart; a failed run keeps the old ones. Fake embedder, real SQLite, the app over HTTP in-process."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fakes import FakeEmbedder, open_fake_index
from fastapi.testclient import TestClient
from feedback_corpus import approve_targets, documents, record_for, topics

from ragkit.cli.commands import main
from ragkit.errors import ConfigError
from ragkit.evaluation.datasets import EvalDataset
from ragkit.evaluation.measure import evaluate_over_untuned
from ragkit.feedback import FeedbackStore, tune_from_feedback
from ragkit.feedback.demotion import downvoted
from ragkit.feedback.refresh import FeedbackRefresher
from ragkit.pipeline.rag import RAG
from ragkit.prompting.builder import PromptBuilder
from ragkit.retrieval.association import QueryAssociations
from ragkit.server.app import create_app

TOPICS = topics()


def cite(kind: str):  # type: ignore[no-untyped-def]
    """A generator whose answer cites the prompt's passage from the ``kind/`` folder."""
    def generate(messages, **options):  # type: ignore[no-untyped-def]
        marker = re.search(rf"\[(\d+)\] {kind}/", messages[-1]["content"])
        return f"Ask the keeper [{marker.group(1) if marker else 1}]."
    return generate


@pytest.fixture
def kb(tmp_path: Path):  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.add(documents(TOPICS))
        yield index


def serve(index, kind: str = "care") -> TestClient:  # type: ignore[no-untyped-def]
    rag = RAG(index, PromptBuilder("qa", min_score=None), cite(kind), k=5)
    return TestClient(create_app(rag), base_url="http://127.0.0.1")


def rate(c: TestClient, question: str, rating: str) -> None:
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]})
    assert r.status_code == 200, r.text
    r = c.post("/v1/feedback", json={"completion_id": r.json()["id"], "rating": rating})
    assert r.status_code == 200, r.text


def hit_for(c: TestClient, question: str, doc_id: str) -> dict:  # type: ignore[type-arg]
    r = c.post("/search", json={"query": question, "k": 10})
    assert r.status_code == 200, r.text
    return next(h for h in r.json()["hits"] if h["doc_id"] == doc_id)


def test_a_running_server_lifts_approved_documents_after_a_background_refresh(kb) -> None:  # type: ignore[no-untyped-def]
    c = serve(kb)
    unrated = [f"Who tends the {t.thing} in {t.place} these days?" for t in TOPICS]
    before = [hit_for(c, q, t.target) for q, t in zip(unrated, TOPICS)]
    for t in TOPICS:
        for question in t.questions():
            rate(c, question, "up")
    refresher = FeedbackRefresher(kb, every=0.05).start()
    try:
        deadline = time.monotonic() + 60
        while refresher.saved == 0 and refresher.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refresher.saved == 1 and refresher.last_error is None
        time.sleep(0.2)  # more ticks, no new feedback: no second run
        assert refresher.runs == 1
    finally:
        refresher.stop()
    after = [hit_for(c, q, t.target) for q, t in zip(unrated, TOPICS)]
    lifted = [a["rank"] < b["rank"] for a, b in zip(after, before)]
    assert sum(lifted) == len(TOPICS)  # measured: 16 of 16
    assert all(a["associated_question"] in t.questions() for a, t in zip(after, TOPICS))


def test_a_failed_refresh_keeps_the_old_associations_and_is_retried(kb, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ragkit.feedback import refresh

    c = serve(kb)
    for t in TOPICS[:2]:
        rate(c, t.questions()[0], "up")
    kept = kb.query_associations
    refresher = FeedbackRefresher(kb, every=60)
    monkeypatch.setattr(refresh, "tune_from_feedback", lambda *a, **o: (_ for _ in ()).throw(OSError("disk gone")))
    assert refresher.refresh() is False and isinstance(refresher.last_error, OSError)
    assert kb.query_associations is kept
    monkeypatch.undo()
    assert refresher.refresh() is False and refresher.runs == 2  # retried: too few approved answers, logged
    assert refresher.last_error is None and refresher.refresh() is False and refresher.runs == 2


def test_reload_learned_picks_up_what_another_process_saved(kb) -> None:  # type: ignore[no-untyped-def]
    with open_fake_index(kb.path) as other:
        other.save_retrieval_settings({"method": "rrf", "rrf_k": 10})
        assert kb.config.retrieval != other.config.retrieval
        state = kb.reload_learned()
        assert kb.config.retrieval == {"method": "rrf", "rrf_k": 10} and state.query_associations is None


def test_serve_refuses_a_bad_refresh_interval(kb, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    code = main(["serve", "--index", str(kb.path), "--upstream", "http://127.0.0.1:9/v1", "--model", "m",
                 "--refresh-feedback", "0"])
    assert code == 2 and "--refresh-feedback" in capsys.readouterr().err
    assert FeedbackStore.for_index(kb).version() == (0, 0.0, 0)


def reject(index, store, found, cited: tuple[str, ...] = ("history", "colour")) -> None:  # type: ignore[no-untyped-def]
    """Every topic's two questions answered from the ``cited`` distractors and given a bare thumbs-down."""
    for t in found:
        for i, question in enumerate(t.questions()):
            record = record_for(index, question, f"down-{t.thing}-{i}")
            marks = "".join(f"[{p['marker']}]" for p in record.passages if p["doc_id"] in {f"{c}-{t.thing}" for c in cited})
            store.add(replace(record, answer=f"Ask the historian {marks}."), rating="down")


def lifting_only(assoc: QueryAssociations) -> QueryAssociations:
    rows = [i for i, p in enumerate(assoc.polarities) if p > 0]
    return QueryAssociations(tuple(assoc.questions[i] for i in rows), assoc.vectors[rows],
                             tuple(assoc.keys[i] for i in rows), assoc.key)


def ndcg(index, found, settings) -> float:  # type: ignore[no-untyped-def]
    """nDCG@10 of each topic's target for a phrasing nobody rated."""
    unrated = EvalDataset(None, {t.thing: f"Who tends the {t.thing} in {t.place} these days?" for t in found},
                          {t.thing: {t.target: 1} for t in found}, "unrated")
    return evaluate_over_untuned(index, unrated, settings, "ndcg@10").scores["ndcg@10"]


def test_a_thumbs_down_demotes_the_cited_documents_for_similar_questions_and_spares_the_others(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = topics(24)  # the first 16 are TOPICS
    approved, rejected = found[:16], found[16:]
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.add(documents(found))
        store = FeedbackStore.for_index(index)
        approve_targets(index, store, approved)
        reject(index, store, rejected)
        assert set(downvoted(store)) == {q for t in rejected for q in t.questions()}
        result = tune_from_feedback(index, store)
        assoc = result.associations
        assert result.accepted and len(assoc) == 48 and min(assoc.polarities) == -1.0
        chosen = {k: v for k, v in result.best.items() if k.startswith("association_")}
        with_, without = ({**chosen, "associations": a} for a in (assoc, lifting_only(assoc)))
        # measured: downvoted topics 0.5000 -> 0.6607, the others 0.7001 -> 0.7001
        assert ndcg(index, rejected, with_) >= ndcg(index, rejected, without) + 0.1
        assert ndcg(index, approved, with_) >= ndcg(index, approved, without) - 0.005
        t = rejected[0]
        hit = next(h for h in index.search(f"Who tends the {t.thing} in {t.place} these days?", 5, associations=assoc,
                                           **chosen) if h.doc_id == f"colour-{t.thing}")
        assert hit.association_score < 0 and hit.associated_question in t.questions()


def test_the_guard_refuses_a_demotion_that_would_cost_approved_questions(kb) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    approve_targets(kb, store, TOPICS)
    for i, t in enumerate(TOPICS[:8]):  # someone downvotes right answers, asked a third way
        record = record_for(kb, f"Who tends the {t.thing} in {t.place}, really?", f"bad-{i}")
        marker = next(p["marker"] for p in record.passages if p["doc_id"] == t.target)
        store.add(replace(record, answer=f"Ask {t.person} [{marker}]."), rating="down")
    result = tune_from_feedback(kb, store)
    assert result.accepted and len(result.associations) == 32 and min(result.associations.polarities) == 1.0


def test_demoting_associations_round_trip_and_are_bounded() -> None:
    vectors = np.eye(2, dtype=np.float32)
    up = QueryAssociations.from_labels(["a"], vectors[:1], [["d1"]])
    both = up.plus(QueryAssociations.from_labels(["b"], vectors[1:], [["d2"]]).demoting(0.5))
    again = QueryAssociations.from_dict(both.to_dict())
    assert again.polarities == (1.0, -0.5) and again.strengths(vectors[1], 0.5) == {"d2": (-0.5, 1)}
    assert QueryAssociations.from_dict(up.to_dict()).polarity is None  # stored as before: no new field
    with pytest.raises(ConfigError, match="polarity"):
        QueryAssociations(("a",), vectors[:1], (("d1",),), polarity=(-2.0,))
    with pytest.raises(ConfigError, match="share"):
        up.demoting(1.5)
