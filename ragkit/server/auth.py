"""Who may talk to a ragkit HTTP server: the bearer-token check, the principal and scope of a
request, the Host allow-list and the loopback test.

Shared by ``ragkit serve`` (the OpenAI-compatible app) and ``ragkit mcp --http`` (the MCP
server), so both refuse the same requests the same way. Only Starlette is needed (FastAPI and the
MCP SDK both bring it), so the MCP extra does not have to install FastAPI.

:class:`BearerAuth` puts the caller's :class:`~ragkit.server.principals.Principal` in the request
state; :func:`scope_for` is what every route (and any router mounted on the app) calls to get the
filter its searches must use.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from ragkit.server.principals import ANONYMOUS, Principal, PrincipalStore, narrow

__all__ = ["LOOPBACK_NAMES", "BearerAuth", "HostCheck", "is_loopback", "principal_of", "scope_for"]

TOKEN_ERROR = "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_DEFAULT = Principal("default")


def principal_of(request: HTTPConnection) -> Principal:
    """The principal :class:`BearerAuth` found for this request (anonymous without a token)."""
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else ANONYMOUS


def scope_for(request: HTTPConnection, asked: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The filter a search for this request must use: the caller's scope ANDed with ``asked``.

    Raises :class:`~ragkit.errors.FilterError` (a 400) when ``asked`` cannot be combined with the scope.
    """
    return narrow(principal_of(request).scope(), asked)


def _reply(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class BearerAuth:
    """ASGI middleware: every path but ``/health`` and ``/ready`` needs ``Authorization: Bearer <token>``.

    The token is ``token`` (one caller, unrestricted) or one of ``principals`` (each with its own
    scope). It answers before routing, so a refused request is never parsed, retrieved for or sent
    on. The refusal is an OpenAI-style error body with status 401.
    """

    open_paths = frozenset({"/health", "/ready"})

    def __init__(self, app: Any, *, token: str | None = None, principals: PrincipalStore | None = None) -> None:
        if not token and principals is None:
            raise ValueError("BearerAuth needs token= or principals=")
        self.app = app
        self._token = token.encode() if token else None
        self._principals = principals

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        principal = self._principal(scope)
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)
            return
        await _reply(401, TOKEN_ERROR, "invalid_api_key", {"WWW-Authenticate": "Bearer"})(scope, receive, send)

    def _principal(self, scope: dict[str, Any]) -> Principal | None:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, presented = header.partition(b" ")
        presented = presented.strip()
        if scheme.lower() != b"bearer" or not presented:
            return None
        if self._token is not None and secrets.compare_digest(presented, self._token):
            return _DEFAULT
        if self._principals is not None:
            return self._principals.authenticate(presented.decode("latin-1"))
        return None


class HostCheck:
    """ASGI middleware: refuse (421) a request whose Host header is not an allowed name.

    Without a token, the only thing between a web page the user visits and the server is the
    browser's same-origin rule, which DNS rebinding gets around: the page's own name comes to point
    at 127.0.0.1. The Host header still carries that name, so allowing only the server's own names
    closes the hole.
    """

    def __init__(self, app: Any, *, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower().strip("[]") for h in allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _host_name(scope) in self.allowed or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        message = "Host header not allowed; pass --allow-host NAME to `ragkit serve` to allow it"
        await _reply(421, message, "host_not_allowed")(scope, receive, send)


def _host_name(scope: dict[str, Any]) -> str:
    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: the hosts a server may listen on without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
