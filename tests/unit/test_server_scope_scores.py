"""Through the server (issue 20, tenancy): a restricted principal's numbers are those of an index of its
scope alone. Index X holds team a's documents; index Y holds them and team b's, written in the same
words. alice (scope: team a) on Y must get from every route what an unrestricted caller gets from X:
the same hits, scores, relevance, ``min_score="auto"`` cut, citations, dropped passages and counts, on
``/search``, ``/prompt`` (a question, a conversation), chat (with history, streamed or not) and the
playground's views. Fake embedder, real HTTP on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

from fakes import open_fake_index
from servekit import TOKENS, echo, serving, write_config

from ragkit import Document
from ragkit.pipeline.rag import RAG
from ragkit.server.app import create_app
from ragkit.server.principals import PrincipalStore

A = [Document(f"a-{i}", text, {"source": f"a/{i}.md", "team": "a", "acl": ["red"]}) for i, text in enumerate([
    "Varroa mites are parasites of honey bees; treat the colony with oxalic acid in winter.",
    "Swarming colonies leave the hive with the old queen in May; catch the swarm in a box.",
    "Harvest honey when the frames are capped and spin the frames in an extractor.",
    "Bees build comb from wax; old comb darkens and should be replaced every few years.",
])]
B = [Document(f"b-{i}", text, {"source": f"b/{i}.md", "team": "b", "acl": ["green"]}) for i, text in enumerate([
    "Honey bees, honey bees and more honey: the colony stores honey in comb above the brood.",
    "The queen lays eggs in the brood comb; bees feed the larvae honey and pollen.",
    "Varroa mites spread viruses between colonies; a colony with many mites loses its bees.",
    "Wax moths eat comb in weak colonies; freeze frames of comb before storing them.",
    "A swarm of bees in May is worth a load of hay; honey bees swarm when the hive is crowded.",
])]
QUESTIONS = ["How do I treat varroa mites in a colony?", "when do honey bees swarm", "honey comb wax",
             "the queen and the brood", "What is the capital of France?"]
HISTORY = [{"role": "user", "content": "Tell me about varroa mites in honey bees"},
           {"role": "assistant", "content": "They are parasites [1]."},
           {"role": "user", "content": "and how do I treat them?"}]
FIELDS = ("chunk_id", "doc_id", "score", "bm25_score", "dense_score", "relevance", "bm25_rank", "dense_rank", "rank")


def close(got: object, want: object, where: str) -> None:
    """JSON values equal, floats to 1e-9."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), where
    elif isinstance(want, dict) and isinstance(got, dict):
        assert set(got) == set(want), where
        for key in want:
            close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            close(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


@pytest.fixture
def servers(tmp_path: Path):  # type: ignore[no-untyped-def]
    """(root of X served to anyone, root of Y served to alice's token): the same pipeline settings."""
    store = PrincipalStore(write_config(tmp_path / "server.json"))
    with open_fake_index(tmp_path / "x") as x, open_fake_index(tmp_path / "y") as y:
        x.add(A)
        y.add([B[0], A[0], A[1], B[1], B[2], A[2], B[3], A[3], B[4]])  # A in the same order as in X
        with serving(create_app(RAG(x, generator=echo, k=4, condense="rule"))) as root_x, \
                serving(create_app(RAG(y, generator=echo, k=4, condense="rule"), principals=store)) as root_y:
            yield root_x, root_y


def post(root: str, path: str, body: dict, token: str | None = None) -> httpx.Response:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(root + path, json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r


def without_ids(text: str) -> str:
    return re.sub(r"chatcmpl-[0-9a-f]+|\"created\":\s*\d+", "", text)


def without_stamp(reply: dict) -> dict:
    """A chat completion without its id and creation second (two servers answer a second apart)."""
    return {k: v for k, v in reply.items() if k not in ("id", "created")}


def test_search_and_prompt_give_alice_on_the_shared_index_what_an_index_of_team_a_gives(servers) -> None:  # type: ignore[no-untyped-def]
    root_x, root_y = servers
    alice = TOKENS["alice"]
    for q in QUESTIONS:
        for body in ({"query": q, "k": 4}, {"query": q, "k": 3, "mode": "bm25"}, {"query": q, "mode": "dense"},
                     {"query": q, "k": 4, "filters": {"source": {"glob": "a/*"}}}):
            want = post(root_x, "/search", body).json()["hits"]
            got = post(root_y, "/search", body, alice).json()["hits"]
            close([{f: h[f] for f in FIELDS} for h in got], [{f: h[f] for f in FIELDS} for h in want], f"/search {body}")
        for body in ({"question": q}, {"messages": HISTORY[:2] + [{"role": "user", "content": q}]}):
            want, got = post(root_x, "/prompt", body).json(), post(root_y, "/prompt", body, alice).json()
            close(got, want, f"/prompt {q!r}")  # text, citations, dropped (the auto cut), sufficiency, counts
    assert any(post(root_y, "/prompt", {"question": q}, alice).json().get("dropped") for q in QUESTIONS)


def test_chat_with_history_streamed_or_not_is_the_same_on_both(servers) -> None:  # type: ignore[no-untyped-def]
    root_x, root_y = servers
    alice = TOKENS["alice"]
    for stream in (False, True):
        for messages in (HISTORY, [{"role": "user", "content": QUESTIONS[1]}]):
            body = {"model": "ragkit", "messages": messages, "stream": stream}
            want = post(root_x, "/v1/chat/completions", body).text
            got = post(root_y, "/v1/chat/completions", body, alice).text
            if stream:
                assert without_ids(got) == without_ids(want)
            else:
                close(without_stamp(json.loads(got)), without_stamp(json.loads(want)), "chat")


def test_the_playground_search_and_prompt_views_show_alice_team_a_numbers(servers) -> None:  # type: ignore[no-untyped-def]
    root_x, root_y = servers
    alice = {"Authorization": f"Bearer {TOKENS['alice']}"}
    for q in QUESTIONS[:3]:
        want = httpx.get(root_x + "/ui/search", params={"q": q, "k": "4"}).text
        got = httpx.get(root_y + "/ui/search", params={"q": q, "k": "4"}, headers=alice).text
        assert got == want
        want = httpx.post(root_x + "/ui/prompt", json={"question": q}).text
        got = httpx.post(root_y + "/ui/prompt", json={"question": q}, headers=alice).text
        assert got == want


def test_the_playground_filter_suggestions_name_only_values_of_the_callers_scope(servers) -> None:  # type: ignore[no-untyped-def]
    root_x, root_y = servers
    html = httpx.get(root_y + "/ui/views", headers={"Authorization": f"Bearer {TOKENS['alice']}"}).text
    assert "b/0.md" not in html and "green" not in html
    assert html == httpx.get(root_x + "/ui/views").text  # her suggestions are what an index of team a offers
