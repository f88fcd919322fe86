"""HTTP generator backends: any ``/v1/chat/completions`` server (:class:`OpenAICompatible`) and
Ollama's native ``/api/chat`` (:class:`Ollama`), both taking ``temperature``, ``max_tokens``, ``top_p``,
``stop`` and ``seed`` (other options pass through to the request body).

HTTP failures map onto :mod:`ragkit.errors`: timeouts raise
``GeneratorTimeoutError``; HTTP 408/409/429/5xx and connection errors are retried
with exponential backoff (honouring ``Retry-After``) and then raise
``GeneratorError``; 401/403 raise ``GeneratorAuthError``; unusable answers raise
``GeneratorResponseError``. API keys never appear in reprs, logs or messages.

An answer is read within bounds, so a broken or hostile upstream costs bounded memory and time: at
most ``max_response_bytes`` in all and ``max_line_bytes`` per stream line, and a stream must end
within ``stream_deadline`` seconds. A stream must end the way its API says (``data: [DONE]``, or
Ollama's ``"done": true``); one that stops short, or sends no event at all, is a
``GeneratorResponseError``, never an empty answer. The async API keeps one pooled client per
event loop, so a server calling the upstream for every request reuses its connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from ragkit.errors import (
    ConfigError,
    GeneratorAuthError,
    GeneratorError,
    GeneratorResponseError,
    GeneratorTimeoutError,
)
from ragkit.generators.base import Message, check_messages, merged_options
from ragkit.retrying import backoff_wait, retry_after  # noqa: F401 (retry_after: imported from here since the first wave)
from ragkit.tracing import span, traced_astream, traced_stream

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

try:
    import httpx
except ImportError:  # pragma: no cover - exercised only without the extra
    httpx = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_HTTPX_HINT = 'OpenAICompatible and Ollama need httpx: pip install "ragkit[server]" (or pip install httpx)'
_RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx, as OpenAI's own client does
_EXCERPT = 200
MAX_RESPONSE_BYTES = 16 * 2**20  # a chat answer is kilobytes; this bounds a runaway one
MAX_LINE_BYTES = 2**20  # one SSE/NDJSON event; a stream without newlines is not one
_POOL = {"max_connections": 256, "max_keepalive_connections": 64}


def _check_url(base_url: Any) -> str:
    example = "an absolute http(s) URL such as 'http://localhost:8000/v1'"
    try:
        url = httpx.URL(str(base_url))
    except httpx.InvalidURL as exc:
        raise ConfigError(f"base_url must be {example}, got {base_url!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"base_url must be {example}, got {base_url!r}")
    return str(base_url).rstrip("/")


def valid_unicode(text: str) -> str:
    """``text`` with lone surrogates (which a JSON ``\\ud800`` escape can carry) replaced by "?":
    they cannot be encoded to UTF-8, so they would break whatever sends the answer on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class _HTTPChat:
    """Shared plumbing of the HTTP backends: validation, retries, error mapping, sync and async I/O."""

    path = ""
    end_marker = ""
    auth_hint = ""
    default_base_url = ""
    api_key_env: str | None = None  # environment variable read when api_key is not given

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        default_options: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        stream_deadline: float | None = None,
    ) -> None:
        if httpx is None:  # pragma: no cover
            raise ImportError(_HTTPX_HINT)
        if api_key is None and self.api_key_env:
            api_key = os.environ.get(self.api_key_env)
        self.base_url = _check_url(self.default_base_url if base_url is None else base_url)
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
            raise ConfigError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        for name, value in (("max_response_bytes", max_response_bytes), ("max_line_bytes", max_line_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if stream_deadline is not None and not (isinstance(stream_deadline, (int, float)) and stream_deadline > 0):
            raise ConfigError(f"stream_deadline must be a positive number of seconds or None, got {stream_deadline!r}")
        self.max_response_bytes, self.max_line_bytes = max_response_bytes, max_line_bytes
        self.stream_deadline = None if stream_deadline is None else float(stream_deadline)
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.default_options = dict(default_options or {})
        self.url = self.base_url if self.base_url.endswith(self.path) else self.base_url + self.path
        self._api_key = api_key or None
        self._headers = dict(headers or {})
        secret_names = ("auth", "key", "token", "secret")
        self._secrets = [self._api_key] if self._api_key else []
        self._secrets += [
            v for k, v in self._headers.items() if any(s in k.lower() for s in secret_names) and v
        ]
        self._client: Any = None
        self._aclients: dict[Any, Any] = {}  # event loop -> its pooled AsyncClient
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # subclasses say how to build a body and read answers
    def _body(self, messages: Any, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _text(self, data: dict[str, Any]) -> str:
        raise NotImplementedError

    def _piece(self, line: str) -> tuple[str | None, bool]:
        """A stream line's text (None for none) and whether it ends the stream."""
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------------
    def raw(self, messages: list[Message], **options: Any) -> dict[str, Any]:
        """The backend's whole JSON answer, unchanged."""
        with span("ragkit.upstream", **{"gen_ai.request.model": self.model, "ragkit.stream": False}):
            response = self._open(self._body(messages, options, stream=False))
            try:
                with self._transport_errors():
                    body = self._capped(response.iter_bytes())
            finally:
                response.close()
            return self._json(self._decode(body, response))

    def generate(self, messages: list[Message], **options: Any) -> str:
        """The answer's text."""
        return self._text(self.raw(messages, **options))

    def stream(self, messages: list[Message], **options: Any) -> Iterator[str]:
        """The answer's text in pieces, as the server sends them."""
        return traced_stream("ragkit.upstream", self._iter_stream(self._body(messages, options, stream=True)),
                             **{"gen_ai.request.model": self.model, "ragkit.stream": True})

    async def araw(self, messages: list[Message], **options: Any) -> dict[str, Any]:
        """Async :meth:`raw`."""
        with span("ragkit.upstream", **{"gen_ai.request.model": self.model, "ragkit.stream": False}):
            response = await self._aopen(self._async_client(), self._body(messages, options, stream=False))
            try:
                with self._transport_errors():
                    body = await self._acapped(response.aiter_bytes())
            finally:
                await response.aclose()
            return self._json(self._decode(body, response))

    async def agenerate(self, messages: list[Message], **options: Any) -> str:
        """Async :meth:`generate`."""
        return self._text(await self.araw(messages, **options))

    def astream(self, messages: list[Message], **options: Any) -> AsyncIterator[str]:
        """Async :meth:`stream`."""
        return traced_astream("ragkit.upstream", self._aiter_stream(self._body(messages, options, stream=True)),
                              **{"gen_ai.request.model": self.model, "ragkit.stream": True})

    def close(self) -> None:
        """Close the pooled sync connections; the generator stays usable."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close this event loop's pooled async connections; the generator stays usable."""
        with self._lock:
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- streaming ---------------------------------------------------------------------------
    def _iter_stream(self, body: dict[str, Any]) -> Iterator[str]:
        response = self._open(body)
        lines = _Lines(self)
        try:
            with self._transport_errors():
                for line in lines.split(response.iter_bytes()):
                    piece, done = self._piece(line)
                    if piece:
                        yield piece
                    if done:
                        return
            raise lines.unfinished()
        finally:
            response.close()

    async def _aiter_stream(self, body: dict[str, Any]) -> AsyncIterator[str]:
        response = await self._aopen(self._async_client(), body)
        lines = _Lines(self)
        try:
            with self._transport_errors():
                async for line in lines.asplit(response.aiter_bytes()):
                    piece, done = self._piece(line)
                    if piece:
                        yield piece
                    if done:
                        return
            raise lines.unfinished()
        finally:
            await response.aclose()

    # -- reading within bounds ---------------------------------------------------------------
    def _too_big(self, what: str) -> GeneratorError:
        return self._error(GeneratorResponseError, f"POST {self.url}: {what}; the answer was dropped")

    def _capped(self, chunks: Iterator[bytes]) -> bytes:
        body, size = [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_response_bytes:
                raise self._too_big(f"answer exceeds max_response_bytes={self.max_response_bytes}")
            body.append(chunk)
        return b"".join(body)

    async def _acapped(self, chunks: AsyncIterator[bytes]) -> bytes:
        body, size = [], 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self.max_response_bytes:
                raise self._too_big(f"answer exceeds max_response_bytes={self.max_response_bytes}")
            body.append(chunk)
        return b"".join(body)

    def _decode(self, body: bytes, response: Any) -> str:
        return body.decode(response.encoding or "utf-8", "replace")

    # -- sending with retries ----------------------------------------------------------------
    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, limits=httpx.Limits(**_POOL))
            return self._client

    def _async_client(self) -> Any:
        """This event loop's pooled client: a new client per call costs ~30 ms of CPU (TLS context,
        pool setup), more than the rest of a served request."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                for old in [k for k in self._aclients if k.is_closed()]:  # loops that ended (asyncio.run)
                    del self._aclients[old]
                client = self._aclients[loop] = httpx.AsyncClient(timeout=self.timeout, limits=httpx.Limits(**_POOL))
            return client

    def _request(self, client: Any, body: dict[str, Any]) -> Any:
        headers = {"Accept": "application/json, text/event-stream, application/x-ndjson", **self._headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return client.build_request("POST", self.url, json=body, headers=headers)

    def _open(self, body: dict[str, Any]) -> Any:
        """POST ``body``; retry transient failures; return the open response of the first success."""
        client = self._sync_client()
        request = self._request(client, body)
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise self._timeout_error(exc) from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                reason = self._connection_reason(exc)
            else:
                if response.is_success:
                    return response
                try:
                    with self._transport_errors():
                        text = self._decode(self._capped(response.iter_bytes()), response)
                finally:
                    response.close()
                reason = self._retryable_reason(response, text)
            if attempt == self.max_retries:
                raise self._gave_up(reason, response)
            time.sleep(self._wait(attempt, response, reason))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aopen(self, client: Any, body: dict[str, Any]) -> Any:
        """Async :meth:`_open`."""
        request = self._request(client, body)
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise self._timeout_error(exc) from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                reason = self._connection_reason(exc)
            else:
                if response.is_success:
                    return response
                try:
                    with self._transport_errors():
                        text = self._decode(await self._acapped(response.aiter_bytes()), response)
                finally:
                    await response.aclose()
                reason = self._retryable_reason(response, text)
            if attempt == self.max_retries:
                raise self._gave_up(reason, response)
            await asyncio.sleep(self._wait(attempt, response, reason))
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, attempt: int, response: Any, reason: str) -> float:
        wait = backoff_wait(attempt, self.backoff, response)
        logger.warning(
            "POST %s: %s; retrying in %.2f s (retry %d of %d)",
            self.url,
            reason,
            wait,
            attempt + 1,
            self.max_retries,
        )
        return wait

    # -- errors ------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _excerpt(self, text: str) -> str:
        flat = " ".join(self._redact(text).split())
        return repr(flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "...")

    def _error(self, cls: type[GeneratorError], message: str, status: int | None = None) -> GeneratorError:
        error = cls(self._redact(message))
        error.url = self.url  # type: ignore[attr-defined]
        error.status_code = status  # type: ignore[attr-defined]
        return error

    def _timeout_error(self, exc: Exception) -> GeneratorError:
        return self._error(
            GeneratorTimeoutError,
            f"POST {self.url} got no answer within timeout={self.timeout:g} s ({type(exc).__name__}); "
            "raise timeout= for slow or cold-starting models",
        )

    def _connection_reason(self, exc: Exception) -> str:
        return f"could not connect ({type(exc).__name__}: {self._redact(str(exc)) or 'no detail'})"

    def _retryable_reason(self, response: Any, text: str) -> str:
        """Describe a retryable failure, or raise at once for one that retrying cannot fix."""
        status = response.status_code
        excerpt = self._excerpt(text)
        if status in (401, 403):
            sent = "a key was sent" if self._api_key else "no key was sent"
            raise self._error(
                GeneratorAuthError,
                f"POST {self.url}: HTTP {status} ({sent}): {excerpt}. {self.auth_hint}",
                status,
            )
        if status in _RETRY_STATUS or status >= 500:
            return f"HTTP {status}: {excerpt}"
        raise self._error(GeneratorResponseError, f"POST {self.url}: HTTP {status}: {excerpt}", status)

    def _gave_up(self, reason: str, response: Any) -> GeneratorError:
        tries = self.max_retries + 1
        hint = "" if response is not None else "; is the server running and base_url right?"
        status = response.status_code if response is not None else None
        message = f"POST {self.url} failed after {tries} attempt{'s' * (tries > 1)}: {reason}{hint}"
        return self._error(GeneratorError, message, status)

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise self._timeout_error(exc) from exc
        except httpx.TransportError as exc:
            raise self._error(GeneratorError, f"POST {self.url}: connection broke mid-answer: {exc}") from exc

    def _json(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            excerpt = self._excerpt(text)
            raise self._error(
                GeneratorResponseError, f"POST {self.url}: answer is not a JSON object: {excerpt}"
            )
        if data.get("error"):
            excerpt = self._excerpt(json.dumps(data["error"]))
            raise self._error(GeneratorResponseError, f"POST {self.url}: server error: {excerpt}")
        return data


class OpenAICompatible(_HTTPChat):
    """A chat-completions server: OpenAI, vLLM, llama.cpp, Ollama's ``/v1``, LM Studio.

    ``base_url`` is the API root that ``/chat/completions`` is appended to. The key
    comes from ``api_key``, else ``OPENAI_API_KEY``, else none is sent. Options
    (``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed``, anything else,
    even ``model``) go into the JSON body over ``default_options``.

    >>> gen = OpenAICompatible("http://localhost:8000/v1", model="qwen2.5-7b")  # doctest: +SKIP
    >>> gen.generate([{"role": "user", "content": "Hi"}], temperature=0)       # doctest: +SKIP
    'Hello!'
    """

    path = "/chat/completions"
    end_marker = "data: [DONE]"
    auth_hint = "Check api_key= or the OPENAI_API_KEY environment variable."
    default_base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"

    def _body(self, messages: Any, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        body = {"model": self.model, **merged_options(self.default_options, options)}
        return {**body, "messages": check_messages(messages), "stream": stream}

    def _text(self, data: dict[str, Any]) -> str:
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        if not isinstance(content, str):
            excerpt = self._excerpt(json.dumps(data))
            raise self._error(
                GeneratorResponseError, f"POST {self.url}: no choices[0].message.content in {excerpt}"
            )
        return valid_unicode(content)

    def _piece(self, line: str) -> tuple[str | None, bool]:
        line = line.strip()
        if not line.startswith("data:"):  # blank separators, ": keep-alive" comments, event:/id: fields
            return None, False
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return None, True
        choices = self._json(payload).get("choices") or []  # a usage-only chunk has none
        delta = choices[0].get("delta") if choices and isinstance(choices[0], Mapping) else None
        content = delta.get("content") if isinstance(delta, Mapping) else None
        return (valid_unicode(content) if isinstance(content, str) else None), False


class Ollama(_HTTPChat):
    """Ollama's native chat API (``POST {base_url}/api/chat``, NDJSON streaming).

    Sampling options go into Ollama's ``options`` object (``max_tokens`` becomes
    ``num_predict``; ``num_ctx``, ``repeat_penalty`` and the like pass as they are);
    ``format``, ``keep_alive``, ``tools``, ``think`` and ``model`` stay top-level.
    Ollama needs no key; ``api_key`` (sent as a bearer token) and ``headers`` are for a
    proxy in front of it.

    >>> Ollama(model="llama3.2").generate([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
    'Hello! How can I help?'
    """

    path = "/api/chat"
    end_marker = '"done": true'
    auth_hint = "Ollama itself needs no key; a proxy in front of it may want api_key= or headers=."
    _TOP_LEVEL: ClassVar[frozenset[str]] = frozenset({"format", "keep_alive", "tools", "think", "model"})
    _RENAMED: ClassVar[dict[str, str]] = {"max_tokens": "num_predict"}

    default_base_url = "http://localhost:11434"

    def _body(self, messages: Any, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        merged = merged_options(self.default_options, options)
        model_options = dict(merged.pop("options", None) or {})
        top = {"model": self.model}
        for key, value in merged.items():
            if key in self._TOP_LEVEL:
                top[key] = value
            else:
                model_options[self._RENAMED.get(key, key)] = value
        body = {**top, "messages": check_messages(messages), "stream": stream}
        return {**body, "options": model_options} if model_options else body

    def _text(self, data: dict[str, Any]) -> str:
        message = data.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            excerpt = self._excerpt(json.dumps(data))
            raise self._error(GeneratorResponseError, f"POST {self.url}: no message.content in {excerpt}")
        return valid_unicode(content)

    def _piece(self, line: str) -> tuple[str | None, bool]:
        if not line.strip():
            return None, False
        data = self._json(line)
        done = bool(data.get("done"))
        if done and not data.get("message"):
            return None, True
        return self._text(data) or None, done


class _Lines:
    """A stream's bytes as lines, within the generator's bounds on bytes, line length and time.

    Feeding raw chunks (not ``iter_lines``) is what bounds a line: httpx would buffer a line that
    never ends whole before handing it over.
    """

    def __init__(self, gen: _HTTPChat) -> None:
        self.gen = gen
        self.buffer = b""
        self.size = 0
        self.lines = 0
        self.started = time.monotonic()

    def feed(self, chunk: bytes) -> list[str]:
        gen = self.gen
        self.size += len(chunk)
        if self.size > gen.max_response_bytes:
            raise gen._too_big(f"stream exceeds max_response_bytes={gen.max_response_bytes}")
        if gen.stream_deadline is not None and time.monotonic() - self.started > gen.stream_deadline:
            raise gen._error(GeneratorTimeoutError, f"POST {gen.url}: the stream did not end within "
                             f"stream_deadline={gen.stream_deadline:g} s")
        *complete, self.buffer = (self.buffer + chunk).split(b"\n")
        if len(self.buffer) > gen.max_line_bytes or any(len(line) > gen.max_line_bytes for line in complete):
            raise gen._too_big(f"a stream line exceeds max_line_bytes={gen.max_line_bytes}")
        self.lines += len(complete)
        return [line.decode("utf-8", "replace") for line in complete]

    def split(self, chunks: Iterator[bytes]) -> Iterator[str]:
        for chunk in chunks:
            yield from self.feed(chunk)
        yield from self.rest()

    async def asplit(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
        """:meth:`split` over an async stream of chunks."""
        async for chunk in chunks:
            for line in self.feed(chunk):
                yield line
        for line in self.rest():
            yield line

    def rest(self) -> list[str]:
        """The last line, if the stream ended without a newline."""
        last, self.buffer = self.buffer, b""
        return [last.decode("utf-8", "replace")] if last.strip() else []

    def unfinished(self) -> GeneratorError:
        gen = self.gen
        return gen._error(GeneratorResponseError, f"POST {gen.url}: the stream ended without its end marker "
                          f"({gen.end_marker}) after {self.lines} lines and {self.size} bytes; the answer "
                          "may be cut off or the server is not a chat API")
