"""The values that cross the boundary between :class:`ragkit.Index` and a storage backend.

A backend stores documents, chunks and the file manifest, and answers the two
retrieval legs (BM25 and dense) for a consistent snapshot. ``local.py`` is the
embedded implementation (SQLite + BM25 + faiss files in one directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .types import Chunk, Document


@dataclass(frozen=True)
class FileEntry:
    """What the manifest remembers of an indexed file, to tell later whether it changed."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    doc_ids: tuple[str, ...]


@dataclass(frozen=True)
class PreparedDocument:
    """A document ready to store: its chunks, their BM25 tokens and their embedding vectors."""

    document: Document
    text_hash: str
    chunks: list[Chunk]
    tokens: list[list[str]]
    vectors: list[np.ndarray]
    embed_hashes: list[str]
    root: str | None = None


@dataclass(frozen=True)
class Changes:
    """One atomic write: documents to remove (by id), documents to add, manifest edits."""

    remove_doc_ids: tuple[str, ...] = ()
    add: tuple[PreparedDocument, ...] = ()
    upsert_files: tuple[tuple[str, FileEntry], ...] = ()  # (root, entry)
    remove_files: tuple[tuple[str, str], ...] = ()  # (root, path)

    @property
    def empty(self) -> bool:
        return not (self.remove_doc_ids or self.add or self.upsert_files or self.remove_files)


@dataclass(frozen=True)
class ChunkRecord:
    """A stored chunk as the backend returns it."""

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
