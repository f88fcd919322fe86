"""Shared fixtures: one real index over ``samples/docs`` per backend, built once per session, and cheap copies.

Embedding the sample folder (~250 chunks) costs 10-25 s on a small machine, so it happens once per
backend (:func:`samples_build` for the local backend, :func:`milvus_samples_build` for Milvus Lite).
Tests that only search use that index directly and must not change it; tests that change files or
the index take a private copy of both the built index and the docs folder (a file copy, no
re-embedding): :func:`fresh_copy` (local) or :func:`backend_copy`.

Backend-agnostic tests take the :func:`backend` fixture (``local`` and ``milvus-lite``) and the
fixtures built on it: :func:`backend_build`, :func:`backend_samples`, :func:`backend_copy`,
:func:`new_index`; :func:`index_problems` and :func:`location_problems` are ``verify``/``check_index`` for either.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network; inherited by the CLI and crash-test subprocesses

from ragkit.types import SyncReport  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "docs"


def open_index(path: str | os.PathLike[str], **options: Any):  # type: ignore[no-untyped-def]
    """Open (or create) a real ``ragkit.Index``; use it as a context manager so it is closed."""
    from ragkit import Index

    return Index(path, show_progress=False, **options)


BACKENDS = ("local", "milvus-lite")
LITE = "milvus-lite://"
Location = Any  # what ``ragkit.Index`` opens: a local index directory (Path) or a ``milvus-lite://`` URI (str)


def have_milvus() -> bool:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


def index_location(backend: str, folder: Path, name: str = "index") -> Location:
    """Where a new index named ``name`` in ``folder`` lives: a directory, or a Milvus Lite URI."""
    return folder / f"{name}.ragkit" if backend == "local" else f"{LITE}{folder / name}.db"


def index_storage(location: Location) -> Path:
    """The folder that holds an index's files (the ``.ragkit`` directory or the Milvus Lite ``.db``)."""
    return Path(str(location).removeprefix(LITE))


@dataclass(frozen=True)
class SamplesBuild:
    """The session's sample index, and how its first (embedding) sync went."""

    index_dir: Path  # the index's files: the .ragkit directory or the Milvus Lite .db folder
    docs_dir: Path
    report: SyncReport
    seconds: float  # wall time of the first sync, measured with time.perf_counter
    backend: str = "local"

    @property
    def location(self) -> Location:
        """What ``Index()`` opens: the directory, or the ``milvus-lite://`` URI."""
        return self.index_dir if self.backend == "local" else f"{LITE}{self.index_dir}"


def _build_samples(base: Path, backend: str) -> SamplesBuild:
    docs_dir = base / "docs"
    shutil.copytree(SAMPLES, docs_dir)  # copy2: mtimes kept, so copies of this folder stay "unchanged"
    location = index_location(backend, base)
    started = time.perf_counter()
    with open_index(location) as index:
        report = index.sync(docs_dir)
    seconds = time.perf_counter() - started
    # Without an extra (ragkit[docs], ragkit[ocr] and tesseract-ocr) its samples are reported as needing it.
    needs_extra = [f for f in report.failed if "needs ragkit[" in f.reason]
    assert len(needs_extra) == len(report.failed), report.failed
    assert len(report.added) + len(needs_extra) == sum(1 for p in SAMPLES.rglob("*") if p.is_file())
    return SamplesBuild(index_storage(location), docs_dir, report, seconds, backend)


@pytest.fixture(scope="session")
def samples_build(tmp_path_factory: pytest.TempPathFactory) -> SamplesBuild:
    """The local sample index."""
    return _build_samples(tmp_path_factory.mktemp("samples"), "local")


@pytest.fixture(scope="session")
def milvus_samples_build(tmp_path_factory: pytest.TempPathFactory) -> SamplesBuild:
    """The sample index in Milvus Lite, and a pristine copy of it (``template.db``) that copies are made from."""
    if not have_milvus():
        pytest.skip('Milvus Lite tests need pymilvus and milvus-lite: pip install "ragkit[milvus]"')
    build = _build_samples(tmp_path_factory.mktemp("milvus-samples"), "milvus-lite")
    shutil.copytree(build.index_dir, build.index_dir.with_name("template.db"))  # never opened: safe to copy
    return build


@pytest.fixture(scope="session")
def built_samples(samples_build: SamplesBuild) -> tuple[Path, Path]:
    """``(index_dir, docs_dir)`` of the session's sample index. Read-only: search it, don't change it."""
    return samples_build.index_dir, samples_build.docs_dir


def rebase_index(index_dir: Path, old_root: Path, new_root: Path) -> None:
    """Point a copied index at a copied folder.

    An index remembers each synced folder by its absolute path, and a document id (the file's
    relative path) belongs to one folder; syncing a *copy* of the folder at another path would
    report every file as belonging to another folder. Rewriting the stored root is what moving an
    index together with its folder amounts to; nothing else in the index changes.
    """
    if index_dir.suffix == ".db":
        _rebase_milvus(index_dir, str(old_root.resolve()), str(new_root.resolve()))
        return
    db = sqlite3.connect(index_dir / "ragkit.sqlite")
    try:
        with db:
            for table in ("files", "documents"):
                sql = f"UPDATE {table} SET root = ? WHERE root = ?"
                db.execute(sql, (str(new_root.resolve()), str(old_root.resolve())))
    finally:
        db.close()


def _rebase_milvus(db: Path, old: str, new: str) -> None:
    """``rebase_index`` for Milvus Lite: manifest rows are keyed by (root, path), so they are re-keyed."""
    from ragkit.storage.base import FileEntry
    from ragkit.storage.milvus.backend import MilvusBackend
    from ragkit.storage.milvus.expressions import literal
    from ragkit.storage.milvus.rows import doc_row, file_rows

    backend = MilvusBackend.from_uri(f"{LITE}{db}", create=False)
    cols = backend.cols
    try:
        rows = list(cols.scan("files", f"root == {literal(old)}", ["path", "size", "mtime_ns", "sha256", "doc_ids"]))
        entries = [FileEntry(r["path"], r["size"], r["mtime_ns"], r["sha256"], tuple(r["doc_ids"])) for r in rows]
        cols.upsert("files", file_rows(new, entries))
        cols.delete("files", [r["pk"] for r in rows])
        docs = list(cols.scan("docs", f"root == {literal(old)}", ["doc_id", "part", "text", "metadata", "text_hash"]))
        cols.upsert("docs", [doc_row(d["doc_id"], d["part"], d["text"], d["metadata"], d["text_hash"], new)
                             for d in docs])
        cols.flush("files", "docs")
    finally:
        backend.close()


def copy_index(build: SamplesBuild, folder: Path) -> tuple[Location, Path]:
    """``(location, docs_dir)``: a private copy of a built index and its folder inside ``folder``."""
    source = build.index_dir if build.backend == "local" else build.index_dir.with_name("template.db")
    location = index_location(build.backend, folder)
    shutil.copytree(source, index_storage(location))
    shutil.copytree(build.docs_dir, folder / "docs")
    rebase_index(index_storage(location), build.docs_dir, folder / "docs")
    return location, folder / "docs"


@pytest.fixture
def fresh_copy(built_samples: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """``(index_dir, docs_dir)``: a private copy of the built sample index and its folder, free to change."""
    index_src, docs_src = built_samples
    index_dir, docs_dir = tmp_path / "index.ragkit", tmp_path / "docs"
    shutil.copytree(index_src, index_dir)
    shutil.copytree(docs_src, docs_dir)
    rebase_index(index_dir, docs_src, docs_dir)
    return index_dir, docs_dir


# --------------------------------------------------------------------------- either backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Runs a test once per storage backend: ``local`` and ``milvus-lite``."""
    if request.param == "milvus-lite" and not have_milvus():
        pytest.skip('Milvus Lite tests need pymilvus and milvus-lite: pip install "ragkit[milvus]"')
    return request.param


@pytest.fixture
def backend_build(backend: str, request: pytest.FixtureRequest) -> SamplesBuild:
    """The session's sample index on ``backend`` (built once per session per backend)."""
    return request.getfixturevalue("samples_build" if backend == "local" else "milvus_samples_build")


@pytest.fixture
def backend_samples(backend_build: SamplesBuild) -> tuple[Location, Path]:
    """``(location, docs_dir)`` of the session's sample index on ``backend``. Read-only."""
    return backend_build.location, backend_build.docs_dir


@pytest.fixture
def backend_copy(backend_build: SamplesBuild, tmp_path: Path) -> tuple[Location, Path]:
    """``(location, docs_dir)``: a private copy of the sample index on ``backend`` and its folder."""
    return copy_index(backend_build, tmp_path)


@pytest.fixture
def new_index(backend: str, tmp_path: Path) -> Location:
    """The location of a new, empty index on ``backend`` in ``tmp_path``."""
    return index_location(backend, tmp_path)


def index_problems(index: Any) -> list[str]:
    """Every inconsistency between an open index's parts (``Backend.verify``, either backend)."""
    return index.backend.verify()


def location_problems(location: Location) -> list[str]:
    """``check_index`` for either backend, given where the index is. A Milvus Lite index is opened for it
    (as a restart would: that restores a write a killed process left unfinished)."""
    from ragkit.storage.location import check_index

    return check_index(location)


# --------------------------------------------------------------------------- tiers and the fake embedder

TESTS = Path(__file__).resolve().parent
SLOW_TIERS = ("integration", "robustness")  # the real model, both backends, kills, fuzzing: all slow


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests are tiered by folder: everything under ``tests/integration/`` and ``tests/robustness/`` is
    ``slow``, so ``pytest -m "not slow"`` runs ``tests/unit/`` (plus unit tests marked slow are skipped)."""
    for item in items:
        try:
            parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        except ValueError:
            continue
        if parts and parts[0] in SLOW_TIERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def fake_embedder():  # type: ignore[no-untyped-def]
    """A fresh :class:`fakes.FakeEmbedder` (deterministic hashing vectors, no model)."""
    from fakes import FakeEmbedder

    return FakeEmbedder()


@pytest.fixture
def fake_index(tmp_path: Path, fake_embedder: Any):  # type: ignore[no-untyped-def]
    """A new, empty ``Index(tmp_path / "kb.ragkit", embedder=fake_embedder)``, closed after the test."""
    from fakes import open_fake_index

    with open_fake_index(tmp_path / "kb.ragkit", fake_embedder) as index:
        yield index
