"""ragkit.feedback: the store (durable, replace-on-rerate, export, delete), approved answers as examples,
approved answers as query associations through tune's guard, and the ``ragkit feedback`` / ``tune
--from-feedback`` commands. Fake embedder, real SQLite."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from fakes import FakeEmbedder, open_fake_index
from feedback_corpus import approve_targets, documents, record_for, topics

from ragkit.cli.commands import main
from ragkit.errors import ConfigError
from ragkit.feedback import FeedbackStore, examples, feedback_dataset, tune_from_feedback
from ragkit.feedback.record import CompletionRecord, RecentCompletions, cited_markers
from ragkit.prompting.builder import PromptBuilder

TOPICS = topics()


@pytest.fixture
def kb(tmp_path: Path):  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        index.add(documents(TOPICS))
        yield index


def test_a_rating_is_stored_with_what_was_judged_and_a_rerating_replaces_it(kb) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    record = record_for(kb, TOPICS[0].questions()[0], "chatcmpl-a", answer="Ask the keeper [2].")
    first = store.add(record, rating="up", principal="alice")
    again = store.add(record, rating="down", comment="wrong person")
    assert first.id == again.id and len(store.all()) == 1
    stored = store.all()[0]
    assert (stored.rating, stored.comment, stored.principal, stored.approved) == ("down", "wrong person", None, False)
    assert stored.record == record  # the question, query, passages, prompt and answer came back whole
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_approved_means_thumbs_up_or_corrected_and_the_correction_is_the_answer(kb) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    questions = [t.questions()[0] for t in TOPICS[:3]]
    up, down, fixed = (record_for(kb, q, f"c{i}", answer=f"answer {i} [1]") for i, q in enumerate(questions))
    store.add(up, rating="up")
    store.add(down, rating="down")
    store.add(fixed, rating="down", correction="the right answer [2]")
    approved = store.approved()
    assert [f.output for f in approved] == ["answer 0 [1]", "the right answer [2]"]
    assert approved[1].cited_doc_ids == [fixed.passages[1]["doc_id"]]  # the correction's marker, not the answer's


def test_feedback_needs_something_and_refuses_a_bad_rating(kb) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    record = record_for(kb, "who tends it?", "c1")
    with pytest.raises(ConfigError, match="rating"):
        store.add(record)
    with pytest.raises(ConfigError, match="up, down"):
        store.add(record, rating="meh")  # type: ignore[arg-type]
    assert store.all() == [] and not store.path.exists()


def test_export_writes_one_json_line_per_judgement_and_delete_removes_them(kb) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    for i, t in enumerate(TOPICS[:3]):
        store.add(record_for(kb, t.questions()[0], f"c{i}"), rating="up", comment="<script>x</script>")
    out = io.StringIO()
    assert store.export_jsonl(out) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["completion_id"] for r in lines] == ["c0", "c1", "c2"]
    assert {"question", "query", "answer", "passages", "prompt_messages", "rating", "created"} <= set(lines[0])
    assert store.delete([lines[0]["id"]]) == 1 and store.delete(None) == 2 and store.all() == []


def test_approved_answers_become_examples_chosen_by_similarity_with_their_origin(kb) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    liked, disliked = TOPICS[0].questions()[0], TOPICS[1].questions()[0]
    store.add(record_for(kb, liked, "c1", answer="Ask the keeper [1]."), rating="up")
    store.add(record_for(kb, disliked, "c2", answer="A bad answer [1]."), rating="down")
    found = examples(kb)
    assert [e.input for e in found] == [liked]  # a thumbs-down is never an example
    builder = PromptBuilder("qa", examples=found, num_examples=1, min_score=None)
    prompt = builder.build(TOPICS[0].questions()[1], kb.search(TOPICS[0].questions()[1], 3))
    assert [e.output for e in prompt.examples] == ["Ask the keeper [1]."]
    assert prompt.examples[0].metadata["origin"] == "feedback" and "Ask the keeper" in prompt.text


def test_a_record_of_a_pipeline_answer_keeps_what_was_searched_shown_and_cited(kb) -> None:  # type: ignore[no-untyped-def]
    from ragkit.pipeline.rag import RAG

    rag = RAG(kb, PromptBuilder("qa", min_score=None), lambda messages, **o: "See [2].", k=3)
    turns = [{"role": "user", "content": TOPICS[0].questions()[0]}, {"role": "assistant", "content": "?"},
             {"role": "user", "content": "and who tends it now?"}]
    answer = rag.chat(turns)
    record = CompletionRecord.from_answer("c1", turns[-1]["content"], answer)
    assert record.query == answer.query != record.question  # the condensed follow-up
    assert [p["marker"] for p in record.passages] == [1, 2, 3] and record.prompt_messages == answer.prompt.messages
    assert record.cited_doc_ids() == [answer.citations[0].doc_id]


def test_common_metadata_keeps_only_what_every_cited_document_shares() -> None:
    from ragkit.feedback.record import common_metadata

    docs = [{"team": "a", "kind": "x", "acl": ["ops", "dev"], "page": 1}, {"team": "a", "kind": "y", "acl": ["dev"]}]
    assert common_metadata(docs) == {"team": "a", "acl": ["dev"]}
    assert common_metadata([]) == {}


def test_cited_markers_reads_every_form() -> None:
    assert cited_markers("a [2] b [1][3] c [4, 2] d [x]") == [2, 1, 3, 4]


def test_recent_completions_forget_the_oldest_first() -> None:
    recent = RecentCompletions(2)
    for i in range(3):
        recent.remember(CompletionRecord(f"c{i}", "q", "q", "a", "p", [], [], []))
    assert [recent.get(f"c{i}") is not None for i in range(3)] == [False, True, True]


def test_tune_from_feedback_refuses_too_few_approved_answers(kb) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    approve_targets(kb, store, TOPICS[:5])
    with pytest.raises(ConfigError, match=r"at least 28 approved answers .* has 10"):
        tune_from_feedback(kb, store)


def test_cli_feedback_export_and_delete(kb, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.for_index(kb)
    for i, t in enumerate(TOPICS[:2]):
        store.add(record_for(kb, t.questions()[0], f"c{i}"), rating="up")
    assert main(["feedback", "export", "--index", str(kb.path)]) == 0
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert len(ids) == 2
    assert main(["feedback", "delete", "--index", str(kb.path), str(ids[0]), "999"]) == 0
    assert "deleted 1" in capsys.readouterr().out and len(store.all()) == 1
    assert main(["feedback", "delete", "--index", str(kb.path)]) == 2
    assert "--all" in capsys.readouterr().err
    assert main(["feedback", "delete", "--index", str(kb.path), "--all"]) == 0 and store.all() == []
    assert main(["feedback", "export", "--index", str(tmp_path / "nowhere")]) == 2


def test_tune_from_feedback_lifts_the_approved_document_for_a_similar_question(kb, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`ragkit tune --from-feedback`: cross-validated associations saved, fusion settings kept."""
    kb.save_retrieval_settings({"method": "rrf", "rrf_k": 30})
    store = FeedbackStore.for_index(kb)
    assert approve_targets(kb, store, TOPICS) == 32 and len(feedback_dataset(store).queries) == 32
    path = str(kb.path)
    kb.close()
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    assert main(["tune", "--index", path, "--from-feedback", "-q", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["accepted"] and result["associations"] == 32 and "32 approved answers kept as evidence" in err
    assert result["train"] > result["default_train"] and result["heldout"] >= result["default_heldout"]
    with open_fake_index(path) as index:
        assert index.config.retrieval["method"] == "rrf" and index.config.retrieval["associations"] is True
        for t in TOPICS:  # a phrasing nobody rated
            question = f"Who tends the {t.thing} in {t.place} these days?"
            before = next(h for h in index.search(question, 5, associations=False) if h.doc_id == t.target)
            after = next(h for h in index.search(question, 5) if h.doc_id == t.target)
            assert after.rank < before.rank and after.associated_question in t.questions()  # measured: 16 of 16


def test_a_rebuild_keeps_the_feedback(tmp_path: Path) -> None:
    from ragkit.storage.local.swap import rebuild

    path = tmp_path / "kb.ragkit"
    with open_fake_index(path) as index:
        index.add(documents(TOPICS))
        FeedbackStore.for_index(index).add(record_for(index, TOPICS[0].questions()[0], "c-kept"), rating="up")

    def build(folder: Path) -> None:
        with open_fake_index(folder) as fresh:
            fresh.add(documents(TOPICS[:2]))

    rebuild(path, build)
    kept = FeedbackStore(path / "feedback.sqlite").all()
    assert [f.completion_id for f in kept] == ["c-kept"] and kept[0].rating == "up"
