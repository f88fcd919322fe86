"""A stand-in language-model server for tests: real HTTP on 127.0.0.1, no model.

It speaks the two chat APIs ragkit's generators use:

* ``POST /v1/chat/completions`` (also ``/chat/completions``): OpenAI's shape, JSON or,
  with ``"stream": true``, server-sent events ending in ``data: [DONE]``;
* ``POST /api/chat``: Ollama's native shape, JSON or NDJSON when streaming
  (Ollama streams unless the body says ``"stream": false``).

Usage::

    with serve_fake_llm() as base_url:              # "http://127.0.0.1:PORT"
        gen = OpenAICompatible(base_url.v1, model="anything")
        gen.generate([{"role": "user", "content": "hi"}])   # -> "ECHO: hi"
        base_url.requests[-1].body["model"]                  # -> "anything"

The yielded value is the root URL as a ``str`` (so it can be passed wherever a
base URL is expected) that also carries ``.v1`` (root + ``/v1``, the OpenAI-style
base), ``.requests`` (every request received, in order) and ``.reset()``.

Behaviour is chosen per server by ``mode`` and per request by the model name: a
request whose ``model`` is one of the modes below uses it, any other name uses
the server's mode.

=====================  ==========================================================
``echo``               reply ``"ECHO: " + " | ".join(contents of all messages)``
``fail-NNN``           always answer HTTP NNN (e.g. ``fail-500``, ``fail-403``)
``fail-NNN-once``      answer HTTP NNN to the first request with this model name,
``fail-NNN-twice``     the first two, or the first K (``fail-NNN-K``), then echo;
``fail-NNN-K``         429 and 503 carry ``Retry-After: <retry_after>``
``slow``               sleep ``delay`` seconds (``slow-0.5``: 0.5 s), then echo
``malformed``          HTTP 200 with a body that is not JSON (a bad SSE/NDJSON line
                       when streaming)
``no-choices``         HTTP 200 with valid JSON lacking ``choices`` / ``message``
``auth``               HTTP 401 whose body quotes the bearer token it was sent
=====================  ==========================================================

With ``token=...`` every request must carry ``Authorization: Bearer <token>``;
others get a 401 whose body quotes the token they sent (as a careless server
might), so tests can check that clients keep keys out of their errors.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_FAIL = re.compile(r"fail-(\d{3})(?:-(once|twice|\d+))?$")
_SLOW = re.compile(r"slow(?:-(\d+(?:\.\d+)?))?$")
_COUNTS = {"once": 1, "twice": 2}
_FIXED_MODES = {"echo", "malformed", "no-choices", "auth"}


@dataclass
class RecordedRequest:
    """One request the fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any = None  # the parsed JSON body, or None when it was not JSON

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages", []))


@dataclass
class _State:
    mode: str
    token: str | None
    delay: float
    retry_after: str
    chunks: int
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)


class FakeLLM(str):
    """The server's root URL, plus ``.v1``, ``.requests`` and ``.reset()``."""

    _state: _State

    @property
    def v1(self) -> str:
        return self + "/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._state.requests

    @property
    def mode(self) -> str:
        return self._state.mode

    @mode.setter
    def mode(self, value: str) -> None:
        _check_mode(value)
        self._state.mode = value

    def reset(self) -> None:
        """Forget recorded requests and the ``fail-NNN-K`` counters."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.failures.clear()


def _check_mode(mode: str) -> None:
    if mode not in _FIXED_MODES and not _FAIL.match(mode) and not _SLOW.match(mode):
        valid = sorted(_FIXED_MODES) + ["fail-NNN", "fail-NNN-once", "fail-NNN-twice", "fail-NNN-K", "slow"]
        raise ValueError(f"unknown fake LLM mode {mode!r}; valid: {', '.join(valid)}")


def echo_text(messages: list[dict[str, Any]]) -> str:
    """What the echo mode answers to ``messages``."""
    parts = [
        m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content")) for m in messages
    ]
    return "ECHO: " + " | ".join(parts)


def _pieces(text: str, n: int) -> list[str]:
    """Split text into about n consecutive pieces that join back to it."""
    words = re.findall(r"\S+\s*|\s+", text) or [""]
    size = max(1, -(-len(words) // n))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeLLM/1.0"
    state: _State  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- request entry points -------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route GET {self.path}"}})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest("POST", self.path, dict(self.headers.items()), raw, body)
        with self.state.lock:
            self.state.requests.append(record)
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/v1/chat/completions", "/chat/completions"):
            self._chat(body, ollama=False)
        elif path == "/api/chat":
            self._chat(body, ollama=True)
        else:
            self._json(404, {"error": {"message": f"no route POST {self.path}"}})

    # -- behaviour ------------------------------------------------------------------------
    def _chat(self, body: Any, *, ollama: bool) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._json(400, {"error": {"message": "body must be JSON with a 'messages' list"}})
            return
        model = str(body.get("model", ""))
        mode = model if model in _FIXED_MODES or _FAIL.match(model) or _SLOW.match(model) else self.state.mode
        streaming = body.get("stream", ollama) is True
        sent = self.headers.get("Authorization", "")
        if mode == "auth" or (self.state.token and sent != f"Bearer {self.state.token}"):
            presented = sent.removeprefix("Bearer ")
            self._json(401, {"error": {"message": f"Incorrect API key provided: {presented}", "code": 401}})
            return
        fail = _FAIL.match(mode)
        if fail and self._should_fail(model or mode, fail.group(2)):
            status = int(fail.group(1))
            headers = {"Retry-After": self.state.retry_after} if status in (429, 503) else {}
            self._json(status, {"error": {"message": f"fake failure {status}"}}, headers)
            return
        slow = _SLOW.match(mode)
        if slow:
            self.state.closing.wait(float(slow.group(1) or self.state.delay))
        if mode == "malformed":
            self._send(200, b"data: {not json\n\n" if streaming else b'{"choices": [ not json', "text/plain")
            return
        text = echo_text(body["messages"])
        if mode == "no-choices":
            self._json(200, {"id": "x", "object": "chat.completion", "model": model})
        elif ollama:
            self._ollama(model, text, streaming)
        else:
            self._openai(model, text, streaming)

    def _should_fail(self, key: str, count: str | None) -> bool:
        if count is None:
            return True
        limit = _COUNTS.get(count) or int(count)
        with self.state.lock:
            done = self.state.failures.get(key, 0)
            self.state.failures[key] = done + 1
        return done < limit

    def _openai(self, model: str, text: str, streaming: bool) -> None:
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not streaming:
            usage = {"prompt_tokens": len(text.split()), "completion_tokens": len(text.split())}
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        deltas = [{"role": "assistant"}] + [{"content": p} for p in _pieces(text, self.state.chunks)] + [{}]
        lines = []
        for i, delta in enumerate(deltas):
            choice = {"index": 0, "delta": delta, "finish_reason": "stop" if i == len(deltas) - 1 else None}
            lines.append(
                b"data: "
                + json.dumps({**base, "object": "chat.completion.chunk", "choices": [choice]}).encode()
            )
        self._stream("text/event-stream", [line + b"\n\n" for line in lines + [b"data: [DONE]"]])

    def _ollama(self, model: str, text: str, streaming: bool) -> None:
        base = {"model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        final = {**base, "done": True, "done_reason": "stop", "eval_count": len(text.split())}
        if not streaming:
            self._json(200, {**final, "message": {"role": "assistant", "content": text}})
            return
        events = [
            {**base, "message": {"role": "assistant", "content": p}, "done": False}
            for p in _pieces(text, self.state.chunks)
        ]
        events.append({**final, "message": {"role": "assistant", "content": ""}})
        self._stream("application/x-ndjson", [json.dumps(e).encode() + b"\n" for e in events])

    # -- writing --------------------------------------------------------------------------
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    def _stream(self, ctype: str, parts: list[bytes]) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            for part in parts:
                self.wfile.write(part)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-response is expected in timeout tests


@contextmanager
def serve_fake_llm(
    mode: str = "echo",
    *,
    token: str | None = None,
    delay: float = 2.0,
    retry_after: float = 1,
    chunks: int = 4,
) -> Iterator[FakeLLM]:
    """Run a fake chat-model server on an ephemeral 127.0.0.1 port for the ``with`` block.

    mode: the behaviour for requests whose model name is not itself a mode (see the module doc).
    token: when set, every request needs ``Authorization: Bearer <token>``.
    delay: how long ``slow`` sleeps before answering, in seconds.
    retry_after: the ``Retry-After`` seconds sent with 429 and 503 failures.
    chunks: about how many content pieces a streamed answer is split into.
    """
    _check_mode(mode)
    state = _State(mode=mode, token=token, delay=delay, retry_after=f"{retry_after:g}", chunks=chunks)
    handler = type("FakeLLMHandler", (_Handler,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = FakeLLM(f"http://127.0.0.1:{server.server_address[1]}")
    url._state = state
    try:
        yield url
    finally:
        state.closing.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
