"""What several CLI commands share: the ``--index`` and search options, opening an index."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ragkit.retrieval.settings import FUSION_METHODS, SEARCH_MODES

DEFAULT_INDEX = "kb.ragkit"


def index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=os.environ.get("RAGKIT_INDEX", DEFAULT_INDEX),
                   help=f"index directory (default $RAGKIT_INDEX or ./{DEFAULT_INDEX})")


def search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", type=int, default=5, help="number of hits (default 5)")
    p.add_argument("--mode", choices=SEARCH_MODES, default="hybrid")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata filter: key=value, key=a,b (any of), key!=v, key>=n, key<n, key~glob")
    p.add_argument("--method", choices=FUSION_METHODS, help="fusion method")
    p.add_argument("--weight", type=float, help="dense leg's share in fusion, 0..1")


def open_index(path: str, *, create: bool = False, **options: Any) -> Any:
    from ragkit.index import Index

    if not create and "://" not in path and not os.path.exists(os.path.join(path, "ragkit.sqlite")):
        from ragkit.errors import ConfigError

        raise ConfigError(f"no index at {path}; create one with `ragkit index FOLDER --index {path}`")
    return Index(path, create=create, **options)


def search_settings(args: argparse.Namespace) -> dict[str, Any]:
    from ragkit.storage.filters import parse_cli_filter

    settings: dict[str, Any] = {}
    if args.method:
        settings["method"] = args.method
    if args.weight is not None:
        settings["weight"] = args.weight
    filters = dict(parse_cli_filter(f) for f in args.filter)
    return {"k": args.k, "mode": args.mode, "filters": filters or None, **settings}
