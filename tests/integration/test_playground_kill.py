"""Feedback survives a SIGKILL of the server right after ``POST /v1/feedback`` answered 200: a real
``uvicorn`` server in a child process (fake embedder, a stand-in generator), killed with no warning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from fakes import open_fake_index
from feedback_corpus import documents, topics

from ragkit.feedback import FeedbackStore

TESTS = Path(__file__).resolve().parents[1]
SERVER = textwrap.dedent("""
    import socket, sys
    sys.path[:0] = [{tests!r}, {root!r}]
    import uvicorn
    from fakes import open_fake_index
    from ragkit.pipeline.rag import RAG
    from ragkit.prompting.builder import PromptBuilder
    from ragkit.server.app import create_app

    rag = RAG(open_fake_index({index!r}), PromptBuilder("qa", min_score=None),
              lambda messages, **o: "Ask the keeper [1].", k=3)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before the port is printed: a request queues until uvicorn accepts it
    app = create_app(rag, token="t0ken")
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
""")


def test_feedback_is_on_disk_when_the_200_arrives(tmp_path: Path) -> None:
    path = tmp_path / "kb.ragkit"
    found = topics(4)
    with open_fake_index(path) as index:
        index.add(documents(found))
    script = SERVER.format(tests=str(TESTS), root=str(TESTS.parent), index=str(path))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        port = int(child.stdout.readline())  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers={"Authorization": "Bearer t0ken"}, timeout=30) as http:
            ids = []
            for topic in found:
                reply = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": topic.questions()[0]}]})
                ids.append(reply.json()["id"])
            for i, completion in enumerate(ids):
                body = {"completion_id": completion, "rating": "up" if i % 2 else "down", "comment": f"n{i}"}
                assert http.post("/v1/feedback", json=body).status_code == 200
        os.kill(child.pid, signal.SIGKILL)  # at once after the last 200: no shutdown, no checkpoint
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    stored = FeedbackStore.for_index(path).all()
    assert [f.completion_id for f in stored] == ids
    assert [f.comment for f in stored] == ["n0", "n1", "n2", "n3"] and stored[-1].rating == "up"
    assert all(f.principal == "default" and f.created > 0 for f in stored)
    assert stored[0].record.question == found[0].questions()[0] and stored[0].record.answer == "Ask the keeper [1]."
    json.dumps([f.to_dict() for f in stored])  # exportable as it is
