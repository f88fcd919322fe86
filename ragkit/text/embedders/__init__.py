"""Embedders an index can use, one module each; see :mod:`ragkit.text.embedding` for the protocol.

* ``Embedder`` (:mod:`ragkit.text.embedding`): a local sentence-transformers model, run through
  :mod:`.sentence_transformers` (torch) or :mod:`.onnx` (ONNX Runtime), prompts from :mod:`.folder`;
* :class:`OpenAIEmbedder`, :class:`OllamaEmbedder` (:mod:`.remote`): embedding services over HTTP;
* :class:`CallableEmbedder` (:mod:`.function`): a plain function.

Names load on first use, so importing this package imports neither httpx nor torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "OpenAIEmbedder": ".remote",
    "OllamaEmbedder": ".remote",
    "CallableEmbedder": ".function",
}

__all__ = ["CallableEmbedder", "OllamaEmbedder", "OpenAIEmbedder"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
