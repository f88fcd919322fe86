"""The playground end to end in a real headless Chromium, everything on loopback and the network
blocked for the browser: ask, watch the answer stream in with citation markers, open the cited
passage, approve it, see it among the examples for a similar question, tune from the feedback and see
its document lifted for that question. Also takes a screenshot of each view: the README's are made with
``RAGKIT_SCREENSHOTS=docs/playground pytest tests/integration/test_playground_browser.py`` (without
the variable they go to a temporary folder, so a test run never writes into the checkout).

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and ``pip install playwright`` (its
own browser download is never used); skipped with the reason when either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_missing = None if Path(CHROMIUM).exists() else "the browser tests need Debian's chromium: apt-get install -y chromium"
try:
    from playwright import sync_api
except ImportError:
    _missing = _missing or "the browser tests need playwright: pip install playwright"
if _missing and os.environ.get("RAGKIT_REQUIRE_BROWSER"):  # CI sets it: there a missing browser is a failure
    pytest.fail(_missing, pytrace=False)
if _missing:
    pytest.skip(_missing, allow_module_level=True)
uvicorn = pytest.importorskip("uvicorn")

from fakes import FakeEmbedder, open_fake_index
from feedback_corpus import approve_targets, documents, topics

from ragkit.cli.commands import main
from ragkit.feedback import FeedbackStore
from ragkit.generators.http import OpenAICompatible
from ragkit.pipeline.rag import RAG
from ragkit.prompting.builder import PromptBuilder
from ragkit.server.app import create_app
from ragkit.types import Document

TOKEN = "s3cret-e2e"
TOPICS = topics()
ASKED, SIMILAR = TOPICS[0].questions()
ANSWER = ["The passage ", "says who ", "looks after it ", "[1]."]  # streamed piece by piece
HOSTILE = Document("hostile", "Who tends things? <script>window.pwned=1</script><img src=x onerror='window.pwned=2'>",
                   {"source": "hostile.md", "kind": "note"})
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


class _Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat model that streams one fixed answer citing [1]."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send(200, "application/json", json.dumps({"data": [{"id": "fixed"}]}).encode())

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not body.get("stream"):
            reply = {"id": "up", "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(ANSWER)},
                                              "finish_reason": "stop"}]}
            self._send(200, "application/json", json.dumps(reply).encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ANSWER:
            chunk = {"id": "up", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.05)
        self.wfile.write(b"data: [DONE]\n\n")

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def ragkit_server(path: Path, upstream_url: str) -> Iterator[str]:
    """``ragkit serve`` in-process (the fake embedder instead of the model) on a free loopback port."""
    index = open_fake_index(path)
    rag = RAG(index, PromptBuilder("qa", min_score=None), OpenAICompatible(upstream_url, model="fixed"), k=5)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(rag, token=TOKEN), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        index.close()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("playground") / "kb.ragkit"
    with open_fake_index(path) as index:
        index.add([*documents(TOPICS), HOSTILE])
        approve_targets(index, FeedbackStore.for_index(index), TOPICS[1:])  # 30 people approved other answers
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 860})
        context.left_loopback = []  # type: ignore[attr-defined]

        def offline(route: Any) -> None:
            if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                context.left_loopback.append(route.request.url)  # type: ignore[attr-defined]
                route.abort()

        context.route("**/*", offline)
        yield context
        context.close()


def sign_in(page: Any, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token-form input[name=token]", TOKEN)
    page.click("#token-form button")
    page.wait_for_selector("#search-form")


def test_ask_open_approve_see_the_example_tune_and_see_the_lift(kb: Path, browser: Any, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    shots = Path(os.environ.get("RAGKIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    with upstream() as model, ragkit_server(kb, model) as url:
        sign_in(page, url)
        # Search: the hostile document's markup is text, and nothing of it runs
        page.fill("#search-form input[name=q]", "who tends things")
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("#search-results table.hits")
        assert "<script>window.pwned=1</script>" in page.inner_text("#search-results")
        page.fill("#search-form input[name=q]", SIMILAR)
        page.click("#search-form button[type=submit]")
        page.wait_for_selector(f"#search-results >> text={TOPICS[0].thing}")
        page.click("#search-results button.open >> nth=0")
        page.wait_for_selector("#passage:not([hidden]) .hit-text")
        page.screenshot(path=str(shots / "search.png"))
        page.click("#passage button.close")

        # Chat: the answer streams in; its marker opens the cited passage; thumbs up
        page.click("#tabs button[data-tab=chat]")
        page.fill("#chat-form input[name=message]", ASKED)
        page.click("#chat-form button[type=submit]")
        page.wait_for_selector(".turn.assistant.streaming")  # seen while the pieces arrive
        page.wait_for_selector(".turn.assistant:not(.streaming) .meta .feedback-form")
        assert page.inner_text(".turn.assistant .text") == "".join(ANSWER)
        page.click(".turn.assistant .text button.marker")
        page.wait_for_selector("#passage:not([hidden]) .hit-text")
        cited = page.inner_text("#passage h2")
        page.screenshot(path=str(shots / "chat.png"))
        page.click("#passage button.close")
        page.click(".feedback-form button.rate[data-rating=up]")
        page.wait_for_selector(".feedback-status >> text=saved (approved)")

        # Prompt: a similar question is prompted with the approved answer, its origin shown
        page.click("#tabs button[data-tab=prompt]")
        page.fill("#prompt-form input[name=question]", SIMILAR)
        page.click("#prompt-form button[type=submit]")
        page.wait_for_selector("#prompt-result .examples")
        examples = page.inner_text("#prompt-result .examples")
        assert "(thumbs up)" in examples and "".join(ANSWER) in examples and ASKED in examples
        page.screenshot(path=str(shots / "prompt.png"), full_page=False)
        assert page.evaluate("window.pwned === undefined")

    approved = [f for f in FeedbackStore.for_index(kb).approved() if f.record.question == ASKED]
    assert len(approved) == 1 and approved[0].principal == "default"
    cited_doc = approved[0].cited_doc_ids[0]

    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    assert main(["tune", "--index", str(kb), "--from-feedback", "-q"]) == 0
    with open_fake_index(kb) as index:
        lifted = next(h for h in index.search(SIMILAR, 5) if h.doc_id == cited_doc)
        assert lifted.associated_question == ASKED and lifted.association_score > 0

    with upstream() as model, ragkit_server(kb, model) as url:  # a restarted server searches with the tuned settings
        sign_in(page, url)
        page.click("#tabs button[data-tab=compare]")
        page.fill("#compare-form input[name=q]", SIMILAR)
        page.select_option("#compare-form select[name='b.associations']", "off")
        page.click("#compare-form button[type=submit]")
        page.wait_for_selector("#compare-results table.hits")
        left = page.inner_text("#compare-results .column >> nth=0")
        assert ASKED in left  # the association column names the approved question
        assert ASKED not in page.inner_text("#compare-results .column >> nth=1")
        page.screenshot(path=str(shots / "compare.png"))
    assert cited in (cited_doc, *[d.metadata.get("source") for d in documents(TOPICS) if d.id == cited_doc])
    assert browser.left_loopback == []
