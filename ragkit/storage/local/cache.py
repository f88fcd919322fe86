"""The local index's embedding cache: vectors by the sha256 of the text embedded, kept after the chunks
that used them are gone.

Why keep them: removing a file and adding it back, undoing a bad ``--exclude``, or ``--rebuild`` must
cost no embedding (the text was embedded once already). Vectors some chunk uses are always kept; the
others ("unused") are trimmed, oldest first, to at most ``CACHE_MAX_BYTES`` and ``CACHE_MAX_AGE_DAYS``
after every write, and to any bound by :func:`trim` (``ragkit gc``). ``used_at`` is when a row was
last stored, used by a new chunk or left unused by a removed one.

The cache belongs to one model: ``meta.cache_model`` names it, and a config with another model
(allowed only while the index holds no chunks) empties it (:func:`adopt_model`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.storage.base import CACHE_MAX_AGE_DAYS, CACHE_MAX_BYTES
from ragkit.storage.local.guard import cache_checksum, cache_row_vector
from ragkit.storage.local.store import DB_NAME, Store
from ragkit.storage.util import batches

logger = logging.getLogger(__name__)

_UNUSED = "hash NOT IN (SELECT embed_hash FROM chunks)"


def cached_vectors(store: Store, hashes: Sequence[str]) -> dict[str, np.ndarray]:
    """Cached vectors by content hash; a row that fails its checksum is dropped (and re-embedded)."""
    found: dict[str, np.ndarray] = {}
    bad = []
    for batch in batches(list(hashes)):
        marks = ",".join("?" * len(batch))
        sql = f"SELECT hash, vector, checksum FROM embeddings WHERE hash IN ({marks})"
        for h, blob, checksum in store.query(sql, list(batch)):
            vector = cache_row_vector(h, blob, checksum)
            if vector is None:
                bad.append(h)
            else:
                found[h] = vector
    if bad:
        logger.warning("%s: %d embedding cache rows fail their checksum; re-embedding them", store.db_path, len(bad))
    return found


def cache_vectors(store: Store, vectors: dict[str, np.ndarray]) -> None:
    """Store embeddings by content hash; safe to commit ahead of the write that uses them."""
    now = time.time()
    rows = []
    for h, v in vectors.items():
        blob = np.asarray(v, np.float32).tobytes()
        rows.append((h, blob, cache_checksum(h, blob), now))
    with store.write_transaction() as db:
        db.executemany("INSERT OR REPLACE INTO embeddings (hash, vector, checksum, used_at) VALUES (?, ?, ?, ?)", rows)


def touch(db: sqlite3.Connection, hashes: Sequence[str]) -> None:
    """Note that these rows were just used or left unused (inside the write that did it)."""
    now = time.time()
    for batch in batches(list(dict.fromkeys(hashes))):
        marks = ",".join("?" * len(batch))
        db.execute(f"UPDATE embeddings SET used_at = ? WHERE hash IN ({marks})", (now, *batch))


def trim(store: Store, max_bytes: int | None = CACHE_MAX_BYTES,
         max_age_days: float | None = CACHE_MAX_AGE_DAYS) -> dict[str, int]:
    """Drop unused vectors older than ``max_age_days`` and, beyond ``max_bytes`` of them, the oldest.

    ``None`` lifts a bound; ``max_bytes=0`` drops every unused vector. Returns what was removed and kept."""
    with store.write_transaction() as db:
        rows = db.execute(f"SELECT hash, length(vector), coalesce(used_at, 0) FROM embeddings WHERE {_UNUSED} "
                          "ORDER BY coalesce(used_at, 0) DESC").fetchall()
        cutoff = None if max_age_days is None else time.time() - max_age_days * 86400
        kept, kept_bytes, drop = 0, 0, []
        for h, size, used_at in rows:
            if (cutoff is not None and used_at < cutoff) or (max_bytes is not None and kept_bytes + size > max_bytes):
                drop.append(h)
            else:
                kept, kept_bytes = kept + 1, kept_bytes + size
        for batch in batches(drop):
            db.execute(f"DELETE FROM embeddings WHERE hash IN ({','.join('?' * len(batch))})", list(batch))
    if drop:
        logger.info("%s: dropped %d unused cached vectors, kept %d (%d bytes)", store.db_path, len(drop), kept,
                    kept_bytes)
    return {"removed": len(drop), "unused_kept": kept, "unused_bytes": kept_bytes}


def adopt_model(db: sqlite3.Connection, model: str) -> None:
    """Make the cache ``model``'s: vectors of another model are worthless to it, so they go."""
    row = db.execute("SELECT value FROM meta WHERE key = 'cache_model'").fetchone()
    if row is not None and json.loads(row[0]) != model:
        n = db.execute(f"DELETE FROM embeddings WHERE {_UNUSED}").rowcount
        logger.info("embedding model is now %r: dropped %d cached vectors of the previous one", model, n)
    Store.set_meta(db, "cache_model", model)


def seed_from(store: Store, old: Path, batch: int = 2000) -> int:
    """Copy the cache of the index at ``old`` (a rebuild's predecessor) into ``store``, with its model.

    Returns the rows copied; the new index's config keeps them only for the same model (adopt_model)."""
    if not (old / DB_NAME).exists():
        return 0
    source = sqlite3.connect(f"file:{old / DB_NAME}?mode=ro", uri=True, timeout=60)
    try:
        config = source.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        if config is None:
            return 0
        columns = {row[1] for row in source.execute("PRAGMA table_info(embeddings)")}
        used_at = "used_at" if "used_at" in columns else "NULL"
        rows = source.execute(f"SELECT hash, vector, checksum, coalesce({used_at}, ?) FROM embeddings", (time.time(),))
        n = 0
        with store.write_transaction() as db:
            while part := rows.fetchmany(batch):  # in parts: a large cache need not fit in memory
                db.executemany("INSERT OR IGNORE INTO embeddings (hash, vector, checksum, used_at) "
                               "VALUES (?, ?, ?, ?)", part)
                n += len(part)
            Store.set_meta(db, "cache_model", json.loads(config[0])["model"])
    finally:
        source.close()
    logger.info("%s: reusing %d cached vectors of %s", store.db_path, n, old)
    return n


def stats(store: Store) -> dict[str, Any]:
    """Rows and bytes in the cache, and how many of them no chunk uses."""
    (rows, size), = store.query("SELECT count(*), coalesce(sum(length(vector)), 0) FROM embeddings")
    (unused, unused_size), = store.query(
        f"SELECT count(*), coalesce(sum(length(vector)), 0) FROM embeddings WHERE {_UNUSED}")
    return {"rows": rows, "bytes": size, "unused": unused, "unused_bytes": unused_size}
