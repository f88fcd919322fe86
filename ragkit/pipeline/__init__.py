"""Pipeline: retrieve, build the prompt, generate, cite (``RAG``, ``augment``)."""

from ragkit._moved import forward_attributes

_EXPORTS = {"RAG": "ragkit.pipeline.rag", "Answer": "ragkit.pipeline.rag", "augment": "ragkit.pipeline.rag"}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.pipeline.rag")
