"""Issue 20, the upstream side: answers are read within bounds (bytes, line length, time), a stream must
end with its end marker, and the async API reuses one pooled client. Real HTTP on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("httpx")

from servekit import rss_mb, scripted_upstream

from ragkit.errors import GeneratorResponseError, GeneratorTimeoutError
from ragkit.generators.http import OpenAICompatible

HI = [{"role": "user", "content": "hi"}]
MB = 2**20


def endless(line: bytes = b"x" * 65536, count: int = 1000):  # type: ignore[no-untyped-def]
    def reply(body):  # type: ignore[no-untyped-def]
        for _ in range(count):
            yield line

    return reply


def test_a_huge_answer_without_newlines_costs_bounded_memory() -> None:
    with scripted_upstream(endless()) as url:  # 64 MB, no newline
        gen = OpenAICompatible(url, model="m", max_retries=0, max_response_bytes=4 * MB, max_line_bytes=MB)
        before = rss_mb()
        started = time.perf_counter()
        with pytest.raises(GeneratorResponseError, match="max_line_bytes"):
            list(gen.stream(HI))
        with pytest.raises(GeneratorResponseError, match="max_response_bytes"):
            gen.generate(HI)
        with pytest.raises(GeneratorResponseError, match="max_line_bytes"):
            asyncio.run(_collect(gen))
        grown, took = rss_mb() - before, time.perf_counter() - started
    assert grown < 40 and took < 10


async def _collect(gen: OpenAICompatible) -> list[str]:
    return [piece async for piece in gen.astream(HI)]


def test_many_short_lines_are_capped_in_total_bytes() -> None:
    with scripted_upstream(endless(b": keep-alive\n" * 1000)) as url:
        gen = OpenAICompatible(url, model="m", max_retries=0, max_response_bytes=2 * MB)
        with pytest.raises(GeneratorResponseError, match="max_response_bytes"):
            list(gen.stream(HI))


def test_a_trickling_stream_ends_at_the_stream_deadline() -> None:
    def trickle(body):  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b'data: {"choices": [{"delta": {"content": "."}}]}\n\n'
            time.sleep(0.05)

    with scripted_upstream(trickle) as url:
        gen = OpenAICompatible(url, model="m", max_retries=0, stream_deadline=0.4)
        started = time.perf_counter()
        with pytest.raises(GeneratorTimeoutError, match="stream_deadline"):
            asyncio.run(_collect(gen))
    assert time.perf_counter() - started < 2


def test_a_stream_needs_its_done_marker_and_events_count_only_as_data_lines() -> None:
    garbage = endless(b"event: nothing\nid: 1\n\n", count=3)
    good = endless(b'data: {"choices": [{"delta": {"content": "ok"}}]}\n\ndata: [DONE]\n\n', count=1)
    with scripted_upstream(garbage) as bad_url, scripted_upstream(good) as good_url:
        with pytest.raises(GeneratorResponseError, match=r"end marker \(data: \[DONE\]\) after 9 lines"):
            list(OpenAICompatible(bad_url, model="m", max_retries=0).stream(HI))
        assert list(OpenAICompatible(good_url, model="m", max_retries=0).stream(HI)) == ["ok"]


def test_the_async_api_reuses_one_pooled_client_per_event_loop() -> None:
    reply = endless(b'{"choices": [{"message": {"content": "pooled"}}]}', count=1)
    with scripted_upstream(reply) as url:
        gen = OpenAICompatible(url, model="m", max_retries=0)

        async def twice() -> tuple[list[str], int]:
            answers = [await gen.agenerate(HI) for _ in range(3)]
            clients = len(gen._aclients)
            await gen.aclose()
            return answers, clients

        answers, clients = asyncio.run(twice())
        assert answers == ["pooled"] * 3 and clients == 1
        assert asyncio.run(gen.agenerate(HI)) == "pooled"  # a new loop gets its own client
