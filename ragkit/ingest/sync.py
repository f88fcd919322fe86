"""Plan a folder sync: compare the files on disk with the manifest, load only what changed.

Three levels of "unchanged", cheapest first: same size and mtime (the file is
not even read); same content hash (read, but not re-chunked); same chunk text
(re-chunked, but its vector comes from the embedding cache). A file whose
content hash equals that of a file that disappeared is a rename.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ragkit.errors import LoadError
from ragkit.ingest.files import file_sha256
from ragkit.progress import progress
from ragkit.storage.base import FileEntry
from ragkit.types import Document, FailedFile

logger = logging.getLogger(__name__)


@dataclass
class SyncPlan:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    documents: list[tuple[Document, str]] = field(default_factory=list)  # (document, file it came from)
    remove_doc_ids: list[str] = field(default_factory=list)
    upsert_files: list[FileEntry] = field(default_factory=list)
    remove_files: list[str] = field(default_factory=list)


def plan_sync(
    root: Path,
    manifest: dict[str, FileEntry],
    *,
    files: Iterable[tuple[Path, str]],
    load: Callable[[Path, str], list[Document]],
    show_progress: bool = False,
) -> SyncPlan:
    """Decide what a sync of ``root`` must add, update, rename and remove."""
    plan = SyncPlan()
    seen: set[str] = set()
    candidates: list[tuple[Path, str, int, int, FileEntry | None]] = []
    try:
        for path, rel in files:
            if not _encodable(rel):
                plan.failed.append(FailedFile(_printable(rel), "file name is not valid UTF-8; rename the file"))
                continue
            seen.add(rel)
            try:
                stat = path.stat()
            except OSError as exc:
                plan.failed.append(FailedFile(rel, f"cannot stat: {exc.strerror or exc}"))
                continue
            entry = manifest.get(rel)
            if entry is not None and entry.size == stat.st_size and entry.mtime_ns == stat.st_mtime_ns:
                plan.unchanged.append(rel)
            else:
                candidates.append((path, rel, stat.st_size, stat.st_mtime_ns, entry))
    except LoadError as exc:
        plan.failed.append(FailedFile(exc.path, exc.reason))
        return plan  # the root itself is unreadable: change nothing

    fresh: list[tuple[str, FileEntry, list[Document]]] = []
    for path, rel, size, mtime_ns, entry in progress(candidates, "reading files", show_progress):
        try:
            digest = file_sha256(path)
        except OSError as exc:
            plan.failed.append(FailedFile(rel, f"cannot read: {exc.strerror or exc}"))
            continue
        if entry is not None and entry.sha256 == digest:  # touched, not changed
            plan.unchanged.append(rel)
            plan.upsert_files.append(FileEntry(rel, size, mtime_ns, digest, entry.doc_ids))
            continue
        try:
            docs = load(path, rel)
        except LoadError as exc:
            plan.failed.append(FailedFile(rel, exc.reason))
            continue
        except Exception as exc:  # a loader bug must not abort the whole sync
            logger.exception("unexpected error loading %s", rel)
            plan.failed.append(FailedFile(rel, f"{type(exc).__name__}: {exc}"))
            continue
        fresh.append((rel, FileEntry(rel, size, mtime_ns, digest, tuple(d.id for d in docs)), docs))

    failed_paths = {f.path for f in plan.failed}
    gone = {rel: e for rel, e in manifest.items() if rel not in seen and rel not in failed_paths}
    gone_by_hash = {e.sha256: rel for rel, e in gone.items()}
    for rel, entry, docs in fresh:
        old = manifest.get(rel)
        if old is not None:
            plan.updated.append(rel)
            plan.remove_doc_ids.extend(old.doc_ids)
        elif entry.sha256 in gone_by_hash:
            source = gone_by_hash.pop(entry.sha256)
            plan.renamed.append((source, rel))
            plan.remove_doc_ids.extend(gone.pop(source).doc_ids)
            plan.remove_files.append(source)
        else:
            plan.added.append(rel)
        plan.upsert_files.append(entry)
        plan.documents.extend((doc, rel) for doc in docs)
    for rel, entry in gone.items():
        plan.removed.append(rel)
        plan.remove_doc_ids.extend(entry.doc_ids)
        plan.remove_files.append(rel)
    return plan


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes for bytes that are not UTF-8
        return False
    return True


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
