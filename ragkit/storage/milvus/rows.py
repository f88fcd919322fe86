"""The rows ragkit writes to its Milvus collections (chunks, document parts, manifest entries)."""

from __future__ import annotations

import json
import secrets
from typing import Any, Iterable

import numpy as np

from ragkit.errors import ConfigError
from ragkit.storage.base import FileEntry
from ragkit.storage.milvus.collections import DUMMY, key64
from ragkit.storage.milvus.expressions import SCALARS, value_kind
from ragkit.types import Chunk

TEXT_PART = 60_000  # bytes of document text per row (VARCHAR holds at most 65,535)
MAX_TEXT = 65_535


def jsonable(value: Any) -> Any:
    """Metadata as Milvus's JSON field takes it (dates and the like as strings)."""
    return json.loads(json.dumps(dict(value), default=str, ensure_ascii=False))


def chunk_row(chunk: Chunk, vector: np.ndarray, sparse: dict[int, float], dl: int, avgdl: float,
              embed_hash: str) -> dict[str, Any]:
    """A chunk row; its key is random, so ``pk < t`` samples chunks uniformly (see ``MilvusView``)."""
    if len(chunk.text.encode("utf-8", "surrogatepass")) > MAX_TEXT:
        raise ConfigError(f"chunk {chunk.id!r} is longer than Milvus's 65,535-byte text limit; use a smaller chunk_size")
    meta = jsonable(chunk.metadata)
    scalars = {name: (meta.get(name) if value_kind(meta.get(name)) == kind else None) for name, kind in SCALARS.items()}
    return {"pk": secrets.randbits(63), "chunk_id": chunk.id, "doc_id": chunk.doc_id, "start": chunk.start,
            "end": chunk.end, "text": chunk.text, "metadata": meta, **scalars, "dl": dl, "avgdl": avgdl,
            "embed_hash": embed_hash, "dense": np.asarray(vector, np.float32).tolist(), "sparse": sparse}


def doc_row(doc_id: str, part: int, text: str, metadata: Any, text_hash: str, root: str | None) -> dict[str, Any]:
    """One part of a document (an empty ``text_hash`` marks the pending row of an unfinished write)."""
    return {"pk": key64(doc_id, str(part)), "doc_id": doc_id, "part": part, "text": text, "metadata": metadata,
            "text_hash": text_hash, "root": root, "_v": DUMMY}


def file_rows(root: str, entries: Iterable[FileEntry]) -> list[dict[str, Any]]:
    return [{"pk": key64(root, e.path), "root": root, "path": e.path, "size": e.size, "mtime_ns": e.mtime_ns,
             "sha256": e.sha256, "doc_ids": list(e.doc_ids), "_v": DUMMY} for e in entries]


def split_utf8(text: str, limit: int = TEXT_PART) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, cut between characters."""
    data = text.encode("utf-8", "surrogatepass")
    parts, start = [], 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a multi-byte character
            end -= 1
        parts.append(data[start:end].decode("utf-8", "surrogatepass"))
        start = end
    return parts or [""]
