"""A structured access log: one JSON object per request, on the ``ragkit.server.access`` logger.

Each line holds the time, principal, method, route, status, latency in milliseconds and, where
the route retrieved, the number of hits returned. Message content is never logged unless the
server was started with ``log_content`` (``ragkit serve --log-content``): then the query or last
user turn is added as ``content``. Routes add their fields with :func:`note`.

    {"ts": "2026-12-02T01:23:45.678Z", "principal": "alice", "method": "POST", "route": "/search",
     "status": 200, "ms": 12.3, "hits": 5}
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from starlette.requests import HTTPConnection

from ragkit.server.principals import Principal

__all__ = ["AccessLog", "note"]

access_logger = logging.getLogger("ragkit.server.access")


def note(request: HTTPConnection, **fields: Any) -> None:
    """Add ``fields`` (``hits=5``, ``content=...``) to this request's access-log line."""
    request.scope.setdefault("state", {}).setdefault("access", {}).update(fields)


class AccessLog:
    """ASGI middleware writing one JSON line per HTTP request to ``ragkit.server.access``."""

    def __init__(self, app: Any, *, log_content: bool = False) -> None:
        self.app = app
        self.log_content = log_content

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def watched(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            access_logger.info(self._line(scope, status, time.perf_counter() - started))

    def _line(self, scope: dict[str, Any], status: int, seconds: float) -> str:
        state = scope.get("state") or {}
        principal = state.get("principal")
        extra = dict(state.get("access") or {})
        if not self.log_content:
            extra.pop("content", None)
        line = {
            "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "principal": principal.name if isinstance(principal, Principal) else "anonymous",
            "method": scope.get("method"), "route": scope.get("path"), "status": status,
            "ms": round(seconds * 1000, 1), **extra,
        }
        return json.dumps(line, ensure_ascii=False)
