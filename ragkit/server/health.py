"""Whether the server can answer: ``/health`` (``loading``, ``ok`` or ``error``) and ``/ready``.

The state comes from a real search of the index (both legs, one hit), not from the process being
alive: a corrupt index that fails every ``/search`` makes ``/health`` say ``error``. The check runs
in a worker thread and its result is kept for ``ttl`` seconds, so ``/health`` answers at once from
the last result even while a check (or a slow search) is running. The reason given names the kind
of failure only; paths and messages stay in the server log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

__all__ = ["HealthCheck"]

logger = logging.getLogger(__name__)

State = Literal["loading", "ok", "error"]
PROBE = "ragkit"  # the text `ragkit serve` warms the model with: its vector is cached
FIRST_WAIT = 0.05


class HealthCheck:
    """The index's state, from a probe search at most every ``ttl`` seconds."""

    def __init__(self, index: Any, *, ttl: float = 5.0) -> None:
        self.index = index
        self.ttl = ttl
        self.state: State = "loading"
        self.reason: str | None = None
        self._checked: float | None = None
        self._running: asyncio.Task[None] | None = None

    def check(self) -> State:
        """Probe now, in this thread (``ragkit serve`` does so once before it listens)."""
        try:
            self.index.retriever().search(PROBE, 1)  # as a search would, without counting as one
        except Exception as exc:  # noqa: BLE001 - whatever breaks a search breaks the server
            logger.error("health check: the index cannot be searched: %s", exc)
            self.state, self.reason = "error", f"the index cannot be searched ({type(exc).__name__}); see the server log"
        else:
            self.state, self.reason = "ok", None
        self._checked = time.monotonic()
        return self.state

    async def current(self) -> dict[str, Any]:
        """The last known state; starts a fresh probe in the background when it is older than ``ttl``.

        Before the first probe has finished, waits for it up to ``FIRST_WAIT`` seconds, so a server
        that was never probed (created in code, not by ``ragkit serve``) says ``ok`` on its first
        answer when it can, and ``loading`` otherwise."""
        stale = self._checked is None or time.monotonic() - self._checked > self.ttl
        if stale and (self._running is None or self._running.done()):
            self._running = asyncio.create_task(self._refresh())
        if self._checked is None and self._running is not None:
            await asyncio.wait([self._running], timeout=FIRST_WAIT)
        body: dict[str, Any] = {"status": self.state}
        if self.reason:
            body["reason"] = self.reason
        return body

    async def _refresh(self) -> None:
        await asyncio.to_thread(self.check)
