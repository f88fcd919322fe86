"""Remember each chat completion under its id, so a rating can be stored with what was judged.

The completion id is made by the chat endpoint and sent in its response; the prompt is made inside
the pipeline. :class:`CompletionCapture` joins the two without the endpoint knowing: for each
``POST /v1/chat/completions`` it opens a slot (a context variable, which the pipeline's worker
threads and tasks inherit), :class:`RecordingGenerator` (the pipeline's generator, wrapped) puts the
messages of every model call in the open slot, and when the response has been sent the capture reads
the id, the answer text and the sources from it (JSON or server-sent events) and remembers the
:class:`~ragkit.feedback.record.CompletionRecord` in a bounded
:class:`~ragkit.feedback.record.RecentCompletions`. Nothing is written to disk here.

Why the generator: every way the server answers (scoped or not, streamed or not) ends in one call of
the pipeline's generator with exactly the messages the model gets, so that is where they are read.
"""

from __future__ import annotations

import contextvars
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ragkit.errors import RagkitError
from ragkit.feedback.record import CompletionRecord, RecentCompletions
from ragkit.pipeline.rag import normalize_messages
from ragkit.prompting.templates import messages_to_text
from ragkit.server.playground.access import principal_of

__all__ = ["CHAT_PATH", "CompletionCapture", "RecordingGenerator"]

logger = logging.getLogger(__name__)
CHAT_PATH = "/v1/chat/completions"
MAX_REQUEST_BYTES = 4_000_000  # a request body above this is passed on but not remembered


@dataclass
class _Slot:
    calls: list[list[dict[str, str]]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    request: bytearray = field(default_factory=bytearray)
    response: bytearray = field(default_factory=bytearray)
    status: int = 0
    streamed: bool = False
    principal: str | None = None


_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("ragkit_completion_slot", default=None)


class RecordingGenerator:
    """A generator that notes the messages of each call in the current chat request's slot, then
    passes the call on. It offers exactly the methods the wrapped generator has, so the pipeline
    streams (or not) as before; outside a chat request it only passes calls on."""

    _WRAPPED = ("stream", "agenerate", "astream")

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return repr(self.inner)

    def generate(self, messages: Any, **options: Any) -> str:
        _note(messages)
        reply = self.inner.generate(messages, **options)
        _note_reply(reply)
        return reply

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name not in self._WRAPPED or not callable(found):
            return found
        if name == "agenerate":
            async def agenerate(messages: Any, **options: Any) -> str:
                _note(messages)
                reply = await found(messages, **options)
                _note_reply(reply)
                return reply
            return agenerate

        def noted(messages: Any, **options: Any) -> Any:
            _note(messages)
            return found(messages, **options)
        return noted


def _note(messages: Any) -> None:
    slot = _SLOT.get()
    if slot is not None:
        slot.calls.append([dict(m) for m in messages])


def _note_reply(reply: Any) -> None:
    slot = _SLOT.get()
    if slot is not None and isinstance(reply, str):
        slot.replies.append(reply)


class CompletionCapture:
    """ASGI middleware: remembers every answered chat completion in ``completions``."""

    def __init__(self, app: Any, *, completions: RecentCompletions, rag: Any) -> None:
        self.app = app
        self.completions = completions
        self.rag = rag

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        slot = _Slot()
        token = _SLOT.set(slot)

        async def teed_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request" and len(slot.request) < MAX_REQUEST_BYTES:
                slot.request += message.get("body", b"")
            return message

        async def teed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                slot.status = message["status"]
                slot.principal = principal_of(scope)  # set by the token check inside, on this same scope
                headers = dict(message.get("headers") or [])
                slot.streamed = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            elif message["type"] == "http.response.body":
                slot.response += message.get("body", b"")
                if not message.get("more_body", False):  # before the client sees the end, so a rating can follow at once
                    self._remember(slot)
            await send(message)

        try:
            await self.app(scope, teed_receive, teed_send)
        finally:
            _SLOT.reset(token)

    def _remember(self, slot: _Slot) -> None:
        if slot.status != 200 or not slot.calls:
            return
        try:
            completion_id, text, sources = (_read_stream if slot.streamed else _read_json)(bytes(slot.response))
            turns = _turns(json.loads(bytes(slot.request)))
        except (ValueError, KeyError, IndexError, TypeError, RagkitError) as exc:
            logger.warning("chat completion not remembered for feedback: %s", exc)
            return
        if not completion_id:
            return
        messages = slot.calls[-1]
        passages = [{k: s.get(k) for k in ("marker", "chunk_id", "doc_id", "source", "page", "title", "score")}
                    for s in sources]
        hits = [{"chunk_id": p["chunk_id"], "doc_id": p["doc_id"], "rank": p["marker"], "score": p["score"],
                 "source": p["source"]} for p in passages]
        self.completions.remember(CompletionRecord(
            completion_id, turns[-1]["content"], self._query(turns, slot), text, messages_to_text(messages),
            messages, passages, hits, context_sufficient=bool(passages), principal=slot.principal))

    def _query(self, turns: list[dict[str, str]], slot: _Slot) -> str:
        """What was searched: the rule's condensed query (cheap, the same as the pipeline's), or the
        model's rewrite when the pipeline asked the model (its first reply, before the answer)."""
        if self.rag.condense == "generator":
            rewrite = slot.replies[0].strip().splitlines()[0].strip() if len(slot.calls) > 1 and slot.replies else ""
            return rewrite or turns[-1]["content"]
        return self.rag.condense_query(turns)


def _read_json(body: bytes) -> tuple[str, str, list[dict[str, Any]]]:
    data = json.loads(body)
    return data["id"], data["choices"][0]["message"]["content"], list(data.get("sources") or [])


def _read_stream(body: bytes) -> tuple[str, str, list[dict[str, Any]]]:
    completion_id, parts, sources = "", [], []
    for line in body.decode("utf-8").splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        completion_id = completion_id or event.get("id", "")
        sources = event.get("sources") or sources
        for choice in event.get("choices") or []:
            parts.append((choice.get("delta") or {}).get("content") or "")
    return completion_id, "".join(parts), list(sources)


def _turns(request: dict[str, Any]) -> list[dict[str, str]]:
    return normalize_messages(request["messages"])
