"""Where an index lives: a local directory or a Milvus URI, opened as the matching backend, and checked."""

from __future__ import annotations

import os
from pathlib import Path

from ragkit.errors import ConfigError, RagkitError
from ragkit.storage.base import Backend

MILVUS_SCHEMES = ("milvus://", "milvus-lite://", "milvus+https://")


def open_backend(location: str | os.PathLike[str], *, create: bool, token: str | None = None) -> Backend:
    """The storage backend for ``location``: a local directory, or ``milvus://host:port/collection``
    (a Milvus server or cluster) or ``milvus-lite:///path/file.db`` (embedded Milvus Lite)."""
    text = os.fspath(location)
    if text.startswith(MILVUS_SCHEMES):
        from ragkit.storage.milvus.backend import MilvusBackend

        return MilvusBackend.from_uri(text, token=token, create=create)
    if "://" in text:
        raise ConfigError(f"unknown index location {text!r}: use a directory, milvus://host:port/collection "
                          "or milvus-lite:///path/kb.db")
    from ragkit.storage.local.backend import LocalBackend

    return LocalBackend(Path(text), create=create)


def check_index(location: str | os.PathLike[str], *, token: str | None = None) -> list[str]:
    """Every problem found in the index at ``location`` (``ragkit check``); empty means consistent."""
    try:
        backend = open_backend(location, create=False, token=token)
    except (RagkitError, FileNotFoundError) as exc:
        return [str(exc)]
    try:
        return backend.verify()
    finally:
        backend.close()
