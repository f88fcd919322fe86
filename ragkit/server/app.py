"""An OpenAI-compatible chat server that answers from an index (``ragkit serve``).

Any OpenAI client pointed at it gets grounded answers: each request is retrieved for, prompted
and sent to an upstream chat model (:class:`~ragkit.generators.OpenAICompatible` or any
generator), and the answer comes back in OpenAI's shape plus a top-level ``sources`` list::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="TOKEN")
    reply = client.chat.completions.create(model="ragkit", messages=[{"role": "user", "content": "..."}],
                                           extra_body={"filters": {"source": {"glob": "health/*"}}})
    reply.choices[0].message.content, reply.model_extra["sources"]

Endpoints::

    POST /v1/chat/completions   OpenAI request (+ optional "filters"); JSON or (stream=true) SSE ending
                                in "data: [DONE]"; sources in the response (JSON) or in the last chunk (SSE)
    GET  /v1/models             the one model this server offers
    POST /search                {query, k?, mode?, filters?} -> {query, hits} with per-leg scores
    POST /prompt                {question?, messages?, filters?} -> the prompt that would be sent
    GET  /health                {"status": "loading" | "ok" | "error"}; never needs the token
    GET  /ready                 200 once the index answers a probe search, else 503

Who asks decides what can be found: with ``token`` one caller sees everything; with ``principals``
(a :class:`~ragkit.server.principals.PrincipalStore`) each token has a scope, ANDed with every
search of every route (:func:`~ragkit.server.auth.scope_for`; a router mounted on this app calls it
too). Without either, only loopback Host names are accepted (DNS rebinding). Every request is
bounded before any work (:mod:`ragkit.server.limits`); retrieval and prompt building run in worker
threads, so ``/health`` answers while they run. Errors are OpenAI-style
``{"error": {"message", "type", "param", "code"}}`` (:mod:`ragkit.server.responses`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from ragkit.errors import ConfigError, GeneratorError, GeneratorTimeoutError
from ragkit.generators.base import agenerate, astream
from ragkit.pipeline.rag import RAG, AsyncStreamedAnswer, Retrieved
from ragkit.retrieval.retriever import MAX_QUERY_CHARS
from ragkit.retrieval.settings import SearchMode
from ragkit.server.accesslog import AccessLog, note
from ragkit.server.auth import LOOPBACK_NAMES, BearerAuth, HostCheck, principal_of, scope_for
from ragkit.server.batching import QueryBatcher
from ragkit.server.health import HealthCheck
from ragkit.server.limits import BodyLimit, CallerLimits, RateLimit, check_texts, texts_of_messages
from ragkit.server.principals import PrincipalStore
from ragkit.server.responses import (
    add_error_handlers,
    completion,
    error_response,
    json_bytes,
    next_piece,
    prompt_json,
    sse,
    upstream_error,
)
from ragkit.server.scoping import Pipelines, scoped_rag
from ragkit.server.settings import ServerSettings

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f'ragkit serve needs FastAPI: pip install "ragkit[server]" ({exc})') from exc

__all__ = ["ServerSettings", "create_app"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Sampling options passed on to the upstream model; everything else in a request is ignored.
_FORWARDED = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")


class ChatRequest(BaseModel):
    """The part of OpenAI's chat-completions request this server reads."""

    model_config = ConfigDict(extra="allow")

    messages: list[dict[str, Any]] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    filters: dict[str, Any] | None = None  # OpenAI clients send it as extra_body={"filters": {...}}

    def options(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in _FORWARDED}
        if values["max_tokens"] is None:
            values["max_tokens"] = self.max_completion_tokens
        return {k: v for k, v in values.items() if v is not None}


class SearchRequest(BaseModel):
    query: str = Field(min_length=1)
    k: int | None = Field(default=None, ge=1, le=1000)
    mode: SearchMode | None = None
    filters: dict[str, Any] | None = None


class PromptRequest(BaseModel):
    question: str | None = None
    messages: list[dict[str, Any]] | None = None
    filters: dict[str, Any] | None = None


def create_app(
    rag: RAG,
    *,
    token: str | None = None,
    principals: PrincipalStore | None = None,
    model_name: str = "ragkit",
    sources_in_text: bool = False,
    deadline: float | None = None,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """The FastAPI app serving ``rag``.

    ``token``: require ``Authorization: Bearer <token>`` (all but ``/health`` and ``/ready``);
    ``principals``: tokens from a server config file, each with its scope and limits.
    ``model_name``: the model id listed by ``/v1/models`` and put in responses.
    ``sources_in_text``: also append a "Sources:" list of the cited passages to the answer text,
    for clients that show only the text. ``deadline``: seconds an upstream answer (or, when
    streaming, each piece of it) may take before the request fails with 504, on top of the
    generator's own timeout; ``None`` leaves it to the generator. ``settings``: limits, Host
    allow-list, batching, access log (:class:`ServerSettings`).

    >>> rag = RAG(index, generator=OpenAICompatible(url, model="m"))  # doctest: +SKIP
    >>> app = create_app(rag, token="s3cret")                          # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)                  # doctest: +SKIP
    """
    if deadline is not None and not deadline > 0:
        raise ConfigError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    cfg = settings or ServerSettings()
    app = FastAPI(title="ragkit", description="Retrieval-augmented, OpenAI-compatible chat")
    app.state.rag, app.state.settings, app.state.principals = rag, cfg, principals
    app.state.health = health = HealthCheck(rag.index, ttl=cfg.health_ttl)
    app.state.limits = limits = CallerLimits(requests_per_minute=cfg.requests_per_minute,
                                             max_streams=cfg.max_streams)
    app.state.batcher = batcher = QueryBatcher(
        rag.index.query_encoder.embedder, max_batch=cfg.max_batch, window=cfg.batch_window, parallel=cfg.batch_parallel
    ) if cfg.batch_queries else None
    pipelines = Pipelines(rag)
    _add_middleware(app, cfg, token, principals, limits)
    add_error_handlers(app)
    from ragkit.server.playground import mount_playground  # the page at /, its /ui/ views, POST /v1/feedback

    mount_playground(app, rag)  # after the middleware: only the page's empty shell is answered outside it

    async def upstream(awaitable: Awaitable[T]) -> T:
        if deadline is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, deadline)
        except asyncio.TimeoutError:
            raise GeneratorTimeoutError(f"the upstream model gave no answer within {deadline:g} s") from None

    def pipeline_for(request: Request, asked: dict[str, Any] | None) -> RAG:
        return scoped_rag(pipelines, rag.filters, scope_for(request, asked))

    def check(request: Request, texts: Any) -> None:
        check_texts(texts, max_chars=cfg.max_message_chars, max_total=cfg.max_request_chars)

    @app.get("/health")
    async def health_route() -> dict[str, Any]:
        return await health.current()

    @app.get("/ready")
    async def ready() -> JSONResponse:
        body = await health.current()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        model = {"id": model_name, "object": "model", "created": 0, "owned_by": "ragkit"}
        return {"object": "list", "data": [model]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        if rag.generator is None:
            return error_response(503, "this server has no upstream model; /search and /prompt still work",
                                  "server_error", "no_upstream")
        check(request, texts_of_messages(body.messages))
        scoped = pipeline_for(request, body.filters)
        note(request, content=_last_text(body.messages))
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model or model_name}
        principal = principal_of(request)
        if body.stream:
            limits.open_stream(principal)
        try:
            if not body.stream:
                retrieved = await upstream(_prepare(scoped, body.messages))
                note(request, hits=len(retrieved.hits))
                text = await upstream(agenerate(rag.generator, retrieved.prompt.messages, **body.options()))
                return completion(retrieved.answer(text), meta, rag, sources_in_text)
            streamed = _stream(scoped, body.messages, body.options())
            first = await upstream(next_piece(streamed))
        except BaseException as exc:
            if body.stream:
                limits.close_stream(principal)
            if isinstance(exc, GeneratorError):
                return upstream_error(exc)
            raise
        note(request, hits=len(streamed.retrieved.hits) if streamed.retrieved else 0)
        usage = bool((body.stream_options or {}).get("include_usage"))
        events = sse(streamed, first, meta, rag, upstream, sources_in_text=sources_in_text, usage=usage)
        return StreamingResponse(_closing(events, lambda: limits.close_stream(principal)),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/search")
    async def search(body: SearchRequest, request: Request) -> JSONResponse:
        check(request, [("query", body.query)])
        scoped = pipeline_for(request, body.filters)
        note(request, content=body.query)
        query = body.query[:MAX_QUERY_CHARS]
        vector = None
        if batcher is not None and (body.mode or rag.mode) != "bm25" and query.strip():
            vector = await batcher.vector(query)
        # the answer is encoded in the worker thread too: on the event loop it held up every other request
        content, count = await asyncio.to_thread(_search_answer, scoped, body, query, vector)
        note(request, hits=count)
        return Response(content, media_type="application/json")

    @app.post("/prompt")
    async def prompt(body: PromptRequest, request: Request) -> Any:
        messages = list(body.messages or []) + ([{"role": "user", "content": body.question}] if body.question else [])
        if not messages:
            return error_response(400, "give 'question', 'messages' or both", "invalid_request_error",
                                  "missing_field")
        check(request, texts_of_messages(messages))
        scoped = pipeline_for(request, body.filters)
        note(request, content=_last_text(messages))
        try:
            if body.messages:
                retrieved = await upstream(_prepare(scoped, messages))
            else:  # a bare question: no conversation to condense
                retrieved = await asyncio.to_thread(scoped.prepare, body.question)
        except GeneratorError as exc:  # condense="generator" asks the upstream model
            return upstream_error(exc)
        note(request, hits=len(retrieved.hits))
        return prompt_json(retrieved)

    return app


def _add_middleware(app: FastAPI, cfg: ServerSettings, token: str | None, principals: PrincipalStore | None,
                    limits: CallerLimits) -> None:
    """Outermost first: access log, Host check, body limit, bearer token, rate limit."""
    app.add_middleware(RateLimit, limits=limits)  # each add wraps the ones before: added innermost first
    if token or principals is not None:
        app.add_middleware(BearerAuth, token=token, principals=principals)
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes, timeout=cfg.body_timeout)
    hosts = cfg.allow_hosts if cfg.allow_hosts is not None else (None if token or principals else LOOPBACK_NAMES)
    if hosts:
        app.add_middleware(HostCheck, allowed=hosts)
    app.add_middleware(AccessLog, log_content=cfg.log_content)


def _search_answer(scoped: RAG, body: SearchRequest, query: str, vector: Any) -> tuple[bytes, int]:
    """``/search``'s JSON answer and its number of hits (in a worker thread: retrieval and encoding)."""
    hits = scoped.retrieve(query, k=body.k, mode=body.mode, query_vector=vector)
    return json_bytes({"query": body.query, "hits": [hit.to_dict() for hit in hits]}), len(hits)


async def _prepare(scoped: RAG, messages: list[dict[str, Any]]) -> Retrieved:
    """Condense, retrieve and build the prompt, off the event loop (the upstream condenses when asked)."""
    if scoped.condense == "generator":
        return await scoped.aprepare_chat(messages)
    return await asyncio.to_thread(scoped.prepare_chat, messages)


def _stream(scoped: RAG, messages: list[dict[str, Any]], options: dict[str, Any]) -> AsyncStreamedAnswer:
    async def start() -> tuple[Retrieved, AsyncIterator[str]]:
        retrieved = await _prepare(scoped, messages)
        return retrieved, astream(scoped.generator, retrieved.prompt.messages, **options)

    return AsyncStreamedAnswer(start)


async def _closing(events: AsyncIterator[str], release: Any) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield event
    finally:
        release()


def _last_text(messages: list[dict[str, Any]]) -> str:
    return next((text for _, text in reversed(list(texts_of_messages(messages)))), "")
