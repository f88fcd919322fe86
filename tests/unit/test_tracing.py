"""Issue 20, OpenTelemetry spans (the otel extra): retrieval, prompt building and the upstream call, each a
span with sizes and settings but no user text; a stream's span lasts until it ends, fails or is closed;
nothing breaks without OpenTelemetry. Recorded by the SDK's in-memory exporter, with a real upstream on
loopback and the fake embedder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from servekit import scripted_upstream, two_team_index

import ragkit.tracing
from ragkit.errors import GeneratorResponseError
from ragkit.generators.http import OpenAICompatible
from ragkit.pipeline.rag import RAG

QUESTION = "How do I treat varroa mites?"
ANSWER = {"choices": [{"message": {"role": "assistant", "content": "Oxalic acid [1]."}}]}
STREAM = b'data: {"choices": [{"delta": {"content": "Oxalic"}}]}\n\ndata: {"choices": [{"delta": {"content": " acid"}}]}\n\ndata: [DONE]\n\n'


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """An SDK tracer provider of this test's own (not the process-wide one) behind ragkit.tracing."""
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(ragkit.tracing, "trace", SimpleNamespace(
        get_tracer=provider.get_tracer, Status=trace.Status, StatusCode=trace.StatusCode))
    return exporter


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    with two_team_index(tmp_path / "kb.ragkit") as ix:
        yield ix


def upstream(body: dict[str, Any]) -> Iterator[bytes]:
    yield STREAM if body.get("stream") else json.dumps(ANSWER).encode()


def by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_an_answer_is_three_spans_with_sizes_and_no_user_text(spans, index) -> None:  # type: ignore[no-untyped-def]
    with scripted_upstream(upstream) as url:
        rag = RAG(index, generator=OpenAICompatible(url, model="m", max_retries=0), k=3, filters={"team": "a"})
        answer = rag.answer(QUESTION)
    assert answer.text == "Oxalic acid [1]."
    seen = by_name(spans)
    assert set(seen) == {"ragkit.retrieve", "ragkit.prompt", "ragkit.upstream"}
    assert dict(seen["ragkit.retrieve"].attributes) == {"ragkit.k": 3, "ragkit.mode": "hybrid",
                                                        "ragkit.filtered": True, "ragkit.hits": 3}
    prompt = dict(seen["ragkit.prompt"].attributes)
    assert prompt["ragkit.passages"] == 3 and prompt["ragkit.prompt_tokens"] > 20
    assert dict(seen["ragkit.upstream"].attributes) == {"gen_ai.request.model": "m", "ragkit.stream": False}
    assert all(s.status.is_ok for s in seen.values())
    values = " ".join(str(v) for s in seen.values() for v in s.attributes.values())
    assert "varroa" not in values.lower() and "oxalic" not in values.lower()


def test_a_streams_span_lasts_until_it_ends_and_a_broken_stream_is_an_error(spans, index) -> None:  # type: ignore[no-untyped-def]
    def garbage(body: dict[str, Any]) -> Iterator[bytes]:
        yield b"this is not an event stream\n" * 3

    with scripted_upstream(upstream) as good, scripted_upstream(garbage) as bad:
        pieces = OpenAICompatible(good, model="m", max_retries=0).stream([{"role": "user", "content": "hi"}])
        assert next(pieces) == "Oxalic" and spans.get_finished_spans() == ()  # still open mid-stream
        assert list(pieces) == [" acid"]
        done = by_name(spans)["ragkit.upstream"]
        assert done.attributes["ragkit.stream"] is True and done.status.is_ok
        spans.clear()
        with pytest.raises(GeneratorResponseError):
            list(OpenAICompatible(bad, model="m", max_retries=0).stream([{"role": "user", "content": "hi"}]))
        failed = by_name(spans)["ragkit.upstream"]
        assert failed.status.status_code == trace.StatusCode.ERROR
        assert failed.events[0].name == "exception"


def test_an_async_stream_closed_early_ends_its_span_without_an_error(spans) -> None:  # type: ignore[no-untyped-def]
    async def first_piece(url: str) -> str:
        pieces = OpenAICompatible(url, model="m", max_retries=0).astream([{"role": "user", "content": "hi"}])
        piece = await pieces.__anext__()
        await pieces.aclose()  # the client went away
        return piece

    with scripted_upstream(upstream) as url:
        assert asyncio.run(first_piece(url)) == "Oxalic"
    closed = by_name(spans)["ragkit.upstream"]
    assert closed.end_time is not None and closed.status.is_ok and not closed.events


def test_without_opentelemetry_the_spans_are_no_ops(monkeypatch, index) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ragkit.tracing, "trace", None)
    with scripted_upstream(upstream) as url:
        rag = RAG(index, generator=OpenAICompatible(url, model="m", max_retries=0), k=2)
        assert rag.answer(QUESTION).text == "Oxalic acid [1]."
        assert "".join(rag.stream(QUESTION)) == "Oxalic acid"
