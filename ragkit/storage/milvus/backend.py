"""The Milvus backend: the same :class:`ragkit.Index` API on Milvus Lite, a Milvus server or a cluster.

>>> index = ragkit.Index("milvus-lite:///data/kb.db")                      # doctest: +SKIP
>>> index = ragkit.Index("milvus://db.internal:19530/kb", token="user:pw")   # doctest: +SKIP

The package's modules: ``collections.py`` (the layout and batched reads and writes), ``statistics.py``
(BM25 on sparse vectors, scored with ``storage/bm25.py``), ``view.py`` (search), ``expressions.py``
(filters), ``rows.py``, ``verify.py`` (``ragkit check``), ``pointer.py`` and ``swap.py`` (``--rebuild``:
which collections hold the index now, and building new ones), and ``lite.py``: everything that
touches Milvus Lite's private state.

**Atomicity.** Milvus has no transactions across collections (nor across rows of one). ``apply``
writes in an order that leaves a state the next sync repairs: (1) the manifest entries of the
changed files are marked dirty (size -1, so the next sync re-reads them) and listing both their old
and new document ids, and added documents get a pending row (empty hash: ``add()`` re-adds it);
(2) the chunks of removed and re-added documents are deleted (by document id, so re-running is
idempotent) and the new chunks inserted; (3) statistics deltas; (4) document rows; (5) the final
manifest; (6) a new generation token. On a server, a process killed anywhere leaves an index that
opens and answers (a search may see part of the batch) and that one re-sync makes exact; the
statistics of a batch killed between (2) and (3) drift until :meth:`MilvusBackend.rebuild_statistics`.
On Milvus Lite a killed write is rolled back instead (``lite.py``), so the index is exactly as before
or after the batch; where the installed milvus-lite lacks what that needs, the unfinished-write marker
in ``NAME_meta`` remains (the next write recomputes the statistics, the next sync the rest). A batch
that fails with an exception (not a kill) is committed as far as it got, as on a server.

**Concurrency.** Milvus Lite lets one process open a ``.db`` at a time (``ragkit index --shard``
workers run one after the other); the writer lock is a file next to it. A server has no lock:
concurrent ``--shard`` workers write disjoint files (their statistics are insert-only deltas, so
they add up), and the final unsharded sync, which removes deleted files, must run alone.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ragkit.errors import ConfigError
from ragkit.storage.base import CACHE_MAX_BYTES, Changes, FileEntry, PreparedDocument, StorageSettings
from ragkit.storage.local.store import file_lock
from ragkit.storage.milvus import cache, lite, pointer
from ragkit.storage.milvus import statistics as stats
from ragkit.storage.milvus.collections import MilvusCollections, key64
from ragkit.storage.milvus.expressions import literal, value_kind
from ragkit.storage.milvus.rows import chunk_row, doc_row, file_rows, jsonable, split_utf8
from ragkit.storage.milvus.statistics import EMPTY_TERM, N_CHUNKS, N_TOKENS, term_id
from ragkit.storage.milvus.verify import check
from ragkit.storage.milvus.view import Generation, MilvusView, read_generation
from ragkit.storage.util import batches

__all__ = ["EMPTY_TERM", "N_CHUNKS", "N_TOKENS", "MilvusBackend", "MilvusView", "term_id"]

logger = logging.getLogger(__name__)

INSTALL_HINT = lite.INSTALL_HINT
DOC_BATCH = 100  # documents read back per request by iter_documents (each up to a few 60 KB parts)


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise ImportError(f"Milvus indexes need pymilvus: {INSTALL_HINT}") from exc
    return pymilvus


class MilvusBackend:
    """Storage and search of one index in Milvus (see the module docstring).

    ``settings`` default to what the index's stored config says (re-read by :meth:`set_config`).

    >>> backend = MilvusBackend.from_uri("milvus-lite:///tmp/kb.db")      # doctest: +SKIP
    """

    # BM25 is scored per chunk here: whole-document scores (ragkit.storage.bm25_documents) would need
    # document frequencies per term over documents, which the statistics collection does not keep.
    document_bm25 = False

    def __init__(
        self, uri: str, collection: str, *, token: str | None = None, db_name: str | None = None,
        lite_path: Path | None = None, create: bool = True, settings: StorageSettings | None = None,
    ) -> None:
        pymilvus = _pymilvus()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", collection):
            raise ConfigError(f"Milvus collection name must be letters, digits and _, got {collection!r}")
        self.name = collection  # the index's name; its collections' prefix changes with each rebuild (pointer.py)
        self.lite_path = lite_path
        if lite_path is not None:
            lite.rollback_supported()  # the capability check: warns once per process where it is missing
            client = lite.connect(pymilvus, lite_path)
        else:
            options = {k: v for k, v in {"token": token, "db_name": db_name}.items() if v}
            client = pymilvus.MilvusClient(uri=uri, **options)
        self.cols = MilvusCollections(client, pymilvus.DataType, pointer.active_prefix(client, collection), lite_path)
        if not self.cols.has("meta"):
            if not create:
                self.close()
                raise ConfigError(f"no ragkit index in collection {collection!r} at {uri}; create one with "
                                  f"`ragkit index FOLDER --index URI`")
            self.cols.create_small()
        for name in self.cols.own():
            self.cols.load(name)
        self.settings = settings or StorageSettings.from_config(self.get_config())
        self.exclusive = lite_path is not None  # Milvus Lite: no other process can have the file open
        self._generation: Generation | None = None
        self._generation_lock = threading.Lock()
        self._known_fields: set[tuple[str, str]] | None = None
        self.generation = 0  # counts the times a rebuild switched the collections and this backend followed
        self._pointed = pointer.pointer_collection(collection) in self.cols.present  # and loaded

    def reopen_if_replaced(self) -> bool:
        """Follow a rebuild that switched the index to new collections (``--rebuild``; one query per call)."""
        client = self.cols.client
        if not self._pointed:  # before the first rebuild: one listing, no query that could fail
            self._pointed = pointer.load_pointer(client, self.name)
        prefix = (pointer.read_active(client, self.name) if self._pointed else None) or self.name
        if prefix == self.cols.name:
            return False
        with self._generation_lock:
            if prefix != self.cols.name:
                cols = MilvusCollections(client, self.cols.types, prefix, self.lite_path)
                for name in cols.own():
                    cols.load(name)
                self.cols, self._generation, self._known_fields = cols, None, None
                self.settings = StorageSettings.from_config(self.get_config())
                self.generation += 1
                logger.info("%s was rebuilt; now reading collections %s (generation %d)", self.name, prefix,
                            self.generation)
        return True

    @classmethod
    def from_uri(cls, uri: str, *, token: str | None = None, create: bool = True,
                 settings: StorageSettings | None = None) -> MilvusBackend:
        """``milvus-lite:///path/kb.db``, ``milvus://host:port/[db/]collection`` or ``milvus+https://...``.

        ``?collection=NAME`` picks another collection in a Milvus Lite file.
        """
        parts = urlsplit(uri)
        collection = parse_qs(parts.query).get("collection", [None])[0]
        if parts.scheme == "milvus-lite":
            path = Path(parts.netloc + parts.path).expanduser().resolve()
            if path.suffix != ".db":
                raise ConfigError(f"a Milvus Lite index is a file ending in .db, got {uri!r}")
            if not create and not path.exists():
                raise ConfigError(f"no Milvus Lite index at {path}; create one with `ragkit index FOLDER --index {uri}`")
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(str(path), collection or "ragkit", lite_path=path, create=create, settings=settings)
        if parts.scheme not in ("milvus", "milvus+https") or not parts.netloc:
            raise ConfigError(f"bad Milvus URI {uri!r}: use milvus://host:port/collection, milvus+https://... "
                              "or milvus-lite:///path/kb.db")
        names = [p for p in parts.path.split("/") if p]
        if len(names) not in (1, 2) and collection is None:
            raise ConfigError(f"bad Milvus URI {uri!r}: give the collection, milvus://host:port/[db/]collection")
        scheme = "https" if parts.scheme == "milvus+https" else "http"
        db_name = names[0] if len(names) == 2 else None
        return cls(f"{scheme}://{parts.netloc}", collection or names[-1], token=token, db_name=db_name,
                   create=create, settings=settings)

    @property
    def client(self) -> Any:
        """The pymilvus client (None once closed)."""
        cols = getattr(self, "cols", None)
        return cols.client if cols is not None else None

    def close(self) -> None:
        cols = getattr(self, "cols", None)
        client = cols.client if cols is not None else None
        if client is None:
            return
        cols.client = None  # type: ignore[union-attr]
        client.close()
        if self.lite_path is not None:
            lite.release(self.lite_path)

    # -- config, manifest, cache ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any] | None:
        return self.cols.meta("config")

    def set_config(self, config: Mapping[str, Any]) -> None:
        old = self.get_config()
        previous = old.get("model") if old is not None else self.cols.meta("cache_model")  # a rebuild's seed
        if previous is not None and previous != config.get("model"):
            cache.discard(self.cols)  # another model's vectors are worthless to this one
        self.cols.set_meta({"config": dict(config)})
        self.settings = StorageSettings.from_config(config)
        self._generation = None  # okapi's mean IDF and the caches depend on the settings

    def manifest(self, root: str) -> dict[str, FileEntry]:
        rows = self.cols.scan("files", f"root == {literal(root)}", ["path", "size", "mtime_ns", "sha256", "doc_ids"])
        return {r["path"]: FileEntry(r["path"], r["size"], r["mtime_ns"], r["sha256"], tuple(r["doc_ids"])) for r in rows}

    def document_roots(self, doc_ids: Sequence[str]) -> dict[str, str | None]:
        rows = self.cols.rows_in("docs", "doc_id", list(doc_ids), ["doc_id", "root"], "part == 0")
        return {r["doc_id"]: r["root"] for r in rows}

    def document_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        rows = self.cols.rows_in("docs", "doc_id", list(doc_ids), ["doc_id", "text_hash"], "part == 0")
        return {r["doc_id"]: r["text_hash"] for r in rows}

    @contextmanager
    def writer_lock(self, timeout: float | None) -> Iterator[None]:
        """Milvus Lite: a file lock beside the ``.db``, one per index name. A server: none (see the module
        docstring). Once held, collections a rebuild switched to meanwhile are followed first."""
        own = "" if self.name == "ragkit" else f".{self.name}"  # the default name keeps its first lock file
        with nullcontext() if self.lite_path is None else file_lock(
                self.lite_path.with_name(f"{self.lite_path.name}{own}.writer.lock"), timeout,
                f"{self.lite_path} (collection {self.name}) is being written by another writer"):
            self.reopen_if_replaced()
            yield

    def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        return cache.cached_vectors(self.cols, hashes)

    def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        cache.cache_vectors(self.cols, vectors, self.settings.dense_kind)

    def gc(self, max_bytes: int | None = CACHE_MAX_BYTES, max_age_days: float | None = None) -> dict[str, int]:
        """Trim the cached vectors no chunk holds to ``max_bytes`` (Milvus keeps no ages: see ``cache.py``)."""
        return cache.trim(self.cols, max_bytes)

    # -- writes ----------------------------------------------------------------------------------
    def apply(self, changes: Changes) -> None:
        """Write one batch: on Milvus Lite all or nothing (a rollback point), on a server in the repairable order
        of the module docstring (Milvus has no transactions)."""
        if changes.empty:
            return
        prefix = self.cols.name
        rollback = lite.begin_write(self.lite_path, prefix, self.cols.own()) if self.lite_path else None
        try:
            self._apply(changes)
        finally:
            if rollback is not None:  # also after an exception: the batch stays as far as it got, as on a server
                lite.end_write(self.lite_path, prefix, rollback, self.cols.own())  # type: ignore[arg-type]

    def _apply(self, changes: Changes) -> None:
        cols, exclusive = self.cols, self.exclusive
        if exclusive:
            if cols.meta("writing"):
                logger.warning("%s: the last write did not finish; recomputing BM25 statistics", self.name)
                self.rebuild_statistics()
            cols.set_meta({"writing": uuid.uuid4().hex})
        vectors = [v for p in changes.add for v in p.vectors]
        if vectors:
            cols.ensure_vector_collections(len(vectors[0]), self.settings.dense_kind)
        self._mark_intent(changes)
        replaced = list(dict.fromkeys([*changes.remove_doc_ids, *(p.document.id for p in changes.add)]))
        delta: Counter[int] = Counter()
        if cols.has():
            delta.subtract(self._delete_chunks(replaced))
            delta.update(self._insert_chunks(changes.add, delta))
        stats.write(cols, delta, exclusive)
        self._write_documents(changes, replaced)
        self._write_manifest(changes)
        cache.forget(self.cols, [h for p in changes.add for h in p.embed_hashes])
        self._note_fields(changes.add)
        cols.set_meta({"generation": uuid.uuid4().hex})
        cols.flush("", "stats", "docs", "files", "meta")  # makes sparse search fast (no unindexed memtable)
        if exclusive:
            cols.set_meta({"writing": None})
        self._generation = None
        cache.trim(self.cols)  # the removed chunks' vectors stay cached, but not without limit

    def _mark_intent(self, changes: Changes) -> None:
        """Step 1: dirty manifest entries (re-read by the next sync) and pending document rows."""
        keys = [key64(root, e.path) for root, e in changes.upsert_files]
        old = {r["pk"]: r["doc_ids"] for r in self.cols.rows_in("files", "pk", keys, ["doc_ids"])}
        dirty = []
        for (root, e), key in zip(changes.upsert_files, keys):
            ids = tuple(dict.fromkeys([*old.get(key, ()), *e.doc_ids]))
            dirty += file_rows(root, [FileEntry(e.path, -1, -1, "", ids)])
        self.cols.upsert("files", dirty)
        self.cols.upsert("docs", [doc_row(p.document.id, 0, "", {}, "", p.root) for p in changes.add])

    def _delete_chunks(self, doc_ids: list[str]) -> Counter[int]:
        """Delete the documents' chunks; returns the statistics they contributed."""
        rows = list(self.cols.rows_in("", "doc_id", doc_ids, ["sparse", "dl", "embed_hash", "dense"]))
        cache.keep_removed(self.cols, rows)  # a removed file that comes back costs no embedding
        self.cols.delete("", [row["pk"] for row in rows])
        return stats.chunk_counts(rows)

    def _insert_chunks(self, added: Sequence[PreparedDocument], delta: Counter[int]) -> Counter[int]:
        """Insert the new chunks with BM25 tf weights normalised by the current average length."""
        counts: Counter[int] = Counter()
        lengths = [len(t) for p in added for t in p.tokens]
        if not lengths:
            return counts
        totals = stats.sums(self.cols, [N_CHUNKS, N_TOKENS])
        n = totals.get(N_CHUNKS, 0) + delta[N_CHUNKS] + len(lengths)
        avgdl = max((totals.get(N_TOKENS, 0) + delta[N_TOKENS] + sum(lengths)) / max(n, 1), 1.0)
        rows = []
        for prepared in added:
            for chunk, tokens, vector, embed_hash in zip(prepared.chunks, prepared.tokens, prepared.vectors,
                                                         prepared.embed_hashes):
                sparse, tf = stats.chunk_weights(tokens, avgdl, self.settings.bm25)
                rows.append(chunk_row(chunk, vector, sparse, len(tokens), avgdl, embed_hash))
                counts.update(tf.keys())
                counts[N_CHUNKS] += 1
                counts[N_TOKENS] += len(tokens)
        self.cols.insert("", rows)
        return counts

    def _write_documents(self, changes: Changes, replaced: list[str]) -> None:
        """Step 4: final document rows (upserted over the pending ones), then rows of removed documents go."""
        rows = []
        for p in changes.add:
            meta = jsonable(p.document.metadata)
            for part, text in enumerate(split_utf8(p.document.text)):
                rows.append(doc_row(p.document.id, part, text, meta if part == 0 else {}, p.text_hash, p.root))
        self.cols.upsert("docs", rows)
        keep = {r["pk"] for r in rows}
        self.cols.delete("docs", [r["pk"] for r in self.cols.rows_in("docs", "doc_id", replaced, []) if r["pk"] not in keep])

    def _write_manifest(self, changes: Changes) -> None:
        self.cols.delete("files", [key64(root, path) for root, path in changes.remove_files])
        for root in {r for r, _ in changes.upsert_files}:
            self.cols.upsert("files", file_rows(root, [e for r, e in changes.upsert_files if r == root]))

    def _note_fields(self, added: Sequence[PreparedDocument]) -> None:
        """Record each metadata key and value kind (one idempotent row each, safe for concurrent writers)."""
        known = self._field_pairs()
        seen = {(k, value_kind(v)) for p in added for c in p.chunks for k, v in c.metadata.items()} - known
        self.cols.set_meta({f"field:{k}:{kind}": {"field": k, "kind": kind} for k, kind in sorted(seen)})
        known |= seen

    def _field_pairs(self) -> set[tuple[str, str]]:
        if self._known_fields is None:
            rows = self.cols.scan("meta", 'key like "field:%"', ["value"])
            self._known_fields = {(r["value"]["v"]["field"], r["value"]["v"]["kind"]) for r in rows}
        return self._known_fields

    def rebuild_statistics(self) -> None:
        """Recompute the BM25 statistics from the chunks, folded into one row per term.

        Milvus Lite does this itself after a killed write. On a server, run it with no other writer
        after sharded loads (it makes term lookups one primary-key read) or a killed write.
        """
        stats.rebuild(self.cols)
        self._generation = None

    # -- search -----------------------------------------------------------------------------------
    def snapshot(self) -> MilvusView | None:
        """A view of the current generation (its totals and caches are rebuilt when any writer commits)."""
        self.reopen_if_replaced()
        token = self.cols.meta("generation") or ""
        gen = self._generation
        if gen is None or gen.token != token:
            with self._generation_lock:
                if not self.cols.has():  # another process may have created it since we opened
                    if self.cols.coll() not in self.cols.own():
                        return None
                    self.cols.load(self.cols.coll())
                self._known_fields = None
                fields: dict[str, set[str]] = {}
                for name, kind in self._field_pairs():
                    fields.setdefault(name, set()).add(kind)
                gen = self._generation = read_generation(self.cols, token, fields)
        return MilvusView(self.cols, self.settings, gen)

    # -- inspection -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        self.reopen_if_replaced()  # ``ragkit info`` on a long-open index after a rebuild
        return {"documents": self.cols.count("docs", 'part == 0 and text_hash != ""'), "chunks": self.cols.count(""),
                "files": self.cols.count("files")}

    def iter_documents(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Finished documents (not the pending rows of a write in progress), by id."""
        ids = sorted(r["doc_id"] for r in self.cols.scan("docs", 'part == 0 and text_hash != ""', ["doc_id"]))
        for batch in batches(ids, DOC_BATCH):
            parts: dict[str, list[dict[str, Any]]] = {}
            for row in self.cols.rows_in("docs", "doc_id", batch, ["doc_id", "part", "text", "metadata"]):
                parts.setdefault(row["doc_id"], []).append(row)
            for doc_id in batch:
                rows = sorted(parts.get(doc_id, []), key=lambda r: r["part"])
                if rows:
                    yield doc_id, "".join(r["text"] for r in rows), rows[0]["metadata"] or {}

    def size_on_disk(self) -> int:
        """Bytes of the Milvus Lite files; 0 for a server (its storage is not visible from here)."""
        if self.lite_path is None or not self.lite_path.exists():
            return 0
        return sum(f.stat().st_size for f in self.lite_path.rglob("*") if f.is_file())

    def verify(self) -> list[str]:
        """What ``check_index`` checks for a local index (see ``verify.py``). Empty: consistent."""
        self.reopen_if_replaced()
        return check(self.cols)
