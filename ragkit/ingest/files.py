"""Find the files under a folder that a sync reads, and hash them.

:func:`iter_files` lists candidate files; :func:`file_kind` says which loader a name calls for;
:func:`file_sha256` is the content hash that tells a touched file from a changed one.

Include/exclude patterns are matched case-sensitively. A pattern without ``/``
matches the file name (``"*.md"`` matches ``a/b/x.md``); a pattern with ``/``
matches the whole relative path, where ``*`` and ``?`` also match ``/`` (as in
:mod:`fnmatch`) and ``**/`` also matches no folder at all (``"docs/**/*.md"``
matches ``docs/x.md``). Exclude patterns also prune folders: ``"node_modules"``
skips every folder of that name and ``"build/**"`` skips ``build/``.
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
from pathlib import Path

from ragkit.errors import LoadError

__all__ = ["SUPPORTED_SUFFIXES", "file_kind", "file_sha256", "iter_files", "printable", "read_listed"]

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


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        c = pattern[i]
        end = pattern.find("]", i + 2) if c == "[" else -1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif end != -1:
            # Escape what is special inside a regex class but literal in a glob one.
            body = "".join("\\" + ch if ch in "\\[]^&~|" else ch for ch in pattern[i + 1 : end])
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _compile(patterns: Sequence[str] | None) -> list[tuple[bool, re.Pattern[str]]]:
    if isinstance(patterns, str):  # a lone string would otherwise be read as one pattern per character
        patterns = [patterns]
    compiled = []
    for p in patterns or ():
        p = p.removeprefix("./").lstrip("/")
        compiled.append(("/" in p, _glob_regex(p)))
    return compiled


def _matches(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    name = rel.rstrip("/").rsplit("/", 1)[-1]
    return any(rx.match(rel if has_slash else name) for has_slash, rx in patterns)


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
) -> Iterator[tuple[Path, str]]:
    """Yield (absolute_path, relative_posix_path) for candidate files under root, sorted by relative path.

    Without ``include`` only supported files are yielded (see :data:`SUPPORTED_SUFFIXES`);
    with it, the patterns alone decide. Symlinks are followed only where they resolve
    inside ``root``, and each folder is walked once. Files over ``max_file_bytes`` are
    still yielded, so that :func:`load_file` reports them instead of them vanishing.
    """
    del max_file_bytes  # part of the shared signature; load_file enforces the limit
    base = Path(os.path.realpath(root))
    if not base.is_dir():
        raise LoadError(root, "not a directory" if base.exists() else "no such directory")
    inc, exc = _compile(include), _compile(exclude)
    found: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    # Real folders are walked before linked ones, so a folder reachable both ways keeps its real path.
    real: list[tuple[str, str]] = [(str(base), "")]
    linked: deque[tuple[str, str]] = deque()
    while real or linked:
        folder, prefix = real.pop() if real else linked.popleft()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            logger.warning("skipping unreadable folder %s: %s", folder, e)
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.name.startswith(".") and not include_hidden:
                continue
            try:
                is_link, is_dir, is_file = entry.is_symlink(), entry.is_dir(), entry.is_file()
            except OSError:
                continue
            if is_link and not _inside(entry.path, base):
                logger.info("not following symlink %s: it points outside %s", rel, base)
                continue
            if is_dir:
                if _matches(rel + "/", exc):
                    continue
                if is_link:
                    linked.append((entry.path, rel + "/"))
                else:
                    real.append((entry.path, rel + "/"))
            elif is_file and not _matches(rel, exc):
                wanted = _matches(rel, inc) if inc else file_kind(entry.name, known_only=True) is not None
                if wanted:  # a linked file is read at its real path: the reader never follows a link
                    found.append((Path(os.path.realpath(entry.path)) if is_link else base / rel, rel))
    yield from sorted(found, key=lambda item: item[1])


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
