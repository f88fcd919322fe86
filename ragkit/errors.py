"""Exceptions raised by ragkit.

Every error ragkit raises on purpose derives from :class:`RagkitError`, so
``except ragkit.RagkitError`` catches them all. Where callers expect a
built-in (``ValueError`` for bad options, ``LookupError`` for missing
templates), the error subclasses that built-in too::

    RagkitError
    ├── ConfigError (ValueError)          an option or setting has a bad value
    │   ├── FilterError                   a search filter names an unknown field or bad operator
    │   └── ModelMismatchError            the index was built with another embedding model
    │       └── EmbedderMismatchError     ... or another embedder (kind, model or prompts)
    ├── LoadError                         a file could not be read or decoded (path + reason)
    ├── ModelNotAvailableError            a model cannot be loaded (offline, missing)
    ├── EmbeddingServiceError             an embedding service (OpenAI-compatible, Ollama) failed
    ├── IndexCorruptError                 an index file is missing, truncated or fails its checksum
    ├── IndexLockedError                  another writer holds the index
    ├── RebuildError                      a rebuild failed; the old index is untouched
    ├── EnvironmentProblemError (OSError) disk full, permission denied, read-only, too many open files
    ├── TemplateError                     a template is missing, malformed or lacks a variable
    │   └── TemplateNotFoundError (LookupError)
    ├── ExampleFormatError (ValueError)   an examples file has a malformed record (file + line)
    ├── DatasetError (ValueError)         an evaluation dataset is malformed or inconsistent
    └── GeneratorError                    a generator backend failed
        ├── GeneratorTimeoutError (TimeoutError)
        ├── GeneratorAuthError
        └── GeneratorResponseError        the backend answered with something unusable
"""

from __future__ import annotations

from pathlib import Path


class RagkitError(Exception):
    """Base class of every error ragkit raises on purpose."""


class ConfigError(RagkitError, ValueError):
    """An option or setting has a value ragkit cannot use."""


class FilterError(ConfigError):
    """A search filter names an unknown field or an unsupported operator."""


class ModelMismatchError(ConfigError):
    """An index is opened with a different embedding model than it was built with."""


class EmbedderMismatchError(ModelMismatchError):
    """An index is queried or extended by an embedder other than the one that built it (both named)."""


class LoadError(RagkitError):
    """A file could not be read, decoded or parsed."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelNotAvailableError(RagkitError):
    """A model could not be loaded, typically because it is not available offline."""


class EmbeddingServiceError(RagkitError):
    """An embedding service failed: unreachable, timed out, refused the key, or answered unusably."""


class IndexCorruptError(RagkitError):
    """An index file is missing, truncated or does not match its checksum."""


class IndexLockedError(RagkitError):
    """Another process holds the index's writer lock."""


class RebuildError(RagkitError):
    """``--rebuild`` failed before the new index was swapped in: the old index is untouched."""


class EnvironmentProblemError(RagkitError, OSError):
    """The system refused a read or write (disk full, permission denied, read-only file system, too
    many open files): nothing is lost, and the message names the path and what to do."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class TemplateError(RagkitError):
    """A prompt template is malformed or is rendered without a variable it needs."""


class TemplateNotFoundError(TemplateError, LookupError):
    """No template exists under the given name or path."""


class ExampleFormatError(RagkitError, ValueError):
    """A few-shot examples file holds a malformed record."""


class DatasetError(RagkitError, ValueError):
    """An evaluation dataset is malformed or refers to unknown ids."""


class GeneratorError(RagkitError):
    """A generator backend failed to produce an answer."""


class GeneratorTimeoutError(GeneratorError, TimeoutError):
    """A generator backend did not answer in time."""


class GeneratorAuthError(GeneratorError):
    """A generator backend refused the credentials (HTTP 401/403)."""


class GeneratorResponseError(GeneratorError):
    """A generator backend answered with a malformed or error response."""
