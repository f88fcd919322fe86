"""Shared fixtures: one real index over ``samples/docs``, built once per session, and cheap copies of it.

Embedding the sample folder (~250 chunks) costs 10-25 s on a small machine, so it happens once
(:func:`built_samples`). Tests that only search use that index directly and must not change it;
tests that change files or the index take :func:`fresh_copy`, a private copy of both the built
index directory and the docs folder (a file copy, no re-embedding).
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


@dataclass(frozen=True)
class SamplesBuild:
    """The session's sample index, and how its first (embedding) sync went."""

    index_dir: Path
    docs_dir: Path
    report: SyncReport
    seconds: float  # wall time of the first sync, measured with time.perf_counter


@pytest.fixture(scope="session")
def samples_build(tmp_path_factory: pytest.TempPathFactory) -> SamplesBuild:
    base = tmp_path_factory.mktemp("samples")
    docs_dir = base / "docs"
    shutil.copytree(SAMPLES, docs_dir)  # copy2: mtimes kept, so copies of this folder stay "unchanged"
    index_dir = base / "index.ragkit"
    started = time.perf_counter()
    with open_index(index_dir) as index:
        report = index.sync(docs_dir)
    seconds = time.perf_counter() - started
    assert not report.failed, report.failed
    assert len(report.added) == sum(1 for p in SAMPLES.rglob("*") if p.is_file())
    return SamplesBuild(index_dir, docs_dir, report, seconds)


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
    db = sqlite3.connect(index_dir / "ragkit.sqlite")
    try:
        with db:
            for table in ("files", "documents"):
                sql = f"UPDATE {table} SET root = ? WHERE root = ?"
                db.execute(sql, (str(new_root.resolve()), str(old_root.resolve())))
    finally:
        db.close()


@pytest.fixture
def fresh_copy(built_samples: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """``(index_dir, docs_dir)``: a private copy of the built sample index and its folder, free to change."""
    index_src, docs_src = built_samples
    index_dir, docs_dir = tmp_path / "index.ragkit", tmp_path / "docs"
    shutil.copytree(index_src, index_dir)
    shutil.copytree(docs_src, docs_dir)
    rebase_index(index_dir, docs_src, docs_dir)
    return index_dir, docs_dir
