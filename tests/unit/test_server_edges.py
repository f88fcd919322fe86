"""Issue 20, edges: every probe finding is refused fast and cheaply, and /health keeps answering meanwhile.
A real uvicorn server on loopback over a real index on the fake embedder."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")

from servekit import echo, rss_mb, scripted_upstream, serving, two_team_index

from ragkit.errors import IndexCorruptError
from ragkit.generators.http import OpenAICompatible
from ragkit.pipeline.rag import RAG
from ragkit.server.app import ServerSettings, create_app
from ragkit.server.protocol import header_timeout_protocol


def wait_for_health(root: str) -> str:
    """The first state other than "loading" (the first probe runs in the background)."""
    deadline = time.monotonic() + 10
    while (state := httpx.get(root + "/health").json()["status"]) == "loading" and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    with two_team_index(tmp_path / "kb.ragkit") as ix:
        yield ix


@pytest.fixture
def searches(index, monkeypatch):  # type: ignore[no-untyped-def]
    calls: list[str] = []
    search = index.search
    monkeypatch.setattr(index, "search", lambda q, *a, **kw: calls.append(q) or search(q, *a, **kw))
    return calls


def test_a_big_body_is_a_fast_413_with_bounded_memory(index, searches) -> None:  # type: ignore[no-untyped-def]
    app = create_app(RAG(index, generator=echo), settings=ServerSettings(max_body_bytes=2**20))
    blob = b"x" * (20 * 2**20)
    with serving(app) as root:
        before = rss_mb()
        started = time.perf_counter()
        declared = httpx.post(root + "/v1/chat/completions", content=blob, headers={"Content-Type": "application/json"})
        declared_s = time.perf_counter() - started

        def chunks():  # no Content-Length: the limit must count while reading
            for _ in range(20):
                yield b"x" * 2**20

        chunked = httpx.post(root + "/search", content=chunks(), headers={"Content-Type": "application/json"})
        grown = rss_mb() - before
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "request_too_large"
    assert "--max-body-mb" in declared.json()["error"]["message"] and declared_s < 2.0
    assert chunked.status_code == 413
    assert grown < 60 and searches == []  # the 20 MB bodies were never held whole; nothing was searched


def test_long_messages_and_lone_surrogates_are_400s_before_any_retrieval(index, searches) -> None:  # type: ignore[no-untyped-def]
    app = create_app(RAG(index, generator=echo), settings=ServerSettings(max_message_chars=1000))
    long = [{"role": "user", "content": "varroa " * 1000}]
    surrogate = '{"messages": [{"role": "user", "content": "varroa \\ud800 mites"}]}'
    with serving(app) as root:
        too_long = httpx.post(root + "/v1/chat/completions", json={"messages": long})
        prompt_long = httpx.post(root + "/prompt", json={"question": "x" * 1001})
        bad = [httpx.post(root + path, content=body, headers={"Content-Type": "application/json"})
               for path, body in [("/v1/chat/completions", surrogate), ("/prompt", surrogate),
                                  ("/search", '{"query": "varroa \\udc00"}')]]
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "message_too_long"
    assert prompt_long.status_code == 400
    assert [r.status_code for r in bad] == [400, 400, 400]
    assert {r.json()["error"]["code"] for r in bad} <= {"invalid_unicode", "invalid_request"}  # ours or pydantic's
    assert searches == []


def test_health_answers_within_100ms_while_a_big_request_is_refused_and_a_slow_search_runs(index, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    search = index.search

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        deadline, m = time.perf_counter() + 1.5, np.ones((200, 200))
        while time.perf_counter() < deadline:  # CPU-bound in native code, as embedding and ranking are
            m = np.sort(m, axis=0)
        return search(*args, **kwargs)

    app = create_app(RAG(index, generator=echo), settings=ServerSettings(max_body_bytes=2**20))
    with serving(app) as root:
        assert wait_for_health(root) == "ok"
        monkeypatch.setattr(index, "search", slow)
        busy = [threading.Thread(target=httpx.post, args=(root + "/search",), kwargs={"json": {"query": "varroa"},
                                                                                    "timeout": 30})]
        big = {"messages": [{"role": "user", "content": "x" * (8 * 2**20)}]}
        busy.append(threading.Thread(target=httpx.post, args=(root + "/v1/chat/completions",),
                                     kwargs={"content": json.dumps(big), "timeout": 30}))
        for t in busy:
            t.start()
        time.sleep(0.2)
        latencies = []
        with httpx.Client() as poll:  # one client: making one costs more CPU than the request
            for _ in range(10):
                started = time.perf_counter()
                assert poll.get(root + "/health").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)
        for t in busy:
            t.join()
    assert max(latencies) < 0.1, latencies


def test_health_and_ready_report_a_broken_index_without_paths(index, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = create_app(RAG(index, generator=echo), settings=ServerSettings(health_ttl=0.01))
    with serving(app) as root:
        assert wait_for_health(root) == "ok" and httpx.get(root + "/ready").status_code == 200

        def broken():  # type: ignore[no-untyped-def]
            raise IndexCorruptError(f"{index.path}/segments/v1.faiss fails its checksum")

        monkeypatch.setattr(index.backend, "snapshot", broken)
        httpx.get(root + "/health")  # starts the probe that finds it
        time.sleep(0.3)
        health, ready = httpx.get(root + "/health"), httpx.get(root + "/ready")
        search = httpx.post(root + "/search", json={"query": "varroa"})
    assert health.status_code == 200 and health.json()["status"] == "error"
    assert "IndexCorruptError" in health.json()["reason"]
    assert ready.status_code == 503 and search.status_code == 500
    for text in (health.text, ready.text, search.text):
        assert str(index.path) not in text and "segments" not in text


def test_without_a_token_only_loopback_host_names_are_served(index) -> None:  # type: ignore[no-untyped-def]
    with serving(create_app(RAG(index, generator=echo))) as root:
        port = root.rsplit(":", 1)[1]
        ok = [httpx.get(root + "/v1/models", headers={"Host": f"{h}:{port}"}).status_code
              for h in ("localhost", "127.0.0.1", "[::1]")]
        rebound = httpx.post(root + "/search", json={"query": "varroa"}, headers={"Host": "evil.example:80"})
    with serving(create_app(RAG(index, generator=echo), token="t")) as root:
        with_token = httpx.get(root + "/v1/models", headers={"Host": "kb.example", "Authorization": "Bearer t"})
    assert ok == [200, 200, 200]
    assert rebound.status_code == 421 and "--allow-host" in rebound.json()["error"]["message"]
    assert with_token.status_code == 200


def test_slow_headers_are_cut_off_by_the_header_timeout(index) -> None:  # type: ignore[no-untyped-def]
    app = create_app(RAG(index, generator=echo))
    with serving(app, http=header_timeout_protocol(0.3)) as root:
        host, port = root.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")  # and never the blank line
            slow.settimeout(3)
            started = time.perf_counter()
            assert slow.recv(100) == b""  # closed by the server
            assert time.perf_counter() - started < 2
        assert httpx.get(root + "/health").status_code == 200


def test_a_garbage_stream_is_a_502_and_a_truncated_one_an_error_event(index) -> None:  # type: ignore[no-untyped-def]
    def reply(body):  # type: ignore[no-untyped-def]
        if body["messages"][-1]["content"].endswith("garbage"):
            yield b"<html>not an event stream</html>\n" * 3
        else:  # two good events, then the connection ends: no [DONE]
            for piece in ("Treat ", "in winter"):
                yield b'data: {"choices": [{"delta": {"content": "' + piece.encode() + b'"}}]}\n\n'

    with scripted_upstream(reply) as url:
        gen = OpenAICompatible(url, model="m", max_retries=0, timeout=5)
        rag = RAG(index, generator=gen, condense=None, builder="chat")
        with serving(create_app(rag)) as root:
            ask = lambda q: {"messages": [{"role": "user", "content": q}], "stream": True}
            garbage = httpx.post(root + "/v1/chat/completions", json=ask("varroa garbage"))
            cut = httpx.post(root + "/v1/chat/completions", json=ask("varroa cut"))
    assert garbage.status_code == 502 and garbage.json()["error"]["code"] == "upstream_bad_response"
    assert cut.status_code == 200
    events = [json.loads(line[6:]) for line in cut.text.splitlines() if line.startswith("data: {")]
    assert "error" in events[-1] and "[DONE]" in events[-1]["error"]["message"]
    assert "data: [DONE]" not in cut.text.splitlines() and not any(e.get("choices", [{}])[0].get("finish_reason") == "stop"
                                                       for e in events[:-1])


def test_a_body_that_trickles_in_is_a_408(index) -> None:  # type: ignore[no-untyped-def]
    app = create_app(RAG(index, generator=echo), settings=ServerSettings(body_timeout=0.5))
    with serving(app) as root:
        host, port = root.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"query\": ")  # and the rest never
            slow.settimeout(5)
            started = time.perf_counter()
            answer = b""
            while b"did not arrive" not in answer:  # headers and body may come in separate segments
                part = slow.recv(4096)
                if not part:
                    break
                answer += part
        ok = httpx.post(root + "/search", json={"query": "varroa"})
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in answer
    assert time.perf_counter() - started < 3 and ok.status_code == 200
