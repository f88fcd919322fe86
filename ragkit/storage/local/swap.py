"""Rebuild a local index beside the old one and swap it in atomically (``ragkit index --rebuild``).

The old index stays untouched until the new one is complete: the rebuild takes the old index's writer
lock first (so no other writer changes it meanwhile, and a rebuild never races another), builds the new
index in a hidden sibling folder (same file system, so the swap is a rename), and only then exchanges
the two folders with one ``renameat2(RENAME_EXCHANGE)``. Any failure, ``Ctrl-C`` included, removes the
half-built folder and leaves the old index as it was; a SIGKILL leaves at worst a hidden sibling folder,
removed by the next rebuild.

Where the exchange is unsupported, the swap is two renames (old aside, new in); a kill between them
leaves no index at the path but the old one aside, which :func:`recover_swap` (run on every open) puts
back. Readers notice the swap because the database they hold is no longer the one at the path
(see :meth:`Store.replaced`) and reopen.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing, nullcontext
from pathlib import Path
from typing import TypeVar

from ragkit.errors import ConfigError, IndexLockedError, RagkitError, RebuildError
from ragkit.storage.local.cache import seed_from
from ragkit.storage.local.store import DB_NAME, Store, file_lock, fsync_path, pid_alive

logger = logging.getLogger(__name__)

T = TypeVar("T")

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

# Databases that other layers keep inside the index folder and that no rebuild recreates (people's
# judgements, ragkit.feedback): carried into the new folder at the last moment before the swap.
KEPT_ACROSS_REBUILD = ("feedback.sqlite",)


def rebuild(path: str | os.PathLike[str], build: Callable[[Path], T], *, lock_timeout: float | None = 0.0) -> T:
    """Build a new index with ``build(new_folder)`` and swap it in for the one at ``path``.

    ``build`` creates and fills an index in the folder it is given and closes it. On any failure the
    index at ``path`` is untouched, and the error (a :class:`RebuildError`, or :class:`IndexLockedError`
    when another writer holds the index) says so.
    """
    path = Path(path)
    recover_swap(path)
    if path.exists() and not (path / DB_NAME).exists():
        raise ConfigError(f"--rebuild: {path} exists but is not a ragkit index; not replacing it")
    remove_leftovers(path)
    untouched = f"the index at {path} is untouched" if path.exists() else f"nothing was written to {path}"
    new = _sibling(path, "rebuild")
    lock = nullcontext() if not path.exists() else file_lock(
        path / "writer.lock", lock_timeout, f"{path} is being written by another process ({untouched})")
    with lock:
        try:
            if path.exists():
                _reuse_vectors(new, path)
            result = build(new)
            if path.exists():
                _carry_kept(path, new)
            swap_in(new, path)
        except IndexLockedError:
            raise
        except BaseException as exc:
            shutil.rmtree(new, ignore_errors=True)
            if isinstance(exc, (RagkitError, OSError)):
                raise RebuildError(f"rebuild failed, {untouched}: {exc}") from exc
            logger.warning("rebuild interrupted (%s); %s", type(exc).__name__, untouched)
            raise
    return result


def _reuse_vectors(new: Path, old: Path) -> None:
    """Start the new index with the old one's embedding cache: rebuilding with the same model then
    embeds nothing (with another model, the new index's config drops these vectors unused)."""
    store = Store(new, create=True)
    try:
        seed_from(store, old)
    finally:
        store.close()


def _carry_kept(old: Path, new: Path) -> None:
    """Copy the old folder's kept databases into the new one, each as one consistent snapshot (SQLite's
    backup API, which reads through a writer's WAL; a plain file copy could tear a page)."""
    for name in KEPT_ACROSS_REBUILD:
        source = old / name
        if not source.is_file():
            continue
        with closing(sqlite3.connect(source, timeout=10.0)) as src, closing(sqlite3.connect(new / name)) as dst:
            src.backup(dst)
        logger.info("kept %s across the rebuild", name)


def swap_in(new: Path, path: Path) -> None:
    """Make ``new`` the folder at ``path``, atomically where the file system can exchange folders."""
    fsync_path(new)
    if not path.exists():
        os.rename(new, path)
    elif exchange(new, path):
        pass  # ``new`` now holds the old index
    else:
        aside = _sibling(path, "old")
        os.rename(path, aside)
        os.rename(new, path)  # a kill before this line: recover_swap puts ``aside`` back
        new = aside
    fsync_path(path.parent)
    shutil.rmtree(new, ignore_errors=True)
    logger.info("rebuilt index swapped in at %s", path)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where that is not supported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def recover_swap(path: Path) -> None:
    """Put back an old index left aside by a two-rename swap killed half way."""
    if path.exists():
        return
    for aside in sorted(path.parent.glob(f".{path.name}.old-*")):
        if (aside / DB_NAME).exists():
            logger.warning("restoring %s from %s (a rebuild was interrupted)", path, aside)
            os.rename(aside, path)
            return


def remove_leftovers(path: Path) -> None:
    """Delete the hidden folders of rebuilds whose process is gone."""
    for kind in ("rebuild", "old"):
        for entry in path.parent.glob(f".{path.name}.{kind}-*"):
            pid = entry.name.rsplit("-", 1)[1]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}"
