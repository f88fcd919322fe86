"""The feedback loop while serving (ragkit.feedback.refresh, Index.reload_learned): ratings posted to a
running server become query associations in a background thread and its /search uses them without a
restart; a failed run keeps the old ones. Fake embedder, real SQLite, the app over HTTP in-process."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fakes import FakeEmbedder, open_fake_index
from fastapi.testclient import TestClient
from feedback_corpus import documents, topics

from ragkit.cli.commands import main
from ragkit.feedback import FeedbackStore
from ragkit.feedback.refresh import FeedbackRefresher
from ragkit.pipeline.rag import RAG
from ragkit.prompting.builder import PromptBuilder
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
