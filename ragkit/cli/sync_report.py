"""``ragkit index``'s report: the summary line, then the files by outcome (the first few of each, or all
of them with ``-v``), what was skipped grouped by reason, and what changed about the folder's patterns."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ragkit.ingest.files import printable
from ragkit.types import SKIP_LABELS, SyncReport, skip_counts

__all__ = ["FIRST_FEW", "format_report"]

FIRST_FEW = 5  # names shown per outcome without -v


def format_report(report: SyncReport, heading: str, *, verbose: bool, reason: Callable[[str], str] = str) -> str:
    """The lines ``ragkit index`` prints: ``heading: summary``, then one line per outcome that has files
    (``-v``: every name), the skipped files by reason, and notes. ``reason`` rewrites a failure's reason
    (Python options named as CLI flags)."""
    lines = [f"{heading}: {report.summary()}"]
    limit = None if verbose else FIRST_FEW
    outcomes: list[tuple[str, Sequence[str]]] = [
        ("added", report.added), ("updated", report.updated),
        ("renamed", [f"{a} -> {b}" for a, b in report.renamed]), ("removed", report.removed),
        ("failed", [f"{f.path}: {reason(f.reason)}" for f in report.failed]),
    ]
    if verbose:
        outcomes.append(("unchanged", report.unchanged))
    for label, names in outcomes:
        if names:
            lines.append(_names(f"{label} ({len(names)})", names, limit))
    for key in skip_counts(report.skipped):
        items = [s for s in report.skipped if s.reason == key]
        shown = [f"{s.path} ({s.detail})" if verbose and s.detail else s.path for s in items]
        lines.append(_names(f"skipped, {SKIP_LABELS[key][1]} ({len(items)})", shown, limit))
    lines += [f"  note: {note}" for note in report.notes]
    if report.namespace and report.added:
        lines.append(f"  note: namespace {report.namespace!r}: this folder's document ids and sources start with "
                     f"'{report.namespace}/' (--prefix NAME names the namespace)")
    groups = [names for _, names in outcomes] + [[s for s in report.skipped if s.reason == k]
                                                  for k in skip_counts(report.skipped)]
    if not verbose and any(len(names) > FIRST_FEW for names in groups):
        lines.append("  (-v lists every file; --json prints the whole report)")
    return "\n".join(printable(line) for line in lines)


def _names(label: str, names: Sequence[str], limit: int | None) -> str:
    shown = list(names) if limit is None else list(names[:limit])
    more = len(names) - len(shown)
    return f"  {label}: " + ", ".join(shown) + (f", … and {more} more" if more else "")
