"""The Milvus backend: the same :class:`ragkit.Index` API on Milvus Lite, a Milvus server or a cluster.

>>> index = ragkit.Index("milvus-lite:///data/kb.db")                      # doctest: +SKIP
>>> index = ragkit.Index("milvus://db.internal:19530/kb", token="user:pw")   # doctest: +SKIP

Collections (``NAME`` is the collection in the URI, ``ragkit`` for Milvus Lite)::

    NAME          one row per chunk: text, metadata (JSON) and the scalar copies source/type/title/page
                  for filters, dl (BM25 length), avgdl (the average when written), the unit vector
                  (FLOAT_VECTOR, IP) and the BM25 term weights (SPARSE_FLOAT_VECTOR, IP)
    NAME_docs     documents, text split in <= 60 KB parts; NAME_files  the file manifest
    NAME_stats    BM25 statistics, one row per term (term -1 counts chunks, -2 tokens); a server's
                  writers add insert-only delta rows instead, folded by ``rebuild_statistics()``
    NAME_cache    embeddings not yet stored in a chunk (a sync killed after embedding keeps them)
    NAME_meta     config, the generation token, the metadata field catalogue

**Lexical leg.** Milvus's own BM25 function analyses text server-side (Lite: the ``standard``
analyzer only, no stemming or stopwords) and its hybrid search fuses with RRF or weighted sums only.
Instead the chunk's sparse vector holds ragkit's own tokens (hashed to 32 bits) weighted by BM25's tf
part ``tf*(k1+1)/(tf + k1*(1-b+b*dl/avgdl))``, and the query vector holds ``count*idf`` computed
from the statistics collection, so IDF is always current. The IP search then over-fetches; each
candidate's tf is recovered from its stored weight, and the candidates are re-scored with exact BM25
(current avgdl and idf) before the top ``depth`` are cut: returned scores equal the local backend's.
What approximates: (1) the candidate set, which is ranked with the avgdl of the time each chunk
was written (exact when it has not drifted); (2) two terms whose 32-bit hashes collide share
statistics (about ``n_terms**2 / 2**33`` pairs: ~1 in a 100k-term vocabulary).

**Atomicity.** Milvus has no transactions across collections (nor across rows of one). ``apply``
writes in an order that leaves a state the next sync repairs: (1) the manifest entries of the
changed files are marked dirty (size -1, so the next sync re-reads them) and listing both their old
and new document ids, and added documents get a pending row (empty hash: ``add()`` re-adds it);
(2) the chunks of removed and re-added documents are deleted (by document id, so re-running is
idempotent) and the new chunks inserted; (3) statistics deltas; (4) document rows; (5) the final
manifest; (6) a new generation token. On a server, a process killed anywhere leaves an index that
opens and answers (a search may see part of the batch) and that one re-sync makes exact; the
statistics of a batch killed between (2) and (3) drift until :meth:`MilvusBackend.rebuild_statistics`.

**Milvus Lite: a killed write is rolled back.** Milvus Lite (3.x) runs inside the process that opens
the ``.db`` folder (a gRPC server on threads, no server subprocess; its ``flock`` on ``kb.db/LOCK``
goes with that process), so a killed writer leaves no server behind, only files. A collection's
state there is its ``manifest.json`` (an atomic rename), the immutable Parquet files it lists and a
write-ahead log of what came after. Before a batch, ``apply`` takes a Milvus Lite snapshot of each of
the index's collections (``ragkit-rollback-<id>``: a copy of the manifest, and a pin that keeps the
files it lists from being deleted; it flushes the log first), then writes a marker file
``kb.db/ragkit-rollback.NAME.json`` naming them; removing the marker after the batch is the commit
(the snapshots are dropped after it). Opening a ``.db`` that no process holds and that has a marker
(a writer was killed) puts each snapshot's manifest back, clears the logs, removes collections the
batch created, then drops the marker and ragkit's snapshots; Milvus Lite then deletes the files no
manifest lists. So a sync killed at any moment leaves the index exactly as before it or, once
committed, after it, like the local backend; each step repeats safely if the restore is killed too.
A batch that fails with an exception (not a kill) is committed as far as it got, as on a server.
The unfinished-write marker in ``NAME_meta`` is kept as the fallback where the snapshot API is
missing (then a killed batch is repaired as on a server, its statistics recomputed by the next write).

One more Milvus Lite file is not crash-safe: the per-segment index files (``*.idx`` vectors,
``*.sidx`` scalar indexes), written in place by a background thread after a flush (also after a
commit) and loaded as they are, so a kill in the middle of one left an index that never opened
again ("File is too small", "Not an Arrow file"). When loading a collection fails, ragkit checks
its index files (the ``.npy`` length its header implies, the Arrow footer, a faiss read), removes
the incomplete ones with a warning in the log, and loads again: Milvus Lite rebuilds them.

**Concurrency.** Milvus Lite lets one process open a ``.db`` at a time (``ragkit index --shard``
workers run one after the other); the writer lock is a file next to it. A server has no lock:
concurrent ``--shard`` workers write disjoint files (their statistics are insert-only deltas, so
they add up), and the final unsharded sync, which removes deleted files, must run alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import threading
import uuid
from collections import Counter, OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ragkit.storage.base import Changes, FileEntry, LegStatistics, PreparedDocument, StaleSnapshot
from ragkit.types import Chunk
from ragkit.errors import ConfigError, FilterError
from ragkit.storage.filters import Filters, compile_filters
from ragkit.retrieval.fusion import LegCandidates
from ragkit.storage.bm25 import BM25Params
from ragkit.storage.local.store import file_lock, fsync_path

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "ragkit[milvus]"'
EMPTY_TERM = 2**32 - 2  # the sparse dimension of a chunk without terms (Milvus rejects empty vectors)
N_CHUNKS, N_TOKENS = -1, -2  # statistics rows that count chunks and tokens instead of a term
MAX_PK = 2**63
MAX_TOPK = 16384  # Milvus's limit on one search
TEXT_PART = 60_000  # bytes of document text per row (VARCHAR holds at most 65,535)
SCALARS = {"source": "str", "type": "str", "title": "str", "page": "int"}  # metadata copied into columns
_BATCH = 1000
_SAFE_KEY = re.compile(r"^[\w .:/-]+$")


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise ImportError(f"Milvus indexes need pymilvus: {INSTALL_HINT}") from exc
    return pymilvus


def term_id(term: str) -> int:
    """A token's sparse dimension: 32 bits of its BLAKE2b hash, below :data:`EMPTY_TERM`."""
    digest = hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % EMPTY_TERM


def _key64(*parts: str) -> int:
    """A deterministic primary key in [0, 2**63) for a string key (documents, files, cache, meta)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _lit(value: Any) -> str | None:
    """A Milvus expression literal, or None where the value has none (lists, dicts, NaN)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return None if ("\n" in value or "\r" in value) else f'"{escaped}"'
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "int" if isinstance(value, int) else "float"
    if isinstance(value, str):
        return "str"
    return "list" if isinstance(value, (list, tuple)) else "dict"


@dataclass
class MilvusSnapshot:
    """What a search reads once per index generation: BM25 totals and per-query caches."""

    generation: str
    n_rows: int
    n_chunks: int  # from the statistics: the N and avgdl that BM25 uses
    n_tokens: int
    fields: dict[str, set[str]]
    deltas: bool  # unfolded statistics rows exist (a server's writers)
    df: dict[int, int] = field(default_factory=dict)
    rows: "OrderedDict[int, dict[str, Any]]" = field(default_factory=OrderedDict)
    masks: "OrderedDict[str, Mask]" = field(default_factory=OrderedDict)
    backgrounds: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)

    @property
    def avgdl(self) -> float:
        return self.n_tokens / self.n_chunks if self.n_chunks > 0 else 1.0


@dataclass(frozen=True)
class Mask:
    """A filter as a Milvus boolean expression (``None``: nothing matches)."""

    expr: str | None
    key: str


class MilvusBackend:
    """Storage and search of one index in Milvus (see the module docstring for the layout).

    >>> backend = MilvusBackend.from_uri("milvus-lite:///tmp/kb.db")      # doctest: +SKIP
    """

    def __init__(
        self, uri: str, collection: str, *, token: str | None = None, db_name: str | None = None,
        lite_path: Path | None = None, create: bool = True, dense_kind: str = "flat",
    ) -> None:
        pymilvus = _pymilvus()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", collection):
            raise ConfigError(f"Milvus collection name must be letters, digits and _, got {collection!r}")
        self.name = collection
        self.lite_path = lite_path
        self.dense_kind = dense_kind
        self.bm25_params = BM25Params()
        self._types = pymilvus.DataType
        self._client = _connect(pymilvus, uri, token, db_name, lite_path)
        existing = set(self._client.list_collections())
        if self._coll("meta") not in existing:
            if not create:
                self.close()
                raise ConfigError(f"no ragkit index in collection {collection!r} at {uri}; create one with "
                                  f"`ragkit index FOLDER --index URI`")
            self._create_small_collections()
            existing = set(self._client.list_collections())
        for name in existing:
            if name == self.name or name.startswith(self.name + "_"):
                self._load_collection(name)
        self._has = existing
        self._snapshot: MilvusSnapshot | None = None
        self._snapshot_lock = threading.Lock()
        self._known_fields: set[tuple[str, str]] | None = None
        self._exclusive = lite_path is not None  # Milvus Lite: no other process can have the file open

    @classmethod
    def from_uri(cls, uri: str, *, token: str | None = None, create: bool = True) -> "MilvusBackend":
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
            return cls(str(path), collection or "ragkit", lite_path=path, create=create)
        if parts.scheme not in ("milvus", "milvus+https") or not parts.netloc:
            raise ConfigError(f"bad Milvus URI {uri!r}: use milvus://host:port/collection, milvus+https://... "
                              "or milvus-lite:///path/kb.db")
        names = [p for p in parts.path.split("/") if p]
        if len(names) not in (1, 2) and collection is None:
            raise ConfigError(f"bad Milvus URI {uri!r}: give the collection, milvus://host:port/[db/]collection")
        scheme = "https" if parts.scheme == "milvus+https" else "http"
        db_name = names[0] if len(names) == 2 else None
        return cls(f"{scheme}://{parts.netloc}", collection or names[-1], token=token, db_name=db_name,
                   create=create)

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            client.close()
            if self.lite_path is not None:
                _release_lite(self.lite_path)

    def _load_collection(self, name: str) -> None:
        """Load a collection for search; on Milvus Lite, first repair index files a killed process left half-written."""
        try:
            self._client.load_collection(name)
        except Exception as exc:
            if self.lite_path is None:
                raise
            broken = _broken_lite_index_files(self.lite_path / "collections" / name)
            if not broken:
                raise
            logger.warning("%s: Milvus Lite could not load collection %s (%s): removing %d index file(s) a killed "
                           "process left half-written (%s); Milvus Lite rebuilds them from the data", self.lite_path,
                           name, exc, len(broken), ", ".join(p.name for p in broken))
            for path in broken:
                path.unlink(missing_ok=True)
            self._client.load_collection(name)

    # -- schema ---------------------------------------------------------------------------------
    def _coll(self, suffix: str = "") -> str:
        return f"{self.name}_{suffix}" if suffix else self.name

    def _create(self, suffix: str, fields: list[tuple[str, Any, dict[str, Any]]], indexes: dict[str, dict[str, Any]]) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", self._types.INT64, is_primary=True)
        for name, dtype, options in fields:
            schema.add_field(name, dtype, **options)
        params = self._client.prepare_index_params()
        for name, options in indexes.items():
            params.add_index(name, **options)
        name = self._coll(suffix)
        self._client.create_collection(name, schema=schema, consistency_level="Strong")
        # sync=False: waiting polls every 0.5 s per index (and Milvus Lite lacks the RPC it starts with)
        self._client.create_index(name, params, sync=False)
        self._client.load_collection(name)

    def _create_small_collections(self) -> None:
        T = self._types
        text, dummy = {"max_length": 4096}, ("_v", T.FLOAT_VECTOR, {"dim": 2})
        flat = {"_v": {"index_type": "FLAT", "metric_type": "IP"}}
        inverted = {"index_type": "INVERTED"}
        self._create("meta", [("key", T.VARCHAR, text), ("value", T.JSON, {}), dummy], flat)
        self._create("docs", [
            ("doc_id", T.VARCHAR, text), ("part", T.INT64, {}), ("text", T.VARCHAR, {"max_length": 65535}),
            ("metadata", T.JSON, {}), ("text_hash", T.VARCHAR, {"max_length": 64}),
            ("root", T.VARCHAR, {**text, "nullable": True}), dummy,
        ], {**flat, "doc_id": inverted})
        self._create("files", [
            ("root", T.VARCHAR, text), ("path", T.VARCHAR, text), ("size", T.INT64, {}), ("mtime_ns", T.INT64, {}),
            ("sha256", T.VARCHAR, {"max_length": 64}), ("doc_ids", T.JSON, {}), dummy,
        ], {**flat, "root": inverted})
        self._create("stats", [("term", T.INT64, {}), ("delta", T.INT64, {}), ("folded", T.BOOL, {}), dummy],
                     {**flat, "term": inverted})

    def _ensure_vector_collections(self, dim: int) -> None:
        T = self._types
        if self._coll("cache") not in self._has:
            self._create("cache", [("hash", T.VARCHAR, {"max_length": 64}), ("vector", T.FLOAT_VECTOR, {"dim": dim})],
                         {"vector": {"index_type": "FLAT", "metric_type": "IP"}})
        if self._coll() not in self._has:
            text, nullable = {"max_length": 4096}, {"max_length": 4096, "nullable": True}
            dense = {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 32, "efConstruction": 200}} \
                if self.dense_kind == "hnsw" else {"index_type": "FLAT", "metric_type": "IP"}
            self._create("", [
                ("chunk_id", T.VARCHAR, text), ("doc_id", T.VARCHAR, text), ("start", T.INT64, {}),
                ("end", T.INT64, {}), ("text", T.VARCHAR, {"max_length": 65535}), ("metadata", T.JSON, {}),
                ("source", T.VARCHAR, nullable), ("type", T.VARCHAR, nullable), ("title", T.VARCHAR, nullable),
                ("page", T.INT64, {"nullable": True}), ("dl", T.INT64, {}), ("avgdl", T.DOUBLE, {}),
                ("embed_hash", T.VARCHAR, {"max_length": 64}), ("dense", T.FLOAT_VECTOR, {"dim": dim}),
                ("sparse", T.SPARSE_FLOAT_VECTOR, {}),
            ], {"dense": dense, "sparse": {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP"},
                "doc_id": {"index_type": "INVERTED"}, "embed_hash": {"index_type": "INVERTED"}})
        self._has = set(self._client.list_collections())

    # -- low-level reads ------------------------------------------------------------------------
    def _query(self, suffix: str, expr: str, fields: list[str], limit: int | None = None) -> list[dict[str, Any]]:
        kwargs = {"limit": limit} if limit is not None else {}
        return self._client.query(self._coll(suffix), filter=expr, output_fields=fields, **kwargs)

    def _count(self, suffix: str, expr: str = "") -> int:
        if self._coll(suffix) not in self._has:
            return 0
        rows = self._query(suffix, expr, ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _scan(self, suffix: str, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr``, read in primary-key ranges of about 2,000 rows (keys are uniform)."""
        n = self._count(suffix, expr)
        if n == 0:
            return
        bounds = np.linspace(0, MAX_PK, max(1, math.ceil(n / 2000)) + 1).astype(object)
        bounds = [int(b) for b in bounds]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            where = f"pk >= {lo}" + (f" and pk < {hi}" if hi < MAX_PK else "")
            yield from self._query(suffix, f"({expr}) and {where}" if expr else where, fields)

    def _in(self, suffix: str, name: str, values: Sequence[Any], fields: list[str], extra: str = "",
            few: bool = False) -> Iterator[dict[str, Any]]:
        """Rows whose ``name`` is one of ``values``; ``few`` (always for primary keys): one query per batch."""
        for start in range(0, len(values), _BATCH):
            batch = ", ".join(_lit(v) or "null" for v in values[start : start + _BATCH])
            expr = f"{name} in [{batch}]" + (f" and {extra}" if extra else "")
            yield from (self._query(suffix, expr, fields) if few or name == "pk" else self._scan(suffix, expr, fields))

    def _meta(self, key: str) -> Any:
        rows = self._query("meta", f"pk == {_key64(key)}", ["value"])
        return rows[0]["value"]["v"] if rows else None

    def _set_meta(self, items: Mapping[str, Any]) -> None:
        rows = [{"pk": _key64(k), "key": k, "value": {"v": v}, "_v": [1.0, 0.0]} for k, v in items.items()]
        if rows:
            self._client.upsert(self._coll("meta"), rows)

    # -- config, manifest, cache ------------------------------------------------------------------
    def get_config(self) -> dict[str, Any] | None:
        return self._meta("config")

    def set_config(self, config: Mapping[str, Any]) -> None:
        self._set_meta({"config": dict(config)})

    def manifest(self, root: str) -> dict[str, FileEntry]:
        rows = self._scan("files", f"root == {_lit(root)}", ["path", "size", "mtime_ns", "sha256", "doc_ids"])
        return {r["path"]: FileEntry(r["path"], r["size"], r["mtime_ns"], r["sha256"], tuple(r["doc_ids"])) for r in rows}

    def document_roots(self, doc_ids: Sequence[str]) -> dict[str, str | None]:
        return {r["doc_id"]: r["root"] for r in self._in("docs", "doc_id", list(doc_ids), ["doc_id", "root"], "part == 0")}

    def document_hashes(self, doc_ids: Sequence[str]) -> dict[str, str]:
        rows = self._in("docs", "doc_id", list(doc_ids), ["doc_id", "text_hash"], "part == 0")
        return {r["doc_id"]: r["text_hash"] for r in rows}

    def writer_lock(self, timeout: float | None) -> ContextManager[None]:
        """Milvus Lite: a file lock beside the ``.db``. A server: none (see the module docstring)."""
        if self.lite_path is None:
            return nullcontext()
        return file_lock(self.lite_path.with_name(self.lite_path.name + ".writer.lock"), timeout,
                          f"{self.lite_path} is being written by another writer")

    def cached_vectors(self, hashes: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        if self._coll("cache") in self._has:
            for row in self._in("cache", "pk", [_key64(h) for h in hashes], ["hash", "vector"]):
                found[row["hash"]] = np.asarray(row["vector"], np.float32)
        missing = [h for h in hashes if h not in found]
        if missing and self._coll() in self._has:
            for row in self._in("", "embed_hash", missing, ["embed_hash", "dense"]):
                found[row["embed_hash"]] = np.asarray(row["dense"], np.float32)
        return found

    def cache_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """Keep fresh embeddings until ``apply`` stores them in chunks (then they are dropped here)."""
        if not vectors:
            return
        self._ensure_vector_collections(len(next(iter(vectors.values()))))
        rows = [{"pk": _key64(h), "hash": h, "vector": np.asarray(v, np.float32).tolist()} for h, v in vectors.items()]
        for start in range(0, len(rows), _BATCH):
            self._client.upsert(self._coll("cache"), rows[start : start + _BATCH])
        self._client.flush(self._coll("cache"))

    # -- writes ----------------------------------------------------------------------------------
    def apply(self, changes: Changes) -> None:
        """Write one batch: on Milvus Lite all or nothing (a rollback point), on a server in the repairable order
        of the module docstring (Milvus has no transactions)."""
        if changes.empty:
            return
        rollback = self._begin_lite_write()
        try:
            self._apply(changes)
        finally:
            if rollback is not None:  # also after an exception: the batch stays as far as it got, as on a server
                self._end_lite_write(rollback)

    def _begin_lite_write(self) -> str | None:
        """Milvus Lite: pin each collection's state in a Milvus Lite snapshot, then leave a marker naming them.

        A process killed before :meth:`_end_lite_write` removes the marker leaves the marker behind; the
        next open restores the snapshots' manifests (:func:`_roll_back_lite`). Returns the snapshot name.
        """
        if self.lite_path is None:
            return None
        lite = _lite_engine(self.lite_path)
        if lite is None:
            if not _NO_SNAPSHOTS:
                _NO_SNAPSHOTS.append(True)
                logger.warning("%s: this milvus-lite has no snapshot API ragkit knows; a write killed half-way "
                               "leaves part of its batch (one re-sync repairs)", self.lite_path)
            return None
        name = f"{_ROLLBACK}-{uuid.uuid4().hex}"
        self._has = set(self._client.list_collections())  # a collection left out would be removed by a rollback
        collections = sorted(c for c in self._has if c in self._own_collections())
        for collection in collections:
            lite.create_snapshot(collection, name, "ragkit: the state before a write, restored if it is killed")
        _write_json_atomic(_marker_path(self.lite_path, self.name),
                           {"snapshot": name, "prefix": self.name, "collections": collections})
        return name

    def _end_lite_write(self, name: str) -> None:
        """The commit point: the marker goes; then the snapshots (a kill in between leaves them to the next open)."""
        assert self.lite_path is not None
        _marker_path(self.lite_path, self.name).unlink(missing_ok=True)
        _fsync_dir(self.lite_path)
        lite = _lite_engine(self.lite_path)
        for collection in sorted(c for c in self._has if c in self._own_collections()):
            if lite is not None and (self.lite_path / "collections" / collection / "snapshots" / "metadata" /
                                     f"{name}.json").exists():
                try:
                    lite.drop_snapshot(collection, name)
                except Exception as exc:  # noqa: BLE001 - harmless: the next open drops it
                    logger.warning("%s: could not drop snapshot %s of %s (the next open will): %s",
                                   self.lite_path, name, collection, exc)

    def _own_collections(self) -> set[str]:
        return {self._coll(suffix) for suffix in _SUFFIXES}

    def _apply(self, changes: Changes) -> None:
        exclusive = self._exclusive
        if exclusive:
            if self._meta("writing"):
                logger.warning("%s: the last write did not finish; recomputing BM25 statistics", self.name)
                self.rebuild_statistics()
            self._set_meta({"writing": uuid.uuid4().hex})
        vectors = [v for p in changes.add for v in p.vectors]
        if vectors:
            self._ensure_vector_collections(len(vectors[0]))
        self._mark_intent(changes)
        replaced = list(dict.fromkeys([*changes.remove_doc_ids, *(p.document.id for p in changes.add)]))
        delta: Counter[int] = Counter()
        if self._coll() in self._has:
            delta.subtract(self._delete_chunks(replaced))
            delta.update(self._insert_chunks(changes.add, delta))
        self._write_statistics(delta, exclusive)
        self._write_documents(changes, replaced)
        self._write_manifest(changes)
        self._forget_cached(changes.add)
        self._note_fields(changes.add)
        self._set_meta({"generation": uuid.uuid4().hex})
        for suffix in ("", "stats", "docs", "files", "meta"):
            if self._coll(suffix) in self._has:
                self._client.flush(self._coll(suffix))  # makes sparse search fast (no unindexed memtable)
        if exclusive:
            self._set_meta({"writing": None})
        self._snapshot = None

    def _file_rows(self, root: str, entries: Iterable[FileEntry]) -> list[dict[str, Any]]:
        return [{"pk": _key64(root, e.path), "root": root, "path": e.path, "size": e.size, "mtime_ns": e.mtime_ns,
                 "sha256": e.sha256, "doc_ids": list(e.doc_ids), "_v": [1.0, 0.0]} for e in entries]

    def _upsert(self, suffix: str, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), _BATCH):
            self._client.upsert(self._coll(suffix), rows[start : start + _BATCH])

    def _insert(self, suffix: str, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), _BATCH):
            self._client.insert(self._coll(suffix), rows[start : start + _BATCH])

    def _mark_intent(self, changes: Changes) -> None:
        """Step 1: dirty manifest entries (re-read by the next sync) and pending document rows."""
        keys = [_key64(root, e.path) for root, e in changes.upsert_files]
        old = {r["pk"]: r["doc_ids"] for r in self._in("files", "pk", keys, ["doc_ids"])}
        dirty = []
        for (root, e), key in zip(changes.upsert_files, keys):
            ids = tuple(dict.fromkeys([*old.get(key, ()), *e.doc_ids]))
            dirty += self._file_rows(root, [FileEntry(e.path, -1, -1, "", ids)])
        self._upsert("files", dirty)
        self._upsert("docs", [self._doc_row(p.document.id, 0, "", {}, "", p.root) for p in changes.add])

    def _doc_row(self, doc_id: str, part: int, text: str, metadata: Any, text_hash: str, root: str | None) -> dict[str, Any]:
        return {"pk": _key64(doc_id, str(part)), "doc_id": doc_id, "part": part, "text": text, "metadata": metadata,
                "text_hash": text_hash, "root": root, "_v": [1.0, 0.0]}

    def _delete_chunks(self, doc_ids: list[str]) -> Counter[int]:
        """Delete the documents' chunks; returns the statistics they contributed."""
        removed: Counter[int] = Counter()
        pks = []
        for row in self._in("", "doc_id", doc_ids, ["sparse", "dl"]):
            pks.append(row["pk"])
            removed.update(t for t in row["sparse"] if t != EMPTY_TERM)
            removed[N_CHUNKS] += 1
            removed[N_TOKENS] += int(row["dl"])
        for start in range(0, len(pks), _BATCH):
            self._client.delete(self._coll(), ids=pks[start : start + _BATCH])
        return removed

    def _insert_chunks(self, added: Sequence[PreparedDocument], delta: Counter[int]) -> Counter[int]:
        """Insert the new chunks with BM25 tf weights normalised by the current average length."""
        counts: Counter[int] = Counter()
        lengths = [len(t) for p in added for t in p.tokens]
        if not lengths:
            return counts
        totals = self._stat_sums([N_CHUNKS, N_TOKENS])
        n = totals.get(N_CHUNKS, 0) + delta[N_CHUNKS] + len(lengths)
        avgdl = max((totals.get(N_TOKENS, 0) + delta[N_TOKENS] + sum(lengths)) / max(n, 1), 1.0)
        k1, b = self.bm25_params.k1, self.bm25_params.b
        rows = []
        for prepared in added:
            for chunk, tokens, vector, embed_hash in zip(prepared.chunks, prepared.tokens, prepared.vectors,
                                                         prepared.embed_hashes):
                tf = Counter(term_id(t) for t in tokens)
                norm = k1 * (1.0 - b + b * len(tokens) / avgdl)
                sparse = {t: c * (k1 + 1.0) / (c + norm) for t, c in tf.items()} or {EMPTY_TERM: 1.0}
                rows.append(_chunk_row(chunk, vector, sparse, len(tokens), avgdl, embed_hash))
                counts.update(tf.keys())
                counts[N_CHUNKS] += 1
                counts[N_TOKENS] += len(tokens)
        self._insert("", rows)
        return counts

    def _write_documents(self, changes: Changes, replaced: list[str]) -> None:
        """Step 4: final document rows (upserted over the pending ones), then rows of removed documents go."""
        rows = []
        for p in changes.add:
            meta = _jsonable(p.document.metadata)
            for part, text in enumerate(_split_utf8(p.document.text)):
                rows.append(self._doc_row(p.document.id, part, text, meta if part == 0 else {}, p.text_hash, p.root))
        self._upsert("docs", rows)
        keep = {r["pk"] for r in rows}
        stale = [r["pk"] for r in self._in("docs", "doc_id", replaced, []) if r["pk"] not in keep]
        for start in range(0, len(stale), _BATCH):
            self._client.delete(self._coll("docs"), ids=stale[start : start + _BATCH])

    def _write_manifest(self, changes: Changes) -> None:
        gone = [_key64(root, path) for root, path in changes.remove_files]
        for start in range(0, len(gone), _BATCH):
            self._client.delete(self._coll("files"), ids=gone[start : start + _BATCH])
        for root in {r for r, _ in changes.upsert_files}:
            self._upsert("files", self._file_rows(root, [e for r, e in changes.upsert_files if r == root]))

    def _forget_cached(self, added: Sequence[PreparedDocument]) -> None:
        """The chunks now hold these vectors (``cached_vectors`` looks there too): drop the cache rows."""
        keys = list({_key64(h) for p in added for h in p.embed_hashes})
        if keys and self._coll("cache") in self._has:
            for start in range(0, len(keys), _BATCH):
                self._client.delete(self._coll("cache"), ids=keys[start : start + _BATCH])

    def _note_fields(self, added: Sequence[PreparedDocument]) -> None:
        """Record each metadata key and value kind (one idempotent row each, safe for concurrent writers)."""
        known = self._field_pairs()
        seen = {(k, _kind(v)) for p in added for c in p.chunks for k, v in c.metadata.items()} - known
        self._set_meta({f"field:{k}:{kind}": {"field": k, "kind": kind} for k, kind in sorted(seen)})
        known |= seen

    def _field_pairs(self) -> set[tuple[str, str]]:
        if self._known_fields is None:
            rows = self._scan("meta", 'key like "field:%"', ["value"])
            self._known_fields = {(r["value"]["v"]["field"], r["value"]["v"]["kind"]) for r in rows}
        return self._known_fields

    # -- BM25 statistics --------------------------------------------------------------------------
    def _write_statistics(self, delta: Counter[int], exclusive: bool) -> None:
        """Exclusive (Milvus Lite): add into one total row per term. A server: insert-only delta rows."""
        delta = Counter({t: d for t, d in delta.items() if d})
        if not delta:
            return
        if not exclusive:
            self._set_meta({"stats_deltas": True})
            self._insert("stats", [_stat_row(secrets.randbits(63), t, d, False) for t, d in delta.items()])
            return
        totals = self._totals(list(delta))
        totals.update(delta)
        self._upsert("stats", [_stat_row(_key64("total", str(t)), t, n, True) for t, n in totals.items() if n])
        gone = [_key64("total", str(t)) for t, n in totals.items() if not n]
        for start in range(0, len(gone), _BATCH):
            self._client.delete(self._coll("stats"), ids=gone[start : start + _BATCH])

    def _totals(self, terms: Sequence[int]) -> Counter[int]:
        keys = [_key64("total", str(t)) for t in terms]
        return Counter({r["term"]: r["delta"] for r in self._in("stats", "pk", keys, ["term", "delta"])})

    def _stat_sums(self, terms: Sequence[int], deltas: bool | None = None) -> dict[int, int]:
        """Document frequencies (and the chunk and token counts): folded totals plus unfolded deltas."""
        sums = self._totals(terms)
        if self._meta("stats_deltas") if deltas is None else deltas:  # written by a server's writers until rebuild_statistics() folds them
            for row in self._in("stats", "term", list(terms), ["term", "delta"], "folded == false", few=True):
                sums[row["term"]] += row["delta"]
        return dict(sums)

    def rebuild_statistics(self) -> None:
        """Recompute the BM25 statistics from the chunks, folded into one row per term.

        Milvus Lite does this itself after a killed write. On a server, run it with no other writer
        after sharded loads (it makes term lookups one primary-key read) or a killed write.
        """
        counts: Counter[int] = Counter()
        if self._coll() in self._has:
            for row in self._scan("", "pk >= 0", ["sparse", "dl"]):
                counts.update(t for t in row["sparse"] if t != EMPTY_TERM)
                counts[N_CHUNKS] += 1
                counts[N_TOKENS] += int(row["dl"])
        self._client.delete(self._coll("stats"), filter="pk >= 0")
        self._upsert("stats", [_stat_row(_key64("total", str(t)), t, n, True) for t, n in counts.items() if n])
        self._client.flush(self._coll("stats"))
        self._set_meta({"stats_deltas": False})
        self._snapshot = None

    # -- reads ------------------------------------------------------------------------------------
    def snapshot(self) -> MilvusSnapshot | None:
        """The BM25 totals and caches of the current generation; rebuilt when any writer commits."""
        generation = self._meta("generation") or ""
        snap = self._snapshot
        if snap is not None and snap.generation == generation:
            return snap
        with self._snapshot_lock:
            if self._coll() not in self._has:  # another process may have created it since we opened
                self._has = set(self._client.list_collections())
                if self._coll() not in self._has:
                    return None
                self._load_collection(self._coll())
            deltas = bool(self._meta("stats_deltas"))
            totals = self._stat_sums([N_CHUNKS, N_TOKENS], deltas)
            fields: dict[str, set[str]] = {}
            self._known_fields = None
            for name, kind in self._field_pairs():
                fields.setdefault(name, set()).add(kind)
            snap = MilvusSnapshot(generation, self._count(""), totals.get(N_CHUNKS, 0), totals.get(N_TOKENS, 0),
                                  fields, deltas)
            if snap.n_chunks != snap.n_rows:
                logger.warning("%s: BM25 statistics count %d chunks, the collection holds %d (a write is running, or "
                               "one was killed: re-sync, or call rebuild_statistics())", self.name, snap.n_chunks, snap.n_rows)
            self._snapshot = snap
        return snap

    def is_empty(self, snap: MilvusSnapshot) -> bool:
        return snap.n_rows == 0

    def _query_weights(self, snap: MilvusSnapshot, tokens: list[str]) -> dict[int, float]:
        """``count * idf`` of each query term the index holds: the sparse query vector."""
        counts = Counter(term_id(t) for t in tokens)
        missing = [t for t in counts if t not in snap.df]
        if missing:
            sums = self._stat_sums(missing, snap.deltas)
            snap.df.update({t: sums.get(t, 0) for t in missing})
        n = float(max(snap.n_chunks, 1))
        weights = {}
        for term, count in counts.items():
            df = snap.df[term]
            if df > 0:
                idf = math.log1p((n - df + 0.5) / (df + 0.5)) if self.bm25_params.idf == "lucene" \
                    else max(math.log((n - df + 0.5) / (df + 0.5)), 0.0)
                weights[term] = count * idf
        return weights

    def _bm25(self, snap: MilvusSnapshot, row: Mapping[str, Any], weights: Mapping[int, float]) -> float:
        """Exact BM25 of a stored chunk: its tf is recovered from the weight written with ``row["avgdl"]``."""
        k1, b = self.bm25_params.k1, self.bm25_params.b
        sparse, dl = row["sparse"], float(row["dl"])
        written = k1 * (1.0 - b + b * dl / row["avgdl"])
        now = k1 * (1.0 - b + b * dl / snap.avgdl)
        score = 0.0
        for term, qw in weights.items():
            w = sparse.get(term)
            if w:
                if k1 == 0.0:
                    score += qw
                    continue
                tf = max(round(w * written / (k1 + 1.0 - w)), 1) if w < k1 + 1.0 else 1e9
                score += qw * tf * (k1 + 1.0) / (tf + now)
        return score

    def _search(self, field_name: str, data: Any, limit: int, mask: Mask | None, fields: list[str]) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"metric_type": "IP"}
        if field_name == "dense" and self.dense_kind == "hnsw":
            params["params"] = {"ef": max(128, limit)}
        result = self._client.search(self._coll(), data=[data], anns_field=field_name, limit=min(limit, MAX_TOPK),
                                     filter=mask.expr if mask else "", output_fields=fields, search_params=params)
        return list(result[0])

    def lexical_candidates(self, snap: MilvusSnapshot, tokens: list[str], depth: int, mask: Mask | None) -> LegCandidates:
        """Sparse IP search over-fetched by half, then exact BM25 re-scoring and the ``depth`` cut."""
        weights = self._query_weights(snap, tokens)
        if not weights or (mask is not None and mask.expr is None):
            return _no_candidates()
        hits = self._search("sparse", weights, depth + max(20, depth // 2), mask, ["sparse", "dl", "avgdl"])
        ids = np.asarray([h["pk"] for h in hits], np.int64)
        scores = np.asarray([self._bm25(snap, self._remember(snap, h["pk"], h["entity"]), weights) for h in hits])
        order = np.lexsort((ids, -scores))[:depth]
        return LegCandidates(ids[order], scores[order])

    def dense_candidates(self, snap: MilvusSnapshot, vector: np.ndarray, depth: int, mask: Mask | None) -> LegCandidates:
        if mask is not None and mask.expr is None:
            return _no_candidates()
        hits = self._search("dense", np.asarray(vector, np.float32).tolist(), depth, mask, ["pk"])  # [] means all
        return LegCandidates(np.asarray([h["pk"] for h in hits], np.int64),
                             np.asarray([h["distance"] for h in hits], np.float64))

    def _remember(self, snap: MilvusSnapshot, pk: int, entity: Mapping[str, Any]) -> dict[str, Any]:
        row = snap.rows.setdefault(int(pk), {})
        row.update(entity)
        if len(snap.rows) > 20_000:
            snap.rows.popitem(last=False)
        return row

    def _rows(self, snap: MilvusSnapshot, ids: Sequence[int], need: Sequence[str]) -> list[dict[str, Any]]:
        """Stored fields of chunks by primary key (cached per generation); a missing key means a writer replaced it."""
        wanted = [int(i) for i in ids]
        missing = [i for i in dict.fromkeys(wanted) if not all(f in snap.rows.get(i, ()) for f in need)]
        for row in self._in("", "pk", missing, ["sparse", "dl", "avgdl", "dense"]):
            self._remember(snap, row["pk"], {k: v for k, v in row.items() if k != "pk"})
        lost = [i for i in wanted if i not in snap.rows]
        if lost:
            raise StaleSnapshot(lost)
        return [snap.rows[i] for i in wanted]

    def exact_scores(self, snap: MilvusSnapshot, tokens: list[str], vector: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each leg's exact score for ``ids``: BM25 from the stored tf weights, dense by dot product."""
        rows = self._rows(snap, ids, ("sparse", "dense"))
        weights = self._query_weights(snap, tokens)
        bm25 = np.asarray([self._bm25(snap, r, weights) for r in rows], np.float64)
        dense = _matrix(rows, len(vector)) @ np.asarray(vector, np.float32)
        return bm25, dense

    def vectors(self, snap: MilvusSnapshot, ids: np.ndarray) -> np.ndarray:
        rows = self._rows(snap, ids, ("dense",))
        return _matrix(rows, len(rows[0]["dense"]) if rows else 0)

    def leg_statistics(self, snap: MilvusSnapshot, tokens: list[str], vector: np.ndarray, mask: Mask | None) -> LegStatistics:
        """BM25's ideal score (``sum(count*idf)``) and a uniform sample of up to 1,024 dense vectors.

        The chunk keys are random, so ``pk < t`` selects a uniform sample without reading the rest.
        """
        key = mask.key if mask else ""
        if key not in snap.backgrounds:
            expr = mask.expr if mask else ""
            n = self._count("", expr) if expr is not None else 0
            cut = f"pk < {int(MAX_PK * 1024 / n)}" if n > 1024 else "pk >= 0"
            rows = self._query("", f"({expr}) and {cut}" if expr else cut, ["dense"], limit=1024) if n else []
            sample = _matrix(rows, len(vector))
            snap.backgrounds[key] = (sample, n)
            if len(snap.backgrounds) > 64:
                snap.backgrounds.pop(next(iter(snap.backgrounds)))
        sample, n = snap.backgrounds[key]
        background = sample @ np.asarray(vector, np.float32) if len(sample) else np.zeros(0, np.float32)
        return LegStatistics(bm25_ideal=float(sum(self._query_weights(snap, tokens).values())),
                             dense_background=background, n_searched=n)

    def fetch(self, snap: MilvusSnapshot, ids: Sequence[int]) -> list[Chunk]:
        """Chunk records by primary key, in the order given."""
        wanted = [int(i) for i in ids]
        found = {r["pk"]: r for r in self._in("", "pk", wanted, ["chunk_id", "doc_id", "text", "start", "end", "metadata"])}
        lost = [i for i in wanted if i not in found]
        if lost:
            raise StaleSnapshot(lost)
        return [Chunk(found[i]["chunk_id"], found[i]["doc_id"], found[i]["text"], found[i]["start"],
                            found[i]["end"], found[i]["metadata"] or {}) for i in wanted]

    # -- filters ----------------------------------------------------------------------------------
    def filter_mask(self, snap: MilvusSnapshot, filters: Filters | None) -> Mask | None:
        """The filter as a Milvus expression; conditions Milvus cannot say exactly are checked here."""
        if not filters:
            return None
        key = json.dumps(filters, sort_keys=True, default=str)
        if key in snap.masks:
            return snap.masks[key]
        compile_filters(filters)  # validates operators and operands
        known = {"doc_id", "chunk_id", *snap.fields}
        for name in filters:
            if name not in known and snap.n_rows:
                raise FilterError(f"unknown filter field {name!r}; fields in this index: {', '.join(sorted(known))}")
        exprs, post = [], {}
        for name, condition in filters.items():
            items = condition.items() if isinstance(condition, Mapping) else [("eq", condition)]
            for op, value in items:
                expr, exact = _condition(name, op, value, snap.fields.get(name, set()))
                if expr:
                    exprs.append(f"({expr})")
                if not exact:
                    post.setdefault(name, {})[op] = value
        expr: str | None = " and ".join(exprs) or "pk >= 0"
        if post:
            expr = self._post_filter(expr, post)
        mask = Mask(expr, key)
        snap.masks[key] = mask
        if len(snap.masks) > 64:
            snap.masks.popitem(last=False)
        return mask

    def _post_filter(self, expr: str, conditions: Filters) -> str | None:
        """Rows matching ``expr`` that also pass ragkit's own predicates, as ``pk in [...]`` (None: no row)."""
        tests = compile_filters(conditions)
        allowed = []
        for row in self._scan("", expr, ["chunk_id", "doc_id", "metadata"]):
            record = {**(row["metadata"] or {}), "doc_id": row["doc_id"], "chunk_id": row["chunk_id"]}
            if all(_passes(record.get(name), test) for name, test in tests):
                allowed.append(row["pk"])
        return f"pk in [{', '.join(map(str, allowed))}]" if allowed else None

    # -- inspection -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {"documents": self._count("docs", 'part == 0 and text_hash != ""'), "chunks": self._count(""),
                "files": self._count("files")}

    def iter_documents(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Finished documents (not the pending rows of a write in progress), by id."""
        ids = sorted(r["doc_id"] for r in self._scan("docs", 'part == 0 and text_hash != ""', ["doc_id"]))
        for start in range(0, len(ids), 100):
            parts: dict[str, list[dict[str, Any]]] = {}
            for row in self._in("docs", "doc_id", ids[start : start + 100], ["doc_id", "part", "text", "metadata"]):
                parts.setdefault(row["doc_id"], []).append(row)
            for doc_id in ids[start : start + 100]:
                rows = sorted(parts.get(doc_id, []), key=lambda r: r["part"])
                if rows:
                    yield doc_id, "".join(r["text"] for r in rows), rows[0]["metadata"] or {}

    def size_on_disk(self) -> int:
        """Bytes of the Milvus Lite files; 0 for a server (its storage is not visible from here)."""
        if self.lite_path is None or not self.lite_path.exists():
            return 0
        return sum(f.stat().st_size for f in self.lite_path.rglob("*") if f.is_file())


def _no_candidates() -> LegCandidates:
    return LegCandidates(np.zeros(0, np.int64), np.zeros(0, np.float64))


def _matrix(rows: Sequence[Mapping[str, Any]], dim: int) -> np.ndarray:
    """The rows' dense vectors as an ``(n, dim)`` float32 array (also when there are none)."""
    return np.asarray([r["dense"] for r in rows], np.float32).reshape(len(rows), dim)


def _passes(value: Any, test: Any) -> bool:
    """ragkit's filter semantics: a list-valued field matches when any element does."""
    return any(test(v) for v in value) if isinstance(value, list) else bool(test(value))


def _stat_row(pk: int, term: int, delta: int, folded: bool) -> dict[str, Any]:
    return {"pk": pk, "term": term, "delta": int(delta), "folded": folded, "_v": [1.0, 0.0]}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(dict(value), default=str, ensure_ascii=False))


def _chunk_row(chunk: Any, vector: np.ndarray, sparse: dict[int, float], dl: int, avgdl: float, embed_hash: str) -> dict[str, Any]:
    if len(chunk.text.encode("utf-8", "surrogatepass")) > 65535:
        raise ConfigError(f"chunk {chunk.id!r} is longer than Milvus's 65,535-byte text limit; use a smaller chunk_size")
    meta = _jsonable(chunk.metadata)
    scalars = {name: (meta.get(name) if _kind(meta.get(name)) == kind else None) for name, kind in SCALARS.items()}
    return {"pk": secrets.randbits(63), "chunk_id": chunk.id, "doc_id": chunk.doc_id, "start": chunk.start,
            "end": chunk.end, "text": chunk.text, "metadata": meta, **scalars, "dl": dl, "avgdl": avgdl,
            "embed_hash": embed_hash, "dense": np.asarray(vector, np.float32).tolist(), "sparse": sparse}


def _split_utf8(text: str, limit: int = TEXT_PART) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, cut between characters."""
    data = text.encode("utf-8", "surrogatepass")
    parts, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        parts.append(data[start:end].decode("utf-8", "surrogatepass"))
        start = end
    return parts or [""]


_NUMBERS = {"int", "float"}
_COMPARE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _reference(name: str, kinds: set[str], value_kinds: set[str]) -> tuple[str | None, bool]:
    """The Milvus field expression for a filter field, and whether it can be null."""
    if name in ("doc_id", "chunk_id"):
        return name, False
    column = SCALARS.get(name)
    if column and kinds <= {column, "null"} and value_kinds <= {column}:
        return name, True
    return (f'metadata["{name}"]', True) if _SAFE_KEY.match(name) else (None, True)


def _same_kind(kinds: set[str], value_kinds: set[str]) -> bool:
    """Whether Milvus compares these exactly as Python would (one kind each side, numbers alike)."""
    kinds = kinds - {"null"}
    if kinds <= _NUMBERS and value_kinds <= _NUMBERS:
        return True
    return len(kinds) <= 1 and kinds | value_kinds <= {"str"} or kinds == value_kinds == {"bool"}


def _condition(name: str, op: str, value: Any, kinds: set[str]) -> tuple[str | None, bool]:
    """One filter condition as a Milvus expression, and whether it is exact (else a superset or None)."""
    values = list(value) if op in ("in", "nin") else [value]
    literals = [_lit(v) for v in values]
    value_kinds = {_kind(v) for v in values}
    ref, nullable = _reference(name, kinds, value_kinds)
    if ref is None or None in literals:
        return None, False
    if op == "in" and not values:
        return "pk < 0", True
    if op == "nin" and not values:
        return "pk >= 0", True
    if "list" in kinds or "dict" in kinds:
        if kinds - {"null"} == {"list"} and op in ("eq", "in"):
            return f"json_contains_any({ref}, [{', '.join(literals)}])", True  # type: ignore[arg-type]
        return None, False
    if not _same_kind(kinds, value_kinds) and op != "glob":
        return None, False  # mixed kinds: Milvus and Python may disagree, so check every row client-side
    exact = True
    is_null = f"{ref} is null or " if nullable else ""
    column = not ref.startswith("metadata[")
    if op == "eq":
        return f"{ref} == {literals[0]}", exact
    if op == "ne":
        return f"{is_null}{ref} != {literals[0]}", exact
    if op == "in":
        return (f"{ref} in [{', '.join(literals)}]" if column else " or ".join(f"{ref} == {v}" for v in literals)), exact  # type: ignore[arg-type]
    if op == "nin":
        body = f"{ref} not in [{', '.join(literals)}]" if column else " and ".join(f"{ref} != {v}" for v in literals)  # type: ignore[arg-type]
        return f"{is_null}({body})", exact
    if op in _COMPARE:
        return f"{ref} {_COMPARE[op]} {literals[0]}", exact
    if not isinstance(value, str) or any(c in value for c in "[]\\") or not kinds <= {"str", "null"}:
        return None, False  # glob with a character class or escape: checked client-side
    pattern = value.replace("*", "%").replace("?", "_")
    return f"{ref} like {_lit(pattern)}", "%" not in value and "_" not in value


# -- Milvus Lite: index files, and one server per file per process ----------------------------------


def _broken_lite_index_files(collection_dir: Path) -> list[Path]:
    """The index sidecars of a Milvus Lite collection that a killed write left incomplete.

    Milvus Lite writes each segment's index (``.idx``: a ``.npy`` array or a faiss index; ``.sidx``: an
    Arrow IPC file) straight to its final name, then loads any file of that name as it is. The data
    they index lives in Parquet files that are crash-safe, so a broken sidecar is removed and rebuilt.
    """
    broken = []
    for path in sorted(collection_dir.glob("partitions/*/indexes/*")):
        if path.suffix in (".idx", ".sidx") and path.is_file() and not _index_file_complete(path):
            broken.append(path)
    return broken


def _index_file_complete(path: Path) -> bool:
    """Whether a Milvus Lite index file was written to the end (its format's own length or footer)."""
    try:
        if path.suffix == ".sidx":
            import pyarrow.ipc

            with pyarrow.ipc.open_file(str(path)) as reader:  # the footer is written last
                return reader.num_record_batches >= 0
        with open(path, "rb") as fh:
            numpy_file = fh.read(6) == b"\x93NUMPY"
        if numpy_file:  # mapping checks the file holds the whole array its header describes
            return np.load(path, mmap_mode="r", allow_pickle=False).size >= 0
        import faiss

        faiss.read_index(str(path))
        return True
    except ImportError:
        return True  # a format this process cannot read: leave it to Milvus Lite
    except Exception:  # noqa: BLE001 - any reader error means the file is not whole
        return False


# -- Milvus Lite: a killed write is rolled back ----------------------------------------------------
_ROLLBACK = "ragkit-rollback"  # the name of ragkit's snapshots, and of its marker files in the .db folder
_SUFFIXES = ("", "docs", "files", "stats", "cache", "meta")
_NO_SNAPSHOTS: list[bool] = []  # warned once that this milvus-lite has no snapshot API


def _marker_path(lite_path: Path, prefix: str) -> Path:
    return lite_path / f"{_ROLLBACK}.{prefix}.json"


def _lite_engine(lite_path: Path) -> Any:
    """This process's Milvus Lite engine (``milvus_lite.db.MilvusLite``) for the file, or None.

    pymilvus talks to Milvus Lite over gRPC, which has no snapshot calls; the engine that the in-process
    server wraps has them (``create_snapshot``, ``drop_snapshot``).
    """
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return None
    entry = getattr(server_manager_instance, "_servers", {}).get(os.path.abspath(lite_path))
    engine = entry[1] if isinstance(entry, tuple) and len(entry) >= 2 else None
    return engine if all(hasattr(engine, m) for m in ("create_snapshot", "drop_snapshot")) else None


def _roll_back_lite(lite_path: Path) -> None:
    """Undo the write a killed process left unfinished, then drop ragkit's snapshots. Needs the file closed.

    Milvus Lite's state of a collection is its ``manifest.json`` (the immutable Parquet files it lists)
    plus a write-ahead log of what came after. A snapshot keeps a copy of the manifest and keeps the
    files it lists from being deleted; putting that copy back and clearing the log returns the collection
    to the snapshot, and Milvus Lite removes the files nothing lists any more when it opens it. Each
    step can be repeated, so a kill during this function is repaired by the next open.
    """
    collections = lite_path / "collections"
    for marker in sorted(lite_path.glob(f"{_ROLLBACK}.*.json")):
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            name, prefix, kept = info["snapshot"], info["prefix"], set(info["collections"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: ignoring unreadable write marker %s: %s", lite_path, marker.name, exc)
            marker.unlink(missing_ok=True)
            continue
        logger.warning("%s: a write to collection %s was killed before it finished; restoring the index as it was "
                       "before that write", lite_path, prefix)
        for suffix in _SUFFIXES:
            collection = f"{prefix}_{suffix}" if suffix else prefix
            folder = collections / collection
            if not folder.is_dir():
                continue
            if collection not in kept:  # created by the killed write
                shutil.rmtree(folder)
                continue
            saved = folder / "snapshots" / "manifests" / name / "manifest.json"
            if not saved.is_file():
                logger.warning("%s: snapshot %s of %s is missing; leaving that collection as it is",
                               lite_path, name, collection)
                continue
            tmp = folder / "manifest.json.ragkit-tmp"
            shutil.copyfile(saved, tmp)
            fsync_path(tmp)
            os.replace(tmp, folder / "manifest.json")
            for log in (folder / "wal").glob("*"):
                log.unlink()
            _fsync_dir(folder)
        marker.unlink()
        _fsync_dir(lite_path)
    for tmp in lite_path.glob(f"{_ROLLBACK}.*.json.tmp"):  # a marker that was never written
        tmp.unlink()
    for folder in collections.glob("*") if collections.is_dir() else ():
        snapshots = folder / "snapshots"
        for meta in snapshots.glob(f"metadata/{_ROLLBACK}-*.json"):
            meta.unlink()  # released: files only they kept are removed when Milvus Lite opens the collection
        for saved in snapshots.glob(f"manifests/{_ROLLBACK}-*"):
            shutil.rmtree(saved)


def _write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fsync_path(path)
    except OSError:  # not every file system syncs a directory
        pass


# -- Milvus Lite: one server per file per process -------------------------------------------------
_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def _connect(pymilvus: Any, uri: str, token: str | None, db_name: str | None, lite_path: Path | None) -> Any:
    options = {k: v for k, v in {"token": token, "db_name": db_name}.items() if v}
    if lite_path is None:
        return pymilvus.MilvusClient(uri=uri, **options)
    try:
        import milvus_lite  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"milvus-lite:// indexes need milvus-lite: {INSTALL_HINT}") from exc
    with _LITE_LOCK:
        if not _LITE_USERS.get(uri) and (lite_path / "LOCK").exists():
            with file_lock(lite_path / "LOCK", 0.0, f"{lite_path} is open in another process (Milvus Lite allows "
                            "one process per file: run --shard workers one after the other)", append=False):
                _roll_back_lite(lite_path)  # no process has the file open: undo a write that was killed
        client = pymilvus.MilvusClient(uri=uri)
        _LITE_USERS[uri] = _LITE_USERS.get(uri, 0) + 1
    return client


def _release_lite(path: Path) -> None:
    """Stop this process's Milvus Lite server for ``path`` once its last backend closes (frees the file)."""
    with _LITE_LOCK:
        key = str(path)
        _LITE_USERS[key] = _LITE_USERS.get(key, 1) - 1
        if _LITE_USERS[key] <= 0:
            _LITE_USERS.pop(key)
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(key)

