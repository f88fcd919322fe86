"""What one request, or one caller, may cost the server: body size, text length, request rate, streams.

* :class:`BodyLimit` (ASGI middleware) answers 413 to a body over the limit, from its
  ``Content-Length`` before reading anything, or as soon as a chunked body passes it: the body is
  never read whole.
* :func:`check_texts` refuses a message or query over the length limit, and invalid Unicode (a lone
  surrogate, which JSON's ``\\ud800`` escapes can carry), before any retrieval or condensation.
* :class:`CallerLimits` keeps each principal's requests per minute (a token bucket) and its streams
  open at once; over either, the request gets 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException
from starlette.responses import JSONResponse

from ragkit.errors import ConfigError, RagkitError
from ragkit.server.principals import ANONYMOUS, Principal

__all__ = ["BodyLimit", "CallerLimits", "RateLimit", "Refused", "check_texts", "texts_of_messages"]

_SURROGATE = re.compile("[\ud800-\udfff]")


class Refused(RagkitError):
    """A request refused before any work: the HTTP status, an OpenAI-style code, a message."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": "invalid_request_error", "param": None,
                          "code": self.code}}
        headers = {"Retry-After": str(max(1, math.ceil(self.retry_after)))} if self.retry_after is not None else None
        return JSONResponse(body, status_code=self.status, headers=headers)


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI passes an HTTPException from there on to its handler (any
    other error reading the body becomes its own 400)."""


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 without being read whole, and one
    that takes over ``timeout`` seconds to arrive gets 408 (a client trickling its body would
    otherwise hold a connection and a task as long as it likes)."""

    def __init__(self, app: Any, *, max_bytes: int, timeout: float | None = 30.0) -> None:
        if max_bytes < 1:
            raise ConfigError(f"the body limit must be >= 1 byte, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        seen, started, complete = 0, False, False
        deadline = None if self.timeout is None else time.monotonic() + self.timeout

        async def counted() -> Any:
            nonlocal seen, complete
            if complete or deadline is None:  # after the body, receive() waits for a disconnect: untimed
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise _TooLarge(408, f"the request body did not arrive within {self.timeout:g} s",
                                headers={"Connection": "close"}) from None
            complete = not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge(413, self.message(), headers={"Connection": "close"})
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge as exc:
            if not started:
                await self._refuse(scope, receive, send, exc)

    def message(self) -> str:
        return (f"request body over the server's limit of {self.max_bytes / 2**20:g} MB ({self.max_bytes} bytes; "
                "`ragkit serve --max-body-mb`)")

    async def _refuse(self, scope: Any, receive: Any, send: Any, exc: _TooLarge | None = None) -> None:
        if exc is not None and exc.status_code == 408:
            refused = Refused(408, "request_timeout", str(exc.detail))
        else:
            refused = Refused(413, "request_too_large", self.message())
        response = refused.response()
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


def texts_of_messages(messages: Iterable[Any]) -> Iterable[tuple[str, str]]:
    """``(where, text)`` for each text in OpenAI-style messages: string contents and text parts."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield f"messages[{i}].content", content
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield f"messages[{i}].content[{j}].text", part["text"]


def check_texts(texts: Iterable[tuple[str, str]], *, max_chars: int, max_total: int) -> None:
    """Raise :class:`Refused` (400) for a text over ``max_chars``, all over ``max_total``, or a lone surrogate."""
    total = 0
    for where, text in texts:
        if len(text) > max_chars:
            raise Refused(400, "message_too_long", f"{where} is {len(text)} characters; this server takes at "
                          f"most {max_chars} per message (`ragkit serve --max-message-chars`)")
        total += len(text)
        if total > max_total:
            raise Refused(400, "conversation_too_long", f"the request's texts pass {max_total} characters in "
                          "all; send fewer or shorter turns")
        if _SURROGATE.search(text):
            raise Refused(400, "invalid_unicode", f"{where} holds a lone UTF-16 surrogate (invalid Unicode)")


class CallerLimits:
    """Each principal's request rate (a token bucket refilled per minute) and its open streams.

    A principal's own ``requests_per_minute``/``max_streams`` override the defaults; ``None`` means
    no limit.
    """

    def __init__(self, *, requests_per_minute: int | None = None, max_streams: int | None = None) -> None:
        for name, value in (("requests_per_minute", requests_per_minute), ("max_streams", max_streams)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {value}")
        self.requests_per_minute, self.max_streams = requests_per_minute, max_streams
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last refill)
        self._streams: dict[str, int] = {}

    def admit(self, principal: Principal) -> None:
        """Count one request; raise :class:`Refused` (429) when the principal is over its rate."""
        rate = principal.requests_per_minute or self.requests_per_minute
        if rate is None:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(principal.name, (float(rate), now))
            tokens = min(float(rate), tokens + (now - last) * rate / 60.0)
            if tokens < 1.0:
                self._buckets[principal.name] = (tokens, now)
                wait = (1.0 - tokens) * 60.0 / rate
                raise Refused(429, "rate_limit_exceeded", f"{principal.name}: over {rate} requests per minute; "
                              f"retry in {wait:.1f} s", retry_after=wait)
            self._buckets[principal.name] = (tokens - 1.0, now)

    def open_stream(self, principal: Principal) -> None:
        """Count one open stream; raise :class:`Refused` (429) over the principal's limit."""
        limit = principal.max_streams or self.max_streams
        with self._lock:
            open_now = self._streams.get(principal.name, 0)
            if limit is not None and open_now >= limit:
                raise Refused(429, "too_many_streams", f"{principal.name}: {open_now} streams open, the limit "
                              f"is {limit}; retry when one ends", retry_after=1.0)
            self._streams[principal.name] = open_now + 1

    def close_stream(self, principal: Principal) -> None:
        with self._lock:
            left = self._streams.get(principal.name, 1) - 1
            if left > 0:
                self._streams[principal.name] = left
            else:
                self._streams.pop(principal.name, None)

    def streams(self, principal: Principal) -> int:
        return self._streams.get(principal.name, 0)


class RateLimit:
    """ASGI middleware: count each request against its principal's rate (after :class:`BearerAuth`
    named the principal); ``/health`` and ``/ready`` are never limited."""

    open_paths = frozenset({"/health", "/ready"})

    def __init__(self, app: Any, *, limits: CallerLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            principal = (scope.get("state") or {}).get("principal") or ANONYMOUS
            try:
                self.limits.admit(principal)
            except Refused as refused:
                await refused.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
