"""``ragkit check``: verify that an index's parts agree and its files are intact."""

from __future__ import annotations

import json
from pathlib import Path

from ragkit.errors import IndexCorruptError, RagkitError


def check_index(path: str | Path) -> list[str]:
    """Every problem found in the index at ``path``; an empty list means it is consistent.

    Checks: the SQLite database's own integrity check; the current segment's checksums; that the
    BM25 matrix, the vectors and the row list have the same number of rows; that those rows are
    exactly the chunks in SQLite; that every chunk's document exists and every manifest file's
    documents exist.
    """
    from ragkit.storage.local.backend import LocalBackend

    problems: list[str] = []
    try:
        backend = LocalBackend(path, create=False)
    except (RagkitError, FileNotFoundError) as exc:
        return [str(exc)]
    store = backend.store
    try:
        (verdict,), = store.query("PRAGMA integrity_check")
        if verdict != "ok":
            problems.append(f"SQLite integrity check: {verdict}")
        version = int(store.get_meta("segment", 0))
        chunk_rows = {r for (r,) in store.query("SELECT row FROM chunks")}
        if version == 0:
            if chunk_rows:
                problems.append(f"{len(chunk_rows)} chunks in SQLite but no segment")
            return problems
        try:
            snap = backend._load(version)
        except (IndexCorruptError, FileNotFoundError, ValueError, KeyError) as exc:
            return problems + [f"segment v{version}: {exc}"]
        n_rows = len(snap.rows)
        if snap.bm25.n_docs != n_rows:
            problems.append(f"BM25 has {snap.bm25.n_docs} rows, the segment lists {n_rows}")
        if snap.dense.n_rows != n_rows:
            problems.append(f"dense index has {snap.dense.n_rows} vectors, the segment lists {n_rows}")
        if len(set(snap.rows.tolist())) != n_rows:
            problems.append("the segment lists a chunk twice")
        segment_rows = set(int(r) for r in snap.rows)
        if segment_rows != chunk_rows:
            problems.append(
                f"segment and SQLite disagree: {len(segment_rows - chunk_rows)} rows only in the segment, "
                f"{len(chunk_rows - segment_rows)} only in SQLite"
            )
        orphans = store.query("SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)")[0][0]
        if orphans:
            problems.append(f"{orphans} chunks belong to no document")
        doc_ids = {d for (d,) in store.query("SELECT id FROM documents")}
        for root, rel, ids in store.query("SELECT root, path, doc_ids FROM files"):
            missing = [d for d in json.loads(ids) if d not in doc_ids]
            if missing:
                problems.append(f"manifest file {rel} lists missing documents {missing[:3]}")
    finally:
        backend.close()
    return problems
