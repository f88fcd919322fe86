"""A Haystack 2 retriever component over a ragkit index, for any ``Pipeline``.

``run(query, filters=None, top_k=None)`` returns ``{"documents": [Document, ...]}`` in ragkit's
order: ``content`` is the passage, ``score`` the fused score, ``meta`` the chunk's own metadata and
ragkit's evidence (see :func:`ragkit.integrations.records.hit_record`). ``filters`` are ragkit's
own syntax (see :mod:`ragkit.storage.filters`), not Haystack's.

>>> pipe = Pipeline()                                                              # doctest: +SKIP
>>> pipe.add_component("retriever", RagkitRetriever("kb.ragkit", k=4))             # doctest: +SKIP
>>> pipe.run({"retriever": {"query": "How do I treat varroa?"}})["retriever"]["documents"]  # doctest: +SKIP
"""

# No `from __future__ import annotations`: Haystack reads run()'s annotations as real types for its sockets.
import asyncio
import os
from collections.abc import Mapping
from typing import Any

from ragkit.index import Index
from ragkit.integrations.records import SearchOptions, as_index, hit_record, install_hint
from ragkit.types import Hit

try:
    from haystack import Document, component
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise install_hint("haystack", exc) from exc

__all__ = ["RagkitRetriever", "to_document"]


def to_document(hit: Hit) -> Document:
    """A ragkit hit as a Haystack document (the chunk id is the document id)."""
    return Document(id=hit.chunk_id, content=hit.text, meta=hit_record(hit), score=hit.score)


@component
class RagkitRetriever:
    """Haystack component searching a ragkit :class:`~ragkit.Index` (or the index at a path).

    ``k``, ``mode``, ``filters`` and fusion ``settings`` are :meth:`ragkit.Index.search`'s;
    ``run``'s ``filters`` and ``top_k`` override them for one call.
    """

    def __init__(
        self, index: Index | str | os.PathLike[str], *, k: int = 5, mode: str = "hybrid",
        filters: Mapping[str, Any] | None = None, **settings: Any,
    ) -> None:
        self.index = as_index(index)
        self.options = SearchOptions(k=k, mode=mode, filters=filters, settings=settings or None)

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
            ) -> dict[str, list[Document]]:
        hits = self.options.search(self.index, query, filters=filters, k=top_k)
        return {"documents": [to_document(hit) for hit in hits]}

    @component.output_types(documents=list[Document])
    async def run_async(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None
                        ) -> dict[str, list[Document]]:
        hits = await asyncio.to_thread(self.options.search, self.index, query, filters=filters, k=top_k)
        return {"documents": [to_document(hit) for hit in hits]}
