"""Who may talk to a ragkit HTTP server: the bearer-token check and the loopback test.

Shared by ``ragkit serve`` (the OpenAI-compatible app) and ``ragkit mcp --http`` (the MCP
server), so both refuse the same requests the same way. Only Starlette is needed (FastAPI and the
MCP SDK both bring it), so the MCP extra does not have to install FastAPI.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["BearerAuth", "is_loopback"]

TOKEN_ERROR = "missing or wrong bearer token: send 'Authorization: Bearer <token>'"


class BearerAuth:
    """ASGI middleware: every path but ``/health`` needs ``Authorization: Bearer <token>``.

    It answers before routing, so a refused request is never parsed, retrieved for or sent on.
    The refusal is an OpenAI-style error body with status 401.
    """

    open_paths = frozenset({"/health"})

    def __init__(self, app: Any, *, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = {"error": {"message": TOKEN_ERROR, "type": "invalid_request_error", "param": None,
                          "code": "invalid_api_key"}}
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(presented.strip(), self._token)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: the hosts a server may listen on without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
