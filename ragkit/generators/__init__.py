"""Generators: the model backends a prompt is sent to (OpenAI-compatible, Ollama, Hugging Face, callables)."""

from ragkit._moved import forward_attributes

_EXPORTS = {"OpenAICompatible": "ragkit.generators.backends", "Ollama": "ragkit.generators.backends", "HuggingFaceLocal": "ragkit.generators.backends", "CallableGenerator": "ragkit.generators.backends", "as_generator": "ragkit.generators.backends", "generate": "ragkit.generators.backends", "stream": "ragkit.generators.backends", "agenerate": "ragkit.generators.backends", "astream": "ragkit.generators.backends"}
__all__ = sorted(_EXPORTS)
__getattr__ = forward_attributes(__name__, _EXPORTS, "ragkit.generators.backends")
