"""The ``ragkit`` command line: index folders, search, build prompts, evaluate, tune, serve.

Every command takes ``--index PATH`` (default ``./kb.ragkit``). Run ``ragkit COMMAND --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from typing import Any, Sequence

from ragkit.cli.common import cli_message, index_arg, open_index, search_args, search_settings
from ragkit.cli.table import render_table, terminal_width
from ragkit.ingest.limits import DEFAULT_LIMITS


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if not args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from ragkit.errors import RagkitError

    try:
        return int(args.func(args) or 0)
    except RagkitError as exc:
        print(f"ragkit {args.command}: error: {cli_message(str(exc), args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ragkit search ... | head`: the reader left, which is not an error
        sys.stderr.close()
        return 0
    except OSError as exc:  # the system refused: one line naming the path and what to do
        if exc.errno is None or not exc.strerror:
            raise  # not the environment's refusal: a bug, whose traceback is the report
        print(f"ragkit {args.command}: error: {cli_message(_environment_message(exc, args), args)}", file=sys.stderr)
        return 2


def _environment_message(exc: OSError, args: argparse.Namespace) -> str:
    """An OSError no ragkit layer translated as one line: the path, and what to do when it is a full or
    read-only disk, missing permission or too many open files."""
    from ragkit.storage.local.guard import environment_error

    path = exc.filename if exc.filename is not None else getattr(args, "index", None) or "?"
    err = environment_error(exc, path)
    return str(err) if err is not exc else f"{path}: {exc.strerror}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragkit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index (sync) a folder into an index")
    p.add_argument("folder")
    index_arg(p)
    p.add_argument("--include", action="append", help="gitignore-style pattern of files to index (repeatable; "
                   "remembered for the folder, replaced when given again)")
    p.add_argument("--exclude", action="append", help="gitignore-style pattern of files to leave out (repeatable; "
                   "remembered for the folder, replaced when given again)")
    p.add_argument("--reset-patterns", action="store_true", help="forget the folder's remembered --include/--exclude")
    p.add_argument("--no-ignore-files", dest="ignore_files", action="store_const", const=False, default=None,
                   help="do not read .gitignore/.ragkitignore files (remembered; --ignore-files reads them again)")
    p.add_argument("--ignore-files", dest="ignore_files", action="store_const", const=True, help=argparse.SUPPRESS)
    p.add_argument("--prefix", metavar="NAME", help="the folder's namespace, in front of its document ids and "
                   "sources (default: none for an index's first folder, the folder's name for the others)")
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would change, the chunks "
                   "to embed and an estimated time")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="list every file in the report (and log progress details)")
    p.add_argument("--model", help="embedding model name or path (when creating the index)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], help="how passages are embedded (default auto: "
                   "the fastest exact choice on this CPU)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], help="embedding precision (default "
                   "auto: exact; int8 is faster with a measured loss, see README 'Embedders')")
    p.add_argument("--chunk-size", type=int, help="chunk size in model tokens (default 256)")
    p.add_argument("--chunk-overlap", type=int, help="overlap in tokens (default 32)")
    p.add_argument("--dense-index", choices=["flat", "hnsw"], help="faiss index kind (default flat)")
    p.add_argument("--json-text-field", default="text", help="text field of .json/.jsonl records")
    p.add_argument("--max-file-bytes", type=int, default=50_000_000, help="skip and report larger files")
    p.add_argument("--max-chars", type=_count, default=DEFAULT_LIMITS.max_chars, metavar="N",
                   help=f"report a file whose text is over N characters (default {DEFAULT_LIMITS.max_chars:_})")
    p.add_argument("--parse-seconds", type=_limit, default=DEFAULT_LIMITS.seconds, metavar="S",
                   help=f"report a file that takes over S seconds to parse (default {DEFAULT_LIMITS.seconds:g}; "
                   "0 or none: no limit)")
    p.add_argument("--page-seconds", type=_limit, default=DEFAULT_LIMITS.page_seconds, metavar="S",
                   help=f"report a PDF with a page that takes over S seconds (default {DEFAULT_LIMITS.page_seconds:g}; "
                   "0 or none: no limit)")
    p.add_argument("--parse-memory-mb", type=_limit, default=_mb(DEFAULT_LIMITS.memory_bytes), metavar="MB",
                   help=f"report a file whose parsing needs over MB megabytes (default "
                   f"{_mb(DEFAULT_LIMITS.memory_bytes):g}; 0 or none: no limit)")
    p.add_argument("--rebuild", action="store_true",
                   help="build the index anew beside the old one, which it replaces only when complete")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    p.add_argument("--shard", metavar="I/N", help="worker I of N: index only this share of the files, remove "
                   "nothing (run a final sync without --shard to remove deleted files)")
    p.add_argument("--token", default=os.environ.get("RAGKIT_MILVUS_TOKEN"),
                   help="Milvus token for milvus:// indexes (default $RAGKIT_MILVUS_TOKEN)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--watch", action="store_true", help="after the sync, keep syncing as files change, a burst of "
                   "saves at a time (Ctrl-C stops; needs ragkit[watch])")
    p.add_argument("--ocr-images", action="store_true", help="also index .png/.jpg/.tiff images by OCR "
                   "(needs ragkit[ocr] and tesseract-ocr)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("info", help="documents, chunks, model and size of an index")
    index_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("search", help="search an index")
    p.add_argument("query")
    index_arg(p)
    search_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per hit (with top-level source)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("check", help="verify an index: checksums and counts across SQLite, BM25, faiss")
    index_arg(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("gc", help="trim the embedding cache (vectors no chunk uses any more)")
    index_arg(p)
    p.add_argument("--max-mb", type=float, help="keep at most this many MB of unused vectors, newest first "
                   "(default 256; 0 drops them all)")
    p.add_argument("--max-age-days", type=float, help="drop unused vectors older than this (default 30)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    p.set_defaults(func=cmd_gc)
    _extra_commands(sub)
    return parser


def _extra_commands(sub: Any) -> None:
    """Commands whose modules are optional parts of the toolkit."""
    for name in ("prompt", "eval", "tune", "serve", "mcp", "ui", "feedback"):
        module = {"prompt": "prompt", "eval": "eval", "tune": "eval", "serve": "serve", "mcp": "mcp", "ui": "ui",
                  "feedback": "feedback"}[name]
        try:
            from importlib import import_module

            import_module(f".{module}", __package__).register(sub, name)
        except ImportError as exc:
            if f"ragkit.cli.{module}" not in str(exc):
                raise


def cmd_index(args: argparse.Namespace) -> int:
    if args.watch and (args.dry_run or args.rebuild or args.shard):
        from ragkit.errors import ConfigError

        raise ConfigError("--watch cannot be combined with --dry-run, --rebuild or --shard")
    if args.ocr_images:
        from ragkit.ingest.registry import enable_image_ocr

        enable_image_ocr()
    import time

    from ragkit.errors import ConfigError

    shard = None
    if args.shard:
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like 0/4, got {args.shard!r}") from None
        shard = (i, n)
    if args.dry_run and args.rebuild:
        raise ConfigError("--dry-run and --rebuild: a dry run compares the folder with the index as it is; "
                          "drop one of them")
    options = {"model": args.model, "chunk_size": args.chunk_size, "chunk_overlap": args.chunk_overlap,
               "dense_index": args.dense_index}
    options = {k: v for k, v in options.items() if v is not None} | _embedder_option(args)
    started = time.perf_counter()
    folder = _folder_options(args)

    def build(path: Any) -> Any:
        index = open_index(str(path), create=True, lock_timeout=args.wait,
                           show_progress=not (args.quiet or args.json), token=args.token, **options)
        try:
            return index.sync(args.folder, json_text_field=args.json_text_field, max_file_bytes=args.max_file_bytes,
                              shard=shard, max_chars=args.max_chars, parse_seconds=args.parse_seconds,
                              page_seconds=args.page_seconds, dry_run=args.dry_run,
                              parse_memory=None if args.parse_memory_mb is None else int(args.parse_memory_mb * 1e6),
                              **folder)
        finally:
            index.close()

    if args.rebuild:
        if not os.path.isdir(args.folder):  # checked first: a mistyped folder must not cost the index
            raise ConfigError(f"--rebuild: {args.folder} is not a folder; the index at {args.index} is untouched")
        folder = _kept_folder_options(args, folder)  # a rebuild keeps the folder's namespace and patterns
        if "://" in args.index:  # Milvus: new collections, then the index's pointer switched to them
            from ragkit.storage.milvus.swap import rebuild as rebuild_milvus

            report = rebuild_milvus(args.index, build, token=args.token, lock_timeout=args.wait)
        else:
            from ragkit.storage.local.swap import rebuild

            report = rebuild(args.index, build, lock_timeout=args.wait)
    else:
        report = build(args.index)
    for failure in report.failed:
        print(f"  failed: {_printable(failure.path)}: {_printable(cli_message(failure.reason, args))}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        from ragkit.cli.sync_report import format_report

        print(format_report(report, f"{_printable(args.folder)} -> {args.index}", verbose=getattr(args, "verbose", False),
                            reason=lambda text: cli_message(text, args)))
    logging.getLogger(__name__).info("index took %.2fs", time.perf_counter() - started)
    return _watch(args, build) if args.watch else 0


def _watch(args: argparse.Namespace, build: Any) -> int:
    """``--watch``: sync again after each batch of changes, one summary line each, until Ctrl-C (a sync
    interrupted by it is not written: the index stays as after the last one)."""
    import time

    from ragkit.ingest.watch import watch_folder

    ignore = () if "://" in args.index else (args.index,)

    def report(result: Any) -> None:
        for failure in result.failed:
            print(f"  failed: {_printable(failure.path)}: {_printable(cli_message(failure.reason, args))}",
                  file=sys.stderr)
        print(f"{time.strftime('%H:%M:%S')} {_printable(args.folder)} -> {args.index}: {result.summary()}", flush=True)

    print(f"watching {_printable(args.folder)} (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        watch_folder(args.folder, lambda: build(args.index), on_sync=report, ignore=ignore, first_sync=False)
    except KeyboardInterrupt:
        print("stopped watching", file=sys.stderr)
    return 0


def _folder_options(args: argparse.Namespace) -> dict[str, Any]:
    """``Index.sync``'s folder options from the flags (``None``: use what the index remembers)."""
    return {"include": args.include, "exclude": args.exclude, "ignore_files": args.ignore_files,
            "reset_patterns": args.reset_patterns, "prefix": args.prefix}


def _kept_folder_options(args: argparse.Namespace, folder: dict[str, Any]) -> dict[str, Any]:
    """For ``--rebuild``: the old index's namespace and patterns for the folder, where no flag replaces them."""
    from ragkit.errors import ConfigError, IndexLockedError

    if "://" not in args.index and not os.path.exists(os.path.join(args.index, "ragkit.sqlite")):
        return folder
    try:
        old = open_index(args.index, token=args.token)
    except ConfigError:  # no Milvus index there yet
        return folder
    except IndexLockedError as exc:  # Milvus Lite: another process has the file open
        raise IndexLockedError(f"--rebuild: {exc} (the index at {args.index} is untouched)") from None
    try:
        kept = old.folder_settings(args.folder)
    finally:
        old.close()
    if kept is None:
        return folder
    out = dict(folder, prefix=folder["prefix"] or kept.namespace or None, reset_patterns=False)
    if not args.reset_patterns:
        out["include"] = folder["include"] if folder["include"] is not None else kept.include
        out["exclude"] = folder["exclude"] if folder["exclude"] is not None else list(kept.exclude)
    if out["ignore_files"] is None:
        out["ignore_files"] = kept.ignore_files
    return out


def _embedder_option(args: argparse.Namespace) -> dict[str, Any]:
    """``--runtime``/``--precision``: an embedder for the index's model (``--model``, else the one the
    index was built with, else the default) that runs that way."""
    if args.runtime is None and args.precision is None:
        return {}
    from ragkit.errors import ConfigError
    from ragkit.text.embedding import DEFAULT_MODEL, Embedder

    model = args.model or _stored_model(args.index) or DEFAULT_MODEL
    try:
        return {"embedder": Embedder(model, runtime=args.runtime or "auto", precision=args.precision or "auto")}
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("precision=", "--precision ").replace("runtime=", "--runtime ")) from None


def _stored_model(path: str) -> str | None:
    if "://" in path or not os.path.exists(os.path.join(path, "ragkit.sqlite")):
        return None
    from ragkit.index import Index

    with Index(path) as index:
        return index.config.model


def _mb(n: int | None) -> float | None:
    return None if n is None else n / 1e6


def _count(text: str) -> int:
    """A non-negative whole number (argparse type)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _limit(text: str) -> float | None:
    """A positive number, or ``0``/``none`` for no limit (argparse type)."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # negative, or not a number
        raise argparse.ArgumentTypeError(f"expected a number > 0, or 0/none for no limit, got {text!r}")
    return None if value in (0, float("inf")) else value


def _printable(text: str) -> str:
    """Text from a file (a name, a reason quoting it) without the control characters a terminal obeys."""
    from ragkit.ingest.files import printable

    return printable(text)


def cmd_info(args: argparse.Namespace) -> int:
    info = open_index(args.index).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        rows = [[key, _human_bytes(value) if key == "bytes_on_disk" else _text(value)] for key, value in info.items()]
        print(render_table(["field", "value"], rows))
    return 0


def _text(value: Any) -> str:
    """A value as one table cell: mappings as ``k=v`` pairs."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "-" if value is None else str(value)


def cmd_search(args: argparse.Namespace) -> int:
    index = open_index(args.index)
    settings = search_settings(args)
    hits = index.search(args.query, **settings)
    if args.json:
        for hit in hits:
            print(json.dumps(hit.to_dict(), ensure_ascii=False))
        return 0
    print(format_hits(hits, query=args.query, analyzer=index.analyzer))
    return 0


def format_hits(hits: Sequence[Any], width: int | None = None, *, query: str | None = None,
                analyzer: Any = None) -> str:
    """A readable table: rank, fused score, each leg's score and rank (``-`` where that leg did not
    return the hit), source; under each hit its snippet: the words around its best match of
    ``query`` (analysed by ``analyzer``, the index's), or its start. ``width``: the terminal's."""
    from ragkit.text.snippets import snippet

    if not hits:
        return "(no hits)"
    width = width or terminal_width()
    rows = []
    for hit in hits:
        where = hit.source or hit.doc_id
        if hit.metadata.get("page"):
            where += f" p.{hit.metadata['page']}"
        if hit.metadata.get("headings"):
            where += " › " + " › ".join(str(h) for h in hit.metadata["headings"][-2:])
        # names, headings and text all came from files: a terminal must not obey escapes in them
        rows.append([hit.rank, f"{hit.score:.3f}", _leg(hit.bm25_score, hit.bm25_rank, 2),
                     _leg(hit.dense_score, hit.dense_rank, 3), _printable(where)])
    table = render_table(["#", "score", "bm25 (rank)", "dense (rank)", "source"], rows, width=width,
                         right=(1, 2, 3)).splitlines()
    lines = [table[0]]
    for line, hit in zip(table[1:], hits):
        words = snippet(hit.text, query or "", analyzer=analyzer)
        lines += [line, textwrap.fill(_printable(words), width=max(20, width), initial_indent="    ",
                                      subsequent_indent="    ", max_lines=3, placeholder=" …")]
    return "\n".join(lines)


def _leg(score: float | None, rank: int | None, digits: int) -> str:
    return "-" if score is None else f"{score:.{digits}f} ({'-' if rank is None else rank})"


def cmd_check(args: argparse.Namespace) -> int:
    from ragkit.storage.location import check_index

    problems = check_index(args.index)
    if problems:
        for problem in problems:
            print(f"FAIL {problem}")
        return 1
    print(f"ok: {args.index} is consistent")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {}
    if args.max_mb is not None:
        options["max_bytes"] = int(args.max_mb * 1024 * 1024)
    if args.max_age_days is not None:
        options["max_age_days"] = args.max_age_days
    index = open_index(args.index, lock_timeout=args.wait)
    try:
        result = index.gc(**options)
    finally:
        index.close()
    print(f"{args.index}: removed {result['removed']} unused cached vectors; kept {result['unused_kept']} "
          f"({_human_bytes(result['unused_bytes'])}) for files that may come back")
    return 0


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


if __name__ == "__main__":
    sys.exit(main())
