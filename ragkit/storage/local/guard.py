"""What can go wrong under a local index, said clearly: SQLite damage, a full or read-only disk, a
poisoned embedding-cache row.

:func:`database_error` and :func:`environment_error` turn a raw ``sqlite3.DatabaseError`` or
``OSError`` into one ragkit error whose message names the file and what to do; the cache helpers
give every embedding row a checksum, so a flipped row is re-embedded instead of reaching the index.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import sqlite3
from pathlib import Path

import numpy as np

from ragkit.errors import EnvironmentProblemError, IndexCorruptError, IndexLockedError, RagkitError

logger = logging.getLogger(__name__)

# errno -> what the user should do about it. Nothing is lost in any of these cases: a write that
# fails rolls back, and the previous index stays as it was.
_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space and run it again",
    errno.EDQUOT: "disk quota exceeded; free some space and run it again",
    errno.EACCES: "permission denied; check the owner and permissions of the index folder",
    errno.EPERM: "operation not permitted; check the owner and permissions of the index folder",
    errno.EROFS: "the file system is read-only; put the index on a writable disk",
    errno.EMFILE: "too many open files; raise the limit (`ulimit -n`) and run it again",
    errno.ENFILE: "too many open files on the system; close some programs and run it again",
}
_SQLITE_ADVICE = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
    "readonly database": errno.EROFS,
    "unable to open database file": errno.EACCES,
}


def environment_error(exc: OSError, path: str | Path) -> RagkitError | OSError:
    """``exc`` as one clear line naming ``path``, when it is an environment failure; else ``exc``."""
    advice = _ADVICE.get(exc.errno or 0)
    if advice is None:
        return exc
    return EnvironmentProblemError(exc.errno, f"{path}: {advice} (nothing was lost)")


def database_error(exc: sqlite3.DatabaseError, db_path: Path, hint: str) -> RagkitError:
    """A SQLite error as a ragkit error: the environment's fault, another writer, or damage."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return IndexLockedError(f"{db_path} is locked by another process; retry later")
    for fragment, code in _SQLITE_ADVICE.items():
        if fragment in text:
            return EnvironmentProblemError(code, f"{db_path}: {_ADVICE[code]} (nothing was lost)")
    return IndexCorruptError(f"{db_path} is damaged ({exc}); {hint}")


def cache_checksum(content_hash: str, blob: bytes) -> str:
    """What an embedding-cache row must hash to: its key and its vector bytes together."""
    return hashlib.sha256(content_hash.encode() + b"\x00" + blob).hexdigest()[:32]


def cache_row_vector(content_hash: str, blob: bytes, checksum: str | None) -> np.ndarray | None:
    """The vector of a cache row, or None when the row is damaged (wrong checksum, not finite, not unit).

    Rows written before checksums existed are checked for a finite unit vector instead.
    """
    if not isinstance(blob, bytes) or len(blob) % 4:
        return None
    if checksum is not None:
        return np.frombuffer(blob, dtype=np.float32) if checksum == cache_checksum(content_hash, blob) else None
    vector = np.frombuffer(blob, dtype=np.float32)
    if not np.isfinite(vector).all() or abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
        return None
    return vector
