"""The local backend: SQLite records plus BM25 and faiss segments in one directory.

This is the storage/search side of :class:`ragkit.Index` (see ``backend.py``
for the interface a Milvus backend also implements). Writes go through
:meth:`LocalBackend.apply`, one atomic transaction (see ``store.py``); reads
go through a :class:`Snapshot`, the in-memory arrays of one committed segment
version, reloaded only when another writer has committed a newer one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ragkit.storage.base import Changes, FileEntry, LegStatistics, StaleSnapshot
from ragkit.types import Chunk
from ragkit.storage.dense import DenseIndex
from ragkit.storage.filters import Filters, compile_filters, filter_mask
from ragkit.retrieval.fusion import LegCandidates
from ragkit.storage.bm25 import BM25Index, BM25Params, bm25_ideal_score
from ragkit.errors import IndexCorruptError
from ragkit.storage.local.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """The searchable arrays of one segment version. Row ``i`` of every array is chunk ``rows[i]``."""

    version: int
    rows: np.ndarray
    bm25: BM25Index
    dense: DenseIndex
    _records: list[dict[str, Any]] | None = None
    _masks: "OrderedDict[str, np.ndarray]" = field(default_factory=OrderedDict)
    _row_pos: dict[int, int] | None = None
    _background: np.ndarray | None = None

    def position_of(self, rowid: int) -> int | None:
        if self._row_pos is None:
            self._row_pos = {int(r): i for i, r in enumerate(self.rows)}
        return self._row_pos.get(rowid)


class LocalBackend:
    """Records in SQLite, BM25 term frequencies and unit vectors in versioned segment files."""

    def __init__(self, path: str | Path, *, create: bool = True, dense_kind: str = "flat") -> None:
        self.store = Store(path, create=create)
        self.path = self.store.path
        self.dense_kind = dense_kind
        self.bm25_params = BM25Params()
        self._snapshot: Snapshot | None = None
        self._snapshot_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # -- config and manifest ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any] | None:
        return self.store.get_meta("config")

    def set_config(self, config: Mapping[str, Any]) -> None:
        with self.store.write_transaction() as db:
            Store.set_meta(db, "config", dict(config))
        self._snapshot = None

    def manifest(self, root: str) -> dict[str, FileEntry]:
        rows = self.store.query("SELECT path, size, mtime_ns, sha256, doc_ids FROM files WHERE root = ?", (root,))
        return {r[0]: FileEntry(r[0], r[1], r[2], r[3], tuple(json.loads(r[4]))) for r in rows}

    def document_roots(self, doc_ids: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for batch in _batches(list(doc_ids)):
            marks = ",".join("?" * len(batch))
            for doc_id, root in self.store.query(f"SELECT id, root FROM documents WHERE id IN ({marks})", batch):
                found[doc_id] = root
        return found

    def document_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for batch in _batches(list(doc_ids)):
            marks = ",".join("?" * len(batch))
            found.update(self.store.query(f"SELECT id, text_hash FROM documents WHERE id IN ({marks})", batch))
        return found

    def writer_lock(self, timeout: float | None):  # type: ignore[no-untyped-def]
        return self.store.writer_lock(timeout)

    # -- embedding cache ----------------------------------------------------------------------
    def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        return self.store.cached_vectors(hashes)

    def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        self.store.cache_vectors(vectors)

    # -- writes -------------------------------------------------------------------------------
    def apply(self, changes: Changes) -> None:
        """Apply one batch of changes atomically: records, manifest and a new segment."""
        with self.store.write_transaction() as db:
            version = int(self.store.get_meta("segment", 0, db=db))
            snap = self._load(version) if version else None
            removed = _rows_of_documents(db, changes.remove_doc_ids)
            db.executemany("DELETE FROM chunks WHERE doc_id = ?", [(d,) for d in changes.remove_doc_ids])
            db.executemany("DELETE FROM documents WHERE id = ?", [(d,) for d in changes.remove_doc_ids])
            new_rows: list[int] = []
            for added in changes.add:
                doc = added.document
                db.execute(
                    "INSERT INTO documents (id, text, metadata, text_hash, root) VALUES (?, ?, ?, ?, ?)",
                    (doc.id, doc.text, json.dumps(dict(doc.metadata)), added.text_hash, added.root),
                )
                for chunk, embed_hash in zip(added.chunks, added.embed_hashes):
                    cur = db.execute(
                        "INSERT INTO chunks (id, doc_id, start, end, text, metadata, embed_hash) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (chunk.id, chunk.doc_id, chunk.start, chunk.end, chunk.text,
                         json.dumps(dict(chunk.metadata)), embed_hash),
                    )
                    new_rows.append(int(cur.lastrowid))
            db.executemany("DELETE FROM files WHERE root = ? AND path = ?", list(changes.remove_files))
            db.executemany(
                "INSERT OR REPLACE INTO files (root, path, size, mtime_ns, sha256, doc_ids) VALUES (?, ?, ?, ?, ?, ?)",
                [(root, e.path, e.size, e.mtime_ns, e.sha256, json.dumps(list(e.doc_ids))) for root, e in changes.upsert_files],
            )
            if removed or new_rows or not version:
                tokens = [t for added in changes.add for t in added.tokens]
                vectors = [v for added in changes.add for v in added.vectors]
                self._write_next_segment(db, version, snap, set(removed), new_rows, tokens, vectors)
        self.store.remove_stale_segments(keep=set(range(max(version - 1, 0), version + 2)))
        if changes.add or changes.remove_doc_ids:
            self._collect_garbage()

    def _write_next_segment(
        self, db: Any, version: int, snap: Snapshot | None, removed: set[int], new_rows: list[int],
        tokens: list[list[str]], vectors: list[np.ndarray],
    ) -> None:
        if snap is None:
            bm25, dense, rows = BM25Index.empty(self.bm25_params), None, np.zeros(0, np.int64)
        else:
            keep = ~np.isin(snap.rows, np.fromiter(removed, np.int64, len(removed)))
            bm25, dense, rows = snap.bm25.keep_rows(keep), snap.dense.keep_rows(keep), snap.rows[keep]
        bm25 = bm25.append(tokens)
        dim = snap.dense.dimension if snap is not None else 0
        new_vectors = np.asarray(vectors, np.float32).reshape(len(vectors), -1) if vectors else np.zeros((0, dim), np.float32)
        if dense is None or dense.n_rows == 0:
            dense = DenseIndex(new_vectors, self.dense_kind)  # type: ignore[arg-type]
        else:
            dense = dense.append(new_vectors)
        rows = np.concatenate([rows, np.asarray(new_rows, np.int64)])
        arrays = {"rows": rows, "vectors": dense.vectors, **bm25.to_arrays()}
        blobs = {"terms.json": json.dumps(bm25.terms(), ensure_ascii=False).encode()}
        if self.dense_kind == "hnsw" and dense.n_rows:
            import faiss

            blobs["dense.faiss"] = faiss.serialize_index(dense.faiss_index).tobytes()
        self.store.write_segment(version + 1, arrays, blobs)
        Store.set_meta(db, "segment", version + 1)

    def _collect_garbage(self) -> None:
        """Forget embeddings no chunk uses any more, so the cache does not grow without bound."""
        with self.store.write_transaction() as db:
            db.execute("DELETE FROM embeddings WHERE hash NOT IN (SELECT embed_hash FROM chunks)")

    # -- reads --------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot | None:
        """The current segment's arrays; reloaded only when a writer has committed a new version."""
        for attempt in range(5):
            version = int(self.store.get_meta("segment", 0))
            snap = self._snapshot
            if snap is not None and snap.version == version:
                return snap
            if version == 0:
                return None
            with self._snapshot_lock:
                try:
                    if self._snapshot is None or self._snapshot.version != version:
                        self._snapshot = self._load(version)
                    return self._snapshot
                except IndexCorruptError:
                    # A missing file is corruption, unless newer commits removed this version while
                    # we read it: then read the pointer again.
                    if attempt == 4 or int(self.store.get_meta("segment", 0)) == version:
                        raise
        return None

    def _load(self, version: int) -> Snapshot:
        arrays, blobs = self.store.read_segment(version)
        bm25 = BM25Index.from_arrays(arrays, json.loads(blobs["terms.json"]), self.bm25_params)
        dense = DenseIndex(arrays["vectors"], self.dense_kind)  # type: ignore[arg-type]
        if "dense.faiss" in blobs:
            import faiss

            dense.set_faiss_index(faiss.deserialize_index(np.frombuffer(blobs["dense.faiss"], np.uint8)))
        return Snapshot(version, arrays["rows"], bm25, dense)

    def filter_mask(self, snap: Snapshot, filters: Filters | None) -> np.ndarray | None:
        if not filters:
            return None
        compile_filters(filters)  # validate first: a bad filter must be a FilterError, not a TypeError here
        key = json.dumps(filters, sort_keys=True, default=str)
        mask = snap._masks.get(key)
        if mask is None:
            if snap._records is None:
                snap._records = self._records_of(snap)
            mask = filter_mask(filters, snap._records)
            snap._masks[key] = mask
            if len(snap._masks) > 64:
                snap._masks.popitem(last=False)
        return mask

    def _records_of(self, snap: Snapshot) -> list[dict[str, Any]]:
        meta: dict[int, dict[str, Any]] = {}
        for row, chunk_id, doc_id, metadata in self.store.query("SELECT row, id, doc_id, metadata FROM chunks"):
            meta[row] = {**json.loads(metadata), "doc_id": doc_id, "chunk_id": chunk_id}
        return [meta.get(int(r), {}) for r in snap.rows]

    def lexical_candidates(self, snap: Snapshot, tokens: list[str], depth: int, mask: np.ndarray | None) -> LegCandidates:
        ids, scores = snap.bm25.top_k(tokens, depth, mask)
        return LegCandidates(ids, scores)

    def dense_candidates(self, snap: Snapshot, vector: np.ndarray, depth: int, mask: np.ndarray | None) -> LegCandidates:
        ids, scores = snap.dense.top_k(vector, depth, mask)
        return LegCandidates(ids, scores.astype(np.float64))

    def exact_scores(
        self, snap: Snapshot, tokens: list[str], vector: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each leg's exact score for ``ids``: BM25 from the postings, dense by dot product."""
        return snap.bm25.scores(tokens)[ids], snap.dense.vectors[ids] @ vector

    def leg_statistics(
        self, snap: Snapshot, tokens: list[str], vector: np.ndarray, mask: np.ndarray | None
    ) -> LegStatistics:
        """What adaptive fusion calibrates with: BM25's ideal score, a sample of dense scores."""
        return LegStatistics(
            bm25_ideal=bm25_ideal_score(snap.bm25, tokens),
            dense_background=_background(snap, mask) @ vector,
            n_searched=int(mask.sum()) if mask is not None else snap.dense.n_rows,
        )

    def vectors(self, snap: Snapshot, ids: np.ndarray) -> np.ndarray:
        return snap.dense.vectors[ids]

    def is_empty(self, snap: Snapshot) -> bool:
        return snap.bm25.n_docs == 0

    def fetch(self, snap: Snapshot, positions: Sequence[int]) -> list[Chunk]:
        """Chunk records for row positions of ``snap``, in the order given."""
        rowids = [int(snap.rows[p]) for p in positions]
        found: dict[int] = {}
        for batch in _batches(rowids):
            marks = ",".join("?" * len(batch))
            for row, cid, doc_id, start, end, text, metadata in self.store.query(
                f"SELECT row, id, doc_id, start, end, text, metadata FROM chunks WHERE row IN ({marks})", batch
            ):
                found[row] = Chunk(cid, doc_id, text, start, end, json.loads(metadata))
        missing = [r for r in rowids if r not in found]
        if missing:  # a writer replaced these rows after we loaded the snapshot: the caller retries
            raise StaleSnapshot(missing)
        return [found[r] for r in rowids]

    # -- inspection ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        (docs,), = self.store.query("SELECT count(*) FROM documents")
        (chunks,), = self.store.query("SELECT count(*) FROM chunks")
        (files,), = self.store.query("SELECT count(*) FROM files")
        return {"documents": docs, "chunks": chunks, "files": files}

    def iter_documents(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for doc_id, text, metadata in self.store.query("SELECT id, text, metadata FROM documents ORDER BY id"):
            yield doc_id, text, json.loads(metadata)

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def _background(snap: Snapshot, mask: np.ndarray | None, size: int = 1024) -> np.ndarray:
    """Evenly spaced vectors (within the filter) to estimate a query's dense score distribution.

    Unfiltered, the sample is built once per snapshot: copying it per query would cost more than
    the search itself.
    """
    if mask is None and snap._background is not None:
        return snap._background
    rows = np.flatnonzero(mask) if mask is not None else np.arange(snap.dense.n_rows)
    if len(rows) > size:
        rows = rows[np.linspace(0, len(rows) - 1, size).astype(np.int64)]
    sample = np.ascontiguousarray(snap.dense.vectors[rows])
    if mask is None:
        snap._background = sample
    return sample


def _rows_of_documents(db: Any, doc_ids: Sequence[str]) -> list[int]:
    rows: list[int] = []
    for batch in _batches(list(doc_ids)):
        marks = ",".join("?" * len(batch))
        rows.extend(r for (r,) in db.execute(f"SELECT row FROM chunks WHERE doc_id IN ({marks})", batch))
    return rows


def _batches(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
