"""uvicorn's HTTP/1.1 protocol with a header timeout: a connection must finish sending a request's
headers within ``header_timeout`` seconds of opening (or of its last response), or it is closed.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not one that sends its
headers a byte at a time, so a few hundred such connections are held indefinitely (slowloris).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["header_timeout_protocol"]


class _HeaderTimeout(H11Protocol):
    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        cycle = self.cycle  # a new request replaces it once its headers are in

        def check() -> None:
            if self.cycle is cycle and (cycle is None or cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        self._header_timer = self.loop.call_later(self.header_timeout, check)


def header_timeout_protocol(seconds: float) -> type[Any]:
    """An H11 protocol class for ``uvicorn.Config(http=...)`` closing connections slow to send headers."""
    return type("HeaderTimeoutH11Protocol", (_HeaderTimeout,), {"header_timeout": float(seconds)})
