"""A LangChain retriever over a ragkit index: ``RagkitRetriever(index, k=5)`` in any LCEL chain.

Each hit becomes ``Document(page_content=hit.text, metadata=...)`` whose metadata holds the chunk's
own (``source``, ``title``, ``page``, ``headings``) and ragkit's evidence (``score``, ``rank``,
``bm25_score``/``bm25_rank``, ``dense_score``/``dense_rank``, ``chunk_id``, ``doc_id``), in
ragkit's order. ``filters`` use ragkit's own syntax (see :mod:`ragkit.storage.filters`).

>>> retriever = RagkitRetriever("kb.ragkit", k=4, filters={"source": {"glob": "health/*"}})  # doctest: +SKIP
>>> chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | llm  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from ragkit.index import Index
from ragkit.integrations.records import SearchOptions, as_index, hit_record, install_hint
from ragkit.types import Hit

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise install_hint("langchain", exc) from exc

__all__ = ["RagkitRetriever", "to_document"]


def to_document(hit: Hit) -> Document:
    """A ragkit hit as a LangChain document (the chunk id is the document id)."""
    return Document(page_content=hit.text, metadata=hit_record(hit), id=hit.chunk_id)


class RagkitRetriever(BaseRetriever):
    """LangChain ``BaseRetriever`` searching a ragkit :class:`~ragkit.Index` (or the index at a path).

    ``k``, ``mode``, ``filters`` and fusion ``settings`` are :meth:`ragkit.Index.search`'s. Async
    calls (``ainvoke``, ``abatch``) search in a worker thread, so an event loop is never blocked.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Index
    options: SearchOptions

    def __init__(
        self, index: Index | str | os.PathLike[str], *, k: int = 5, mode: str = "hybrid",
        filters: Mapping[str, Any] | None = None, **settings: Any,
    ) -> None:
        super().__init__(index=as_index(index),
                         options=SearchOptions(k=k, mode=mode, filters=filters, settings=settings or None))

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [to_document(hit) for hit in self.options.search(self.index, query)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = await asyncio.to_thread(self.options.search, self.index, query)
        return [to_document(hit) for hit in hits]
