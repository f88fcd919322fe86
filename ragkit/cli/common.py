"""What several CLI commands share: the ``--index`` and search options, opening an index, and
error messages that name CLI flags instead of the Python options behind them."""

from __future__ import annotations

import argparse
import math
import os
import re
from typing import Any, Literal

from ragkit.retrieval.settings import FUSION_METHODS, GROUPINGS, SEARCH_MODES

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
    p.add_argument("--depth", type=int, help="candidates each leg fetches (default max(100, 10*k))")
    p.add_argument("--mmr", action="store_true", help="diversify the hits (maximal marginal relevance)")
    p.add_argument("--group-by", choices=[g for g in GROUPINGS if g], help="best chunk per document, or "
                   "neighbouring chunks merged")
    p.add_argument("--reranker", metavar="MODEL", help="cross-encoder to rerank the top hits with")
    p.add_argument("--min-score", type=min_score_arg, metavar="S", help="drop hits whose fused score is below S "
                   "(the leg's score in --mode bm25/dense), or 'auto': those whose calibrated relevance says "
                   "they likely do not answer; fewer than -k hits may come back")


MinScore = float | Literal["auto", "none"]


def min_score_arg(text: str) -> MinScore:
    """``--min-score``: a number (the fused score), ``auto`` (calibrated relevance) or ``none`` (keep all)."""
    word = text.strip().lower()
    if word in ("auto", "none"):
        return word  # type: ignore[return-value]
    if word == "off":
        return "none"
    try:
        value = float(word)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"expected a number, 'auto' or 'none', got {text!r}")
    return value


def split_min_score(value: MinScore | None, default: Literal["auto", "none"] = "auto") -> tuple[Any, Any]:
    """``(PromptBuilder's min_score, the search's min_score)`` for a ``--min-score`` value: ``auto``
    drops passages in the prompt builder (with a reason), a number cuts the fused score in the search."""
    value = default if value is None else value
    if value == "auto":
        return "auto", None
    return None, (None if value == "none" else value)


def open_index(path: str, *, create: bool = False, **options: Any) -> Any:
    from ragkit.index import Index

    if not create and "://" not in path and not os.path.exists(os.path.join(path, "ragkit.sqlite")):
        from ragkit.errors import ConfigError

        raise ConfigError(f"no index at {path}; create one with `ragkit index FOLDER --index {path}`")
    return Index(path, create=create, **options)


def search_settings(args: argparse.Namespace) -> dict[str, Any]:
    from ragkit.storage.filters import parse_cli_filter

    given = {"method": args.method, "weight": args.weight, "depth": args.depth, "group_by": args.group_by,
             "reranker": args.reranker, "min_score": None if args.min_score == "none" else args.min_score,
             "mmr": args.mmr or None}
    settings = {k: v for k, v in given.items() if v is not None}
    filters = dict(parse_cli_filter(f) for f in args.filter)
    return {"k": args.k, "mode": args.mode, "filters": filters or None, **settings}


# Python options an error message may name, and the flag that sets each under the CLI (when the
# command has it: the ``args`` attribute).
_FLAGS = (
    ("lock_timeout=<seconds> (None waits)", "wait", "--wait SECONDS"),
    ("max_tokens", "max_tokens", "--max-tokens"),
    ("reserve_tokens", "reserve_tokens", "--reserve-tokens"),
    ("min_score", "min_score", "--min-score"),
    ("max_file_bytes", "max_file_bytes", "--max-file-bytes"),
    ("max_chars", "max_chars", "--max-chars"),
    ("parse_seconds", "parse_seconds", "--parse-seconds"),
    ("page_seconds", "page_seconds", "--page-seconds"),
    ("parse_memory", "parse_memory_mb", "--parse-memory-mb"),
)


def cli_message(message: str, args: argparse.Namespace) -> str:
    """``message`` with the Python options it names replaced by this command's flags."""
    for option, attribute, flag in _FLAGS:
        if hasattr(args, attribute):  # whole names only: max_tokens, not max_passage_tokens
            message = re.sub(rf"(?<!\w){re.escape(option)}(?!\w)", flag, message)
    if "lock_timeout" in message:  # a command with no --wait: waiting is not an option here
        message = message.replace("or pass lock_timeout=<seconds> (None waits)", "(another ragkit is writing)")
    return message
