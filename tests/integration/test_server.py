"""Tests for ragkit.server and `ragkit serve`: the official openai client against a real loopback server
whose upstream is the fake LLM of tests/fakellm.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fakellm import serve_fake_llm
from servekit import serving

from ragkit import Document, Index
from ragkit.cli.commands import main as cli_main
from ragkit.generators.http import OpenAICompatible
from ragkit.pipeline.rag import RAG
from ragkit.server.app import create_app

DOCS = [
    Document("varroa", "Varroa mites are external parasites of honey bees. Count them with an alcohol wash and "
             "treat with oxalic acid when the colony is broodless.", {"source": "health/varroa.md", "title": "Varroa"}),
    Document("afb", "American foulbrood is a bacterial disease of honey bee larvae caused by Paenibacillus larvae. "
             "Infected colonies are usually burned, because the spores survive for decades.",
             {"source": "health/afb.md", "title": "American foulbrood"}),
    Document("swarm", "Swarming is how a colony reproduces: the old queen leaves with about half of the workers.",
             {"source": "seasons/swarming.md", "title": "Swarming"}),
    Document("harvest", "Harvest honey when most cells of a frame are capped, then spin the frames in an extractor.",
             {"source": "seasons/harvest.md", "title": "Harvest"}),
]
AFB = [{"role": "user", "content": "What should I do about American foulbrood?"}]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("server") / "kb.ragkit"
    with Index(path, show_progress=False) as ix:
        ix.add(DOCS)
    return path


@pytest.fixture(scope="module")
def index(index_dir: Path) -> Iterator[Index]:
    ix = Index(index_dir, create=False, show_progress=False)
    yield ix
    ix.close()


@pytest.fixture
def fake() -> Iterator:
    with serve_fake_llm() as url:
        yield url


@pytest.fixture
def searches(index: Index, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every query the index is searched with during the test."""
    calls: list[str] = []
    search = index.search

    def counting(query, *args, **kwargs):
        calls.append(query)
        return search(query, *args, **kwargs)

    monkeypatch.setattr(index, "search", counting)
    return calls


def upstream(url: str, *, timeout: float = 5.0) -> OpenAICompatible:
    return OpenAICompatible(url, model="fake", timeout=timeout, max_retries=0)


def client(root: str, api_key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{root}/v1", api_key=api_key, max_retries=0, timeout=30)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- the openai client, end to end ----------------------------------------------------------------


def test_openai_client_gets_a_grounded_answer(index: Index, fake) -> None:
    rag = RAG(index, generator=upstream(fake.v1), k=2)
    with serving(create_app(rag)) as root:
        reply = client(root).chat.completions.create(model="ragkit", messages=AFB, temperature=0)
    text = reply.choices[0].message.content
    assert text.startswith("ECHO: ")
    assert "Paenibacillus larvae" in text  # the retrieved passage reached the upstream model
    sent = fake.requests[-1].body
    assert "Paenibacillus larvae" in sent["messages"][-1]["content"]
    assert sent["model"] == "fake" and sent["temperature"] == 0
    assert reply.model == "ragkit" and reply.choices[0].finish_reason == "stop"
    sources = reply.model_extra["sources"]
    assert sources[0]["marker"] == 1 and sources[0]["source"] == "health/afb.md"
    assert set(sources[0]) >= {"marker", "source", "doc_id", "chunk_id", "page", "title", "score", "cited"}
    assert sources[0]["cited"] is True  # the echo repeats the prompt's "[1]"
    assert reply.usage.prompt_tokens > 0


def test_openai_client_streams_with_sources_in_the_last_chunk(index: Index, fake) -> None:
    rag = RAG(index, generator=upstream(fake.v1), k=2)
    with serving(create_app(rag)) as root:
        chunks = list(client(root).chat.completions.create(model="ragkit", messages=AFB, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("ECHO: ") and "Paenibacillus larvae" in text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed
    assert fake.requests[-1].body["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["sources"][0]["source"] == "health/afb.md"


def test_raw_sse_ends_with_done_and_sources_in_text(index: Index, fake) -> None:
    rag = RAG(index, generator=upstream(fake.v1), k=1)
    with serving(create_app(rag, sources_in_text=True)) as root:
        with httpx.stream("POST", f"{root}/v1/chat/completions", json={"messages": AFB, "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in r.iter_lines() if line]
        plain = httpx.post(f"{root}/v1/chat/completions", json={"messages": AFB}).json()
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text.endswith("Sources:\n[1] American foulbrood — health/afb.md")
    assert plain["choices"][0]["message"]["content"].endswith("[1] American foulbrood — health/afb.md")


def test_models_and_health(index: Index) -> None:
    with serving(create_app(RAG(index), model_name="beekb")) as root:
        assert [m.id for m in client(root).models.list()] == ["beekb"]
        assert httpx.get(f"{root}/health").json() == {"status": "ok"}


def test_multi_turn_follow_up_retrieves_the_earlier_topic(index: Index, fake) -> None:
    conversation = [
        {"role": "user", "content": "Tell me about varroa mites and American foulbrood"},
        {"role": "assistant", "content": "Varroa are mites; foulbrood is a brood disease."},
        {"role": "user", "content": "and what about the second one?"},
    ]
    rag = RAG(index, generator=upstream(fake.v1), k=1)
    with serving(create_app(rag)) as root:
        reply = client(root).chat.completions.create(model="ragkit", messages=conversation)
        prompt = httpx.post(f"{root}/prompt", json={"messages": conversation}).json()
    assert [s["doc_id"] for s in reply.model_extra["sources"]] == ["afb"]
    sent = fake.requests[-1].body["messages"]
    assert "Paenibacillus larvae" in sent[-1]["content"] and "oxalic" not in json.dumps(sent)
    assert [m["role"] for m in sent][-3:] == ["user", "assistant", "user"]  # history kept
    assert prompt["query"] == "american foulbrood"


# -- upstream failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("down", 502, "upstream_unavailable"),
        ("slow-3", 504, "upstream_timeout"),
        ("malformed", 502, "upstream_bad_response"),
        ("auth", 502, "upstream_auth_failed"),
    ],
)
def test_upstream_failures_become_openai_errors(index: Index, fake, mode: str, status: int, code: str,
                                                stream: bool) -> None:
    url = closed_port_url() if mode == "down" else fake.v1
    if mode != "down":
        fake.mode = mode
    rag = RAG(index, generator=upstream(url, timeout=0.5), k=1)
    with serving(create_app(rag)) as root:
        started = time.monotonic()
        r = httpx.post(f"{root}/v1/chat/completions", json={"messages": AFB, "stream": stream}, timeout=10)
        elapsed = time.monotonic() - started
        assert r.status_code == status
        error = r.json()["error"]
        assert error["code"] == code and error["type"] == "upstream_error" and error["message"]
        assert elapsed < 2.5
        if mode == "auth":
            assert "credentials" in error["message"]
        # the server keeps serving: the next normal request succeeds
        fake.mode = "echo"
        rag.generator = upstream(fake.v1)
        reply = client(root).chat.completions.create(model="ragkit", messages=AFB)
        assert "Paenibacillus larvae" in reply.choices[0].message.content


def test_openai_client_sees_the_upstream_error(index: Index) -> None:
    rag = RAG(index, generator=upstream(closed_port_url()), k=1)
    with serving(create_app(rag)) as root:
        with pytest.raises(openai.APIStatusError) as caught:
            client(root).chat.completions.create(model="ragkit", messages=AFB)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unavailable"


def test_deadline_bounds_a_slow_upstream(index: Index, fake) -> None:
    fake.mode = "slow-3"
    rag = RAG(index, generator=upstream(fake.v1, timeout=30), k=1)
    with serving(create_app(rag, deadline=0.5)) as root:
        started = time.monotonic()
        r = httpx.post(f"{root}/v1/chat/completions", json={"messages": AFB}, timeout=10)
    assert r.status_code == 504 and time.monotonic() - started < 2.5


def test_bad_requests_are_openai_style_400s(index: Index, fake) -> None:
    rag = RAG(index, generator=upstream(fake.v1), k=1)
    with serving(create_app(rag)) as root:
        for body in ({"model": "ragkit"}, {"messages": []},
                     {"messages": [{"role": "assistant", "content": "Hi"}]}):
            r = httpx.post(f"{root}/v1/chat/completions", json=body)
            assert r.status_code == 400, body
            assert r.json()["error"]["type"] == "invalid_request_error"
        assert httpx.get(f"{root}/nowhere").json()["error"]["type"] == "not_found"
    assert fake.requests == []


# -- auth -----------------------------------------------------------------------------------------


def test_token_is_required_and_nothing_is_retrieved_without_it(index: Index, fake, searches: list[str]) -> None:
    rag = RAG(index, generator=upstream(fake.v1), k=1)
    with serving(create_app(rag, token=TOKEN)) as root:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for method, path, body in [("POST", "/v1/chat/completions", {"messages": AFB}),
                                       ("POST", "/search", {"query": "foulbrood"}),
                                       ("POST", "/prompt", {"question": "foulbrood"}), ("GET", "/v1/models", None)]:
                r = httpx.request(method, root + path, json=body, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client(root, api_key="wrong").chat.completions.create(model="ragkit", messages=AFB)
        assert searches == [] and fake.requests == []
        assert httpx.get(f"{root}/health").status_code == 200
        reply = client(root, api_key=TOKEN).chat.completions.create(model="ragkit", messages=AFB)
    assert "Paenibacillus larvae" in reply.choices[0].message.content
    assert len(searches) == 1 and len(fake.requests) == 1


# -- /search and /prompt --------------------------------------------------------------------------


def test_search_endpoint(index: Index) -> None:
    with serving(create_app(RAG(index))) as root:
        hits = httpx.post(f"{root}/search", json={"query": "American foulbrood larvae", "k": 2}).json()["hits"]
        filtered = httpx.post(f"{root}/search", json={"query": "honey", "filters": {"source": {"glob": "seasons/*"}},
                                                      "mode": "bm25"}).json()["hits"]
        bad = httpx.post(f"{root}/search", json={"query": "honey", "filters": {"colour": "red"}})
        invalid = httpx.post(f"{root}/search", json={"query": "honey", "mode": "fuzzy"})
    assert len(hits) == 2 and hits[0]["doc_id"] == "afb"
    assert {"bm25_score", "bm25_rank", "dense_score", "dense_rank", "score", "text", "metadata"} <= set(hits[0])
    assert hits[0]["bm25_score"] > 0 and hits[0]["dense_score"] > 0
    assert filtered and all(h["metadata"]["source"].startswith("seasons/") for h in filtered)
    assert all(h["dense_score"] is None for h in filtered)
    assert bad.status_code == 400 and "colour" in bad.json()["error"]["message"]
    assert invalid.status_code == 400 and "mode" in invalid.json()["error"]["message"]


def test_prompt_endpoint(index: Index) -> None:
    with serving(create_app(RAG(index, k=2))) as root:
        body = httpx.post(f"{root}/prompt", json={"question": "What causes American foulbrood?"}).json()
        empty = httpx.post(f"{root}/prompt", json={})
    assert set(body) >= {"text", "messages", "citations", "token_count", "dropped"}
    assert "Paenibacillus larvae" in body["text"] and body["messages"][-1]["role"] == "user"
    assert body["citations"][0]["marker"] == 1 and body["citations"][0]["source"] == "health/afb.md"
    assert body["token_count"] > 0  # the second hit (varroa) does not answer it: min_score "auto" left it out
    assert [d["key"] for d in body["dropped"]] == ["varroa#0"] and "relevance" in body["dropped"][0]["reason"]
    assert empty.status_code == 400


# -- the `ragkit serve` command -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ragkit_serve_subprocess(index_dir: Path, fake) -> None:
    port = free_port()
    env = {**os.environ, "RAGKIT_SERVER_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "ragkit.cli", "serve", "--index", str(index_dir), "--upstream", fake.v1,
               "--port", str(port), "--k", "1", "--timeout", "5"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "ragkit serve did not come up"
            try:
                if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.get(f"{root}/v1/models").status_code == 401  # the token came from the environment
        reply = client(root, api_key=TOKEN).chat.completions.create(model="ragkit", messages=AFB)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=20)
    assert "Paenibacillus larvae" in reply.choices[0].message.content
    assert reply.model_extra["sources"][0]["source"] == "health/afb.md"
    assert fake.requests[-1].body["model"] == "fake"  # found on the upstream's /models
    assert f"http://127.0.0.1:{port}/v1" in stderr


def test_ragkit_serve_reports_a_missing_key_variable(index_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["serve", "--index", str(index_dir), "--upstream", "http://127.0.0.1:9/v1",
                     "--api-key-env", "RAGKIT_TEST_NO_SUCH_VARIABLE"])
    assert code == 2
    assert "RAGKIT_TEST_NO_SUCH_VARIABLE is not set" in capsys.readouterr().err
