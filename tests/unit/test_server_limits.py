"""Issue 20, per-principal limits, query micro-batching and the access log."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")

from servekit import TOKENS, echo, serving, two_team_index, write_config

from ragkit.pipeline.rag import RAG
from ragkit.server.app import ServerSettings, create_app
from ragkit.server.batching import QueryBatcher
from ragkit.server.principals import PrincipalStore


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    with two_team_index(tmp_path / "kb.ragkit") as ix:
        yield ix


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def test_requests_per_minute_per_principal_get_429_with_retry_after(index, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = PrincipalStore(write_config(tmp_path / "s.json", {"alice": {"requests_per_minute": 2}}))
    app = create_app(RAG(index, generator=echo), principals=store, settings=ServerSettings(requests_per_minute=100))
    with serving(app) as root:
        alice = [httpx.post(root + "/search", json={"query": "honey"}, headers=auth("alice")) for _ in range(3)]
        bob = [httpx.post(root + "/search", json={"query": "wax"}, headers=auth("bob")) for _ in range(3)]
        health = httpx.get(root + "/health")
    assert [r.status_code for r in alice] == [200, 200, 429]
    assert int(alice[2].headers["Retry-After"]) >= 1 and alice[2].json()["error"]["code"] == "rate_limit_exceeded"
    assert [r.status_code for r in bob] == [200, 200, 200] and health.status_code == 200  # others unaffected


def test_concurrent_streams_per_principal_are_limited_and_released(index) -> None:  # type: ignore[no-untyped-def]
    def slow(messages, **options):  # type: ignore[no-untyped-def]
        for word in ("one ", "two ", "three"):
            time.sleep(0.3)
            yield word

    # body_timeout shorter than a stream: only the body's arrival is timed, not the stream's disconnect wait
    app = create_app(RAG(index, generator=slow), settings=ServerSettings(max_streams=1, body_timeout=0.2))
    ask = {"messages": [{"role": "user", "content": "honey frames"}], "stream": True}
    with serving(app) as root, ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, root + "/v1/chat/completions", json=ask, timeout=10)
        time.sleep(0.4)
        second = httpx.post(root + "/v1/chat/completions", json=ask)
        assert first.result().status_code == 200 and "data: [DONE]" in first.result().text
        third = httpx.post(root + "/v1/chat/completions", json=ask, timeout=10)
    assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_streams"
    assert "Retry-After" in second.headers and third.status_code == 200
    assert app.state.limits.streams(_anonymous()) == 0


def _anonymous():  # type: ignore[no-untyped-def]
    from ragkit.server.principals import ANONYMOUS

    return ANONYMOUS


def test_concurrent_searches_are_embedded_in_batches_with_the_same_answers(index) -> None:  # type: ignore[no-untyped-def]
    queries = [f"honey frames {i}" if i % 2 else f"varroa mites {i}" for i in range(16)]
    expected = {q: [h.chunk_id for h in index.search(q, 3)] for q in queries}
    app = create_app(RAG(index, generator=echo, k=3), settings=ServerSettings(batch_window=0.02))
    with serving(app) as root, ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda q: httpx.post(root + "/search", json={"query": q}).json(), queries))
    assert {r["query"]: [h["chunk_id"] for h in r["hits"]] for r in replies} == expected
    assert max(app.state.batcher.batches) > 1


def test_the_batcher_fails_each_waiting_request_with_the_encoder_error() -> None:
    class Broken:
        def encode(self, texts):  # type: ignore[no-untyped-def]
            raise RuntimeError("model gone")

    class Counting:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def encode(self, texts):  # type: ignore[no-untyped-def]
            self.calls.append(len(texts))
            return np.ones((len(texts), 4), dtype=np.float32)

    async def run(embedder):  # type: ignore[no-untyped-def]
        batcher = QueryBatcher(embedder, max_batch=4, window=0.01)
        return await asyncio.gather(*(batcher.vector(f"q{i}") for i in range(10)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(run(Broken())))
    counting = Counting()
    assert len(asyncio.run(run(counting))) == 10 and counting.calls == [4, 4, 2]


def test_the_access_log_is_json_lines_without_content_unless_asked(index, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    store = PrincipalStore(write_config(tmp_path / "s.json"))
    caplog.set_level(logging.INFO, logger="ragkit.server.access")
    for log_content in (False, True):
        caplog.clear()
        app = create_app(RAG(index, generator=echo), principals=store,
                         settings=ServerSettings(log_content=log_content))
        with serving(app) as root:
            httpx.post(root + "/search", json={"query": "secret honey question"}, headers=auth("alice"))
            httpx.post(root + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "secret wax"}]},
                       headers=auth("bob"))
            httpx.post(root + "/search", json={"query": "x"})
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ragkit.server.access"]
        search, chat, refused = lines
        assert search["principal"] == "alice" and search["route"] == "/search" and search["status"] == 200
        assert search["hits"] >= 1 and search["ms"] >= 0 and chat["principal"] == "bob" and "hits" in chat
        assert refused["status"] == 401 and refused["principal"] == "anonymous"
        assert ("secret" in json.dumps(lines)) == log_content
