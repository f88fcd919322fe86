"""The server's answers in OpenAI's shapes: completions, stream chunks, sources, prompts and errors.

Errors are OpenAI-style ``{"error": {"message", "type", "param", "code"}}``. A failure inside
ragkit that is not the caller's doing (a damaged index, a full disk) is a 500 naming only the kind
of error: its message, which can hold file paths, goes to the server log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragkit.errors import (
    ConfigError,
    GeneratorAuthError,
    GeneratorError,
    GeneratorResponseError,
    GeneratorTimeoutError,
    ModelMismatchError,
    RagkitError,
)
from ragkit.pipeline.rag import RAG, Answer, AsyncStreamedAnswer, Retrieved
from ragkit.server.auth import principal_of
from ragkit.server.limits import Refused

__all__ = ["add_error_handlers", "completion", "error_body", "error_response", "internal_error", "json_bytes",
           "next_piece", "prompt_json", "sources", "sse", "upstream_error"]

logger = logging.getLogger("ragkit.server.app")


# -- responses ---------------------------------------------------------------------------------


def json_bytes(content: Any) -> bytes:
    """``content`` as :class:`JSONResponse` renders it (compact UTF-8, no NaN), FastAPI's encoder
    taking only the values ``json`` cannot (dates in metadata, sets, paths). Run it off the event
    loop: a /search answer's hits measured 0.2-0.4 ms through ``jsonable_encoder`` and ``json``,
    which on the loop is time no other request is read or answered."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"),
                      default=jsonable_encoder).encode("utf-8")


def completion(answer: Answer, meta: dict[str, Any], rag: RAG, sources_in_text: bool) -> dict[str, Any]:
    text = answer.text + (_sources_text(answer) if sources_in_text else "")
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    return {**meta, "object": "chat.completion", "choices": [choice], "usage": _usage(answer, text, rag),
            "sources": sources(answer)}


async def sse(
    streamed: AsyncStreamedAnswer, first: str | None, meta: dict[str, Any], rag: RAG, upstream: Any,
    *, sources_in_text: bool, usage: bool,
) -> AsyncIterator[str]:
    """OpenAI's stream: a role chunk, content chunks, a last chunk with ``sources``, ``[DONE]``."""
    yield _event(_chunk(meta, {"role": "assistant", "content": ""}))
    piece = first
    try:
        while piece is not None:
            yield _event(_chunk(meta, {"content": piece}))
            piece = await upstream(next_piece(streamed))
    except GeneratorError as exc:  # the status line is sent already: report in-band, as OpenAI does
        logger.warning("upstream failed mid-stream: %s", exc)
        yield _event({"error": error_body(exc)[1]})
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


async def next_piece(streamed: AsyncStreamedAnswer) -> str | None:
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


def prompt_json(retrieved: Retrieved) -> dict[str, Any]:
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


def error_body(exc: GeneratorError) -> tuple[int, dict[str, Any]]:
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
    status, body = error_body(exc)
    logger.warning("upstream model failed (HTTP %d to the client): %s", status, exc)
    return JSONResponse({"error": body}, status_code=status)


def internal_error(exc: RagkitError) -> JSONResponse:
    """A 500 for a failure that is not the caller's: the kind of error only (messages hold paths)."""
    logger.error("request failed: %s", exc)
    return error_response(500, f"the server could not answer ({type(exc).__name__}); see the server log",
                          "server_error", "ragkit_error")


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        where = [".".join(str(p) for p in e["loc"][1:]) or "body" for e in exc.errors()]
        problems = "; ".join(f"{w}: {e['msg']}" for w, e in zip(where, exc.errors()))
        return error_response(400, f"invalid request: {problems}", "invalid_request_error", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Any, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind, None, getattr(exc, "headers", None))

    @app.exception_handler(Refused)
    async def refused(_: Any, exc: Refused) -> JSONResponse:
        return exc.response()

    @app.exception_handler(ConfigError)
    async def bad_value(request: Any, exc: ConfigError) -> JSONResponse:
        if isinstance(exc, ModelMismatchError):  # the index's fault, and its message holds the path
            return internal_error(exc)
        message = str(exc)
        if principal_of(request).restricted:  # the field list is every document's, not only the caller's
            message = message.split("; fields in this index:")[0]
        return error_response(400, message, "invalid_request_error", "invalid_value")

    @app.exception_handler(GeneratorError)
    async def generator_failed(_: Any, exc: GeneratorError) -> JSONResponse:
        return upstream_error(exc)

    @app.exception_handler(RagkitError)
    async def ragkit_failed(_: Any, exc: RagkitError) -> JSONResponse:
        return internal_error(exc)

    @app.exception_handler(Exception)
    async def crashed(_: Any, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return error_response(500, f"internal error ({type(exc).__name__})", "server_error", "internal_error")
