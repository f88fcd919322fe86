"""``ragkit serve``: an OpenAI-compatible chat API that answers from an index (see :mod:`ragkit.server`).

    ragkit serve --index kb.ragkit --upstream http://localhost:8080/v1 --model qwen2.5-7b --token s3cret

Loopback only unless ``--host`` says otherwise; the bearer token comes from ``--token`` or
``$RAGKIT_SERVER_TOKEN`` (or, one per principal with its scope, from ``--config FILE``), the
upstream model's key from the variable ``--api-key-env`` names (default ``$OPENAI_API_KEY`` if
set). ``SIGHUP`` reloads ``--config``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
from typing import Any

from ragkit.errors import ConfigError
from ragkit.retrieval.settings import SEARCH_MODES

TOKEN_ENV = "RAGKIT_SERVER_TOKEN"


def register(sub: Any, name: str) -> None:
    from ragkit.cli.common import index_arg, min_score_arg

    p = sub.add_parser(name, help="serve an OpenAI-compatible chat API that answers from the index")
    index_arg(p)
    p.add_argument("--upstream", required=True, metavar="URL",
                   help="the chat model's OpenAI-compatible API root, e.g. http://localhost:8080/v1")
    p.add_argument("--model", help="upstream model name (default: the first its /models lists)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the upstream's API key")
    p.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (default ${TOKEN_ENV})")
    p.add_argument("-k", "--k", type=int, default=5, help="passages retrieved per question (default 5)")
    p.add_argument("--mode", choices=SEARCH_MODES, default="hybrid", help="search mode")
    p.add_argument("--min-score", type=min_score_arg, metavar="S",
                   help="leave out passages whose fused score is below S; 'auto' (default): those whose "
                   "calibrated relevance says they likely do not answer the question; 'none' keeps all")
    p.add_argument("--template", default="qa", help="prompt template: name, file or string (default qa)")
    p.add_argument("--max-tokens", type=int, default=4096, help="prompt budget in tokens (default 4096)")
    p.add_argument("--condense", choices=["rule", "generator", "none"], default="rule",
                   help="how a follow-up becomes a standalone search query (default rule)")
    p.add_argument("--sources-in-text", action="store_true", help="append a 'Sources:' list to answers")
    p.add_argument("--name", default="ragkit", help="model id this server reports (default ragkit)")
    p.add_argument("--timeout", type=float, default=60.0, help="upstream timeout in seconds (default 60)")
    p.add_argument("--retries", type=int, default=2, help="retries of transient upstream errors (default 2)")
    p.add_argument("--refresh-feedback", type=float, metavar="SECONDS",
                   help="every SECONDS, if new ratings arrived, re-learn query associations from the feedback "
                   "(tune --from-feedback's guard) in the background; search uses them without a restart")
    _serving_args(p)
    p.set_defaults(func=cmd_serve)


def _serving_args(p: Any) -> None:
    """Flags for many callers: who they are, what one request or caller may cost, logging."""
    p.add_argument("--config", metavar="FILE", help="server config (TOML or JSON): tokens, as SHA-256, mapped to "
                   "principals with their scopes and limits; reloaded on change or SIGHUP (see README)")
    edge_args(p)
    p.add_argument("--max-message-chars", type=int, default=32_000,
                   help="longest message or query in characters (default 32000)")
    p.add_argument("--max-streams", type=int, metavar="N", help="open streams per principal (default: no limit)")
    p.add_argument("--stream-deadline", type=float, default=600.0,
                   help="seconds a whole streamed answer may take (default 600)")
    p.add_argument("--no-batching", action="store_true", help="embed each /search query alone (for comparison)")
    p.add_argument("--access-log", metavar="PATH", help="write JSON-lines access records to PATH ('-': stderr)")
    p.add_argument("--log-content", action="store_true", help="put queries and last messages in the access log")


def edge_args(p: Any) -> None:
    """The connection and request bounds `ragkit serve` and `ragkit mcp --http` share."""
    p.add_argument("--allow-host", action="append", metavar="NAME", default=None,
                   help="a Host header name to accept (repeatable; default without a token: loopback names only)")
    p.add_argument("--max-body-mb", type=float, default=4.0, help="largest request body in MB (default 4)")
    p.add_argument("--requests-per-minute", type=int, metavar="N", help="per principal (default: no limit)")
    p.add_argument("--max-connections", type=int, default=512,
                   help="connections and requests at once; beyond it, 503 (default 512)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a client may take to send a request's headers (default 10)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a client may take to send a request's body (default 30)")
    p.add_argument("--keep-alive", type=float, default=5.0, help="seconds an idle connection is kept (default 5)")


def check_edges(args: argparse.Namespace) -> None:
    """A ConfigError naming the flag of an edge bound that is not a positive number."""
    for flag, value in (("--max-body-mb", args.max_body_mb), ("--header-timeout", args.header_timeout),
                        ("--keep-alive", args.keep_alive), ("--body-timeout", args.body_timeout),
                        ("--max-connections", args.max_connections)):
        if not value > 0:
            raise ConfigError(f"{flag} must be > 0, got {value}")
    if args.requests_per_minute is not None and args.requests_per_minute < 1:
        raise ConfigError(f"--requests-per-minute must be >= 1, got {args.requests_per_minute}")


def allowed_hosts(args: argparse.Namespace) -> tuple[str, ...] | None:
    """``--allow-host`` names; without them, None, or the loopback names plus the name given to ``--host``."""
    from ragkit.server.auth import LOOPBACK_NAMES, is_loopback

    if args.allow_host:
        return tuple(args.allow_host)
    if not is_loopback(args.host) and args.host not in ("0.0.0.0", "::"):
        return (*LOOPBACK_NAMES, args.host)  # the name it was told to listen on is its own
    return None


def build_app(args: argparse.Namespace) -> Any:
    """The app ``ragkit serve`` would run for ``args``."""
    from ragkit.cli.common import open_index, split_min_score
    from ragkit.generators.http import OpenAICompatible
    from ragkit.pipeline.rag import RAG
    from ragkit.prompting.builder import PromptBuilder
    from ragkit.server.app import create_app
    from ragkit.server.principals import PrincipalStore

    if args.timeout <= 0 or args.retries < 0:
        raise ConfigError(f"need --timeout > 0 and --retries >= 0, got {args.timeout} and {args.retries}")
    api_key = _api_key(args.api_key_env)
    model = args.model or _first_model(args.upstream, api_key, min(args.timeout, 5.0))
    generator = OpenAICompatible(args.upstream, model=model, api_key=api_key, timeout=args.timeout,
                                 max_retries=args.retries, stream_deadline=args.stream_deadline)
    builder = PromptBuilder(args.template, max_tokens=args.max_tokens,  # the default reserve for the answer
                            min_score=split_min_score(args.min_score)[0])
    condense = None if args.condense == "none" else args.condense
    cut = split_min_score(args.min_score)[1]  # a number cuts the fused score in the search
    settings = {"min_score": cut} if cut is not None else None
    rag = RAG(open_index(args.index), builder, generator, k=args.k, mode=args.mode, condense=condense,
              retriever_settings=settings)
    # every attempt may take the full timeout, and backoff sleeps come between them
    deadline = args.timeout * (args.retries + 1) + 10 * args.retries
    token = args.token or os.environ.get(TOKEN_ENV) or None
    principals = PrincipalStore(args.config) if args.config else None
    return create_app(rag, token=token, principals=principals, model_name=args.name,
                      sources_in_text=args.sources_in_text, deadline=deadline, settings=_settings(args))


def _settings(args: argparse.Namespace) -> Any:
    from ragkit.server.settings import ServerSettings

    check_edges(args)
    for flag, value in (("--max-message-chars", args.max_message_chars), ("--stream-deadline", args.stream_deadline)):
        if not value > 0:
            raise ConfigError(f"{flag} must be > 0, got {value}")
    try:
        return ServerSettings(max_body_bytes=int(args.max_body_mb * 2**20), body_timeout=args.body_timeout,
                              max_message_chars=args.max_message_chars,
                              allow_hosts=allowed_hosts(args), requests_per_minute=args.requests_per_minute,
                              max_streams=args.max_streams, batch_queries=not args.no_batching,
                              log_content=args.log_content)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (check --requests-per-minute / --max-streams)") from None


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(f'ragkit serve needs uvicorn: pip install "ragkit[server]" ({exc})') from exc
    app = build_app(args)
    _refresh_feedback(args, app.state.rag.index)
    from ragkit.server.auth import is_loopback

    if not is_loopback(args.host) and not (args.token or os.environ.get(TOKEN_ENV) or args.config):
        print(f"ragkit serve: warning: listening on {args.host} with no --token; anyone who can reach it "
              "can query the index and the model", file=sys.stderr)
    sock = _bind(args.host, args.port)  # first: a port in use is an error before any "serving" line
    try:
        rag = app.state.rag
        # The embedding model loads now, before anyone is told the server is up: otherwise /health says
        # ok while the first request waits seconds for it. Nothing listens until then (connections are
        # refused, not left hanging).
        rag.index.embed_query("ragkit")
        if app.state.health.check() != "ok":
            print(f"ragkit serve: warning: {app.state.health.reason}; /health says error", file=sys.stderr)
        _watch(args, app)
        port = sock.getsockname()[1]
        print(f"ragkit serve: http://{args.host}:{port}/v1 (index {args.index}, upstream {args.upstream}, "
              f"model {rag.generator.model})", file=sys.stderr, flush=True)
        server = uvicorn.Server(_uvicorn_config(uvicorn, app, args))
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _uvicorn_config(uvicorn: Any, app: Any, args: argparse.Namespace) -> Any:
    return uvicorn.Config(app, **uvicorn_options(args))


def uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    """Bounded connections: a header timeout (slowloris), idle keep-alive, a cap on concurrency."""
    from ragkit.server.protocol import header_timeout_protocol

    return {"log_level": "info" if args.verbose else "warning", "http": header_timeout_protocol(args.header_timeout),
            "timeout_keep_alive": args.keep_alive, "limit_concurrency": args.max_connections,
            "h11_max_incomplete_event_size": 64 * 1024}


def _watch(args: argparse.Namespace, app: Any) -> None:
    """SIGHUP reloads --config; --access-log sends the access records to a file or stderr."""
    store = app.state.principals
    if store is not None and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: store.reload())
    if args.access_log:
        handler = logging.StreamHandler(sys.stderr) if args.access_log == "-" else logging.FileHandler(
            args.access_log, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("ragkit.server.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False


def _refresh_feedback(args: argparse.Namespace, index: Any) -> None:
    """--refresh-feedback: a daemon thread re-learning associations from new feedback (ragkit.feedback.refresh)."""
    if args.refresh_feedback is None:
        return
    if not 0 < args.refresh_feedback < float("inf"):
        raise ConfigError(f"--refresh-feedback must be a positive number of seconds, got {args.refresh_feedback}")
    from ragkit.feedback.refresh import FeedbackRefresher

    FeedbackRefresher(index, every=args.refresh_feedback).start()


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening; uvicorn listens on it)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = "another server uses it; pass another --port" if exc.errno == errno.EADDRINUSE else "check --host/--port"
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from exc
    return sock


def _api_key(variable: str | None) -> str | None:
    if variable is None:
        return None  # OpenAICompatible falls back to $OPENAI_API_KEY
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"--api-key-env {variable}: the environment variable {variable} is not set")
    return value


def _first_model(upstream: str, api_key: str | None, timeout: float) -> str:
    """The first model the upstream lists, or "default" (with a warning) when it cannot say."""
    import httpx

    key = api_key or os.environ.get("OPENAI_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(upstream.rstrip("/") + "/models", headers=headers, timeout=timeout)
        return str(response.json()["data"][0]["id"])
    except Exception as exc:  # any failure means "no answer"; the upstream may start later
        print(f"ragkit serve: warning: could not list {upstream}/models ({type(exc).__name__}); "
              "using model name 'default' (pass --model)", file=sys.stderr)
        return "default"
