"""A pipeline that can see only what one caller may see.

:func:`scoped_rag` gives a shallow copy of the server's :class:`~ragkit.pipeline.rag.RAG` whose
index searches with the caller's filter (the scope ANDed with the request's and the server's own),
so everything built on retrieval (chat, condensed follow-ups, ``/prompt``) is scoped at one choke
point. Two more guards sit behind the filter, which storage applies before the top-k cut:

* every hit is checked against the filter again before it is used (a backend that ignored a
  condition would otherwise leak silently);
* few-shot examples are documents too: a restricted caller gets only the examples whose metadata
  passes its scope (tag them like documents; untagged ones are left out).

Query associations need no guard here: they lift only candidates the filter already let through
(:mod:`ragkit.retrieval.association`).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from ragkit.errors import FilterError
from ragkit.pipeline.rag import RAG
from ragkit.prompting.examples import ExampleSet
from ragkit.server.principals import narrow
from ragkit.storage.filters import filter_mask
from ragkit.types import Hit

__all__ = ["Pipelines", "ScopedIndex", "admits", "checked_hits", "scoped_rag"]

logger = logging.getLogger(__name__)
_CACHE = 64  # scoped pipelines kept (one per distinct filter)


def admits(filters: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Which records (metadata dicts) pass ``filters``; a field none of them has fails them all."""
    if not filters:
        return [True] * len(records)
    if not records:
        return []
    try:
        return [bool(v) for v in filter_mask(filters, records)]
    except FilterError:
        return [False] * len(records)


class ScopedIndex:
    """An index whose every search is ANDed with ``filters``, and whose hits are checked again."""

    def __init__(self, index: Any, filters: Mapping[str, Any] | None) -> None:
        self._index, self.filters = index, dict(filters) if filters else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def search(self, query: str, k: int = 10, *, filters: Mapping[str, Any] | None = None, **options: Any) -> list[Hit]:
        merged = narrow(self.filters, filters)
        hits = self._index.search(query, k, filters=merged, **options)
        return checked_hits(hits, merged)


def checked_hits(hits: list[Hit], filters: Mapping[str, Any] | None) -> list[Hit]:
    """``hits`` that pass ``filters`` (all of them, unless storage let one through it should not have)."""
    if not filters:
        return hits
    records = [{**h.metadata, "doc_id": h.doc_id, "chunk_id": h.chunk_id} for h in hits]
    kept = [h for h, ok in zip(hits, admits(filters, records)) if ok]
    if len(kept) != len(hits):
        logger.error("storage returned %d hits outside the search filter; they were dropped", len(hits) - len(kept))
    return kept


class Pipelines:
    """Scoped copies of one RAG, by filter, so each request does not rebuild its builder."""

    def __init__(self, rag: RAG) -> None:
        self.rag = rag
        self._lock = threading.Lock()
        self._made: OrderedDict[str, tuple[Any, RAG]] = OrderedDict()  # key -> (the builder it was made from, RAG)

    def get(self, filters: Mapping[str, Any] | None) -> RAG:
        if not filters:
            return self.rag
        # the builder is part of the key: the playground swaps in a new one when answers are approved
        key = f"{id(self.rag.builder)}:{json.dumps(filters, sort_keys=True, default=str)}"
        with self._lock:
            made = self._made.get(key)
            if made is not None and made[0] is self.rag.builder:
                self._made.move_to_end(key)
                return made[1]
        scoped = copy.copy(self.rag)
        scoped.index = ScopedIndex(self.rag.index, filters)
        scoped.filters = None  # already inside the scoped index's filter
        scoped.builder = _scoped_builder(self.rag.builder, filters, self.rag.index)
        with self._lock:
            self._made[key] = (self.rag.builder, scoped)
            while len(self._made) > _CACHE:
                self._made.popitem(last=False)
        return scoped


def _scoped_builder(builder: Any, filters: Mapping[str, Any], index: Any) -> Any:
    """``builder`` with only the examples ``filters`` admits: a new set, so even their selection
    statistics (BM25 over the examples) come from the admitted ones alone."""
    examples = getattr(builder, "examples", None)
    if not examples:
        return builder
    keep = admits(filters, [dict(e.metadata) for e in examples])
    if all(keep):
        return builder
    scoped = copy.copy(builder)
    kept = [e for e, ok in zip(examples, keep) if ok]
    scoped.examples = ExampleSet(kept, source=examples.source, weights=examples.weights,
                                 embedder=getattr(index, "embedder", None),
                                 analyzer=getattr(index, "analyzer", None)) if kept else None
    return scoped


def scoped_rag(pipelines: Pipelines, rag_filters: Mapping[str, Any] | None, scope: Mapping[str, Any] | None) -> RAG:
    """The pipeline for a request whose filter (scope and request together) is ``scope``."""
    return pipelines.get(narrow(rag_filters, scope))

