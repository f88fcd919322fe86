"""What every integration shares: hits as flat records, search options, and passages by id.

The MCP server and the three framework adapters all hand ragkit's results to code that expects
plain JSON-like metadata. :func:`hit_record` is the one conversion they use (built on
:meth:`ragkit.Hit.to_dict`), so a field added to :class:`~ragkit.Hit` reaches every integration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragkit.errors import ConfigError
from ragkit.index import Index
from ragkit.retrieval.settings import SEARCH_MODES, check_choice
from ragkit.types import Chunk, Document, Hit

__all__ = ["DocumentStore", "SearchOptions", "as_index", "hit_record", "install_hint"]


def install_hint(extra: str, exc: ImportError) -> ImportError:
    """The ImportError an integration raises when its framework is missing."""
    return ImportError(f'this ragkit integration needs its extra: pip install "ragkit[{extra}]" ({exc})')


def hit_record(hit: Hit, *, text: bool = False) -> dict[str, Any]:
    """A hit as one flat dict: its chunk's metadata (``source``, ``title``, ``page``, ``headings``...)
    overlaid with ragkit's fields (``chunk_id``, ``doc_id``, ``rank``, fused ``score``, and each leg's
    evidence: ``bm25_score``/``bm25_rank``, ``dense_score``/``dense_rank``, ``rerank_score``,
    ``association_score``). ``text`` is left out unless asked for: frameworks keep it apart."""
    record = hit.to_dict()
    metadata = record.pop("metadata") or {}
    body = record.pop("text")
    out = {**metadata, **record}
    out.setdefault("source", None)
    out.setdefault("page", None)
    if text:
        out["text"] = body
    return out


@dataclass(frozen=True)
class SearchOptions:
    """The search options every adapter takes, passed straight to :meth:`ragkit.Index.search`.

    ``filters`` are ragkit's own filter dicts (see :mod:`ragkit.storage.filters`); ``settings``
    are fusion overrides (``method``, ``weight``, ...)."""

    k: int = 5
    mode: str = "hybrid"
    filters: Mapping[str, Any] | None = None
    settings: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"k must be an int >= 1, got {self.k!r}")
        check_choice("search mode", self.mode, SEARCH_MODES)

    def search(self, index: Index, query: str, **override: Any) -> list[Hit]:
        """Search ``index``; ``override`` (k, mode, filters) wins over these options for one call."""
        k = override.get("k") or self.k
        mode = override.get("mode") or self.mode
        filters = override.get("filters") if override.get("filters") is not None else self.filters
        return index.search(query, k, mode=mode, filters=filters, **dict(self.settings or {}))


def as_index(index: Index | str | os.PathLike[str]) -> Index:
    """An open :class:`~ragkit.Index`: the one given, or the existing index at a path (never a new one)."""
    if isinstance(index, Index):
        return index
    if not isinstance(index, (str, os.PathLike)):
        raise ConfigError(f"expected a ragkit.Index or an index path, got {type(index).__name__}")
    path = os.fspath(index)
    if "://" not in path and not os.path.exists(os.path.join(path, "ragkit.sqlite")):
        raise ConfigError(f"no index at {path}; create one with `ragkit index FOLDER --index {path}`")
    return Index(path, create=False)


class DocumentStore:
    """Documents and passages of an index by id, for tools that open what a search cited.

    A passage is found by re-chunking its document with the index's own chunker, which is
    deterministic for a given text and configuration, so ids match the stored ``doc_id#n`` chunks.
    Documents are read once and kept until :meth:`refresh` (call it after a sync).
    """

    def __init__(self, index: Index) -> None:
        self.index = index
        self._documents: dict[str, Document] | None = None
        self._chunks: dict[str, list[Chunk]] = {}

    def refresh(self) -> None:
        self._documents = None
        self._chunks.clear()

    def documents(self) -> dict[str, Document]:
        if self._documents is None:
            self._documents = {doc.id: doc for doc in self.index.documents()}
        return self._documents

    def document(self, doc_id: str) -> Document:
        doc = self.documents().get(doc_id)
        if doc is None:
            raise ConfigError(f"no document with id {doc_id!r} in the index (ids are the paths search returns "
                              "as doc_id, e.g. 'health/varroa-mites.md')")
        return doc

    def chunks(self, doc_id: str) -> list[Chunk]:
        if doc_id not in self._chunks:
            self._chunks[doc_id] = self.index.chunker.split(self.document(doc_id))
        return self._chunks[doc_id]

    def passage(self, chunk_id: str, neighbours: int = 1) -> tuple[Chunk, list[Chunk], list[Chunk]]:
        """``(chunk, before, after)``: the passage and up to ``neighbours`` passages on each side."""
        doc_id, sep, number = chunk_id.rpartition("#")
        if not sep or not number.isdigit():
            raise ConfigError(f"{chunk_id!r} is not a passage id; passage ids look like 'DOC_ID#N', as "
                              "search returns them in chunk_id")
        chunks = self.chunks(doc_id)
        position = next((i for i, c in enumerate(chunks) if c.id == chunk_id), None)
        if position is None:
            raise ConfigError(f"document {doc_id!r} has no passage {chunk_id!r} (it has {len(chunks)})")
        if neighbours < 0:
            raise ConfigError(f"neighbours must be >= 0, got {neighbours}")
        before = chunks[max(0, position - neighbours):position]
        return chunks[position], before, chunks[position + 1:position + 1 + neighbours]
