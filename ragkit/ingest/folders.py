"""What an index remembers about each folder synced into it: its namespace and its patterns.

A sync without patterns uses the folder's remembered ones, so ``ragkit index docs --exclude 'drafts/**'``
followed by ``ragkit index docs`` keeps excluding ``drafts/``. New patterns replace the remembered ones
(include and exclude each on its own), ``reset_patterns`` forgets both, and the report says which.

The namespace keeps two folders with the same relative paths apart in one index: a document's id and
source are ``"{namespace}/{relative path}"``. The first folder synced into an index (documents added
with ``Index.add`` hold no namespace), and any folder an index held before namespaces existed, has the
empty namespace: its ids are its relative paths, as
they always were. Any other folder's namespace is its folder name, or the ``prefix`` given; a later
``prefix`` moves a folder's documents to the new namespace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ragkit.errors import ConfigError

__all__ = ["FolderSettings", "check_prefix", "resolve_folder"]

_PREFIX = re.compile(r"[^/\x00-\x1f\x7f]+(?:/[^/\x00-\x1f\x7f]+)*")


@dataclass(frozen=True)
class FolderSettings:
    """One folder's remembered sync settings (stored in the index config, keyed by the folder's path)."""

    namespace: str = ""
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    ignore_files: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "include": None if self.include is None else list(self.include),
                "exclude": list(self.exclude), "ignore_files": self.ignore_files}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FolderSettings:
        include = data.get("include")
        return cls(namespace=str(data.get("namespace", "")), include=None if include is None else tuple(include),
                   exclude=tuple(data.get("exclude") or ()), ignore_files=bool(data.get("ignore_files", True)))


def check_prefix(prefix: str) -> str:
    """A namespace as given by the user: folder names joined by ``/``, none of them ``.`` or ``..``."""
    if not _PREFIX.fullmatch(prefix) or any(part in (".", "..") for part in prefix.split("/")):
        raise ConfigError(f"namespace prefix {prefix!r}: give a name such as 'docs' or 'team/docs' (no leading "
                          "or trailing '/', no '.' or '..' parts, no control characters)")
    return prefix


def resolve_folder(
    stored: FolderSettings | None,
    *,
    folder_name: str,
    synced_before: bool,
    first_folder: bool,
    taken: Mapping[str, str],
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    reset_patterns: bool,
    ignore_files: bool | None,
    prefix: str | None,
) -> tuple[FolderSettings, list[str]]:
    """The settings this sync uses, and notes for the report on what changed.

    ``synced_before``: the index holds files of this folder (a folder synced before namespaces existed
    has no ``stored`` settings but keeps the empty namespace). ``taken``: namespace -> folder path of the
    index's other folders. ``include``/``exclude``/``ignore_files`` are ``None`` when not given.
    """
    notes: list[str] = []
    settings = stored or FolderSettings(namespace=_new_namespace(folder_name, synced_before, first_folder, prefix))
    if prefix is not None and check_prefix(prefix) != settings.namespace:
        notes.append(f"namespace {settings.namespace!r} -> {prefix!r}: every document of this folder moves to "
                     "its new id (vectors reused, nothing embedded again)")
        settings = replace(settings, namespace=prefix)
    if settings.namespace in taken:
        raise ConfigError(
            f"namespace {settings.namespace!r} is already used by the folder {taken[settings.namespace]} in this "
            "index; give this folder another one (--prefix NAME; prefix= in Python)")
    if reset_patterns and (settings.include is not None or settings.exclude):
        notes.append(f"forgot the remembered patterns ({_describe(settings)})")
        settings = replace(settings, include=None, exclude=())
    settings, notes = _replace_patterns(settings, notes, include=include, exclude=exclude)
    if ignore_files is not None and ignore_files != settings.ignore_files:
        notes.append(".gitignore/.ragkitignore files are " + ("honoured" if ignore_files else "not read") +
                     " from now on")
        settings = replace(settings, ignore_files=ignore_files)
    if stored is not None and not notes and (settings.include is not None or settings.exclude):
        notes.append(f"using the remembered patterns: {_describe(settings)} "
                     "(--reset-patterns, reset_patterns=True in Python, forgets them)")
    return settings, notes


def _new_namespace(folder_name: str, synced_before: bool, first_folder: bool, prefix: str | None) -> str:
    if synced_before:  # its documents already carry bare relative paths as ids
        return ""
    if prefix is not None:
        return check_prefix(prefix)
    # Documents added by hand (Index.add) hold no namespace: a folder synced next to them is still the first.
    return "" if first_folder else folder_name


def _replace_patterns(
    settings: FolderSettings, notes: list[str], *, include: Sequence[str] | None, exclude: Sequence[str] | None
) -> tuple[FolderSettings, list[str]]:
    if isinstance(include, str):
        include = [include]
    if isinstance(exclude, str):
        exclude = [exclude]
    if include is not None and tuple(include) != settings.include:
        new = tuple(include) or None
        notes.append(f"include patterns {_patterns(settings.include)} -> {_patterns(new)} (remembered)")
        settings = replace(settings, include=new)
    if exclude is not None and tuple(exclude) != settings.exclude:
        notes.append(f"exclude patterns {_patterns(settings.exclude)} -> {_patterns(tuple(exclude))} (remembered)")
        settings = replace(settings, exclude=tuple(exclude))
    return settings, notes


def _patterns(patterns: tuple[str, ...] | None) -> str:
    return "(none)" if not patterns else " ".join(repr(p) for p in patterns)


def _describe(settings: FolderSettings) -> str:
    parts = []
    if settings.include is not None:
        parts.append("include " + _patterns(settings.include))
    if settings.exclude:
        parts.append("exclude " + _patterns(settings.exclude))
    return ", ".join(parts)
