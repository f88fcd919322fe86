"""Metadata for every document below a folder: a ``.ragkitmeta.toml`` file in that folder.

Access-control fields (``acl``, ``team``) belong to folders more often than to files, and many
files (PDFs, Office documents, code) have no front matter to carry them. A sidecar gives them::

    # docs/team-a/.ragkitmeta.toml
    acl = ["team-a"]
    team = "a"

Every file at or below the folder gets these keys. Sidecars nest: a deeper one overrides the keys
it sets and inherits the rest (the nearest wins, key by key), and what a file says itself (front
matter, a loader's ``source``/``title``/``type``) wins over any sidecar. The file is read by the
sync, never indexed (the listing reports it as a "metadata file"). Values are strings, numbers,
booleans or lists of them; ``doc_id`` and ``chunk_id`` are the index's own.

A change to a sidecar re-syncs the files below it: the sync stores, for each file, a digest of its
content and its sidecar metadata together, and a stamp of that metadata in the manifest entry's
``mtime_ns`` (see :func:`stamped_mtime`), so a changed sidecar makes its files candidates without
a column for it. Their text is unchanged, so their vectors come from the embedding cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.files import METADATA_FILE, read_listed
from ragkit.types import Document

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

__all__ = ["METADATA_FILE", "Sidecars", "content_digest", "stamped_mtime", "with_metadata"]

_MAX_BYTES = 256 * 1024  # a sidecar is a few keys; a huge one is a mistake, not metadata
_RESERVED = frozenset({"doc_id", "chunk_id"})
_SCALARS = (str, int, float, bool)


class Sidecars:
    """The sidecar files of one synced folder, each read once, and the metadata they give a file.

    >>> Sidecars(Path("docs")).metadata("team-a/notes/plan.md")   # doctest: +SKIP
    {'acl': ['team-a'], 'team': 'a'}
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._folders: dict[str, dict[str, Any] | LoadError] = {}

    def metadata(self, rel: str) -> dict[str, Any]:
        """The metadata the sidecars above file ``rel`` give it (``{}`` without any); a LoadError for
        ``rel`` naming the sidecar when one of them is unreadable or invalid."""
        merged: dict[str, Any] = {}
        for folder in _folders_above(rel):
            found = self._folder(folder)
            if isinstance(found, LoadError):
                raise LoadError(rel, f"its metadata file {found.path}: {found.reason}")
            merged.update(found)
        return merged

    def _folder(self, folder: str) -> dict[str, Any] | LoadError:
        if folder not in self._folders:
            try:
                self._folders[folder] = self._read(folder)
            except LoadError as exc:
                self._folders[folder] = exc
        return self._folders[folder]

    def _read(self, folder: str) -> dict[str, Any]:
        rel = folder + METADATA_FILE
        path = Path(os.path.realpath(self.root / rel))  # a linked folder the listing followed: its real path
        if not path.is_relative_to(self.root):
            return {}  # the listing never follows a link out of the folder; neither does this
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LoadError(rel, f"cannot stat: {exc.strerror or exc}") from None
        if not stat.S_ISREG(st.st_mode):
            raise LoadError(rel, "not a regular file; not read")
        return parse_sidecar(read_listed(path, rel, st, _MAX_BYTES, root=self.root), rel)


def parse_sidecar(data: bytes, rel: str) -> dict[str, Any]:
    """A sidecar's keys and values, checked; a LoadError for ``rel`` saying what is wrong."""
    if tomllib is None:
        raise LoadError(rel, "reading a .toml metadata file needs Python 3.11+")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoadError(rel, f"does not parse as TOML: {exc}") from None
    for key, value in table.items():
        if key in _RESERVED:
            raise LoadError(rel, f"{key!r} is the index's own field; use another key")
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, _SCALARS) for v in values):
            raise LoadError(rel, f"{key!r}: metadata values are strings, numbers, booleans or lists of them, "
                                 f"got {type(value).__name__}")
    return table


def _folders_above(rel: str) -> list[str]:
    """``"a/b/c.md"`` -> ``["", "a/", "a/b/"]``: the folders whose sidecars apply, outermost first."""
    parts = PurePosixPath(rel).parts[:-1]
    return ["".join(p + "/" for p in parts[:i]) for i in range(len(parts) + 1)]


def with_metadata(documents: list[Document], metadata: dict[str, Any]) -> list[Document]:
    """``documents`` with the sidecar ``metadata`` under their own (theirs win)."""
    if not metadata:
        return documents
    return [Document(d.id, d.text, {**metadata, **d.metadata}) for d in documents]


def _canonical(metadata: dict[str, Any]) -> bytes:
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode("utf-8")


def content_digest(data_sha256: str, metadata: dict[str, Any]) -> str:
    """The digest a manifest keeps for a file: its content's, or, under sidecar metadata, one of its
    content and that metadata (so a metadata change is a change; without one it is as before)."""
    if not metadata:
        return data_sha256
    return hashlib.sha256(data_sha256.encode("ascii") + b"\n" + _canonical(metadata)).hexdigest()


def stamped_mtime(mtime_ns: int, metadata: dict[str, Any]) -> int:
    """The ``mtime_ns`` a manifest keeps for a file: its own, XOR a 32-bit stamp of its sidecar
    metadata when it has some. The sync's cheapest check (same size and mtime: not even read) then
    reads the file again when its sidecar metadata changed, though the file did not."""
    if not metadata:
        return mtime_ns
    return mtime_ns ^ int.from_bytes(hashlib.sha256(_canonical(metadata)).digest()[:4], "big")
