"""Damage to ``ragkit.sqlite`` is caught like damage to the segments (issue 19, part 3).

Empty, truncated and missing databases beside existing segments, 64-byte flips anywhere in the file,
a flipped embedding-cache row and a missing chunk row: each is caught by ``check`` (``Backend.verify``)
and on opening or first search, as a ragkit error naming the file and ``--rebuild``, never a raw
``sqlite3.DatabaseError``; a poisoned cache row is re-embedded, never reused.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeEmbedder

import ragkit
from ragkit.errors import IndexCorruptError, RagkitError
from ragkit.storage.location import check_index

pytestmark = pytest.mark.slow

DB = "ragkit.sqlite"


def fake_index(path: Path) -> ragkit.Index:
    return ragkit.Index(path, embedder=FakeEmbedder(), show_progress=False, create=False)


@pytest.fixture
def copy(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh index of 40 notes (built per test: a sync records the folder's absolute path)."""
    base = tmp_path
    docs = base / "docs"
    docs.mkdir()
    for i in range(40):
        body = " ".join(f"word{(i * 7 + j) % 97} bees hive note{i}" for j in range(60))
        (docs / f"note-{i:02d}.md").write_text(f"# Note {i}\n\n{body}\n")
    kb = base / "kb.ragkit"
    with ragkit.Index(kb, embedder=FakeEmbedder(), show_progress=False) as index:
        index.sync(docs)
    assert not (kb / f"{DB}-wal").exists()  # closed cleanly: everything is in the main file
    return kb, docs



def assert_caught(kb: Path) -> str:
    """Opening (and a first search) raises a clear IndexCorruptError; check reports a problem too."""
    problems = check_index(kb)
    assert problems, "check says ok"
    assert all("DatabaseError" not in p for p in problems)
    with pytest.raises(IndexCorruptError) as caught:
        with fake_index(kb) as index:
            index.search("bees hive", k=3)
    message = str(caught.value)
    assert DB in message and "--rebuild" in message, message
    return message


def test_an_empty_database_beside_segments_is_corruption(copy: tuple[Path, Path]) -> None:
    kb, _ = copy
    (kb / DB).write_bytes(b"")
    assert "empty" in assert_caught(kb)


def test_a_missing_database_beside_segments_is_corruption(copy: tuple[Path, Path]) -> None:
    kb, _ = copy
    (kb / DB).unlink()
    assert "missing" in assert_caught(kb)


def test_a_truncated_database_is_corruption(copy: tuple[Path, Path]) -> None:
    kb, _ = copy
    data = (kb / DB).read_bytes()
    (kb / DB).write_bytes(data[: len(data) // 2])
    assert "truncated" in assert_caught(kb)


def test_a_missing_chunk_row_is_corruption(copy: tuple[Path, Path]) -> None:
    kb, _ = copy
    with sqlite3.connect(kb / DB) as db:
        db.execute("DELETE FROM chunks WHERE row = (SELECT max(row) FROM chunks)")
    db.close()
    assert "chunks" in assert_caught(kb)


def dump(kb: Path) -> list[tuple]:
    with sqlite3.connect(kb / DB) as db:
        rows = []
        for table in ("meta", "documents", "chunks", "files", "embeddings"):
            rows += [(table, *r) for r in db.execute(f"SELECT * FROM {table} ORDER BY 1")]
    db.close()
    return rows


@pytest.mark.parametrize("seed", range(12))
def test_a_flipped_64_byte_run_is_caught_or_harmless(copy: tuple[Path, Path], seed: int) -> None:
    """Anywhere past the header: either the content SQLite returns is unchanged, or check and
    opening-and-searching say so clearly (never a raw sqlite3 error)."""
    kb, _ = copy
    before = dump(kb)
    data = bytearray((kb / DB).read_bytes())
    rng = random.Random(seed)
    at = rng.randrange(100, len(data) - 64)
    data[at : at + 64] = bytes(b ^ 0xFF for b in data[at : at + 64])
    (kb / DB).write_bytes(bytes(data))
    try:
        unchanged = dump(kb) == before
    except sqlite3.DatabaseError:
        unchanged = False
    if unchanged:
        return  # free space or unused bytes of a page
    assert check_index(kb), f"flip at {at}: content changed but check says ok"
    try:
        with fake_index(kb) as index:
            index.search("bees hive", k=3)
            index.info()
    except RagkitError as exc:
        assert DB in str(exc) or "segment" in str(exc), exc


def test_a_flipped_cache_row_is_reported_and_never_reused(copy: tuple[Path, Path]) -> None:
    kb, docs = copy
    with sqlite3.connect(kb / DB) as db:
        target, blob = db.execute("SELECT hash, vector FROM embeddings ORDER BY hash LIMIT 1").fetchone()
    db.close()
    data = (kb / DB).read_bytes()
    assert data.count(blob) == 1
    at = data.index(blob)
    poisoned = np.frombuffer(blob, np.float32).copy()
    poisoned[:4] = 4e23  # what the issue saw: a chunk that then ranks first for every query
    (kb / DB).write_bytes(data[:at] + poisoned.tobytes() + data[at + len(blob):])
    assert any("embedding cache" in p for p in check_index(kb))
    # A rename re-chunks the file: its vectors come from the cache, which must refuse the poisoned row.
    with sqlite3.connect(kb / DB) as db:
        (path,) = db.execute("SELECT doc_id FROM chunks WHERE embed_hash = ? LIMIT 1", (target,)).fetchone()
    db.close()
    (docs / path).rename(docs / f"renamed-{path}")
    with fake_index(kb) as index:
        report = index.sync(docs)
        assert report.renamed and report.chunks_embedded >= 1, report.failed
        for query in ("bees", "note3 word5", "unrelated query"):
            for hit in index.search(query, k=5, mode="dense"):
                assert hit.dense_score is not None and hit.dense_score <= 1.0001
    assert check_index(kb) == []
