"""What ``ragkit check`` verifies of a local index: its files are intact and its parts agree."""

from __future__ import annotations

import json
from typing import Callable

from ragkit.errors import IndexCorruptError
from ragkit.storage.local.snapshot import Snapshot
from ragkit.storage.local.store import Store


def problems(store: Store, load_version: Callable[[int], Snapshot]) -> list[str]:
    """Every problem found; an empty list means the index is consistent.

    Checks: the SQLite database's own integrity check; the current segment's checksums; that the
    BM25 matrix, the vectors and the row list have the same number of rows; that those rows are
    exactly the chunks in SQLite; that every chunk's document exists and every manifest file's
    documents exist.
    """
    found: list[str] = []
    (verdict,), = store.query("PRAGMA integrity_check")
    if verdict != "ok":
        found.append(f"SQLite integrity check: {verdict}")
    version = int(store.get_meta("segment", 0))
    chunk_rows = {r for (r,) in store.query("SELECT row FROM chunks")}
    if version == 0:
        return found + ([f"{len(chunk_rows)} chunks in SQLite but no segment"] if chunk_rows else [])
    try:
        snap = load_version(version)
    except (IndexCorruptError, FileNotFoundError, ValueError, KeyError) as exc:
        return found + [f"segment v{version}: {exc}"]
    n_rows = len(snap.rows)
    if snap.bm25.n_docs != n_rows:
        found.append(f"BM25 has {snap.bm25.n_docs} rows, the segment lists {n_rows}")
    if snap.dense.n_rows != n_rows:
        found.append(f"dense index has {snap.dense.n_rows} vectors, the segment lists {n_rows}")
    if len(set(snap.rows.tolist())) != n_rows:
        found.append("the segment lists a chunk twice")
    segment_rows = set(int(r) for r in snap.rows)
    if segment_rows != chunk_rows:
        found.append(
            f"segment and SQLite disagree: {len(segment_rows - chunk_rows)} rows only in the segment, "
            f"{len(chunk_rows - segment_rows)} only in SQLite"
        )
    return found + _record_problems(store)


def _record_problems(store: Store) -> list[str]:
    """Chunks without a document, manifest files listing documents that do not exist."""
    found = []
    orphans = store.query("SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)")[0][0]
    if orphans:
        found.append(f"{orphans} chunks belong to no document")
    doc_ids = {d for (d,) in store.query("SELECT id FROM documents")}
    for _root, rel, ids in store.query("SELECT root, path, doc_ids FROM files"):
        missing = [d for d in json.loads(ids) if d not in doc_ids]
        if missing:
            found.append(f"manifest file {rel} lists missing documents {missing[:3]}")
    return found
