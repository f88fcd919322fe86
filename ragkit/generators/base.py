"""Generators: the protocol every model backend satisfies, and the entry points that accept any of them.

A generator is anything with ``generate(messages, **options) -> str``; it may add
``stream`` (an iterator of text pieces) and the async forms ``agenerate`` and
``astream``. A plain callable ``fn(messages, **options)`` returning a string, or
an iterator of strings, counts too: :func:`as_generator` wraps it. The module
functions :func:`generate`, :func:`stream`, :func:`agenerate` and :func:`astream`
accept either and fill in what a backend lacks (whole answer as one piece; sync
code run in a thread). Backends: ``http.py`` (OpenAI-compatible servers, Ollama),
``huggingface.py`` (a local transformers pipeline).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from ragkit.errors import ConfigError

logger = logging.getLogger(__name__)

Message = dict[str, str]


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


# -- shared by the backends ---------------------------------------------------------------------


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """``messages`` as a list of dicts, or a ConfigError saying what is wrong with them."""
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



def merged_options(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Per-call options over defaults; a None option means "not set": the default (if any) stays."""
    merged = {k: v for k, v in defaults.items() if v is not None}
    merged.update((k, v) for k, v in options.items() if v is not None)
    return merged
