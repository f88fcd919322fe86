"""One index's Milvus collections: their schemas, and the few reads and writes everything else is made of.

Collections (``NAME`` is the collection in the URI, ``ragkit`` for Milvus Lite)::

    NAME          one row per chunk: text, metadata (JSON) and the scalar copies source/type/title/page
                  for filters, dl (BM25 length), avgdl (the average when written), the unit vector
                  (FLOAT_VECTOR, IP) and the BM25 term weights (SPARSE_FLOAT_VECTOR, IP)
    NAME_docs     documents, text split in <= 60 KB parts; NAME_files  the file manifest
    NAME_stats    BM25 statistics, one row per term (see ``statistics.py``)
    NAME_cache    embeddings not yet stored in a chunk (a sync killed after embedding keeps them)
    NAME_meta     config, the generation token, the metadata field catalogue

Collections without a vector of their own carry a dummy 2-d ``_v`` (Milvus requires one vector field).
"""

from __future__ import annotations

import hashlib
import logging
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ragkit.storage.base import StaleSnapshot
from ragkit.storage.dense import DenseKind
from ragkit.storage.milvus import lite
from ragkit.storage.milvus.expressions import literal
from ragkit.storage.util import batches

logger = logging.getLogger(__name__)

MAX_PK = 2**63
MAX_TOPK = 16384  # Milvus's limit on one search
BATCH = 1000  # rows per insert/upsert/delete request, and values per "in [...]" expression
SCAN_RANGE = 2000  # about this many rows per primary-key range of a scan
DUMMY = [1.0, 0.0]  # the value of the dummy vector field


def key64(*parts: str) -> int:
    """A deterministic primary key in [0, 2**63) for a string key (documents, files, cache, meta)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class MilvusCollections:
    """The client and collection names of one index, with batched reads and writes."""

    def __init__(self, client: Any, types: Any, name: str, lite_path: Path | None) -> None:
        self.client = client
        self.types = types
        self.name = name
        self.lite_path = lite_path
        self.present: set[str] = set(client.list_collections())

    def coll(self, suffix: str = "") -> str:
        return f"{self.name}_{suffix}" if suffix else self.name

    def has(self, suffix: str = "") -> bool:
        return self.coll(suffix) in self.present

    def own(self) -> list[str]:
        """The index's collections that exist now, sorted (re-listed: another process may have made one)."""
        self.present = set(self.client.list_collections())
        return sorted(c for c in self.present if c in {self.coll(s) for s in lite.SUFFIXES})

    # -- schema and loading ----------------------------------------------------------------------
    def load(self, name: str) -> None:
        """Load a collection for search; on Milvus Lite, first repair index files a killed process left half-written."""
        try:
            self.client.load_collection(name)
        except Exception as exc:
            if self.lite_path is None:
                raise
            broken = lite.broken_index_files(self.lite_path / "collections" / name)
            if not broken:
                raise
            logger.warning("%s: Milvus Lite could not load collection %s (%s): removing %d index file(s) a killed "
                           "process left half-written (%s); Milvus Lite rebuilds them from the data", self.lite_path,
                           name, exc, len(broken), ", ".join(p.name for p in broken))
            for path in broken:
                path.unlink(missing_ok=True)
            self.client.load_collection(name)

    def _create(self, suffix: str, fields: list[tuple[str, Any, dict[str, Any]]], indexes: dict[str, dict[str, Any]]) -> None:
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", self.types.INT64, is_primary=True)
        for name, dtype, options in fields:
            schema.add_field(name, dtype, **options)
        params = self.client.prepare_index_params()
        for name, options in indexes.items():
            params.add_index(name, **options)
        name = self.coll(suffix)
        self.client.create_collection(name, schema=schema, consistency_level="Strong")
        # sync=False: waiting polls every 0.5 s per index (and Milvus Lite lacks the RPC it starts with)
        self.client.create_index(name, params, sync=False)
        self.client.load_collection(name)

    def create_small(self) -> None:
        """The collections a new index starts with (those without the embedding dimension)."""
        T = self.types
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
        self.present = set(self.client.list_collections())

    def ensure_vector_collections(self, dim: int, dense_kind: DenseKind) -> None:
        """The chunk and cache collections, once the first embedding gives their dimension."""
        T = self.types
        self.ensure_cache(dim)
        if not self.has():
            text, nullable = {"max_length": 4096}, {"max_length": 4096, "nullable": True}
            dense = {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 32, "efConstruction": 200}} \
                if dense_kind == "hnsw" else {"index_type": "FLAT", "metric_type": "IP"}
            self._create("", [
                ("chunk_id", T.VARCHAR, text), ("doc_id", T.VARCHAR, text), ("start", T.INT64, {}),
                ("end", T.INT64, {}), ("text", T.VARCHAR, {"max_length": 65535}), ("metadata", T.JSON, {}),
                ("source", T.VARCHAR, nullable), ("type", T.VARCHAR, nullable), ("title", T.VARCHAR, nullable),
                ("page", T.INT64, {"nullable": True}), ("dl", T.INT64, {}), ("avgdl", T.DOUBLE, {}),
                ("embed_hash", T.VARCHAR, {"max_length": 64}), ("dense", T.FLOAT_VECTOR, {"dim": dim}),
                ("sparse", T.SPARSE_FLOAT_VECTOR, {}),
            ], {"dense": dense, "sparse": {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "IP"},
                "doc_id": {"index_type": "INVERTED"}, "embed_hash": {"index_type": "INVERTED"}})
        self.present = set(self.client.list_collections())

    def ensure_cache(self, dim: int) -> None:
        if not self.has("cache"):
            T = self.types
            self._create("cache", [("hash", T.VARCHAR, {"max_length": 64}), ("vector", T.FLOAT_VECTOR, {"dim": dim})],
                         {"vector": {"index_type": "FLAT", "metric_type": "IP"}})
            self.present = set(self.client.list_collections())

    # -- reads ------------------------------------------------------------------------------------
    def query(self, suffix: str, expr: str, fields: list[str], limit: int | None = None) -> list[dict[str, Any]]:
        kwargs = {"limit": limit} if limit is not None else {}
        with self._dropped_is_stale(self.coll(suffix)):
            return self.client.query(self.coll(suffix), filter=expr, output_fields=fields, **kwargs)

    def count(self, suffix: str, expr: str = "") -> int:
        if not self.has(suffix):
            return 0
        rows = self.query(suffix, expr, ["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def scan(self, suffix: str, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr``, read in primary-key ranges of about 2,000 rows (keys are uniform),
        since one Milvus query returns at most 16,384 rows."""
        n = self.count(suffix, expr)
        if n == 0:
            return
        bounds = [int(b) for b in np.linspace(0, MAX_PK, max(1, math.ceil(n / SCAN_RANGE)) + 1).astype(object)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            where = f"pk >= {lo}" + (f" and pk < {hi}" if hi < MAX_PK else "")
            yield from self.query(suffix, f"({expr}) and {where}" if expr else where, fields)

    def rows_in(self, suffix: str, name: str, values: Sequence[Any], fields: list[str], extra: str = "",
                few: bool = False) -> Iterator[dict[str, Any]]:
        """Rows whose ``name`` is one of ``values``; ``few`` (always for primary keys): one query per batch."""
        for batch in batches(values, BATCH):
            expr = f"{name} in [{', '.join(literal(v) or 'null' for v in batch)}]" + (f" and {extra}" if extra else "")
            yield from (self.query(suffix, expr, fields) if few or name == "pk" else self.scan(suffix, expr, fields))

    def search(self, field: str, data: Any, limit: int, expr: str, fields: list[str],
               params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._dropped_is_stale(self.coll()):
            result = self.client.search(self.coll(), data=[data], anns_field=field, limit=min(limit, MAX_TOPK),
                                        filter=expr, output_fields=fields, search_params={"metric_type": "IP", **params})
        return list(result[0])

    @contextmanager
    def _dropped_is_stale(self, name: str) -> Iterator[None]:
        """A read of a collection that a rebuild dropped meanwhile (``--rebuild`` switched the index to new
        ones) is a stale view: the search retries, and its new view reads the collections in use."""
        try:
            yield
        except Exception as exc:
            if self.client is None or name in self.client.list_collections():
                raise
            raise StaleSnapshot([]) from exc

    def meta(self, key: str) -> Any:
        rows = self.query("meta", f"pk == {key64(key)}", ["value"])
        return rows[0]["value"]["v"] if rows else None

    # -- writes -----------------------------------------------------------------------------------
    def set_meta(self, items: Mapping[str, Any]) -> None:
        self.upsert("meta", [{"pk": key64(k), "key": k, "value": {"v": v}, "_v": DUMMY} for k, v in items.items()])

    def upsert(self, suffix: str, rows: Sequence[dict[str, Any]]) -> None:
        for batch in batches(rows, BATCH):
            self.client.upsert(self.coll(suffix), list(batch))

    def insert(self, suffix: str, rows: Sequence[dict[str, Any]]) -> None:
        for batch in batches(rows, BATCH):
            self.client.insert(self.coll(suffix), list(batch))

    def delete(self, suffix: str, pks: Sequence[int]) -> None:
        for batch in batches(pks, BATCH):
            self.client.delete(self.coll(suffix), ids=list(batch))

    def flush(self, *suffixes: str) -> None:
        for suffix in suffixes:
            if self.has(suffix):
                self.client.flush(self.coll(suffix))
