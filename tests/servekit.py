"""Helpers for the server tests: a two-team index on the fake embedder, a uvicorn server on loopback in a
thread, a scripted upstream that answers whatever bytes a test gives it, and a server config file."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fakes import open_fake_index

from ragkit import Document
from ragkit.server.principals import hash_token

TEAM_A = [
    Document("a-varroa", "Varroa mites are parasites of honey bees; treat with oxalic acid in winter.",
             {"source": "a/varroa.md", "team": "a", "acl": ["red"]}),
    Document("a-swarm", "Swarming colonies leave with the old queen in May; catch the swarm in a box.",
             {"source": "a/swarm.md", "team": "a", "acl": ["red", "blue"]}),
    Document("a-honey", "Harvest honey when the frames are capped and spin them in an extractor.",
             {"source": "a/honey.md", "team": "a", "acl": ["red"]}),
]
TEAM_B = [
    Document("b-foulbrood", "American foulbrood kills bee larvae; burn infected colonies and frames.",
             {"source": "b/foulbrood.md", "team": "b", "acl": ["green"]}),
    Document("b-wax", "Beeswax melts at 62 degrees; render old comb in a solar wax melter.",
             {"source": "b/wax.md", "team": "b", "acl": ["green"]}),
    Document("b-queen", "A queen excluder keeps the queen in the brood box below the honey supers.",
             {"source": "b/queen.md", "team": "b", "acl": ["green", "blue"]}),
]
TOKENS = {"alice": "alice-token", "bob": "bob-token", "carol": "carol-token"}


def two_team_index(path: Path) -> Any:
    index = open_fake_index(path)
    index.add(TEAM_A + TEAM_B)
    return index


def write_config(path: Path, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """alice sees team a, bob team b, carol the acl group "blue" (one doc of each team)."""
    principals = [
        {"name": "alice", "token_sha256": hash_token(TOKENS["alice"]), "filters": {"team": "a"}},
        {"name": "bob", "token_sha256": hash_token(TOKENS["bob"]), "filters": {"team": {"in": ["b"]}}},
        {"name": "carol", "token_sha256": hash_token(TOKENS["carol"]), "groups": ["blue"]},
    ]
    for p in principals:
        p.update((extra or {}).get(p["name"], {}))
    path.write_text(json.dumps({"principals": principals}), encoding="utf-8")
    return path


def echo(messages: list[dict[str, str]], **options: Any) -> str:
    """A generator that repeats the prompt it was given, so a test sees every passage it held."""
    return "ANSWER [1] " + " | ".join(m["content"] for m in messages)


@contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on an ephemeral loopback port in a thread; yield its root URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **{"lifespan": "off", **config}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def scripted_upstream(reply: Callable[[dict[str, Any]], Iterator[bytes]]) -> Iterator[str]:
    """An upstream whose every POST gets status 200 and the bytes ``reply(body)`` yields (no length)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if body.get("stream") else "application/json")
            self.end_headers()
            try:
                for chunk in reply(body):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
