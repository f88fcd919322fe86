"""Generators: turn OpenAI-style chat messages into text.

A generator is anything with ``generate(messages, **options) -> str``; it may add
``stream`` (an iterator of text pieces) and the async forms ``agenerate`` and
``astream``. A plain callable ``fn(messages, **options)`` returning a string, or
an iterator of strings, counts too: :func:`as_generator` wraps it. The module
functions :func:`generate`, :func:`stream`, :func:`agenerate` and :func:`astream`
accept either and fill in what a backend lacks (whole answer as one piece; sync
code run in a thread).

Backends, all taking ``temperature``, ``max_tokens``, ``top_p``, ``stop`` and
``seed`` (other options pass through to the request body):

* :class:`OpenAICompatible`: any ``/v1/chat/completions`` server: OpenAI, vLLM,
  llama.cpp's server, Ollama's OpenAI route, LM Studio.
* :class:`Ollama`: Ollama's native ``/api/chat``.
* :class:`HuggingFaceLocal`: a local transformers pipeline (``pip install "ragkit[hf]"``).

HTTP failures map onto :mod:`ragkit.errors`: timeouts raise
``GeneratorTimeoutError``; HTTP 408/409/429/5xx and connection errors are retried
with exponential backoff (honouring ``Retry-After``) and then raise
``GeneratorError``; 401/403 raise ``GeneratorAuthError``; unusable answers raise
``GeneratorResponseError``. API keys never appear in reprs, logs or messages.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from ragkit.errors import (
    ConfigError,
    GeneratorAuthError,
    GeneratorError,
    GeneratorResponseError,
    GeneratorTimeoutError,
    ModelNotAvailableError,
)

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

try:
    import httpx
except ImportError:  # pragma: no cover - exercised only without the extra
    httpx = None  # type: ignore[assignment]

__all__ = [
    "CallableGenerator",
    "Generator",
    "HuggingFaceLocal",
    "Message",
    "Ollama",
    "OpenAICompatible",
    "StreamingGenerator",
    "agenerate",
    "as_generator",
    "astream",
    "generate",
    "stream",
]

logger = logging.getLogger(__name__)

Message = dict[str, str]

_HTTPX_HINT = 'OpenAICompatible and Ollama need httpx: pip install "ragkit[server]" (or pip install httpx)'
_HF_HINT = 'HuggingFaceLocal needs transformers: pip install "ragkit[hf]"'
_RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx, as OpenAI's own client does
_MAX_WAIT = 60.0  # never sleep longer than this between attempts, whatever Retry-After says
_EXCERPT = 200
_DONE = object()  # a stream line that ends the stream


# -- the protocol and the module-level entry points ----------------------------------------------


@runtime_checkable
class Generator(Protocol):
    """Anything that answers chat messages with text."""

    def generate(self, messages: list[Message], **options: Any) -> str: ...


@runtime_checkable
class StreamingGenerator(Generator, Protocol):
    """A generator that can also yield its answer piece by piece."""

    def stream(self, messages: list[Message], **options: Any) -> Iterator[str]: ...


def as_generator(obj: Any) -> Generator:
    """Return ``obj`` if it is a :class:`Generator`, wrap it if it is a callable, else raise TypeError.

    >>> as_generator(lambda messages, **o: "hi").generate([{"role": "user", "content": "?"}])
    'hi'
    """
    if isinstance(obj, Generator):
        return obj
    if callable(obj):
        return CallableGenerator(obj)
    raise TypeError(
        "expected a Generator (an object with .generate(messages, **options)) or a callable "
        f"fn(messages, **options) -> str; got {type(obj).__name__} {obj!r:.80}"
    )


def generate(generator: Any, messages: list[Message], **options: Any) -> str:
    """The whole answer of ``generator`` (a Generator or a callable) to ``messages``."""
    return as_generator(generator).generate(messages, **options)


def stream(generator: Any, messages: list[Message], **options: Any) -> Iterator[str]:
    """Pieces of the answer: the backend's own ``stream`` if it has one, else the whole answer once."""
    gen = as_generator(generator)
    native = getattr(gen, "stream", None)
    if callable(native):
        return iter(native(messages, **options))
    return _once_sync(gen.generate, messages, options)


async def agenerate(generator: Any, messages: list[Message], **options: Any) -> str:
    """Async :func:`generate`: the backend's ``agenerate`` if it has one, else ``generate`` in a thread."""
    gen = as_generator(generator)
    native = getattr(gen, "agenerate", None)
    if callable(native):
        return await native(messages, **options)
    return await asyncio.to_thread(gen.generate, messages, **options)


def astream(generator: Any, messages: list[Message], **options: Any) -> AsyncIterator[str]:
    """Async :func:`stream`: native ``astream``, else sync ``stream`` in a thread, else one piece.

    >>> async for piece in astream(gen, messages):  # doctest: +SKIP
    ...     print(piece, end="")
    """
    gen = as_generator(generator)
    native = getattr(gen, "astream", None)
    if callable(native):
        return native(messages, **options)
    if callable(getattr(gen, "stream", None)):
        return _stream_in_thread(gen.stream, messages, options)  # type: ignore[attr-defined]
    return _once_async(gen, messages, options)


def _once_sync(fn: Callable[..., str], messages: list[Message], options: dict[str, Any]) -> Iterator[str]:
    yield fn(messages, **options)


async def _once_async(gen: Generator, messages: list[Message], options: dict[str, Any]) -> AsyncIterator[str]:
    yield await agenerate(gen, messages, **options)


async def _stream_in_thread(
    fn: Callable[..., Iterable[str]], messages: list[Message], options: dict[str, Any]
) -> AsyncIterator[str]:
    """Drive a sync stream from async code, one ``next()`` per worker-thread hop."""
    iterator = await asyncio.to_thread(lambda: iter(fn(messages, **options)))
    end = object()
    try:
        while (piece := await asyncio.to_thread(next, iterator, end)) is not end:
            yield piece  # type: ignore[misc]
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:  # still running in its thread after a cancellation
                pass


# -- plain callables ----------------------------------------------------------------------------


class CallableGenerator:
    """A Generator around ``fn(messages, **options)`` returning a str or an iterator of str.

    ``fn`` may be ``async def`` (returning a str) or an async generator; then
    :meth:`agenerate`/:meth:`astream` are native and the sync forms use ``asyncio.run``.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"CallableGenerator needs a callable, got {type(fn).__name__}")
        self.fn = fn
        call = getattr(fn, "__call__", None)  # noqa: B004 - async __call__ on an instance
        self.is_async = any(
            inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (fn, call)
        )

    def __repr__(self) -> str:
        return f"CallableGenerator({getattr(self.fn, '__qualname__', type(self.fn).__name__)})"

    def generate(self, messages: list[Message], **options: Any) -> str:
        if self.is_async:
            return asyncio.run(self.agenerate(messages, **options))
        return "".join(self.stream(messages, **options))

    def stream(self, messages: list[Message], **options: Any) -> Iterator[str]:
        if self.is_async:
            yield self.generate(messages, **options)
            return
        yield from _pieces_of(self.fn(messages, **options), self.fn)

    async def agenerate(self, messages: list[Message], **options: Any) -> str:
        if not self.is_async:
            return await asyncio.to_thread(self.generate, messages, **options)
        return "".join([piece async for piece in self.astream(messages, **options)])

    async def astream(self, messages: list[Message], **options: Any) -> AsyncIterator[str]:
        if not self.is_async:
            async for piece in _stream_in_thread(self.stream, messages, options):
                yield piece
            return
        result = self.fn(messages, **options)
        if inspect.isawaitable(result):
            result = await result
        if hasattr(result, "__aiter__"):
            async for piece in result:
                yield _checked_piece(piece, self.fn)
        else:
            for piece in _pieces_of(result, self.fn):
                yield piece


def _pieces_of(result: Any, fn: Any) -> Iterator[str]:
    if isinstance(result, str):
        yield result
    elif isinstance(result, Iterable) and not isinstance(result, (bytes, Mapping)):
        for piece in result:
            yield _checked_piece(piece, fn)
    else:
        raise TypeError(
            f"generator callable {fn!r:.60} returned {type(result).__name__}, expected str or an iterator of str"
        )


def _checked_piece(piece: Any, fn: Any) -> str:
    if not isinstance(piece, str):
        raise TypeError(f"generator callable {fn!r:.60} yielded {type(piece).__name__}, expected str")
    return piece


# -- HTTP backends ------------------------------------------------------------------------------


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise ConfigError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got {messages!r:.80}"
        )
    checked = list(messages)
    for i, message in enumerate(checked):
        if not isinstance(message, Mapping) or "role" not in message:
            raise ConfigError(f"messages[{i}] must be a dict with 'role' and 'content', got {message!r:.80}")
    if not checked:
        raise ConfigError("messages is empty; give at least one {'role': 'user', 'content': ...}")
    return [dict(m) for m in checked]


def _check_url(base_url: Any) -> str:
    example = "an absolute http(s) URL such as 'http://localhost:8000/v1'"
    try:
        url = httpx.URL(str(base_url))
    except httpx.InvalidURL as exc:
        raise ConfigError(f"base_url must be {example}, got {base_url!r} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"base_url must be {example}, got {base_url!r}")
    return str(base_url).rstrip("/")


def _retry_after(response: Any) -> float | None:
    """Seconds the server asked us to wait (Retry-After as seconds or HTTP date, or retry-after-ms)."""
    if response is None:
        return None
    if (ms := response.headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _HTTPChat:
    """Shared plumbing of the HTTP backends: validation, retries, error mapping, sync and async I/O."""

    path = ""
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
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # subclasses say how to build a body and read answers
    def _body(self, messages: Any, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _text(self, data: dict[str, Any]) -> str:
        raise NotImplementedError

    def _piece(self, line: str) -> Any:
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------------
    def raw(self, messages: list[Message], **options: Any) -> dict[str, Any]:
        """The backend's whole JSON answer, unchanged."""
        response = self._open(self._body(messages, options, stream=False))
        try:
            with self._transport_errors():
                response.read()
        finally:
            response.close()
        return self._json(response.text)

    def generate(self, messages: list[Message], **options: Any) -> str:
        """The answer's text."""
        return self._text(self.raw(messages, **options))

    def stream(self, messages: list[Message], **options: Any) -> Iterator[str]:
        """The answer's text in pieces, as the server sends them."""
        return self._iter_stream(self._body(messages, options, stream=True))

    async def araw(self, messages: list[Message], **options: Any) -> dict[str, Any]:
        """Async :meth:`raw`."""
        body = self._body(messages, options, stream=False)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await self._aopen(client, body)
            try:
                with self._transport_errors():
                    await response.aread()
            finally:
                await response.aclose()
        return self._json(response.text)

    async def agenerate(self, messages: list[Message], **options: Any) -> str:
        """Async :meth:`generate`."""
        return self._text(await self.araw(messages, **options))

    def astream(self, messages: list[Message], **options: Any) -> AsyncIterator[str]:
        """Async :meth:`stream`."""
        return self._aiter_stream(self._body(messages, options, stream=True))

    def close(self) -> None:
        """Close the pooled sync connection; the generator stays usable."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- streaming ---------------------------------------------------------------------------
    def _iter_stream(self, body: dict[str, Any]) -> Iterator[str]:
        response = self._open(body)
        try:
            with self._transport_errors():
                for line in response.iter_lines():
                    piece = self._piece(line)
                    if piece is _DONE:
                        break
                    if piece:
                        yield piece
        finally:
            response.close()

    async def _aiter_stream(self, body: dict[str, Any]) -> AsyncIterator[str]:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await self._aopen(client, body)
            try:
                with self._transport_errors():
                    async for line in response.aiter_lines():
                        piece = self._piece(line)
                        if piece is _DONE:
                            break
                        if piece:
                            yield piece
            finally:
                await response.aclose()

    # -- sending with retries ----------------------------------------------------------------
    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
            return self._client

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
                        response.read()
                finally:
                    response.close()
                reason = self._retryable_reason(response)
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
                        await response.aread()
                finally:
                    await response.aclose()
                reason = self._retryable_reason(response)
            if attempt == self.max_retries:
                raise self._gave_up(reason, response)
            await asyncio.sleep(self._wait(attempt, response, reason))
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, attempt: int, response: Any, reason: str) -> float:
        wait = self.backoff * 2**attempt + random.uniform(0, self.backoff)
        asked = _retry_after(response)
        if asked is not None:
            wait = max(wait, asked)
        wait = min(wait, _MAX_WAIT)
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

    def _retryable_reason(self, response: Any) -> str:
        """Describe a retryable failure, or raise at once for one that retrying cannot fix."""
        status = response.status_code
        excerpt = self._excerpt(response.text)
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


def _merged(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Per-call options over defaults; a None option means "not set": the default (if any) stays."""
    merged = {k: v for k, v in defaults.items() if v is not None}
    merged.update((k, v) for k, v in options.items() if v is not None)
    return merged


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
    auth_hint = "Check api_key= or the OPENAI_API_KEY environment variable."
    default_base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"

    def _body(self, messages: Any, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        body = {"model": self.model, **_merged(self.default_options, options)}
        return {**body, "messages": _check_messages(messages), "stream": stream}

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
        return content

    def _piece(self, line: str) -> Any:
        line = line.strip()
        if not line.startswith("data:"):  # blank separators, ": keep-alive" comments, event:/id: fields
            return None
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return _DONE
        choices = self._json(payload).get("choices") or []  # a usage-only chunk has none
        delta = choices[0].get("delta") if choices and isinstance(choices[0], Mapping) else None
        return delta.get("content") if isinstance(delta, Mapping) else None


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
    auth_hint = "Ollama itself needs no key; a proxy in front of it may want api_key= or headers=."
    _TOP_LEVEL: ClassVar[frozenset[str]] = frozenset({"format", "keep_alive", "tools", "think", "model"})
    _RENAMED: ClassVar[dict[str, str]] = {"max_tokens": "num_predict"}

    default_base_url = "http://localhost:11434"

    def _body(self, messages: Any, options: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        merged = _merged(self.default_options, options)
        model_options = dict(merged.pop("options", None) or {})
        top = {"model": self.model}
        for key, value in merged.items():
            if key in self._TOP_LEVEL:
                top[key] = value
            else:
                model_options[self._RENAMED.get(key, key)] = value
        body = {**top, "messages": _check_messages(messages), "stream": stream}
        return {**body, "options": model_options} if model_options else body

    def _text(self, data: dict[str, Any]) -> str:
        message = data.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            excerpt = self._excerpt(json.dumps(data))
            raise self._error(GeneratorResponseError, f"POST {self.url}: no message.content in {excerpt}")
        return content

    def _piece(self, line: str) -> Any:
        if not line.strip():
            return None
        data = self._json(line)
        if data.get("done") and not data.get("message"):
            return None
        return self._text(data) or None


class HuggingFaceLocal:
    """A local transformers ``text-generation`` pipeline, prompted through the model's chat template.

    ``model`` is a model id or local path (loaded on first use; offline unless the
    weights are cached), or an already built pipeline. Options: ``max_tokens``
    (default 256), ``temperature`` (0 or absent: greedy), ``top_p``, ``seed``,
    ``stop`` (str or list; the answer is cut before the first one, but generation
    itself runs on to ``max_tokens``, since transformers' ``stop_strings`` fails on
    some tokenizers); others go to the model's ``generate()``.

    >>> gen = HuggingFaceLocal("Qwen/Qwen2.5-0.5B-Instruct")  # doctest: +SKIP
    >>> gen.generate([{"role": "user", "content": "Hi"}], max_tokens=20)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        *,
        device: str | int | None = None,
        default_options: Mapping[str, Any] | None = None,
        pipeline_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if importlib.util.find_spec("transformers") is None:
            raise ImportError(_HF_HINT)
        self.model = model
        self.device = device
        self.default_options = dict(default_options or {})
        self.pipeline_kwargs = dict(pipeline_kwargs or {})
        self._pipeline: Any = None if isinstance(model, str) else model
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        name = self.model if isinstance(self.model, str) else type(self.model).__name__
        return f"HuggingFaceLocal({name!r})"

    @property
    def pipeline(self) -> Any:
        """The transformers pipeline, built on first use."""
        with self._lock:
            if self._pipeline is None:
                transformers = _import_transformers()
                kwargs = {"device": self.device} if self.device is not None else {}
                try:
                    self._pipeline = transformers.pipeline(
                        "text-generation", model=self.model, **kwargs, **self.pipeline_kwargs
                    )
                except OSError as exc:
                    raise ModelNotAvailableError(f"cannot load model {self.model!r}: {exc}") from exc
            return self._pipeline

    def generate(self, messages: list[Message], **options: Any) -> str:
        kwargs, stops = self._generate_kwargs(options)
        out = self.pipeline(_check_messages(messages), return_full_text=False, **kwargs)
        return _cut_at_stop(out[0]["generated_text"], stops)

    def stream(self, messages: list[Message], **options: Any) -> Iterator[str]:
        kwargs, stops = self._generate_kwargs(options)
        checked, pipe = _check_messages(messages), self.pipeline
        streamer = _import_transformers().TextIteratorStreamer(
            pipe.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        failure: list[BaseException] = []

        def run() -> None:
            try:
                pipe(checked, streamer=streamer, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                failure.append(exc)
                streamer.end()  # unblock the consumer

        worker = threading.Thread(target=run, name="ragkit-hf-stream", daemon=True)
        worker.start()
        yield from _stream_until_stop((p for p in streamer if p), stops)
        worker.join()
        if failure:
            raise GeneratorError(f"{self!r} failed while generating: {failure[0]}") from failure[0]

    def _generate_kwargs(self, options: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        opts = _merged(self.default_options, options)
        stop = opts.pop("stop", None)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if "seed" in opts:
            _import_transformers().set_seed(int(opts.pop("seed")))
        kwargs: dict[str, Any] = {"max_new_tokens": opts.pop("max_tokens", 256)}
        temperature = opts.pop("temperature", 0)
        kwargs["do_sample"] = bool(temperature)
        if temperature:
            kwargs["temperature"] = temperature
        return {**kwargs, **opts}, stops


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(_HF_HINT) from exc
    return transformers


def _cut_at_stop(text: str, stops: list[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def _stream_until_stop(pieces: Iterable[str], stops: list[str]) -> Iterator[str]:
    """Pass pieces on, holding back just enough text to cut the answer at the first stop string."""
    if not stops:
        yield from pieces
        return
    hold = max(len(s) for s in stops) - 1
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = _cut_at_stop(buffer, stops)
        if len(cut) < len(buffer):
            if cut:
                yield cut
            return
        if len(buffer) > hold:
            yield buffer[: len(buffer) - hold]
            buffer = buffer[len(buffer) - hold :]
    if buffer:
        yield buffer
