"""Everything ragkit does with Milvus Lite's private state, in one place.

Milvus Lite (3.x) runs inside the process that opens the ``.db`` folder (a gRPC server on threads;
its ``flock`` on ``kb.db/LOCK`` goes with that process), so a killed writer leaves no server behind,
only files. ragkit relies on four things that are not Milvus Lite's public API:

* ``server_manager_instance._servers`` (path -> (server, engine, port)): the in-process engine,
  whose ``create_snapshot`` / ``drop_snapshot`` pymilvus's gRPC has no call for;
* the on-disk layout of a collection: ``manifest.json`` (replaced by an atomic rename) listing
  immutable Parquet files, a write-ahead log in ``wal/``, snapshots under ``snapshots/``;
* per-segment index sidecars (``*.idx``, ``*.sidx``) that it writes in place, not crash-safe;
* one server per file per process (``release_server`` frees the file).

**A killed write is rolled back.** Before a batch, :func:`begin_write` takes a snapshot of each of
the index's collections (``ragkit-rollback-<id>``: a copy of the manifest and a pin on the files it
lists; it flushes the log first), then writes a marker ``kb.db/ragkit-rollback.NAME.json`` naming
them; :func:`end_write` removing the marker is the commit. Opening a ``.db`` that no process holds
and that has a marker (:func:`roll_back`) puts each snapshot's manifest back, clears the logs,
removes collections the batch created and drops ragkit's snapshots; Milvus Lite then deletes the
files no manifest lists. Each step repeats safely if the restore is killed too.

**Capability check.** :func:`rollback_supported` probes, once per process, for the private calls
above. Where a milvus-lite lacks them it warns once, naming the installed version, and ragkit falls
back to repair by re-sync: the unfinished-write marker in ``NAME_meta`` (statistics recomputed by the
next write, the rest by the next sync), as on a Milvus server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ragkit.storage.local.store import file_lock, fsync_path

logger = logging.getLogger(__name__)

ROLLBACK = "ragkit-rollback"  # the name of ragkit's snapshots, and of its marker files in the .db folder
SUFFIXES = ("", "docs", "files", "stats", "cache", "meta")  # an index's collections: NAME, NAME_docs, ...
INSTALL_HINT = 'pip install "ragkit[milvus]"'


# -- capability check ------------------------------------------------------------------------------
def missing_private_api() -> list[str]:
    """The private Milvus Lite names ragkit's rollback needs that the installed milvus-lite lacks."""
    missing = []
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return ["milvus_lite.server_manager.server_manager_instance"]
    if not isinstance(getattr(server_manager_instance, "_servers", None), dict):
        missing.append("server_manager_instance._servers")
    try:
        from milvus_lite.db import MilvusLite
    except ImportError:
        return [*missing, "milvus_lite.db.MilvusLite"]
    missing += [f"MilvusLite.{m}" for m in ("create_snapshot", "drop_snapshot") if not hasattr(MilvusLite, m)]
    return missing


def installed_version() -> str:
    try:
        return metadata.version("milvus-lite")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=None)
def rollback_supported() -> bool:
    """Whether this milvus-lite has what :func:`begin_write` needs; warns once per process when not."""
    missing = missing_private_api()
    if missing:
        logger.warning("milvus-lite %s lacks %s, which ragkit uses to roll back a killed write; falling back to "
                       "repair by re-sync (a write killed half-way leaves part of its batch until the next sync)",
                       installed_version(), ", ".join(missing))
    return not missing


def _engine(lite_path: Path) -> Any:
    """This process's Milvus Lite engine (``milvus_lite.db.MilvusLite``) for the file, or None."""
    from milvus_lite.server_manager import server_manager_instance

    entry = server_manager_instance._servers.get(os.path.abspath(lite_path))
    engine = entry[1] if isinstance(entry, tuple) and len(entry) >= 2 else None
    return engine if all(hasattr(engine, m) for m in ("create_snapshot", "drop_snapshot")) else None


# -- one server per file per process ---------------------------------------------------------------
_USERS: dict[str, int] = {}
_LOCK = threading.Lock()


def connect(pymilvus: Any, lite_path: Path) -> Any:
    """A client of this process's server for the file; the first opener rolls back a killed write."""
    try:
        import milvus_lite  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"milvus-lite:// indexes need milvus-lite: {INSTALL_HINT}") from exc
    key = str(lite_path)
    with _LOCK:
        if not _USERS.get(key) and (lite_path / "LOCK").exists():
            with file_lock(lite_path / "LOCK", 0.0, f"{lite_path} is open in another process (Milvus Lite allows "
                           "one process per file: run --shard workers one after the other)", append=False):
                # no process has the file open: undo a write that was killed, or (no rollback here) forget it
                roll_back(lite_path) if rollback_supported() else forget_writes(lite_path)
        client = pymilvus.MilvusClient(uri=key)
        _USERS[key] = _USERS.get(key, 0) + 1
    return client


def release(lite_path: Path) -> None:
    """Stop this process's server for the file once its last backend closes (frees the file)."""
    with _LOCK:
        key = str(lite_path)
        _USERS[key] = _USERS.get(key, 1) - 1
        if _USERS[key] <= 0:
            _USERS.pop(key)
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(key)


# -- index sidecars a kill left half-written ---------------------------------------------------------
def broken_index_files(collection_dir: Path) -> list[Path]:
    """The index sidecars of a collection that a killed write left incomplete.

    Milvus Lite writes each segment's index (``.idx``: a ``.npy`` array or a faiss index; ``.sidx``: an
    Arrow IPC file) straight to its final name, then loads any file of that name as it is. The data
    they index lives in Parquet files that are crash-safe, so a broken sidecar is removed and rebuilt.
    """
    return [path for path in sorted(collection_dir.glob("partitions/*/indexes/*"))
            if path.suffix in (".idx", ".sidx") and path.is_file() and not _index_file_complete(path)]


def _index_file_complete(path: Path) -> bool:
    """Whether an index file was written to the end (its format's own length or footer)."""
    try:
        if path.suffix == ".sidx":
            import pyarrow.ipc

            with pyarrow.ipc.open_file(str(path)) as reader:  # the footer is written last
                return reader.num_record_batches >= 0
        with open(path, "rb") as fh:
            numpy_file = fh.read(6) == b"\x93NUMPY"
        if numpy_file:  # mapping checks the file holds the whole array its header describes
            return np.load(path, mmap_mode="r", allow_pickle=False).size >= 0
        import faiss

        faiss.read_index(str(path))
        return True
    except ImportError:
        return True  # a format this process cannot read: leave it to Milvus Lite
    except Exception:  # noqa: BLE001 - any reader error means the file is not whole
        return False


# -- a write is all or nothing -----------------------------------------------------------------------
def _marker(lite_path: Path, prefix: str) -> Path:
    return lite_path / f"{ROLLBACK}.{prefix}.json"


def begin_write(lite_path: Path, prefix: str, collections: Sequence[str]) -> str | None:
    """Pin each collection in a snapshot, then leave the marker naming them; returns the snapshot name,
    or None where there is no rollback (the caller's unfinished-write marker then covers the batch)."""
    engine = _engine(lite_path) if rollback_supported() else None
    if engine is None:
        return None
    name = f"{ROLLBACK}-{uuid.uuid4().hex}"
    for collection in collections:
        engine.create_snapshot(collection, name, "ragkit: the state before a write, restored if it is killed")
    write_json_atomic(_marker(lite_path, prefix), {"snapshot": name, "prefix": prefix, "collections": list(collections)})
    return name


def end_write(lite_path: Path, prefix: str, name: str, collections: Sequence[str]) -> None:
    """The commit point: the marker goes; then the snapshots (a kill in between leaves them to the next open)."""
    _marker(lite_path, prefix).unlink(missing_ok=True)
    fsync_dir(lite_path)
    engine = _engine(lite_path)
    for collection in collections:
        if engine is None or not (lite_path / "collections" / collection / "snapshots" / "metadata" /
                                  f"{name}.json").exists():
            continue
        try:
            engine.drop_snapshot(collection, name)
        except Exception as exc:  # noqa: BLE001 - harmless: the next open drops it
            logger.warning("%s: could not drop snapshot %s of %s (the next open will): %s", lite_path, name,
                           collection, exc)


def roll_back(lite_path: Path) -> None:
    """Undo the writes a killed process left unfinished, then drop ragkit's snapshots. Needs the file closed."""
    for marker in sorted(lite_path.glob(f"{ROLLBACK}.*.json")):
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            name, prefix, kept = info["snapshot"], info["prefix"], set(info["collections"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: ignoring unreadable write marker %s: %s", lite_path, marker.name, exc)
            marker.unlink(missing_ok=True)
            continue
        logger.warning("%s: a write to collection %s was killed before it finished; restoring the index as it was "
                       "before that write", lite_path, prefix)
        for suffix in SUFFIXES:
            _restore(lite_path, f"{prefix}_{suffix}" if suffix else prefix, name, kept)
        marker.unlink()
        fsync_dir(lite_path)
    _drop_snapshots(lite_path)


def forget_writes(lite_path: Path) -> None:
    """Where this milvus-lite cannot roll back: drop the markers and snapshots of killed writes (a marker kept
    would restore a stale state once a milvus-lite that can is installed); re-sync repairs instead."""
    for marker in sorted(lite_path.glob(f"{ROLLBACK}.*.json")):
        logger.warning("%s: a write was killed before it finished (%s); it is repaired by the next sync, not rolled "
                       "back", lite_path, marker.name)
        marker.unlink()
    _drop_snapshots(lite_path)


def _drop_snapshots(lite_path: Path) -> None:
    for tmp in lite_path.glob(f"{ROLLBACK}.*.json.tmp"):  # a marker that was never written
        tmp.unlink()
    collections = lite_path / "collections"
    for folder in collections.glob("*") if collections.is_dir() else ():
        snapshots = folder / "snapshots"
        for meta in snapshots.glob(f"metadata/{ROLLBACK}-*.json"):
            meta.unlink()  # released: files only they kept are removed when Milvus Lite opens the collection
        for tmp in snapshots.glob(f"metadata/{ROLLBACK}-*.json.tmp"):  # Milvus Lite's own half-written metadata
            tmp.unlink()
        for saved in snapshots.glob(f"manifests/{ROLLBACK}-*"):
            shutil.rmtree(saved)


def _restore(lite_path: Path, collection: str, snapshot: str, kept: set[str]) -> None:
    """One collection back to the snapshot: its saved manifest in place, the log after it cleared."""
    folder = lite_path / "collections" / collection
    if not folder.is_dir():
        return
    if collection not in kept:  # created by the killed write
        shutil.rmtree(folder)
        return
    saved = folder / "snapshots" / "manifests" / snapshot / "manifest.json"
    if not saved.is_file():
        logger.warning("%s: snapshot %s of %s is missing; leaving that collection as it is", lite_path, snapshot,
                       collection)
        return
    tmp = folder / "manifest.json.ragkit-tmp"
    shutil.copyfile(saved, tmp)
    fsync_path(tmp)
    os.replace(tmp, folder / "manifest.json")
    for log in (folder / "wal").glob("*"):
        log.unlink()
    fsync_dir(folder)


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    try:
        fsync_path(path)
    except OSError:  # not every file system syncs a directory
        pass
