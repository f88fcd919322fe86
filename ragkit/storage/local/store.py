"""On-disk layout of a local index: one SQLite database plus versioned segment folders.

::

    kb.ragkit/
      ragkit.sqlite          documents, chunks, file manifest, embedding cache, config (WAL mode)
      writer.lock            flock()ed by the one process allowed to write
      segments/v00000007/    the searchable arrays for version 7:
        manifest.json        format version, row count, sha256 + size of every file below
        rows.npy             chunk row ids, in the order of the arrays' rows
        bm25_*.npy terms.json  BM25 term frequencies (see lexical.py)
        repeats_*.npy repeat_terms.json  per chunk, its tokens another chunk of its document holds
        vectors.npy          unit embedding vectors
        dense.faiss          HNSW graph (only for dense_index="hnsw")

Why this is crash-safe: a write builds the next segment in a temporary folder,
renames it into place, then commits the SQLite transaction that changes the
records *and* the ``segment`` pointer together. Until that commit, readers
and a restarted process see the previous records and the previous segment;
after it, the new ones. A crash leaves at worst an orphan folder, removed by
the next write. Nothing is pickled: arrays are ``.npy`` loaded with
``allow_pickle=False``, everything else is JSON or SQLite.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ContextManager, Iterator

import numpy as np

from ragkit.errors import IndexCorruptError, IndexLockedError
from ragkit.ingest.files import file_sha256
from ragkit.storage.local.guard import database_error, environment_error

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DB_NAME = "ragkit.sqlite"
SEGMENTS = "segments"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, text TEXT NOT NULL, metadata TEXT NOT NULL, text_hash TEXT NOT NULL, root TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    row INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL,
    embed_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id);
CREATE TABLE IF NOT EXISTS files (
    root TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL, doc_ids TEXT NOT NULL, PRIMARY KEY (root, path)
);
CREATE TABLE IF NOT EXISTS embeddings (hash TEXT PRIMARY KEY, vector BLOB NOT NULL);  -- see cache.py
"""


class Store:
    """The SQLite database and segment folders of one local index directory."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        self.hint = f"rebuild with `ragkit index FOLDER --index {self.path} --rebuild`"
        segments = self._has_segments()
        if not self.db_path.exists():
            if segments:  # the records are gone but the arrays are not: never start over silently
                raise IndexCorruptError(f"{self.db_path} is missing beside existing segments; {self.hint}")
            if not create:
                raise FileNotFoundError(f"no ragkit index at {self.path} (missing {DB_NAME})")
            self.path.mkdir(parents=True, exist_ok=True)
        elif segments:
            self._check_header()
        (self.path / SEGMENTS).mkdir(exist_ok=True)
        self._lock = threading.RLock()
        with self.errors():
            self._db, self.identity = self._connect()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(embeddings)")}
            if "checksum" not in columns:  # indexes written before cache rows carried a checksum
                self._db.execute("ALTER TABLE embeddings ADD COLUMN checksum TEXT")
            if "used_at" not in columns:  # when a row was last stored or used (see cache.py); NULL: long ago
                self._db.execute("ALTER TABLE embeddings ADD COLUMN used_at REAL")
            if segments and self.get_meta("config") is None and not self.get_meta("segment", 0):
                raise IndexCorruptError(f"{self.db_path} holds no records beside existing segments; {self.hint}")

    def _connect(self) -> tuple[sqlite3.Connection, tuple[int, int]]:
        """A connection, and the identity of the file it opened (stat before and after: a rebuild may
        swap the folder in between)."""
        while True:
            before = _identity(os.stat(self.db_path)) if self.db_path.exists() else None
            db = sqlite3.connect(self.db_path, timeout=60, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA schema_version").fetchall()  # creates the file of a new index
            after = _identity(os.stat(self.db_path))
            if before in (None, after):
                return db, after
            db.close()

    def _has_segments(self) -> bool:
        folder = self.path / SEGMENTS
        return folder.is_dir() and any(e.name.startswith("v") and e.name[1:].isdigit() for e in folder.iterdir())

    def _check_header(self) -> None:
        """An empty or truncated database file is corruption (SQLite would read it as a new one).

        Not while a write-ahead log is beside it: committed pages may still live only in the log (a
        checkpoint that could not grow the file on a full disk, or a killed process), and SQLite reads
        them from there; real damage is then SQLite's to report, and the records check below still runs.
        """
        wal = self.db_path.with_name(self.db_path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            return
        try:
            size = self.db_path.stat().st_size
            with open(self.db_path, "rb") as fh:
                head = fh.read(100)
        except OSError as exc:
            raise environment_error(exc, self.db_path) from exc
        if size == 0:
            raise IndexCorruptError(f"{self.db_path} is empty (0 bytes) beside existing segments; {self.hint}")
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            raise IndexCorruptError(f"{self.db_path} is not a SQLite database; {self.hint}")
        page = int.from_bytes(head[16:18], "big")
        page = 65536 if page == 1 else page
        pages = int.from_bytes(head[28:32], "big")
        valid = head[24:28] == head[92:96]  # the header's page count is trustworthy only then
        if valid and pages and size < pages * page:
            raise IndexCorruptError(
                f"{self.db_path} is truncated ({size} bytes, its header says {pages * page}); {self.hint}")

    @contextmanager
    def errors(self) -> Iterator[None]:
        """SQLite's errors as ragkit's: damage is IndexCorruptError naming the file and the fix."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in the caller, not the state of the file
        except sqlite3.DatabaseError as exc:
            raise database_error(exc, self.db_path, self.hint) from exc

    def replaced(self) -> bool:
        """Whether the database at the path is no longer the one this store opened (a rebuild swapped it)."""
        try:
            return _identity(os.stat(self.db_path)) != self.identity
        except OSError:
            return False  # mid-swap or gone: keep reading what is open

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self._lock, self.errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self.errors():
            return self._db.execute(sql, params).fetchall()

    def count_chunks_at_segment(self) -> tuple[int, int]:
        """(chunks in SQLite, the segment version) read together in one read transaction."""
        with self._lock, self.errors():
            outer = self._db.in_transaction  # inside a write: already consistent
            if not outer:
                self._db.execute("BEGIN")
            try:
                (chunks,), = self._db.execute("SELECT count(*) FROM chunks").fetchall()
                row = self._db.execute("SELECT value FROM meta WHERE key = 'segment'").fetchone()
            finally:
                if not outer:
                    self._db.execute("COMMIT")
        return int(chunks), int(json.loads(row[0])) if row else 0

    # -- config ---------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None, db: sqlite3.Connection | None = None) -> Any:
        with self._lock, self.errors():
            row = (db or self._db).execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    @staticmethod
    def set_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- segments -------------------------------------------------------------------------
    def segment_dir(self, version: int) -> Path:
        return self.path / SEGMENTS / f"v{version:08d}"

    def write_segment(self, version: int, arrays: dict[str, np.ndarray], blobs: dict[str, bytes]) -> None:
        """Write a complete segment folder, then rename it into place (atomic on POSIX).

        A full disk (or any environment failure) removes the partial folder and is one clear error."""
        final = self.segment_dir(version)
        tmp = final.with_name(final.name + f".tmp{os.getpid()}")
        try:
            self._write_segment(version, arrays, blobs, final, tmp)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            err = environment_error(exc, self.path)
            if err is exc:
                raise
            raise err from exc

    def _write_segment(
        self, version: int, arrays: dict[str, np.ndarray], blobs: dict[str, bytes], final: Path, tmp: Path
    ) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        files: dict[str, dict[str, Any]] = {}
        for name, array in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        for name, data in blobs.items():
            (tmp / name).write_bytes(data)
        for file in sorted(tmp.iterdir()):
            files[file.name] = {"sha256": file_sha256(file), "bytes": file.stat().st_size}
            fsync_path(file)
        manifest = {"format_version": FORMAT_VERSION, "version": version, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        fsync_path(tmp / "manifest.json")
        fsync_path(tmp)
        if final.exists():  # left by a crashed write that never committed
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_path(final.parent)

    def read_segment(self, version: int, verify: bool = True) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
        """Load a segment, checking every file against the manifest's size and sha256."""
        folder = self.segment_dir(version)
        hint = f"rebuild with `ragkit index FOLDER --index {self.path} --rebuild`"
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except FileNotFoundError as exc:
            raise IndexCorruptError(f"{folder / 'manifest.json'} is missing; {hint}") from exc
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"{folder / 'manifest.json'} is unreadable ({exc}); {hint}") from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexCorruptError(
                f"{folder} has format version {manifest.get('format_version')}, this ragkit reads "
                f"{FORMAT_VERSION}; {hint}"
            )
        arrays: dict[str, np.ndarray] = {}
        blobs: dict[str, bytes] = {}
        for name, info in manifest["files"].items():
            file = folder / name
            try:
                data = file.read_bytes()
            except FileNotFoundError as exc:
                raise IndexCorruptError(f"{file} is missing; {hint}") from exc
            if len(data) != info["bytes"] or (verify and hashlib.sha256(data).hexdigest() != info["sha256"]):
                raise IndexCorruptError(
                    f"{file} is corrupt or truncated (expected {info['bytes']} bytes and sha256 "
                    f"{info['sha256'][:12]}…, found {len(data)} bytes); {hint}"
                )
            if name.endswith(".npy"):
                import io

                try:
                    arrays[name[:-4]] = np.load(io.BytesIO(data), allow_pickle=False)
                except ValueError as exc:  # e.g. an object array: refused, never unpickled
                    raise IndexCorruptError(f"{file} is not a plain numeric array ({exc}); {hint}") from exc
            else:
                blobs[name] = data
        return arrays, blobs

    def remove_stale_segments(self, keep: set[int]) -> None:
        """Delete segment folders not in ``keep`` (the current and the previous version, for readers)."""
        for entry in (self.path / SEGMENTS).iterdir():
            name = entry.name
            if name.startswith("v") and name[1:].isdigit() and int(name[1:]) in keep:
                continue
            if ".tmp" in name:
                pid = name.rsplit(".tmp", 1)[1]
                if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
                    continue
            shutil.rmtree(entry, ignore_errors=True)

    # -- writer lock --------------------------------------------------------------------------
    def writer_lock(self, timeout: float | None = 0.0) -> ContextManager[None]:
        """Exclusive write access. ``timeout=0`` fails at once, ``None`` waits forever."""
        return file_lock(self.path / "writer.lock", timeout, f"{self.path} is being written by another process")


@contextmanager
def file_lock(path: Path, timeout: float | None, message: str, append: bool = True) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``: ``timeout=0`` fails at once, ``None`` waits forever.

    Closing the file releases the lock, so a killed writer never leaves the index locked.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fh = open(path, "a+" if append else "r")
        except OSError as exc:
            err = environment_error(exc, path)
            if err is exc:
                raise
            raise err from exc
        try:
            _acquire(fh, deadline, message)
            if _same_file(fh, path):
                break
        except BaseException:
            fh.close()
            raise
        fh.close()  # a rebuild swapped the folder while we waited: lock the new one
    try:
        yield
    finally:
        fh.close()


def _acquire(fh: Any, deadline: float | None, message: str) -> None:
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise IndexLockedError(f"{message}; retry later or pass lock_timeout=<seconds> (None waits)") from None
            time.sleep(0.05)


def _same_file(fh: Any, path: Path) -> bool:
    try:
        return _identity(os.fstat(fh.fileno())) == _identity(os.stat(path))
    except FileNotFoundError:
        return False


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (so a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
