"""A LlamaIndex retriever over a ragkit index, usable in a ``RetrieverQueryEngine``.

Each hit becomes ``NodeWithScore(node=TextNode(id_=chunk_id, text=...), score=hit.score)`` in
ragkit's order; the node's metadata holds the chunk's own and ragkit's evidence (see
:func:`ragkit.integrations.records.hit_record`). Only ``source``, ``title`` and ``page`` are shown
to the LLM: the scores stay out of the prompt text, but are there for postprocessors and callers.

>>> retriever = RagkitRetriever("kb.ragkit", k=4)                                    # doctest: +SKIP
>>> engine = RetrieverQueryEngine.from_args(retriever, llm=my_llm)                 # doctest: +SKIP
>>> engine.query("How do I treat varroa?").source_nodes[0].metadata["source"]     # doctest: +SKIP
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
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise install_hint("llamaindex", exc) from exc

__all__ = ["RagkitRetriever", "to_node"]

SHOWN_TO_LLM = ("source", "title", "page")


def to_node(hit: Hit) -> NodeWithScore:
    """A ragkit hit as a scored LlamaIndex text node."""
    metadata = hit_record(hit)
    hidden = [key for key in metadata if key not in SHOWN_TO_LLM]
    node = TextNode(id_=hit.chunk_id, text=hit.text, metadata=metadata,
                    excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden)
    return NodeWithScore(node=node, score=hit.score)


class RagkitRetriever(BaseRetriever):
    """LlamaIndex ``BaseRetriever`` searching a ragkit :class:`~ragkit.Index` (or the index at a path).

    ``k``, ``mode``, ``filters`` (ragkit's syntax) and fusion ``settings`` are
    :meth:`ragkit.Index.search`'s; ``aretrieve`` searches in a worker thread.
    """

    def __init__(
        self, index: Index | str | os.PathLike[str], *, k: int = 5, mode: str = "hybrid",
        filters: Mapping[str, Any] | None = None, **settings: Any,
    ) -> None:
        self.index = as_index(index)
        self.options = SearchOptions(k=k, mode=mode, filters=filters, settings=settings or None)
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [to_node(hit) for hit in self.options.search(self.index, query_bundle.query_str)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await asyncio.to_thread(self.options.search, self.index, query_bundle.query_str)
        return [to_node(hit) for hit in hits]
