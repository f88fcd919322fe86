"""``ragkit ui``: the web playground over an index, with no upstream model (search, prompts, compare).

    ragkit ui --index kb.ragkit            # then open http://127.0.0.1:8000/

The same app as ``ragkit serve`` (see :mod:`ragkit.server.playground`) without a generator: the Chat
view says no model is configured. Loopback only unless ``--host`` says otherwise; ``--token`` (or
``$RAGKIT_SERVER_TOKEN``) makes the page ask for the token and every view refuse requests without it.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from typing import Any

from ragkit.errors import ConfigError
from ragkit.retrieval.settings import SEARCH_MODES

TOKEN_ENV = "RAGKIT_SERVER_TOKEN"


def register(sub: Any, name: str) -> None:
    from ragkit.cli.common import index_arg

    p = sub.add_parser(name, help="serve the web playground over an index (no chat model)")
    index_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (default ${TOKEN_ENV})")
    p.add_argument("-k", "--k", type=int, default=5, help="passages retrieved per question (default 5)")
    p.add_argument("--mode", choices=SEARCH_MODES, default="hybrid", help="search mode")
    p.add_argument("--template", default="qa", help="prompt template: name, file or string (default qa)")
    p.add_argument("--max-tokens", type=int, default=4096, help="prompt budget in tokens (default 4096)")
    p.set_defaults(func=cmd_ui)


def build_app(args: argparse.Namespace) -> Any:
    """The app ``ragkit ui`` would run for ``args``."""
    from ragkit.cli.common import open_index
    from ragkit.pipeline.rag import RAG
    from ragkit.prompting.builder import PromptBuilder
    from ragkit.server.app import create_app

    rag = RAG(open_index(args.index), PromptBuilder(args.template, max_tokens=args.max_tokens), None,
              k=args.k, mode=args.mode)
    return create_app(rag, token=args.token or os.environ.get(TOKEN_ENV) or None)


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(f'ragkit ui needs uvicorn: pip install "ragkit[server]" ({exc})') from exc
    app = build_app(args)
    sock = _bind(args.host, args.port)
    try:
        app.state.rag.index.embed_query("ragkit")  # load the model before saying the page is up
        port = sock.getsockname()[1]
        print(f"ragkit ui: http://{args.host}:{port}/ (index {args.index}; no chat model)", file=sys.stderr, flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="info" if args.verbose else "warning")).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` before the model loads, so a port in use fails at once, naming --port."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        hint = "another server uses it; pass another --port" if exc.errno == errno.EADDRINUSE else "check --host/--port"
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from exc
    return sock
