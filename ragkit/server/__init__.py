"""Server: the OpenAI-compatible RAG endpoint behind ``ragkit serve``."""

from ragkit._moved import forward_attributes

_EXPORTS = {"create_app": "ragkit.server.app"}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.server.app")
