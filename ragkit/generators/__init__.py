"""Generators: the model backends a prompt is sent to (``base.py``: the protocol and entry points;
``http.py``: OpenAI-compatible servers and Ollama; ``huggingface.py``: a local transformers pipeline)."""

from ragkit._moved import forward_attributes

_EXPORTS = {
    "OpenAICompatible": "ragkit.generators.http",
    "Ollama": "ragkit.generators.http",
    "HuggingFaceLocal": "ragkit.generators.huggingface",
    "CallableGenerator": "ragkit.generators.base",
    "Generator": "ragkit.generators.base",
    "StreamingGenerator": "ragkit.generators.base",
    "as_generator": "ragkit.generators.base",
    "generate": "ragkit.generators.base",
    "stream": "ragkit.generators.base",
    "agenerate": "ragkit.generators.base",
    "astream": "ragkit.generators.base",
}
__all__ = sorted(_EXPORTS)
# The old module ragkit.generators was split into these three.
__getattr__ = forward_attributes(__name__, _EXPORTS, ("ragkit.generators.base", "ragkit.generators.http",
                                                      "ragkit.generators.huggingface"))
