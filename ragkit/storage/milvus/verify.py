"""``ragkit check`` for a Milvus index: its collections agree with each other and no write is unfinished."""

from __future__ import annotations

from ragkit.storage.milvus import statistics as stats
from ragkit.storage.milvus.collections import MilvusCollections


def check(cols: MilvusCollections) -> list[str]:
    """BM25 statistics equal the chunks' own counts, every chunk belongs to a finished document, every
    manifest file's documents exist, and no write is unfinished (no pending document row, dirty manifest
    entry or writing marker). Empty: consistent."""
    problems = []
    rows = list(cols.scan("", "pk >= 0", ["sparse", "dl", "doc_id"])) if cols.has() else []
    counts = stats.chunk_counts(rows)
    stored = {t: n for t, n in stats.sums(cols, list(counts)).items() if n}
    if stored != +counts:
        wrong = sorted(t for t in set(stored) | set(counts) if stored.get(t, 0) != counts[t])
        problems.append(f"BM25 statistics differ from the chunks for {len(wrong)} terms (e.g. {wrong[:3]})")
    docs = {r["doc_id"]: r["text_hash"] for r in cols.scan("docs", "part == 0", ["doc_id", "text_hash"])}
    pending = sorted(d for d, h in docs.items() if not h)
    if pending:
        problems.append(f"unfinished documents {pending[:3]}")
    orphans = sorted({r["doc_id"] for r in rows} - set(docs))
    if orphans:
        problems.append(f"chunks of missing documents {orphans[:3]}")
    for row in cols.scan("files", "pk >= 0", ["path", "size", "doc_ids"]):
        if row["size"] < 0:
            problems.append(f"manifest file {row['path']} is marked dirty by an unfinished write")
        missing = [d for d in row["doc_ids"] if d not in docs]
        if missing:
            problems.append(f"manifest file {row['path']} lists missing documents {missing[:3]}")
    if cols.meta("writing"):
        problems.append("the writing marker of an unfinished write is set")
    return problems
