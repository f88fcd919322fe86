"""``ragkit feedback``: export or delete the judgements stored in an index (``feedback.sqlite``).

    ragkit feedback export --index kb.ragkit > feedback.jsonl     # one JSON object per judgement
    ragkit feedback delete --index kb.ragkit 3 7                   # by id (the export's "id")
    ragkit feedback delete --index kb.ragkit --all
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ragkit.errors import ConfigError


def register(sub: Any, name: str) -> None:
    from ragkit.cli.common import index_arg

    p = sub.add_parser(name, help="export or delete the feedback stored in an index")
    actions = p.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write every judgement as JSON lines")
    index_arg(export)
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    export.set_defaults(func=cmd_export)
    delete = actions.add_parser("delete", help="delete judgements by id, or all of them")
    index_arg(delete)
    delete.add_argument("ids", nargs="*", type=int, metavar="ID", help="feedback ids (from the export)")
    delete.add_argument("--all", action="store_true", help="delete every judgement")
    delete.set_defaults(func=cmd_delete)


def _store(index: str) -> Any:
    from ragkit.feedback.store import FeedbackStore

    if "://" in index or not os.path.exists(os.path.join(index, "ragkit.sqlite")):
        raise ConfigError(f"no local index at {index}; feedback is stored inside a local index folder (--index)")
    return FeedbackStore.for_index(index)


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args.index)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            count = store.export_jsonl(out)
        print(f"{count} judgements written to {args.output}", file=sys.stderr)
    else:
        store.export_jsonl(sys.stdout)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise ConfigError("give feedback ids to delete, or --all (not both)")
    store = _store(args.index)
    removed = store.delete(None if args.all else args.ids)
    missing = [] if args.all else len(set(args.ids)) - removed
    print(f"{args.index}: deleted {removed} judgements" + (f"; {missing} of the ids were not there" if missing else ""))
    return 0
