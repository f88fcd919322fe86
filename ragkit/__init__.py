"""ragkit: retrieval-augmented prompting with a hybrid BM25 + dense index.

>>> import ragkit
>>> index = ragkit.Index("kb.ragkit")                       # doctest: +SKIP
>>> index.sync("docs/")                                     # doctest: +SKIP
>>> hits = index.search("how do I treat varroa?", k=5)      # doctest: +SKIP
>>> prompt = ragkit.PromptBuilder("qa").build("how do I treat varroa?", hits)   # doctest: +SKIP
>>> print(prompt.text)                                      # doctest: +SKIP

Only the names in ``__all__`` are the public API; everything else may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigError,
    DatasetError,
    ExampleFormatError,
    FilterError,
    GeneratorAuthError,
    GeneratorError,
    GeneratorResponseError,
    GeneratorTimeoutError,
    IndexCorruptError,
    IndexLockedError,
    LoadError,
    ModelMismatchError,
    ModelNotAvailableError,
    RagkitError,
    TemplateError,
    TemplateNotFoundError,
)
from ._moved import install as _install_moved
from .types import Chunk, Document, FailedFile, Hit, SkippedFile, SyncReport

__version__ = "0.1.0"

_install_moved()  # old module paths (ragkit.fusion, ragkit.local, ...) keep working, with a warning

# Heavy modules (numpy, scipy, faiss, jinja2, httpx) load on first use, so `import ragkit` stays fast.
_LAZY = {
    "Index": ".index",
    "HybridRetriever": ".retrieval.retriever",
    "PromptBuilder": ".prompting.builder",
    "Prompt": ".prompting.builder",
    "ExampleSet": ".prompting.examples",
    "Citation": ".prompting.citations",
    "extract_citations": ".prompting.citations",
    "RAG": ".pipeline.rag",
    "Answer": ".pipeline.rag",
    "augment": ".pipeline.rag",
    "OpenAICompatible": ".generators.http",
    "Ollama": ".generators.http",
    "HuggingFaceLocal": ".generators.huggingface",
    "register_loader": ".ingest.registry",
    "LoadContext": ".ingest.registry",
}

__all__ = sorted(
    [
        "Chunk", "ConfigError", "DatasetError", "Document", "ExampleFormatError", "FailedFile", "FilterError",
        "GeneratorAuthError", "GeneratorError", "GeneratorResponseError", "GeneratorTimeoutError", "Hit",
        "IndexCorruptError", "IndexLockedError", "LoadError", "ModelMismatchError", "ModelNotAvailableError",
        "RagkitError", "SkippedFile", "SyncReport", "TemplateError", "TemplateNotFoundError", "__version__", *_LAZY,
    ]
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragkit' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from .prompting.citations import Citation, extract_citations
    from .prompting.examples import ExampleSet
    from .generators.http import Ollama, OpenAICompatible
    from .generators.huggingface import HuggingFaceLocal
    from .index import Index
    from .ingest.registry import LoadContext, register_loader
    from .pipeline.rag import RAG, Answer, augment
    from .prompting.builder import Prompt, PromptBuilder
    from .retrieval.retriever import HybridRetriever
