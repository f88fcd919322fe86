"""Retrieval: the hybrid retriever, fusion, diversity, the learned query adapter and associations.

Depends on ``storage`` (the per-search view) and ``text`` (analysis, embedding); never on ``Index``."""

from ragkit._moved import forward_attributes

_EXPORTS = {"HybridRetriever": "ragkit.retrieval.retriever"}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.retrieval.retriever")
