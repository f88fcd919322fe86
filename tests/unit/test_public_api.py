"""The public API is exactly ``ragkit.__all__``; every name in it resolves (lazily where heavy)."""

from __future__ import annotations

import subprocess
import sys

import ragkit

EXPECTED = {
    "Answer", "Chunk", "Citation", "ConfigError", "DatasetError", "Document", "ExampleFormatError", "ExampleSet",
    "FailedFile", "FilterError", "GeneratorAuthError", "GeneratorError", "GeneratorResponseError",
    "GeneratorTimeoutError", "Hit", "HuggingFaceLocal", "HybridRetriever", "Index", "IndexCorruptError",
    "IndexLockedError", "LoadContext", "LoadError", "ModelMismatchError", "ModelNotAvailableError", "Ollama",
    "OpenAICompatible",
    "Prompt", "PromptBuilder", "RAG", "RagkitError", "SkippedFile", "SyncReport", "TemplateError", "TemplateNotFoundError",
    "__version__", "augment", "extract_citations", "register_loader",
}


def test_all_is_pinned_and_sorted() -> None:
    assert set(ragkit.__all__) == EXPECTED
    assert ragkit.__all__ == sorted(ragkit.__all__)


def test_every_public_name_resolves() -> None:
    for name in ragkit.__all__:
        assert getattr(ragkit, name) is not None, name


def test_every_error_is_a_ragkit_error() -> None:
    errors = [getattr(ragkit, n) for n in ragkit.__all__ if n.endswith("Error")]
    assert all(issubclass(e, ragkit.RagkitError) for e in errors)
    assert issubclass(ragkit.ConfigError, ValueError) and issubclass(ragkit.TemplateNotFoundError, LookupError)


def test_import_is_light() -> None:
    """`import ragkit` must not pull torch, faiss or scipy: CLIs and apps start fast."""
    code = "import sys, ragkit; print(sorted(m for m in ('torch', 'faiss', 'scipy', 'sentence_transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
