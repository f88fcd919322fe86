"""Issue 20, speed: what the server does per /search request, and where (event loop or worker)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ragkit.errors import ConfigError
from ragkit.server.batching import QueryBatcher
from ragkit.server.responses import json_bytes
from ragkit.server.settings import ServerSettings
from ragkit.types import Hit


def test_json_bytes_renders_as_json_response_over_jsonable_encoder() -> None:
    hit = Hit("c1", "d1", "Swarms in May, «not» June", 0.5, metadata={"date": dt.date(2024, 5, 1), "tags": ("a", "b"),
              "source": "notes/bees.md"}, bm25_score=1.25, dense_rank=None)
    content = {"query": "when do bees swarm?", "hits": [hit.to_dict()]}
    assert json_bytes(content) == JSONResponse(jsonable_encoder(content)).body


def test_json_bytes_refuses_nan_as_json_response_does() -> None:
    with pytest.raises(ValueError):
        json_bytes({"score": math.nan})


class _Slow:
    """An embedder that takes 80 ms per call and counts the calls running at once."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def encode(self, texts):  # type: ignore[no-untyped-def]
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.calls.append(len(texts))
        time.sleep(0.08)
        with self._lock:
            self.running -= 1
        return np.array([[float(t[1:]), 1.0] for t in texts], dtype=np.float32)


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_at_most_parallel_batches_encode_at_once_and_each_request_gets_its_own_vector(parallel: int) -> None:
    slow = _Slow()

    async def run():  # type: ignore[no-untyped-def]
        batcher = QueryBatcher(slow, max_batch=2, window=0.001, parallel=parallel)
        return await asyncio.gather(*(batcher.vector(f"q{i}") for i in range(12)))

    vectors = asyncio.run(run())
    assert [float(v[0]) for v in vectors] == list(range(12))
    assert slow.most == parallel and sum(slow.calls) == 12 and max(slow.calls) == 2


def test_a_request_arriving_while_batches_encode_is_embedded() -> None:
    slow = _Slow()

    async def run():  # type: ignore[no-untyped-def]
        batcher = QueryBatcher(slow, max_batch=1, window=0.0, parallel=2)
        first = asyncio.gather(*(batcher.vector(f"q{i}") for i in range(3)))
        await asyncio.sleep(0.01)  # the first batches are encoding, the gathering loop has ended
        return await first, await asyncio.wait_for(batcher.vector("q7"), 2)

    first, late = asyncio.run(run())
    assert [float(v[0]) for v in first] == [0, 1, 2] and float(late[0]) == 7


def test_batch_parallel_is_a_validated_server_setting() -> None:
    with pytest.raises(ConfigError, match="batch_parallel"):
        ServerSettings(batch_parallel=0)
    with pytest.raises(ConfigError, match="parallel"):
        QueryBatcher(_Slow(), parallel=0)
