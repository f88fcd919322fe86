"""An OpenAI-compatible chat server that answers from an index (``ragkit serve``).

Any OpenAI client pointed at it gets grounded answers: each request is retrieved for, prompted
and sent to an upstream chat model (:class:`~ragkit.generators.OpenAICompatible` or any
generator), and the answer comes back in OpenAI's shape plus a top-level ``sources`` list::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="TOKEN")
    reply = client.chat.completions.create(model="ragkit", messages=[{"role": "user", "content": "..."}])
    reply.choices[0].message.content, reply.model_extra["sources"]

Endpoints::

    POST /v1/chat/completions   OpenAI request; JSON or (stream=true) SSE ending in "data: [DONE]";
                                sources in the response (JSON) or in the last chunk (SSE)
    GET  /v1/models             the one model this server offers
    POST /search                {query, k?, mode?, filters?} -> {query, hits} with per-leg scores
    POST /prompt                {question?, messages?} -> the prompt that would be sent
    GET  /health                {"status": "ok"}; never needs the token

With ``token`` set, every endpoint but ``/health`` needs ``Authorization: Bearer <token>``;
without it the answer is a 401 and nothing is retrieved. Errors are OpenAI-style
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad request, 401, 404, and for
the upstream model 502 (down, refused credentials, malformed answer) or 504 (timeout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import asdict
from typing import Any, TypeVar

from ragkit.errors import (
    ConfigError,
    GeneratorAuthError,
    GeneratorError,
    GeneratorResponseError,
    GeneratorTimeoutError,
    RagkitError,
)
from ragkit.pipeline.rag import RAG, Answer, AsyncStreamedAnswer, Retrieved
from ragkit.retrieval.settings import SearchMode
from ragkit.server.auth import BearerAuth

try:
    from fastapi import FastAPI
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f'ragkit serve needs FastAPI: pip install "ragkit[server]" ({exc})') from exc

__all__ = ["create_app"]

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


def create_app(
    rag: RAG,
    *,
    token: str | None = None,
    model_name: str = "ragkit",
    sources_in_text: bool = False,
    deadline: float | None = None,
) -> FastAPI:
    """The FastAPI app serving ``rag``.

    ``token``: require ``Authorization: Bearer <token>`` (all but ``/health``).
    ``model_name``: the model id listed by ``/v1/models`` and put in responses.
    ``sources_in_text``: also append a "Sources:" list of the cited passages to the answer text,
    for clients that show only the text. ``deadline``: seconds an upstream answer (or, when
    streaming, each piece of it) may take before the request fails with 504, on top of the
    generator's own timeout; ``None`` leaves it to the generator.

    >>> rag = RAG(index, generator=OpenAICompatible(url, model="m"))  # doctest: +SKIP
    >>> app = create_app(rag, token="s3cret")                          # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)                  # doctest: +SKIP
    """
    if deadline is not None and not deadline > 0:
        raise ConfigError(f"deadline must be a positive number of seconds or None, got {deadline!r}")
    app = FastAPI(title="ragkit", description="Retrieval-augmented, OpenAI-compatible chat")
    app.state.rag = rag
    if token:
        app.add_middleware(BearerAuth, token=token)
    _add_error_handlers(app)

    async def upstream(awaitable: Awaitable[T]) -> T:
        if deadline is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, deadline)
        except asyncio.TimeoutError:
            raise GeneratorTimeoutError(f"the upstream model gave no answer within {deadline:g} s") from None

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        model = {"id": model_name, "object": "model", "created": 0, "owned_by": "ragkit"}
        return {"object": "list", "data": [model]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatRequest) -> Any:
        if rag.generator is None:
            return error_response(503, "this server has no upstream model; /search and /prompt still work",
                                  "server_error", "no_upstream")
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": request.model or model_name}
        try:
            if not request.stream:
                answer = await upstream(rag.achat(request.messages, **request.options()))
                return _completion(answer, meta, rag, sources_in_text)
            streamed = rag.achat_stream(request.messages, **request.options())
            first = await upstream(_next_piece(streamed))
        except GeneratorError as exc:
            return upstream_error(exc)
        usage = bool((request.stream_options or {}).get("include_usage"))
        events = _sse(streamed, first, meta, rag, upstream, sources_in_text=sources_in_text, usage=usage)
        headers = {"Cache-Control": "no-cache"}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    @app.post("/search")
    async def search(request: SearchRequest) -> dict[str, Any]:
        hits = await asyncio.to_thread(rag.retrieve, request.query, k=request.k, mode=request.mode,
                                       filters=request.filters)
        return {"query": request.query, "hits": jsonable_encoder([hit.to_dict() for hit in hits])}

    @app.post("/prompt")
    async def prompt(request: PromptRequest) -> Any:
        if request.messages:
            asked = [{"role": "user", "content": request.question}] if request.question else []
            messages = request.messages + asked
            try:
                retrieved = await upstream(rag.aprepare_chat(messages))
            except GeneratorError as exc:  # condense="generator" asks the upstream model
                return upstream_error(exc)
        elif request.question:
            retrieved = await asyncio.to_thread(rag.prepare, request.question)
        else:
            return error_response(400, "give 'question', 'messages' or both", "invalid_request_error",
                                  "missing_field")
        return _prompt_json(retrieved)

    return app


# -- responses ---------------------------------------------------------------------------------


def _completion(answer: Answer, meta: dict[str, Any], rag: RAG, sources_in_text: bool) -> dict[str, Any]:
    text = answer.text + (_sources_text(answer) if sources_in_text else "")
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    return {**meta, "object": "chat.completion", "choices": [choice], "usage": _usage(answer, text, rag),
            "sources": sources(answer)}


async def _sse(
    streamed: AsyncStreamedAnswer, first: str | None, meta: dict[str, Any], rag: RAG, upstream: Any,
    *, sources_in_text: bool, usage: bool,
) -> AsyncIterator[str]:
    """OpenAI's stream: a role chunk, content chunks, a last chunk with ``sources``, ``[DONE]``."""
    yield _event(_chunk(meta, {"role": "assistant", "content": ""}))
    piece = first
    try:
        while piece is not None:
            yield _event(_chunk(meta, {"content": piece}))
            piece = await upstream(_next_piece(streamed))
    except GeneratorError as exc:  # the status line is sent already: report in-band, as OpenAI does
        logger.warning("upstream failed mid-stream: %s", exc)
        yield _event({"error": _error_body(exc)[1]})
        return
    finally:
        await streamed.aclose()
    answer = streamed.answer
    assert answer is not None
    tail = _sources_text(answer) if sources_in_text else ""
    if tail:
        yield _event(_chunk(meta, {"content": tail}))
    yield _event({**_chunk(meta, {}, finish_reason="stop"), "sources": sources(answer)})
    if usage:
        yield _event({**_chunk(meta, {}), "choices": [], "usage": _usage(answer, answer.text + tail, rag)})
    yield "data: [DONE]\n\n"


async def _next_piece(streamed: AsyncStreamedAnswer) -> str | None:
    try:
        return await streamed.__anext__()
    except StopAsyncIteration:
        return None


def _chunk(meta: dict[str, Any], delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
    return {**meta, "object": "chat.completion.chunk", "choices": [choice]}


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _usage(answer: Answer, text: str, rag: RAG) -> dict[str, int]:
    """Token counts by the prompt builder's counter (an estimate unless it is the model's tokenizer)."""
    completion = rag.builder.count(text)
    return {"prompt_tokens": answer.prompt.token_count, "completion_tokens": completion,
            "total_tokens": answer.prompt.token_count + completion}


def sources(answer: Answer) -> list[dict[str, Any]]:
    """Every passage the prompt showed, by marker, with ``cited`` true for those the answer cites."""
    cited = {c.marker for c in answer.citations}
    return [_citation_json(c, cited=c.marker in cited) for c in answer.prompt.citations.values()]


def _citation_json(c: Any, *, cited: bool | None = None, text: bool = False) -> dict[str, Any]:
    out = {"marker": c.marker, "source": c.source, "doc_id": c.doc_id, "chunk_id": c.chunk_id, "page": c.page,
           "title": c.title, "score": c.score}
    if cited is not None:
        out["cited"] = cited
    if text:
        out["text"] = c.text
    return jsonable_encoder(out)


def _sources_text(answer: Answer) -> str:
    lines = []
    for c in answer.citations:
        where = " — ".join(str(x) for x in dict.fromkeys([c.title, c.source or c.doc_id]) if x)
        lines.append(f"{c.label} {where}" + (f", page {c.page}" if c.page else ""))
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def _prompt_json(retrieved: Retrieved) -> dict[str, Any]:
    prompt = retrieved.prompt
    return jsonable_encoder({
        "query": retrieved.query, "text": prompt.text, "messages": prompt.messages,
        "citations": [_citation_json(c, text=True) for c in prompt.citations.values()],
        "token_count": prompt.token_count, "dropped": [asdict(o) for o in prompt.dropped],
    })


# -- errors ------------------------------------------------------------------------------------


def error_response(status: int, message: str, type_: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-style error object with an HTTP status."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_body(exc: GeneratorError) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, GeneratorTimeoutError):
        status, code, what = 504, "upstream_timeout", "the upstream model timed out"
    elif isinstance(exc, GeneratorAuthError):
        status, code, what = 502, "upstream_auth_failed", (
            "the upstream model server refused ragkit's credentials (check the key given to `ragkit serve` "
            "with --api-key-env)")
    elif isinstance(exc, GeneratorResponseError):
        status, code = 502, "upstream_bad_response"
        what = "the upstream model answered with something unusable"
    else:
        status, code, what = 502, "upstream_unavailable", "the upstream model could not be reached"
    return status, {"message": f"{what}: {exc}", "type": "upstream_error", "param": None, "code": code}


def upstream_error(exc: GeneratorError) -> JSONResponse:
    """The error response for a failed upstream call: 504 for a timeout, else 502."""
    status, body = _error_body(exc)
    logger.warning("upstream model failed (HTTP %d to the client): %s", status, exc)
    return JSONResponse({"error": body}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        where = [".".join(str(p) for p in e["loc"][1:]) or "body" for e in exc.errors()]
        problems = "; ".join(f"{w}: {e['msg']}" for w, e in zip(where, exc.errors()))
        return error_response(400, f"invalid request: {problems}", "invalid_request_error", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Any, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind, None, getattr(exc, "headers", None))

    @app.exception_handler(ConfigError)
    async def bad_value(_: Any, exc: ConfigError) -> JSONResponse:
        return error_response(400, str(exc), "invalid_request_error", "invalid_value")

    @app.exception_handler(GeneratorError)
    async def generator_failed(_: Any, exc: GeneratorError) -> JSONResponse:
        return upstream_error(exc)

    @app.exception_handler(RagkitError)
    async def ragkit_failed(_: Any, exc: RagkitError) -> JSONResponse:
        logger.error("request failed: %s", exc)
        return error_response(500, f"{type(exc).__name__}: {exc}", "server_error", "ragkit_error")

    @app.exception_handler(Exception)
    async def crashed(_: Any, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return error_response(500, f"internal error ({type(exc).__name__})", "server_error", "internal_error")
