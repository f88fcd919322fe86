"""The web playground (ragkit.server.playground) over HTTP, in-process: every view renders document,
question and answer text as text, the token guards everything but the empty shell, answers are
remembered for feedback and approved ones become the next prompt's examples. Fake embedder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fakes import open_fake_index
from fastapi.testclient import TestClient

from ragkit.feedback import FeedbackStore
from ragkit.pipeline.rag import RAG
from ragkit.prompting.builder import PromptBuilder
from ragkit.server.app import create_app
from ragkit.types import Document

SCRIPT, IMG = "<script>alert('doc')</script>", "<img src=x onerror=alert('img')>"
HOSTILE = (SCRIPT, IMG)
DOCS = [
    Document("varroa", f"Varroa mites are treated in late summer after the honey harvest. {SCRIPT} {IMG}",
             {"source": "health/varroa.md", "type": "markdown", "title": f"Varroa {IMG}"}),
    Document("swarm", "Colonies swarm in spring when the hive runs out of room.", {"source": "swarm.md", "type": "text"}),
    Document("wax", "Beeswax melts at about 63 degrees.", {"source": "wax.md", "type": "text"}),
]
ANSWER = f"Treat them in late summer [1]. {SCRIPT}"


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    with open_fake_index(tmp_path / "kb.ragkit") as idx:
        idx.add(DOCS)
        yield idx


def client(index, *, token: str | None = None, answer: str = ANSWER) -> TestClient:  # type: ignore[no-untyped-def]
    rag = RAG(index, PromptBuilder("qa", min_score=None), lambda messages, **o: answer, k=3)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(create_app(rag, token=token), base_url="http://127.0.0.1", headers=headers)


def unescaped(html: str) -> list[str]:
    """The hostile markup that came through as markup (not as text)."""
    return [h for h in HOSTILE if h in html] + re.findall(r"<(?:script|img)\b", html.replace('<script src="/ui/static/', ""))


def ask(c: TestClient, question: str, *, stream: bool = False) -> str:
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}], "stream": stream})
    assert r.status_code == 200, r.text
    if stream:
        return re.search(r'"id": "(chatcmpl-[0-9a-f]+)"', r.text).group(1)  # type: ignore[union-attr]
    return r.json()["id"]


def test_every_view_shows_hostile_text_as_text(index) -> None:  # type: ignore[no-untyped-def]
    c = client(index)
    question = f"when to treat varroa {SCRIPT}"
    completion = ask(c, question)
    chunk = "varroa#0"
    pages = {
        "views": c.get("/ui/views"),
        "search": c.get("/ui/search", params={"q": f"varroa {IMG}"}),
        "compare": c.get("/ui/compare", params={"q": "varroa mites", "a.method": "rrf", "b.associations": "off"}),
        "passage": c.get("/ui/passage", params={"doc_id": "varroa", "chunk_id": chunk}),
        "prompt": c.post("/ui/prompt", json={"question": question}),
        "completion": c.get(f"/ui/completion/{completion}"),
    }
    for name, page in pages.items():
        assert page.status_code == 200, (name, page.text)
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert unescaped(page.text) == [], name
    assert "&lt;script&gt;" in pages["passage"].text and "&lt;img src=x onerror" in pages["search"].text
    assert "&lt;script&gt;" in pages["prompt"].text  # the question and the passage, in the messages


def test_search_shows_each_legs_score_and_rank_and_marks_matched_terms(index) -> None:  # type: ignore[no-untyped-def]
    html = client(index).get("/ui/search", params={"q": "varroa summer", "k": "2", "filter.type": "markdown"}).text
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>", html)
    assert rows == ["1"]  # the filter left one document
    assert "<mark>Varroa</mark>" in html and "<mark>summer</mark>" in html
    assert re.search(r"<td>\d+\.\d\d \(1\)</td>\s*<td>-?\d\.\d{3} \(1\)</td>", html)  # bm25 (rank), dense (rank)
    assert 'data-chunk="varroa#0"' in html


def test_a_passage_is_shown_between_its_neighbouring_chunks(index) -> None:  # type: ignore[no-untyped-def]
    sections = [f"Section {i}: " + " ".join(f"word{i}x{j}" for j in range(300)) for i in range(3)]
    index.add([Document("long", "\n\n".join(sections), {"source": "long.md"})])
    chunks = index.chunker.split(Document("long", "\n\n".join(sections)))
    assert len(chunks) >= 3
    html = client(index).get("/ui/passage", params={"doc_id": "long", "chunk_id": chunks[1].id}).text
    before, hit, after = (html.index(chunks[i].text[:40]) for i in range(3))
    assert before < hit < after and html.count('class="neighbour"') == 2
    missing = client(index).get("/ui/passage", params={"doc_id": "gone", "chunk_id": "gone#0"})
    assert missing.status_code == 404 and "no longer in the index" in missing.text


def test_views_offer_the_indexs_metadata_fields_as_filters(index) -> None:  # type: ignore[no-untyped-def]
    html = client(index).get("/ui/views").text
    assert 'name="filter.type"' in html and "<option>markdown</option>" in html and 'name="filter.source"' in html
    assert "No model is configured" not in html


def test_the_prompt_view_shows_an_edited_templates_result_or_its_sandboxed_error(index) -> None:  # type: ignore[no-untyped-def]
    c = client(index)
    ok = c.post("/ui/prompt", json={"question": "varroa?", "template_source": "Q={{ question }} {{ passages[0].source }}"})
    assert ok.status_code == 200 and "Q=varroa? health/varroa.md" in ok.text
    broken = c.post("/ui/prompt", json={"question": "x", "template_source": "{{ ''.__class__.__mro__ }}"})
    assert broken.status_code == 400 and "TemplateError" in broken.text
    path = c.post("/ui/prompt", json={"question": "x", "template_source": "/etc/passwd"})
    assert "root:" not in path.text  # a one-line edit is a template string, never a path to read
    builtin = c.post("/ui/prompt", json={"question": "varroa?", "template": "chat"})
    assert builtin.status_code == 200 and "template chat" in builtin.text
    assert c.post("/ui/prompt", json={"question": "x", "template": "../qa"}).status_code == 400


def test_feedback_is_stored_with_the_completion_and_approved_answers_become_examples(index) -> None:  # type: ignore[no-untyped-def]
    c = client(index, answer="Treat varroa in late summer [1].")
    completion = ask(c, "When should varroa mites be treated?", stream=True)
    r = c.post("/v1/feedback", json={"completion_id": completion, "rating": "up", "comment": "right"})
    assert r.status_code == 200 and r.json()["approved"] is True
    stored = FeedbackStore.for_index(index).all()
    assert len(stored) == 1 and stored[0].record.answer == "Treat varroa in late summer [1]."
    assert stored[0].record.passages[0]["doc_id"] == "varroa" and stored[0].cited_doc_ids == ["varroa"]
    assert "Question: When should varroa mites be treated?" in stored[0].record.prompt_text
    html = c.post("/ui/prompt", json={"question": "when do I treat varroa mites?"}).text
    assert "feedback #1 (thumbs up)" in html and "A: Treat varroa in late summer [1]." in html
    second = ask(c, "When do I treat against varroa?")  # the next answer is prompted with the approved one
    record = c.app.state.playground.completions.get(second)
    assert "Treat varroa in late summer [1]." in record.prompt_text


def test_feedback_refuses_unknown_completions_and_bad_values(index) -> None:  # type: ignore[no-untyped-def]
    c = client(index)
    assert c.post("/v1/feedback", json={"completion_id": "chatcmpl-nope", "rating": "up"}).status_code == 404
    completion = ask(c, "varroa?")
    assert c.post("/v1/feedback", json={"completion_id": completion, "rating": "meh"}).status_code == 400
    assert c.post("/v1/feedback", json={"completion_id": completion}).status_code == 400
    assert FeedbackStore.for_index(index).all() == []


def test_a_condensed_follow_up_and_an_answer_without_context_are_shown_as_such(index) -> None:  # type: ignore[no-untyped-def]
    c = client(index, answer="The context does not contain this.")
    turns = [{"role": "user", "content": "Tell me about varroa mites and swarming"},
             {"role": "assistant", "content": "Both matter."}, {"role": "user", "content": "and the second one?"}]
    completion = c.post("/v1/chat/completions", json={"messages": turns}).json()["id"]
    html = c.get(f"/ui/completion/{completion}").text
    assert "searched for: <q>and the second one? swarming" in html or "searched for: <q>swarming" in html
    assert "not-in-context" in html


def test_with_a_token_only_the_empty_shell_is_served_without_it(index) -> None:  # type: ignore[no-untyped-def]
    c = client(index, token="s3cret")
    anonymous = TestClient(c.app, base_url="http://127.0.0.1")
    completion = ask(c, "varroa?")
    shell = anonymous.get("/")
    assert shell.status_code == 200 and "token" in shell.text
    assert not any(word in shell.text for word in ("varroa", "Varroa", "markdown", "health/"))  # nothing from the index
    assert anonymous.get("/ui/static/playground.js").status_code == 200
    assert anonymous.get("/ui/static/..%2Faccess.py").status_code == 404  # one flat folder, no way out
    refused = [
        anonymous.get("/ui/views"), anonymous.get("/ui/search", params={"q": "varroa"}),
        anonymous.get("/ui/compare", params={"q": "varroa"}), anonymous.get("/ui/template", params={"name": "qa"}),
        anonymous.get("/ui/passage", params={"doc_id": "varroa", "chunk_id": "varroa#0"}),
        anonymous.post("/ui/prompt", json={"question": "varroa"}), anonymous.get(f"/ui/completion/{completion}"),
        anonymous.post("/v1/feedback", json={"completion_id": completion, "rating": "up"}),
        anonymous.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "varroa"}]}),
        anonymous.post("/search", json={"query": "varroa"}), anonymous.post("/prompt", json={"question": "varroa"}),
        anonymous.get("/v1/models"), anonymous.get("/docs"), anonymous.get("/openapi.json"),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused)
    assert all("varroa" not in r.text.lower() for r in refused)
    assert c.get("/ui/views").status_code == 200 and FeedbackStore.for_index(index).all() == []


def test_ragkit_ui_serves_the_playground_with_no_model(index, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from fakes import FakeEmbedder

    from ragkit.cli.ui import build_app

    path = str(index.path)
    index.close()
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    args = argparse.Namespace(index=path, token=None, k=3, mode="hybrid", template="qa", max_tokens=2048)
    c = TestClient(build_app(args), base_url="http://127.0.0.1")
    assert "No model is configured" in c.get("/ui/views").text
    assert c.get("/ui/search", params={"q": "swarm"}).status_code == 200
    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "swarm?"}]})
    assert r.status_code == 503


def test_principals_see_only_their_scope_and_their_own_answers(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import json

    from ragkit.server.principals import PrincipalStore

    config = tmp_path / "server.json"
    config.write_text(json.dumps({"principals": [
        {"name": "alice", "token_sha256": hashlib.sha256(b"alice-token").hexdigest(), "filters": {"type": "markdown"}},
        {"name": "bob", "token_sha256": hashlib.sha256(b"bob-token").hexdigest(), "filters": {"type": "text"}},
    ]}))
    rag = RAG(index, PromptBuilder("qa", min_score=None), lambda messages, **o: "See [1].", k=3)
    app = create_app(rag, principals=PrincipalStore(config))
    alice, bob = (TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {who}-token"})
                  for who in ("alice", "bob"))
    assert "health/varroa.md" not in bob.get("/ui/search", params={"q": "varroa mites summer"}).text
    assert "health/varroa.md" in alice.get("/ui/search", params={"q": "varroa mites summer"}).text
    assert bob.get("/ui/passage", params={"doc_id": "varroa", "chunk_id": "varroa#0"}).status_code == 404
    assert "swarm.md" not in alice.get("/ui/compare", params={"q": "swarm spring"}).text
    completion = ask(alice, "When are varroa mites treated?")
    assert bob.get(f"/ui/completion/{completion}").status_code == 404  # another principal's answer
    assert bob.post("/v1/feedback", json={"completion_id": completion, "rating": "up"}).status_code == 404
    assert alice.post("/v1/feedback", json={"completion_id": completion, "rating": "up"}).status_code == 200
    stored = FeedbackStore.for_index(index).all()
    assert [f.principal for f in stored] == ["alice"]
    prompt = bob.post("/ui/prompt", json={"question": "When are varroa mites treated?"}).text
    assert "feedback #" not in prompt  # alice's approved answer rests on a document bob may not see
    assert "health/varroa.md" not in prompt
    assert stored[0].record.cited_metadata["type"] == "markdown"
    own = alice.post("/ui/prompt", json={"question": "When are varroa mites treated?"}).text
    assert "feedback #1 (thumbs up)" in own  # in alice's scope: the document it cites is hers to see
