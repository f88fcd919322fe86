"""``ragkit mcp``: serve an index to MCP clients (desktop apps, agents), see :mod:`ragkit.integrations.mcp_server`.

    ragkit mcp --index kb.ragkit                                   # stdio, for a desktop client
    ragkit mcp --index kb.ragkit --http --port 8765 --token s3cret # streamable HTTP at /mcp
    ragkit mcp --index kb.ragkit --allow-sync docs/                # adds the `sync` tool, for docs/ only

Over HTTP it listens on loopback unless ``--host`` says otherwise, and with ``--token`` (or
``$RAGKIT_SERVER_TOKEN``, as ``ragkit serve``) every request needs ``Authorization: Bearer TOKEN``.
``--config FILE`` is ``ragkit serve``'s server config: one token per principal, each call scoped
to what that principal may see; reloaded when the file changes and on SIGHUP. The HTTP transport
has ``ragkit serve``'s edges: a Host allow-list without a token, a body limit, each principal's
requests per minute (``--requests-per-minute`` or the principal's own), header and keep-alive
timeouts and a cap on connections.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from typing import Any

DEFAULT_PORT = 8765


def register(sub: Any, name: str) -> None:
    from ragkit.cli.common import index_arg
    from ragkit.cli.serve import TOKEN_ENV, edge_args

    p = sub.add_parser(name, help="serve the index to MCP clients (stdio, or streamable HTTP with --http)")
    index_arg(p)
    p.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on with --http (default loopback)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port with --http (default {DEFAULT_PORT})")
    p.add_argument("--token", help=f"with --http, require 'Authorization: Bearer TOKEN' (default ${TOKEN_ENV})")
    p.add_argument("--config", metavar="FILE", help="with --http, the server config of `ragkit serve` (TOML or "
                   "JSON): tokens, as SHA-256, mapped to principals whose scopes bound every call (see README)")
    p.add_argument("--allow-sync", action="append", default=[], metavar="FOLDER",
                   help="offer a `sync` tool that re-indexes FOLDER (repeatable); clients can sync nothing else")
    p.add_argument("--template", default="qa", help="build_prompt's template (default qa)")
    p.add_argument("--max-tokens", type=int, default=4096, help="build_prompt's token budget (default 4096)")
    edge_args(p.add_argument_group("with --http, what one request or caller may cost"))
    p.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    from ragkit.cli.common import open_index
    from ragkit.cli.serve import check_edges
    from ragkit.errors import ConfigError
    from ragkit.integrations.mcp_server import create_server

    if args.config and not args.http:
        raise ConfigError("--config applies to --http only (over stdio the one local user sees the whole index)")
    check_edges(args)
    principals = _principals(args.config)  # a bad file is an error before the model loads
    index = open_index(args.index)
    # Load the model now, with stray prints kept off stdout (the stdio transport's channel), so the
    # first search is not slowed by it and nothing a library prints can corrupt the protocol.
    with contextlib.redirect_stdout(sys.stderr):
        index.embed_query("warm up")
    server = create_server(index, sync_folders=args.allow_sync, template=args.template,
                           max_tokens=args.max_tokens)
    if not args.http:
        server.run("stdio")
        return 0
    return _serve_http(server, args, principals)


def _principals(config: str | None) -> Any:
    """The principals of ``--config`` (ragkit.server.principals, as `ragkit serve` reads them), SIGHUP reloading."""
    if not config:
        return None
    from ragkit.server.principals import PrincipalStore

    store = PrincipalStore(config)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: store.reload())
    return store


def _serve_http(server: Any, args: argparse.Namespace, principals: Any) -> int:
    import uvicorn

    from ragkit.cli.serve import TOKEN_ENV, uvicorn_options
    from ragkit.server.auth import is_loopback

    from ragkit.cli.serve import allowed_hosts

    token = args.token or os.environ.get(TOKEN_ENV) or None
    hosts = allowed_hosts(args)
    mcp_app = server.streamable_http_app(host=args.host, transport_security=_transport_security(hosts))
    app = _guarded(mcp_app, args, hosts, token, principals)
    if not (token or principals is not None) and not is_loopback(args.host):
        print(f"ragkit mcp: warning: listening on {args.host} with no --token; anyone who can reach it "
              "can query the index", file=sys.stderr)
    print(f"ragkit mcp: http://{args.host}:{args.port}/mcp (index {args.index})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, **uvicorn_options(args))
    return 0


def _transport_security(hosts: tuple[str, ...] | None) -> Any:
    """The MCP SDK's own Host and Origin check, told the ``--allow-host`` names (None: its default,
    loopback names when it listens on loopback); the names match with any port, as a client sends."""
    if hosts is None:
        return None
    from mcp.server.transport_security import TransportSecuritySettings

    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = [f"[{h.strip('[]')}]" if ":" in h else h for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=[*names, *(f"{n}:*" for n in names)],
        allowed_origins=[f"{scheme}://{n}{port}" for n in names for scheme in ("http", "https") for port in ("", ":*")])


def _guarded(app: Any, args: argparse.Namespace, hosts: tuple[str, ...] | None, token: str | None,
             principals: Any) -> Any:
    """The MCP app behind `ragkit serve`'s edges, outermost first: Host check, body limit, bearer
    token, each principal's rate (the token names the principal, so the rate is counted after it)."""
    from ragkit.server.auth import LOOPBACK_NAMES, BearerAuth, HostCheck
    from ragkit.server.limits import BodyLimit, CallerLimits, RateLimit

    app = RateLimit(app, limits=CallerLimits(requests_per_minute=args.requests_per_minute))
    if token or principals is not None:  # refuses before the MCP app sees the request
        app = BearerAuth(app, token=token, principals=principals)
    app = BodyLimit(app, max_bytes=int(args.max_body_mb * 2**20), timeout=args.body_timeout)
    if hosts is None and not (token or principals is not None):
        hosts = LOOPBACK_NAMES
    return HostCheck(app, allowed=hosts) if hosts else app
