"""Find the files under a folder that a sync reads, and hash them.

:func:`scan_folder` lists candidate files; :func:`file_kind` says which loader a name calls for;
:func:`file_sha256` is the content hash that tells a touched file from a changed one.

:func:`scan_folder` also says what it left out and why. Include/exclude patterns and the folder's
``.gitignore``/``.ragkitignore`` files have gitignore semantics (see :mod:`ragkit.ingest.ignore`):
``"*.md"`` matches a name at any depth, ``"docs/*.md"`` only below ``docs/``, ``"node_modules"`` every
folder of that name (it is not walked), ``"drafts/**"`` everything in ``drafts/``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.errors import LoadError
from ragkit.ingest.ignore import IGNORE_FILES, IgnoreLevel, PatternRules, default_skip
from ragkit.ingest.registry import loader_for
from ragkit.types import SkippedFile

__all__ = [
    "METADATA_FILE", "SUPPORTED_SUFFIXES", "Listing", "file_kind", "file_sha256", "has_loader", "iter_files", "printable",
    "read_listed", "scan_folder",
]

logger = logging.getLogger(__name__)

_CODE_SUFFIXES = (
    ".py .js .ts .tsx .jsx .java .c .h .cpp .hpp .cs .go .rs .rb .php .sh .sql .yaml .yml .toml .ini .cfg"
    " .css .scala .kt .swift .r .m .lua .pl"
).split()
_KINDS: dict[str, str] = {
    ".txt": "text", ".rst": "text", ".md": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html", ".pdf": "pdf", ".json": "json", ".jsonl": "json",
    **{suffix: "code" for suffix in _CODE_SUFFIXES},
}  # fmt: skip
_CODE_NAMES = frozenset({"Dockerfile", "Makefile"})
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_KINDS)
METADATA_FILE = ".ragkitmeta.toml"  # metadata for the folder's documents (ragkit.ingest.sidecar), never one itself


def file_kind(name: str, *, known_only: bool = False) -> str | None:
    """The loader a file name calls for ("text", "markdown", "html", "pdf", "json", "code"): by suffix,
    with unknown suffixes read as text, or ``None`` for them when ``known_only``."""
    if name in _CODE_NAMES:
        return "code"
    kind = _KINDS.get(os.path.splitext(name)[1].lower())
    return kind if kind or known_only else "text"


# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: each control character (an ANSI escape's ESC, a
    carriage return, a bidi override) shown as a visible ``\\xNN`` escape, undecodable bytes too."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


# --------------------------------------------------------------------------- listing files


@dataclass
class Listing:
    """What :func:`scan_folder` found under a folder: the files to read, as (absolute path, relative
    posix path) sorted by relative path, and every file or folder it left out, with why."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def has_loader(name: str) -> bool:
    """Whether the loader registry has a loader for a file name (built-in or registered): an image has
    none, and is skipped, unless an OCR loader was registered for its type."""
    return loader_for(name) is not None


def _inside(path: str, base: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(base)
    except (OSError, ValueError, RuntimeError):  # symlink loops raise on some Python versions
        return False


def iter_files(
    root: str | Path,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    include_hidden: bool = False,
    max_file_bytes: int = 50_000_000,
    ignore_files: bool = True,
) -> Iterator[tuple[Path, str]]:
    """Yield (absolute_path, relative_posix_path) for the files :func:`scan_folder` lists; what it
    skips, and why, is in its :class:`Listing`."""
    del max_file_bytes  # part of the shared signature; the reader enforces the limit
    yield from scan_folder(root, include=include, exclude=exclude, include_hidden=include_hidden,
                           ignore_files=ignore_files).files


def scan_folder(
    root: str | Path,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    include_hidden: bool = False,
    ignore_files: bool = True,
) -> Listing:
    """List the files a sync of ``root`` reads, and everything it leaves out with the reason.

    Patterns and ignore files have gitignore semantics (see :mod:`ragkit.ingest.ignore`). Without
    ``include``, only files with a loader are listed, and site assets, minified and lock files are
    skipped; with it, the patterns alone decide which files are read. Symlinks are followed only where
    they resolve inside ``root``, and each folder is walked once. Files over a size limit are still
    listed, so that the reader reports them instead of them vanishing.
    """
    base = Path(os.path.realpath(root))
    if not base.is_dir():
        raise LoadError(str(root), "not a directory" if base.exists() else "no such directory")
    walk = _Walk(base, PatternRules(include, exclude, ignore_files=ignore_files), include_hidden)
    walk.run()
    walk.listing.files.sort(key=lambda item: item[1])
    walk.listing.skipped.sort(key=lambda item: item.path)
    return walk.listing


# A folder to walk: its path on disk, its relative path ("" or "a/b/"), the ignore files above it.
_Folder = tuple[str, str, tuple[IgnoreLevel, ...]]


class _Walk:
    """One walk of a folder tree, real folders before linked ones (so a folder reachable both ways keeps
    its real path), each folder once."""

    def __init__(self, base: Path, rules: PatternRules, include_hidden: bool) -> None:
        self.base, self.rules, self.include_hidden = base, rules, include_hidden
        self.listing = Listing()
        self.seen: set[tuple[int, int]] = set()
        self.real: list[_Folder] = [(str(base), "", ())]
        self.linked: deque[_Folder] = deque()

    def skip(self, rel: str, reason: str, detail: str = "") -> None:
        self.listing.skipped.append(SkippedFile(rel, reason, detail))

    def run(self) -> None:
        while self.real or self.linked:
            folder, prefix, levels = self.real.pop() if self.real else self.linked.popleft()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in self.seen:
                    continue
                self.seen.add((st.st_dev, st.st_ino))
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                logger.warning("skipping unreadable folder %s: %s", folder, e)
                self.skip(prefix or "./", "unreadable", e.strerror or str(e))
                continue
            levels = self.rules.levels_for(folder, prefix, levels)
            for entry in entries:
                self.visit(entry, prefix + entry.name, levels)

    def visit(self, entry: os.DirEntry[str], rel: str, levels: tuple[IgnoreLevel, ...]) -> None:
        try:
            is_link, is_dir, is_file = entry.is_symlink(), entry.is_dir(), entry.is_file()
        except OSError:
            return
        shown = rel + "/" if is_dir else rel
        if entry.name == METADATA_FILE and is_file:  # read by the sync as metadata, whatever the patterns say
            self.skip(rel, "metadata file")
            return
        if entry.name.startswith(".") and not self.include_hidden:
            if entry.name not in IGNORE_FILES:  # read as rules, never as a document: not worth a line
                self.skip(shown, "hidden")
            return
        if is_link and not _inside(entry.path, self.base):
            logger.info("not following symlink %s: it points outside %s", rel, self.base)
            self.skip(shown, "outside link")
            return
        if not (is_dir or is_file):
            return  # a FIFO, socket or device: never a document
        excluded = self.rules.excluded(shown, levels)
        if excluded:
            self.skip(shown, *excluded)
        elif is_dir:
            (self.linked.append if is_link else self.real.append)((entry.path, shown, levels))
        elif self.rules.include is not None:
            if self.rules.not_included(rel):
                self.skip(rel, "excluded", "not matched by an include pattern")
            else:
                self.found(entry, rel, is_link)
        else:
            default = default_skip(entry.name, has_loader)
            if default:
                self.skip(rel, *default)
            else:
                self.found(entry, rel, is_link)

    def found(self, entry: os.DirEntry[str], rel: str, is_link: bool) -> None:
        # a linked file is read at its real path: the reader never follows a link
        self.listing.files.append((Path(os.path.realpath(entry.path)) if is_link else self.base / rel, rel))


_NOFOLLOW, _CLOEXEC = getattr(os, "O_NOFOLLOW", 0), getattr(os, "O_CLOEXEC", 0)
_OPEN_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC


def _open_below(root: Path, path: Path) -> int:
    """A descriptor of ``path`` (a file the listing found below ``root``; a symlink inside the folder is
    listed at its target), each folder on the way opened relative to the one above it and none of them,
    nor the file, followed if it is a symlink: a folder swapped for a link after listing cannot lead the
    read outside the synced folder."""
    parts = path.relative_to(root).parts
    fd = os.open(root, os.O_RDONLY | _CLOEXEC)  # the synced folder, as the user named it
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(parts[-1], _OPEN_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)


def read_listed(path: Path, rel: str, listed: os.stat_result, limit: int, *, root: Path) -> bytes:
    """The bytes of the file a listing found, opened once: without following a symlink, without
    blocking (a FIFO), and only if it is still the regular file listed (same device and inode).

    A file swapped for a link, a FIFO or another file after listing is a LoadError, never read.
    """
    try:
        fd = _open_below(Path(os.path.realpath(root)), path)
    except ValueError:
        raise LoadError(rel, "is not inside the synced folder; not read") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LoadError(rel, "it or a folder on its path became a symlink after it was listed; "
                                 "not followed (sync again)") from None
        raise LoadError(rel, f"cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LoadError(rel, "not a regular file (a FIFO, socket or device); not read")
        if (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino):
            raise LoadError(rel, "replaced by another file after it was listed; not read (sync again)")
        if st.st_size > limit:
            raise LoadError(rel, f"file too large: {st.st_size} bytes > limit {limit} (max_file_bytes)")
        blocks, total = [], 0
        while total <= limit:  # bounded: the file may grow while it is read
            block = os.read(fd, min(1 << 20, limit + 1 - total))
            if not block:
                break
            blocks.append(block)
            total += len(block)
    except OSError as exc:
        raise LoadError(rel, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if total > limit:
        raise LoadError(rel, f"file too large: {total}+ bytes > limit {limit} (max_file_bytes)")
    return b"".join(blocks)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
