"""Plan a folder sync: compare the files on disk with the manifest, load only what changed.

Three levels of "unchanged", cheapest first: same size and mtime (the file is
not even read); same content hash (read, but not re-chunked); same chunk text
(re-chunked, but its vector comes from the embedding cache). A file whose
content hash equals that of a file that disappeared is a rename. Sidecar metadata
(:mod:`ragkit.ingest.sidecar`) counts as part of a file: a changed sidecar changes its files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ragkit.errors import ConfigError, LoadError
from ragkit.ingest.files import read_listed
from ragkit.ingest.folders import FolderSettings
from ragkit.ingest.sidecar import Sidecars, content_digest, stamped_mtime, with_metadata
from ragkit.progress import progress
from ragkit.storage.base import FileEntry
from ragkit.types import Document, FailedFile, SkippedFile, SyncReport

__all__ = [
    "FolderPlan", "SyncPlan", "dedupe_documents", "in_shard", "move_all", "namespaced", "plan_sync", "reject_conflicts",
]

logger = logging.getLogger(__name__)

# A file whose size or mtime changed: (path, relative path, its stat at listing, its manifest entry).
_Candidate = tuple[Path, str, os.stat_result, "FileEntry | None"]


@dataclass
class SyncPlan:
    """What a sync changes: the files by outcome (for the report), and the documents, document ids
    and manifest entries to write."""

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


@dataclass
class FolderPlan:
    """A folder sync's plan with what the report needs besides it: the folder's settings (namespace,
    patterns), notes on what changed about them, and what the listing skipped."""

    plan: SyncPlan
    settings: FolderSettings
    notes: list[str]
    skipped: list[SkippedFile]

    def report(self, **numbers: object) -> SyncReport:
        """The :class:`SyncReport` of this plan; ``numbers``: the chunk counts, seconds and estimate."""
        plan, settings = self.plan, self.settings
        return SyncReport(
            added=tuple(plan.added), updated=tuple(plan.updated), removed=tuple(plan.removed),
            unchanged=tuple(plan.unchanged), renamed=tuple(plan.renamed), failed=tuple(plan.failed),
            skipped=tuple(self.skipped), namespace=settings.namespace, include=settings.include,
            exclude=settings.exclude, notes=(*self.notes, *load_notes(plan.documents)),
            **numbers,  # type: ignore[arg-type]
        )


def load_notes(documents: list[tuple[Document, str]]) -> list[str]:
    """What the loaders said about the files this sync read, as ``"path: note"``: pages OCR'd, pages
    skipped (over ``page_seconds`` or unreadable), text cut at a cap (``max_chars``)."""
    out: list[str] = []
    for doc, rel in documents:
        notes = doc.metadata.get("notes")
        for note in notes if isinstance(notes, list) else ():
            if (line := f"{rel}: {note}") not in out:
                out.append(line)
    return out


def plan_sync(
    root: Path,
    manifest: dict[str, FileEntry],
    *,
    files: Iterable[tuple[Path, str]],
    load: Callable[[Path, str], list[Document]] | None = None,
    existing: Callable[[list[str]], Iterable[str]] | None = None,
    shard: tuple[int, int] | None = None,
    show_progress: bool = False,
    load_data: Callable[[bytes, Path, str], list[Document]] | None = None,
    max_file_bytes: int = 50_000_000,
) -> SyncPlan:
    """Decide what a sync of ``root`` must add, update, rename and remove.

    ``existing`` answers which of some document ids the index already holds; with it, the plan
    also fails the files whose documents would clash with others (see :func:`reject_conflicts`).
    ``shard=(i, n)`` plans only the files (listed and in the manifest) that :func:`in_shard` gives
    worker ``i``. ``load_data(bytes, path, rel)`` parses the bytes the sync read once (see
    :func:`~ragkit.ingest.files.read_listed`); ``load(path, rel)`` instead reads the file again.
    """
    if (load is None) == (load_data is None):
        raise ConfigError("plan_sync: give load or load_data")
    if shard is not None:
        files = (f for f in files if in_shard(f[1], shard))
        manifest = {rel: e for rel, e in manifest.items() if in_shard(rel, shard)}
    plan = SyncPlan()
    sidecars = Sidecars(root)
    try:
        seen, candidates = _stat_files(plan, files, manifest, sidecars)
    except LoadError as exc:
        plan.failed.append(FailedFile(exc.path, exc.reason))
        return plan  # the root itself is unreadable: change nothing
    loader = load_data or (lambda _data, path, rel: load(path, rel))  # type: ignore[misc]
    fresh = _read_changed(plan, candidates, loader, show_progress, max_file_bytes, sidecars)
    _classify(plan, manifest, seen, fresh)
    if existing is not None:
        reject_conflicts(plan, existing)
    return plan


def _stat_files(
    plan: SyncPlan, files: Iterable[tuple[Path, str]], manifest: dict[str, FileEntry], sidecars: Sidecars
) -> tuple[set[str], list[_Candidate]]:
    """The relative paths listed, and the files whose size or mtime changed (the others are
    unchanged without being read)."""
    seen: set[str] = set()
    candidates: list[_Candidate] = []
    for path, rel in files:
        if not _encodable(rel):
            plan.failed.append(FailedFile(_printable(rel), "file name is not valid UTF-8; rename the file"))
            continue
        seen.add(rel)
        try:
            st = os.stat(path, follow_symlinks=False)  # iter_files gives linked files at their real path
        except OSError as exc:
            plan.failed.append(FailedFile(rel, f"cannot stat: {exc.strerror or exc}"))
            continue
        if not stat.S_ISREG(st.st_mode):
            plan.failed.append(FailedFile(rel, "not a regular file (a symlink, FIFO, socket or device); not read"))
            continue
        try:
            metadata = sidecars.metadata(rel)
        except LoadError as exc:  # a bad sidecar: its files keep their indexed versions, never lose their acl
            plan.failed.append(FailedFile(rel, exc.reason))
            continue
        entry = manifest.get(rel)
        if entry is not None and entry.size == st.st_size and entry.mtime_ns == stamped_mtime(st.st_mtime_ns, metadata):
            plan.unchanged.append(rel)
        else:
            candidates.append((path, rel, st, entry))
    return seen, candidates


def _read_changed(
    plan: SyncPlan, candidates: list[_Candidate], load: Callable[[bytes, Path, str], list[Document]],
    show_progress: bool, max_file_bytes: int, sidecars: Sidecars,
) -> list[tuple[str, FileEntry, list[Document]]]:
    """Read each candidate once, hash it and load it if its content changed: (path, new entry, documents)."""
    fresh: list[tuple[str, FileEntry, list[Document]]] = []
    for path, rel, st, entry in progress(candidates, "reading files", show_progress):
        try:
            data = read_listed(path, rel, st, max_file_bytes, root=sidecars.root)
        except LoadError as exc:
            plan.failed.append(FailedFile(rel, exc.reason))
            continue
        metadata = sidecars.metadata(rel)  # read (and checked) by _stat_files already
        digest = content_digest(hashlib.sha256(data).hexdigest(), metadata)
        size, mtime_ns = st.st_size, stamped_mtime(st.st_mtime_ns, metadata)
        if entry is not None and entry.sha256 == digest:  # touched, not changed
            plan.unchanged.append(rel)
            plan.upsert_files.append(FileEntry(rel, size, mtime_ns, digest, entry.doc_ids))
            continue
        try:
            docs = with_metadata(load(data, path, rel), metadata)
        except LoadError as exc:
            plan.failed.append(FailedFile(rel, exc.reason))
            continue
        except Exception as exc:  # a loader bug must not abort the whole sync
            logger.exception("unexpected error loading %s", rel)
            plan.failed.append(FailedFile(rel, f"{type(exc).__name__}: {exc}"))
            continue
        fresh.append((rel, FileEntry(rel, size, mtime_ns, digest, tuple(d.id for d in docs)), docs))
    return fresh


def _classify(
    plan: SyncPlan, manifest: dict[str, FileEntry], seen: set[str], fresh: list[tuple[str, FileEntry, list[Document]]]
) -> None:
    """Sort the loaded files into added, updated and renamed, and the vanished ones into removed.

    A file that failed to load is not gone: it keeps its previously indexed version."""
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


def move_all(plan: SyncPlan, manifest: dict[str, FileEntry]) -> None:
    """Complete a plan made without ``manifest`` for a folder moving to another namespace: every document
    the folder had goes, under its old id (the listed files come back under new ids, their vectors from
    the embedding cache); a file no longer listed is removed."""
    kept = {e.path for e in plan.upsert_files}
    failed = {f.path for f in plan.failed}
    for rel, entry in manifest.items():
        plan.remove_doc_ids.extend(entry.doc_ids)
        if rel not in kept:
            plan.remove_files.append(rel)
            if rel not in failed:
                plan.removed.append(rel)


def namespaced(documents: list[Document], namespace: str) -> list[Document]:
    """The documents of a folder with its namespace in front of their ids and sources (``""``: as they are)."""
    if not namespace:
        return documents
    return [Document(f"{namespace}/{d.id}", d.text,
                     {**d.metadata, "source": f"{namespace}/{d.metadata.get('source', d.id)}"}) for d in documents]


def reject_conflicts(plan: SyncPlan, existing: Callable[[list[str]], Iterable[str]]) -> None:
    """Fail the files whose documents cannot be indexed: an id another document of this sync has, or
    one that ``existing`` reports in the index and this sync does not replace (another folder,
    ``add()``, or another file of this folder).

    A rejected file is not indexed at all, so it is not "added" and not in the manifest: it is
    reported again next time.
    """
    documents, dupes = dedupe_documents(plan.documents)
    failed = [FailedFile(rel, f"duplicate document id {doc_id!r}") for rel, doc_id in dupes]
    replacing = set(plan.remove_doc_ids)
    foreign = {i for i in existing([d.id for d, _ in documents]) if i not in replacing}
    failed += [FailedFile(rel, f"document id {d.id!r} already exists (another file, folder or add())")
               for d, rel in documents if d.id in foreign]
    rejected = {f.path for f in failed} - {f.path for f in plan.failed}
    plan.failed += failed
    plan.documents = [(d, rel) for d, rel in documents if d.id not in foreign and rel not in rejected]
    plan.added = [r for r in plan.added if r not in rejected]
    plan.updated = [r for r in plan.updated if r not in rejected]
    plan.upsert_files = [e for e in plan.upsert_files if e.path not in rejected]


def dedupe_documents(items: list[tuple[Document, str]]) -> tuple[list[tuple[Document, str]], list[tuple[str, str]]]:
    """Keep the first document of each id; return the rest as (origin, id) duplicates."""
    seen: set[str] = set()
    kept, dupes = [], []
    for doc, origin in items:
        if doc.id in seen:
            dupes.append((origin, doc.id))
        else:
            seen.add(doc.id)
            kept.append((doc, origin))
    return kept, dupes


def in_shard(rel: str, shard: tuple[int, int]) -> bool:
    """Whether a file belongs to worker ``i`` of ``n``: a stable hash of its relative path."""
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard must be I/N with 0 <= I < N, got {i}/{n}")
    return int(hashlib.sha1(rel.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % n == i


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes for bytes that are not UTF-8
        return False
    return True


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
