"""The Milvus index's embedding cache (collection ``NAME_cache``): vectors by the sha256 of the text
embedded, for text no chunk holds.

A chunk's vector lives in the chunk collection (``cached_vectors`` looks there too), so the cache holds
fresh vectors until ``apply`` stores them, and the vectors of removed chunks: a file removed and added
back, or an undone ``--exclude``, then costs no embedding. Milvus keeps no ages, so the cache is bounded
by size only (``CACHE_MAX_BYTES`` after every write, any bound with ``ragkit gc``), dropping rows in
primary-key order (arbitrary, not oldest first). Vectors of another model are dropped when the config
changes its model (allowed only while the index holds no chunks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.storage.base import CACHE_MAX_BYTES
from ragkit.storage.milvus.collections import MilvusCollections, key64

logger = logging.getLogger(__name__)


def cached_vectors(cols: MilvusCollections, hashes: list[str]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    if cols.has("cache"):
        for row in cols.rows_in("cache", "pk", [key64(h) for h in hashes], ["hash", "vector"]):
            found[row["hash"]] = np.asarray(row["vector"], np.float32)
    missing = [h for h in hashes if h not in found]
    if missing and cols.has():
        for row in cols.rows_in("", "embed_hash", missing, ["embed_hash", "dense"]):
            found[row["embed_hash"]] = np.asarray(row["dense"], np.float32)
    return found


def cache_vectors(cols: MilvusCollections, vectors: dict[str, np.ndarray], dense_kind: Any) -> None:
    """Keep embeddings until ``apply`` stores them in chunks (then :func:`forget` drops them here)."""
    if not vectors:
        return
    cols.ensure_vector_collections(len(next(iter(vectors.values()))), dense_kind)
    cols.upsert("cache", [{"pk": key64(h), "hash": h, "vector": np.asarray(v, np.float32).tolist()}
                          for h, v in vectors.items()])
    cols.flush("cache")


def keep_removed(cols: MilvusCollections, rows: Sequence[dict[str, Any]]) -> None:
    """Cache the vectors of chunks about to be deleted (rows with ``embed_hash`` and ``dense``)."""
    if rows and cols.has("cache"):
        cols.upsert("cache", [{"pk": key64(r["embed_hash"]), "hash": r["embed_hash"],
                               "vector": np.asarray(r["dense"], np.float32).tolist()} for r in rows])


def forget(cols: MilvusCollections, hashes: Sequence[str]) -> None:
    """The chunks now hold these vectors: drop the cache rows."""
    if hashes and cols.has("cache"):
        cols.delete("cache", list({key64(h) for h in hashes}))


def discard(cols: MilvusCollections) -> None:
    """Drop the whole cache collection: another model's vectors, perhaps of another dimension."""
    if cols.has("cache"):
        cols.client.drop_collection(cols.coll("cache"))
        cols.present.discard(cols.coll("cache"))
        logger.info("%s: the model changed; dropped the cached vectors of the previous one", cols.coll("cache"))


def trim(cols: MilvusCollections, max_bytes: int | None = CACHE_MAX_BYTES) -> dict[str, int]:
    """Drop cache rows beyond ``max_bytes`` of vectors (``None``: no bound, 0: all of them)."""
    n = cols.count("cache")
    sample = cols.query("cache", "", ["vector"], limit=1) if n else []
    size = 4 * len(sample[0]["vector"]) if sample else 0
    keep = n if max_bytes is None or not size else min(n, max_bytes // size)
    drop: list[int] = []
    if keep < n:
        for row in cols.scan("cache", "", ["pk"]):
            if len(drop) == n - keep:
                break
            drop.append(int(row["pk"]))
        cols.delete("cache", drop)
        cols.flush("cache")
        logger.info("%s: dropped %d cached vectors no chunk uses, kept %d", cols.coll("cache"), len(drop), keep)
    return {"removed": len(drop), "unused_kept": n - len(drop), "unused_bytes": (n - len(drop)) * size}
