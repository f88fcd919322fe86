"""Who is asking, and the one part of the playground served without the token: its empty shell.

With ``--token`` every data route needs ``Authorization: Bearer``, which a browser cannot send on a
plain page load. So :class:`ShellMiddleware` answers ``GET /`` and ``GET /ui/static/...`` itself,
outside the token check: the shell is a fixed HTML page and the static files are the script and style
sheet, none of them holding anything from the index. The shell asks for the token, keeps it in
``sessionStorage`` and sends it as ``Bearer`` on every request; without it every view is a 401.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from starlette.responses import Response

__all__ = ["SECURITY_HEADERS", "STATIC", "ShellMiddleware", "in_scope", "narrowed", "principal_of"]

STATIC = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/ui/static/"
# The page runs only its own script: even a document text that escaped escaping could not run code.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def principal_of(scope: dict[str, Any]) -> str | None:
    """The principal a request's token belongs to, when the server has principals; else None.

    The single place the playground asks who is speaking: it reads what an authentication layer put
    in the ASGI scope (``scope["state"]["principal"]`` or ``scope["ragkit.principal"]``).
    """
    state = scope.get("state") or {}
    found = state.get("principal") if isinstance(state, dict) else None
    found = found or scope.get("ragkit.principal")
    return None if found is None else str(getattr(found, "name", found))


def narrowed(request: Any, asked: dict[str, Any] | None) -> dict[str, Any] | None:
    """The filters a playground search for ``request`` must use: the caller's scope ANDed with ``asked``.

    The single place the playground applies scopes: the server's own :func:`~ragkit.server.auth.scope_for`
    (``asked`` unchanged for an unrestricted caller).
    """
    from ragkit.server.auth import scope_for

    return scope_for(request, asked)


def in_scope(request: Any, records: list[dict[str, Any]]) -> list[bool]:
    """Which records (a document's or an example's metadata) the caller may see. Under a scope, a record
    without the scope's fields is not seen (as the server's scoping treats untagged examples)."""
    scope = narrowed(request, None)
    if not scope:
        return [True] * len(records)
    from ragkit.errors import FilterError
    from ragkit.storage.filters import filter_mask

    try:
        return [bool(ok) for ok in filter_mask(scope, records)] if records else []
    except FilterError:
        return [False] * len(records)


class ShellMiddleware:
    """ASGI middleware serving the playground's shell page and static files (see the module docstring)."""

    def __init__(self, app: Any, *, shell: bytes) -> None:
        self.app = app
        self._shell = shell

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            response = self._respond(scope["path"])
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _respond(self, path: str) -> Response | None:
        if path == "/":
            return Response(self._shell, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)
        if not path.startswith(STATIC_PREFIX):
            return None
        name = path[len(STATIC_PREFIX):]
        file = STATIC / name
        if "/" in name or name.startswith(".") or not file.is_file():  # a flat folder: no way out of it
            return Response("not found", status_code=404, media_type="text/plain")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(file.read_bytes(), media_type=kind, headers=SECURITY_HEADERS)
