"""What ``ragkit check`` verifies of a local index: its files are intact and its parts agree."""

from __future__ import annotations

import json
from typing import Callable

from ragkit.errors import IndexCorruptError
from ragkit.storage.local.guard import cache_row_vector
from ragkit.storage.local.snapshot import Snapshot
from ragkit.storage.local.store import Store


def problems(store: Store, load_version: Callable[[int], Snapshot]) -> list[str]:
    """Every problem found; an empty list means the index is consistent.

    Checks: the SQLite database's own integrity check; the current segment's checksums; that the
    BM25 matrix, the vectors and the row list have the same number of rows; that those rows are
    exactly the chunks in SQLite; that every chunk's document exists and every manifest file's
    documents exist; that every chunk's text is its document's text between its offsets; that every
    embedding-cache row passes its checksum. A database SQLite itself cannot read is one problem.
    """
    try:
        return _problems(store, load_version)
    except IndexCorruptError as exc:
        return [str(exc)]


def _problems(store: Store, load_version: Callable[[int], Snapshot]) -> list[str]:
    found: list[str] = []
    verdicts = [v for (v,) in store.query("PRAGMA integrity_check")]
    if verdicts != ["ok"]:
        found.append(f"{store.db_path}: SQLite integrity check: {'; '.join(verdicts[:3])}; {store.hint}")
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
    if snap.repeats is not None and snap.repeats.n_docs != n_rows:
        found.append(f"BM25's repeats have {snap.repeats.n_docs} rows, the segment lists {n_rows}")
    elif snap.repeats is not None and (snap.repeats.doc_len > snap.bm25.doc_len).any():
        found.append("BM25's repeats hold more tokens than their rows")  # a document length would go negative
    if len(set(snap.rows.tolist())) != n_rows:
        found.append("the segment lists a chunk twice")
    segment_rows = set(int(r) for r in snap.rows)
    if segment_rows != chunk_rows:
        found.append(
            f"segment and SQLite disagree: {len(segment_rows - chunk_rows)} rows only in the segment, "
            f"{len(chunk_rows - segment_rows)} only in SQLite"
        )
    found += _unreadable_rows(store)
    return found + _record_problems(store) + _text_problems(store) + _cache_problems(store)


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


# The JSON columns of each table, which must parse as well as decode.
_JSON_COLUMNS = {"meta": ("value",), "documents": ("metadata",), "chunks": ("metadata",), "files": ("doc_ids",)}


def _unreadable_rows(store: Store, batch: int = 500) -> list[str]:
    """Read every row of every table (in batches): a damaged row fails to decode or to parse.

    SQLite's integrity check looks at the b-trees, not at what the cells hold."""
    found = []
    for table, columns in _JSON_COLUMNS.items():
        last, bad = -1, 0
        while True:
            try:
                rows = store.query(f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? "
                                   f"ORDER BY rowid LIMIT ?", (last, batch))
                store.query(f"SELECT * FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?", (last, batch))
            except IndexCorruptError as exc:
                found.append(f"table {table}: {exc}")
                break
            for row in rows:
                try:
                    [json.loads(value) for value in row[1:]]
                except (TypeError, ValueError):
                    bad += 1
            if len(rows) < batch:
                break
            last = rows[-1][0]
        if bad:
            found.append(f"{store.db_path}: {bad} rows of table {table} hold damaged JSON; {store.hint}")
    missing = store.query("SELECT count(*) FROM chunks WHERE embed_hash NOT IN (SELECT hash FROM embeddings)")[0][0]
    if missing:
        found.append(f"{store.db_path}: {missing} chunks have no embedding cache row; {store.hint}")
    return found


def _text_problems(store: Store) -> list[str]:
    """Chunks whose text is not their document's text at their offsets (SQLite counts characters)."""
    bad = store.query(
        "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id "
        "WHERE substr(d.text, c.start + 1, c.end - c.start) IS NOT c.text LIMIT 4"
    )
    if not bad:
        return []
    return [f"{store.db_path}: chunk text differs from its document's text (e.g. {bad[0][0]}); {store.hint}"]


def _cache_problems(store: Store, batch: int = 2000) -> list[str]:
    """Embedding-cache rows that fail their checksum (read in batches: the cache can be large)."""
    bad, last = [], ""
    while True:
        rows = store.query("SELECT hash, vector, checksum FROM embeddings WHERE hash > ? ORDER BY hash LIMIT ?",
                           (last, batch))
        bad += [h for h, blob, checksum in rows if cache_row_vector(h, blob, checksum) is None]
        if len(rows) < batch:
            break
        last = rows[-1][0]
    if not bad:
        return []
    return [f"{store.db_path}: {len(bad)} embedding cache rows fail their checksum (they are re-embedded "
            f"on the next sync; the index's vectors are checked separately)"]
