"""Micro-batching of query embeddings across concurrent requests.

A query embedded in a batch costs about half the model time of one embedded alone (MiniLM on
ONNX Runtime: 2.3 to 2.7 ms each in batches of 8 to 32 against 4.3 ms alone, measured here), so
when many ``/search`` requests arrive at once, encoding them in one ``encode`` call lets throughput
grow with load instead of staying flat. A request waits at
most ``window`` seconds for others to join; a batch holds at most ``max_batch`` queries; up to
``parallel`` batches encode at once, each in a worker thread, while the next one gathers.

Two at once by default: a batch's tokenising and pooling hold the GIL, and its model run stalls
at every step where one of ONNX Runtime's two threads waits for the other (on a busy machine, for
whole scheduler slices), so a second batch fills those gaps. Under 32 clients on a loaded 2-core
machine that measured 1.51-1.56x the /search throughput of the server before batching (ddda9cf),
against 1.12-1.23x with one batch at a time (``benchmarks/server.py``, interleaved in one run).

>>> batcher = QueryBatcher(index.query_encoder.embedder)   # doctest: +SKIP
>>> vector = await batcher.vector("when do bees swarm?")     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from ragkit.errors import ConfigError

__all__ = ["QueryBatcher"]


class QueryBatcher:
    """Collects queries from concurrent requests and embeds them with one ``embedder.encode`` call."""

    def __init__(self, embedder: Any, *, max_batch: int = 32, window: float = 0.003, parallel: int = 2) -> None:
        if max_batch < 1 or parallel < 1 or not window >= 0:
            raise ConfigError(f"need max_batch >= 1, parallel >= 1 and window >= 0 s, got {max_batch}, {parallel} "
                              f"and {window}")
        self.embedder = embedder
        self.max_batch, self.window, self.parallel = max_batch, window, parallel
        self._waiting: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._slots: asyncio.Semaphore | None = None  # made on the event loop that uses it
        self._encoding: set[asyncio.Task[None]] = set()  # references, so running batches are not collected
        self.batches: list[int] = []  # sizes of the last batches (for tests and the benchmark)

    async def vector(self, text: str) -> np.ndarray:
        """``text``'s raw unit vector, embedded together with whatever else is waiting."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._waiting.append((text, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.parallel)
        while self._waiting:
            await self._slots.acquire()  # while `parallel` batches encode, requests gather into the next
            if len(self._waiting) < self.max_batch and self.window:
                await asyncio.sleep(self.window)  # let concurrent requests join
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            batch = [(t, f) for t, f in batch if not f.done()]  # a cancelled request needs no vector
            if not batch:
                self._slots.release()
                continue
            self.batches = [*self.batches[-99:], len(batch)]
            task = asyncio.create_task(self._encode(batch, self._slots))
            self._encoding.add(task)
            task.add_done_callback(self._encoding.discard)

    async def _encode(self, batch: list[tuple[str, asyncio.Future[np.ndarray]]], slots: asyncio.Semaphore) -> None:
        try:
            vectors = await asyncio.to_thread(self.embedder.encode, [t for t, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting request fails as its own search would have
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            slots.release()
        for (_, future), vec in zip(batch, np.asarray(vectors, dtype=np.float32)):
            if not future.done():
                future.set_result(vec)
