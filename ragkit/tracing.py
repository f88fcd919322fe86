"""OpenTelemetry spans for where a request spends its time: retrieval, prompt building, the upstream call.

Behind the ``otel`` extra (``pip install "ragkit[otel]"``, which is ``opentelemetry-api`` alone).
Without it every span here is a no-op. With it, the spans go wherever the application's tracer
provider sends them (the API alone records nothing; an application that installs the SDK and an
exporter gets them), under the instrumentation scope ``ragkit``:

=================== ============================== =============================================
span                where                          attributes
=================== ============================== =============================================
``ragkit.retrieve`` ``RAG.retrieve``               ``ragkit.k``, ``ragkit.mode``, ``ragkit.filtered``, ``ragkit.hits``
``ragkit.prompt``   building the prompt            ``ragkit.passages``, ``ragkit.prompt_tokens``
``ragkit.upstream`` each call to the chat model    ``gen_ai.request.model``, ``ragkit.stream``
=================== ============================== =============================================

Attributes hold sizes and settings, never a query, a message or a passage: a trace store is not
where a user's words should end up. An exception leaving a span is recorded on it, with an error status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed: no spans
    trace = None  # type: ignore[assignment]

__all__ = ["SCOPE", "span", "traced_astream", "traced_stream"]

SCOPE = "ragkit"
Attribute = str | bool | int | float


class _NoSpan:
    """What :func:`span` yields without OpenTelemetry: takes attributes and drops them."""

    def set_attribute(self, key: str, value: Attribute) -> None:
        pass


_NO_SPAN = _NoSpan()


@contextmanager
def span(name: str, **attributes: Attribute | None) -> Iterator[Any]:
    """A span named ``name`` around the block, current inside it; ``None`` attributes are left out.

    >>> with span("ragkit.retrieve", **{"ragkit.k": 5}) as s:   # doctest: +SKIP
    ...     s.set_attribute("ragkit.hits", 5)
    """
    if trace is None:
        yield _NO_SPAN
        return
    with trace.get_tracer(SCOPE).start_as_current_span(name, attributes=_clean(attributes)) as current:
        yield current


def traced_stream(name: str, pieces: Iterator[str], **attributes: Attribute | None) -> Iterator[str]:
    """``pieces`` inside a span that lasts until the stream ends, fails or is closed.

    Not made current: a generator's context would leak into whoever consumes it between pieces."""
    if trace is None:
        yield from pieces
        return
    current = trace.get_tracer(SCOPE).start_span(name, attributes=_clean(attributes))
    try:
        yield from pieces
    except BaseException as exc:
        _failed(current, exc)
        raise
    finally:
        current.end()


async def traced_astream(name: str, pieces: AsyncIterator[str], **attributes: Attribute | None) -> AsyncIterator[str]:
    """Async :func:`traced_stream`."""
    current = trace.get_tracer(SCOPE).start_span(name, attributes=_clean(attributes)) if trace else None
    try:
        async for piece in pieces:
            yield piece
    except BaseException as exc:
        if current is not None:
            _failed(current, exc)
        raise
    finally:
        closing = getattr(pieces, "aclose", None)
        try:
            if closing is not None:  # no `yield from` for async generators: close the inner one (its connection) now
                await closing()
        finally:
            if current is not None:
                current.end()


def _failed(current: Any, exc: BaseException) -> None:
    if isinstance(exc, GeneratorExit):  # the consumer stopped reading: not an error
        return
    current.record_exception(exc)
    current.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))


def _clean(attributes: dict[str, Attribute | None]) -> dict[str, Attribute]:
    return {k: v for k, v in attributes.items() if v is not None}
