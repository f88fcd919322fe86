"""The local backend: SQLite records plus BM25 and faiss segments in one directory.

This is the storage/search side of :class:`ragkit.Index` (see ``storage/base.py``
for the protocol the Milvus backend also implements). Writes go through
:meth:`LocalBackend.apply`, one atomic transaction (see ``store.py``); reads
go through a :class:`LocalView` of a :class:`Snapshot`, the in-memory arrays of one
committed segment version, reloaded only when another writer has committed a newer one.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ragkit.errors import IndexCorruptError
from ragkit.storage.base import (
    CACHE_MAX_AGE_DAYS,
    CACHE_MAX_BYTES,
    Changes,
    FileEntry,
    LegCandidates,
    LegStatistics,
    Query,
    StaleSnapshot,
    StorageSettings,
)
from ragkit.storage.bm25 import BM25Index, best_matches
from ragkit.storage.dense import DenseIndex
from ragkit.storage.filters import Filters, compile_filters, filter_mask
from ragkit.storage.local import cache
from ragkit.storage.local.snapshot import Scope, Snapshot, document_ordinals
from ragkit.storage.local.store import DB_NAME, SEGMENTS, Store
from ragkit.storage.local.swap import recover_swap
from ragkit.storage.local.verify import problems
from ragkit.storage.util import batches, filter_key
from ragkit.types import Chunk

REPEATS = "repeats_"  # the segment arrays of each row's repeated tokens (storage/bm25_documents)

logger = logging.getLogger(__name__)


class LocalBackend:
    """Records in SQLite, BM25 term frequencies and unit vectors in versioned segment files."""

    def __init__(self, path: str | Path, *, create: bool = True, settings: StorageSettings | None = None) -> None:
        self.path = Path(path)
        recover_swap(self.path)
        # A new index is created by its first write, not by opening it: a mistyped path that is only
        # searched must not leave an empty index behind (reads of it find nothing until then).
        new = create and not (self.path / DB_NAME).exists() and not (self.path / SEGMENTS).exists()
        self._store: Store | None = None if new else Store(self.path, create=create)
        if new:
            logger.info("no index at %s yet: it is created by the first write", self.path)
        self.settings = settings or StorageSettings.from_config(self.get_config())
        self._snapshot: Snapshot | None = None
        self._snapshot_lock = threading.Lock()
        self.generation = 0  # counts the times a rebuild swapped the folder and this backend reopened

    @property
    def store(self) -> Store:
        """The database and segments; the first use by a write creates a new index's directory."""
        if self._store is None:
            self._store = Store(self.path, create=True)
        return self._store

    @property
    def exists(self) -> bool:
        """Whether the index is on disk (another process may have created it since this one opened)."""
        return self._store is not None or (self.path / DB_NAME).exists()

    def reopen_if_replaced(self) -> bool:
        """Reopen the database when a rebuild has swapped the index folder (``--rebuild``).

        The old store is not closed here: searches still holding a view of it finish on it (its
        files stay readable while open), and it closes when the last of them lets go.
        """
        if self._store is None or not self._store.replaced():
            return False
        with self._snapshot_lock:
            if self.store.replaced():
                self._store = Store(self.path, create=False)
                self.settings = StorageSettings.from_config(self.get_config())
                self._snapshot = None
                self.generation += 1
                logger.info("%s was rebuilt; reopened it (generation %d)", self.path, self.generation)
        return True

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- config and manifest ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any] | None:
        return self.store.get_meta("config") if self.exists else None

    def set_config(self, config: Mapping[str, Any]) -> None:
        with self.store.write_transaction() as db:
            Store.set_meta(db, "config", dict(config))
            cache.adopt_model(db, str(config.get("model")))
        self.settings = StorageSettings.from_config(config)
        self._snapshot = None

    def manifest(self, root: str) -> dict[str, FileEntry]:
        if not self.exists:
            return {}
        rows = self.store.query("SELECT path, size, mtime_ns, sha256, doc_ids FROM files WHERE root = ?", (root,))
        return {r[0]: FileEntry(r[0], r[1], r[2], r[3], tuple(json.loads(r[4]))) for r in rows}

    def document_roots(self, doc_ids: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for batch in batches(list(doc_ids) if self.exists else []):
            marks = ",".join("?" * len(batch))
            for doc_id, root in self.store.query(f"SELECT id, root FROM documents WHERE id IN ({marks})", batch):
                found[doc_id] = root
        return found

    def document_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for batch in batches(list(doc_ids) if self.exists else []):
            marks = ",".join("?" * len(batch))
            found.update(self.store.query(f"SELECT id, text_hash FROM documents WHERE id IN ({marks})", batch))
        return found

    @contextmanager
    def writer_lock(self, timeout: float | None) -> Iterator[None]:
        """The writer lock; once held, a folder swapped by a rebuild meanwhile is reopened first."""
        with self.store.writer_lock(timeout):
            self.reopen_if_replaced()
            yield

    # -- embedding cache ----------------------------------------------------------------------
    def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        return cache.cached_vectors(self.store, hashes) if self.exists else {}

    def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        cache.cache_vectors(self.store, vectors)

    def gc(self, max_bytes: int | None = CACHE_MAX_BYTES,
           max_age_days: float | None = CACHE_MAX_AGE_DAYS) -> dict[str, int]:
        """Trim the vectors no chunk uses to these bounds (see ``cache.py``); what was removed and kept."""
        if not self.exists:
            return {"removed": 0, "unused_kept": 0, "unused_bytes": 0}
        return cache.trim(self.store, max_bytes, max_age_days)

    # -- writes -------------------------------------------------------------------------------
    def apply(self, changes: Changes) -> None:
        """Apply one batch of changes atomically: records, manifest and a new segment."""
        with self.store.write_transaction() as db:
            version = int(self.store.get_meta("segment", 0, db=db))
            snap = self.load_version(version) if version else None
            removed_rows = _rows_of_documents(db, changes.remove_doc_ids)
            removed = [row for row, _ in removed_rows]
            # the removed chunks' vectors stay cached (a re-add costs nothing); their age starts now
            cache.touch(db, [h for _, h in removed_rows] + [h for a in changes.add for h in a.embed_hashes])
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
                repeated = [r for added in changes.add for r in (added.repeated or [[] for _ in added.tokens])]
                vectors = [v for added in changes.add for v in added.vectors]
                self._write_next_segment(db, version, snap, set(removed), new_rows, tokens, vectors, repeated)
        self.store.remove_stale_segments(keep=set(range(max(version - 1, 0), version + 2)))
        if changes.add or changes.remove_doc_ids:
            cache.trim(self.store)  # the default bounds: unused vectors are kept, but not without limit

    def _write_next_segment(
        self, db: Any, version: int, snap: Snapshot | None, removed: set[int], new_rows: list[int],
        tokens: list[list[str]], vectors: list[np.ndarray], repeated: list[list[str]],
    ) -> None:
        if snap is None:
            bm25, dense, rows = BM25Index.empty(self.settings.bm25), None, np.zeros(0, np.int64)
            repeats = BM25Index.empty(self.settings.bm25)
        else:
            keep = ~np.isin(snap.rows, np.fromiter(removed, np.int64, len(removed)))
            bm25, dense, rows = snap.bm25.keep_rows(keep), snap.dense.keep_rows(keep), snap.rows[keep]
            # rows from a segment written before repeats were kept have none: they sum as they did
            before = snap.repeats if snap.repeats is not None else \
                BM25Index.empty(self.settings.bm25).append([[]] * snap.bm25.n_docs)
            repeats = before.keep_rows(keep)
        bm25 = bm25.append(tokens)
        repeats = repeats.append(repeated)
        dim = snap.dense.dimension if snap is not None else 0
        new_vectors = np.asarray(vectors, np.float32).reshape(len(vectors), -1) if vectors else np.zeros((0, dim), np.float32)
        if dense is None or dense.n_rows == 0:
            dense = DenseIndex(new_vectors, self.settings.dense_kind)
        else:
            dense = dense.append(new_vectors)
        rows = np.concatenate([rows, np.asarray(new_rows, np.int64)])
        # each row's document, as of this commit: what BM25's document share groups by (storage/bm25_documents)
        groups = document_ordinals(rows, dict(db.execute("SELECT row, doc_id FROM chunks").fetchall()))
        arrays = {"rows": rows, "vectors": dense.vectors, "doc_groups": groups, **bm25.to_arrays(),
                  **repeats.to_arrays(REPEATS)}
        blobs = {"terms.json": json.dumps(bm25.terms(), ensure_ascii=False).encode(),
                 "repeat_terms.json": json.dumps(repeats.terms(), ensure_ascii=False).encode()}
        if self.settings.dense_kind == "hnsw" and dense.n_rows:
            import faiss

            blobs["dense.faiss"] = faiss.serialize_index(dense.faiss_index).tobytes()
        self.store.write_segment(version + 1, arrays, blobs)
        Store.set_meta(db, "segment", version + 1)

    # -- reads --------------------------------------------------------------------------------
    def snapshot(self) -> "LocalView | None":
        """A view of the current segment; its arrays are reloaded only when a writer has committed a new version."""
        snap = self.current_snapshot()
        return None if snap is None else LocalView(self, snap)

    def current_snapshot(self) -> Snapshot | None:
        """The current segment's arrays (None before the first write)."""
        if not self.exists:
            return None
        self.reopen_if_replaced()
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
                        self._snapshot = self.load_version(version)
                    return self._snapshot
                except IndexCorruptError:
                    # A missing file is corruption, unless newer commits removed this version while
                    # we read it: then read the pointer again.
                    if attempt == 4 or int(self.store.get_meta("segment", 0)) == version:
                        raise
        return None

    def load_version(self, version: int) -> Snapshot:
        """The arrays of segment ``version``, read and checksummed from disk."""
        store = self.store
        arrays, blobs = store.read_segment(version)
        bm25 = BM25Index.from_arrays(arrays, json.loads(blobs["terms.json"]), self.settings.bm25)
        repeats = (BM25Index.from_arrays(arrays, json.loads(blobs["repeat_terms.json"]), self.settings.bm25, REPEATS)
                   if "repeat_terms.json" in blobs else None)
        dense = DenseIndex(arrays["vectors"], self.settings.dense_kind)
        if "dense.faiss" in blobs:
            import faiss

            dense.set_faiss_index(faiss.deserialize_index(np.frombuffer(blobs["dense.faiss"], np.uint8)))
        _check_rows(store, version, len(arrays["rows"]))
        return Snapshot(version, arrays["rows"], bm25, dense, store=store, groups=arrays.get("doc_groups"),
                        repeats=repeats)

    def records_of(self, snap: Snapshot) -> list[dict[str, Any]]:
        """Each row's chunk metadata plus ``doc_id`` and ``chunk_id``: what filters test."""
        if snap.records is None:
            meta: dict[int, dict[str, Any]] = {}
            for row, chunk_id, doc_id, metadata in (snap.store or self.store).query(
                "SELECT row, id, doc_id, metadata FROM chunks"
            ):
                meta[row] = {**json.loads(metadata), "doc_id": doc_id, "chunk_id": chunk_id}
            snap.records = [meta.get(int(r), {}) for r in snap.rows]
        return snap.records

    def fetch_rows(self, rowids: Sequence[int], store: Store | None = None) -> list[Chunk]:
        """Chunk records by SQLite row id, in the order given; StaleSnapshot if a newer commit removed one.

        ``store``: the database the rows' snapshot came from (a rebuild may have swapped in another)."""
        found: dict[int, Chunk] = {}
        for batch in batches(list(rowids)):
            marks = ",".join("?" * len(batch))
            for row, cid, doc_id, start, end, text, metadata in (store or self.store).query(
                f"SELECT row, id, doc_id, start, end, text, metadata FROM chunks WHERE row IN ({marks})", batch
            ):
                found[row] = Chunk(cid, doc_id, text, start, end, json.loads(metadata))
        missing = [r for r in rowids if r not in found]
        if missing:  # a writer replaced these rows after the view was opened: the caller retries
            raise StaleSnapshot(missing)
        return [found[r] for r in rowids]

    def verify(self) -> list[str]:
        """Every inconsistency between the index's parts (see :func:`ragkit.storage.local.verify.problems`)."""
        return problems(self.store, self.load_version)

    # -- inspection ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        if not self.exists:
            return {"documents": 0, "chunks": 0, "files": 0}
        (docs,), = self.store.query("SELECT count(*) FROM documents")
        (chunks,), = self.store.query("SELECT count(*) FROM chunks")
        (files,), = self.store.query("SELECT count(*) FROM files")
        return {"documents": docs, "chunks": chunks, "files": files}

    def iter_documents(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        if not self.exists:
            return
        for doc_id, text, metadata in self.store.query("SELECT id, text, metadata FROM documents ORDER BY id"):
            yield doc_id, text, json.loads(metadata)

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def _check_rows(store: Store, version: int, n_rows: int) -> None:
    """A segment must list as many rows as SQLite holds chunks (a lost chunk row is corruption).

    Both counts are read in one read transaction, so a writer committing meanwhile is not damage."""
    chunks, current = store.count_chunks_at_segment()
    if current == version and chunks != n_rows:
        raise IndexCorruptError(
            f"{store.db_path} holds {chunks} chunks but segment v{version} lists {n_rows}; {store.hint}")


def _rows_of_documents(db: Any, doc_ids: Sequence[str]) -> list[tuple[int, str]]:
    """(row, embedding hash) of each chunk of these documents."""
    rows: list[tuple[int, str]] = []
    for batch in batches(list(doc_ids)):
        marks = ",".join("?" * len(batch))
        rows.extend(db.execute(f"SELECT row, embed_hash FROM chunks WHERE doc_id IN ({marks})", batch))
    return rows


@dataclass(frozen=True)
class LocalView:
    """One search's view of a :class:`Snapshot`, optionally narrowed to the rows a filter matches.

    Narrowed, it searches those rows as if they were the whole index: BM25's N, avgdl, document
    frequencies, ideal score and unseen words, the dense background and ``n_searched`` are the
    scope's own (:class:`~ragkit.storage.local.snapshot.Scope`), so rows outside it move no score.
    """

    backend: LocalBackend
    snap: Snapshot
    scope: Scope | None = None

    @property
    def empty(self) -> bool:
        return self.snap.bm25.n_docs == 0

    @property
    def version(self) -> int:
        """The committed segment version this view reads."""
        return self.snap.version

    @property
    def mask(self) -> np.ndarray | None:
        return None if self.scope is None else self.scope.mask

    def filtered(self, filters: Filters | None) -> "LocalView":
        if not filters:
            return self
        compile_filters(filters)  # validate first: a bad filter must be a FilterError, not a TypeError here
        snap = self.snap
        make = lambda: snap.scope(filter_mask(filters, self.backend.records_of(snap)))
        return LocalView(self.backend, snap, snap.scopes.get_or_make(filter_key(filters), make))

    def lexical(self, query: Query, depth: int) -> LegCandidates:
        ids, scores = best_matches(self.snap.lexical(query.tokens, self.scope), depth, self.mask)
        return LegCandidates(ids, scores)

    def dense(self, query: Query, depth: int) -> LegCandidates:
        ids, scores = self.snap.dense.top_k(query.needs_vector(), depth, self.mask)
        return LegCandidates(ids, scores.astype(np.float64))

    def exact_scores(self, query: Query, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each leg's exact score for ``ids``: BM25 from the postings (with the scope's statistics),
        dense by dot product."""
        scores = self.snap.lexical(query.tokens, self.scope).scores
        return scores[ids], self.snap.dense.vectors[ids] @ query.needs_vector()

    def statistics(self, query: Query) -> LegStatistics:
        """What adaptive fusion calibrates with: BM25's ideal score, a sample of dense scores."""
        scope, scored = self.scope, self.snap.lexical(query.tokens, self.scope)
        background = self.snap.unfiltered_background() if scope is None else scope.background
        # the dense document share only unfiltered: a filter's rows must move no score, and a centroid
        # holds its document's other chunks
        documents = self.snap.unfiltered_background_documents() if scope is None else None
        vector = query.needs_vector()
        return LegStatistics(bm25_ideal=scored.ideal, dense_background=background @ vector,
                             n_searched=self.snap.dense.n_rows if scope is None else scope.n_rows,
                             bm25_unseen=scored.unseen,
                             dense_document_background=None if documents is None else documents @ vector)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.snap.dense.vectors[ids]

    def document_scores(self, query: Query, ids: np.ndarray) -> np.ndarray | None:
        """The query's cosine to each row's document centroid (``storage.dense_documents``; NaN for a
        one-chunk document); None in a filtered view (see :meth:`statistics`)."""
        if self.scope is not None:
            return None
        return (self.snap.row_centroids(np.asarray(ids, np.int64)) @ query.needs_vector()).astype(np.float64)

    def fetch(self, ids: Sequence[int]) -> list[Chunk]:
        """Chunk records for row positions of this view, in the order given."""
        return self.backend.fetch_rows([int(self.snap.rows[p]) for p in ids], self.snap.store)
