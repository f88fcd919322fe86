"""A file swapped after listing is reported, never followed or blocked on (issue 19, part 4).

The swap happens between listing and reading: ``read_listed`` (what the sync reads each file with)
is wrapped so that the file is replaced just before it is opened.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeEmbedder

import ragkit
import ragkit.ingest.sync as sync_module

pytestmark = pytest.mark.slow

SECRET = "outsidesecret"


def folder_with_outside(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (docs / name).write_text(f"# {name}\n\nplain note {name} about bees.\n")
    outside = tmp_path / "outside.md"
    outside.write_text(f"# secret\n\n{SECRET} text that must never be indexed.\n")
    return docs, outside


def sync_with_swap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, swap) -> ragkit.SyncReport:  # type: ignore[no-untyped-def]
    docs, outside = folder_with_outside(tmp_path)
    real = sync_module.read_listed

    def swapping(path: Path, rel: str, listed: os.stat_result, limit: int, **options: Any) -> bytes:
        if rel == "b.md":
            path.unlink()
            swap(path, outside)
        return real(path, rel, listed, limit, **options)

    monkeypatch.setattr(sync_module, "read_listed", swapping)
    result: list[ragkit.SyncReport] = []
    index = ragkit.Index(tmp_path / "kb.ragkit", embedder=FakeEmbedder(), show_progress=False)
    worker = threading.Thread(target=lambda: result.append(index.sync(docs)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the sync blocked on the swapped file"
    texts = " ".join(d.text for d in index.documents())
    assert SECRET not in texts
    assert {d.id for d in index.documents()} == {"a.md", "c.md"}
    index.close()
    return result[0]


def test_a_file_swapped_for_a_fifo_after_listing_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = sync_with_swap(monkeypatch, tmp_path, lambda path, _outside: os.mkfifo(path))
    assert [(f.path, "regular file" in f.reason) for f in report.failed] == [("b.md", True)]


def test_a_file_swapped_for_a_symlink_after_listing_is_not_followed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    report = sync_with_swap(monkeypatch, tmp_path, lambda path, outside: path.symlink_to(outside))
    assert [(f.path, "symlink" in f.reason) for f in report.failed] == [("b.md", True)]


def test_a_file_swapped_for_a_hard_link_to_outside_is_not_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = sync_with_swap(monkeypatch, tmp_path, lambda path, outside: os.link(outside, path))
    assert [(f.path, "replaced" in f.reason) for f in report.failed] == [("b.md", True)]


def test_a_folder_swapped_for_a_symlink_after_listing_is_not_followed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The folder on the file's path is swapped, not the file: the read opens each folder relative to the
    one above it and follows no link, so the outside folder (holding a file of the same name) is never read."""
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# a\n\nplain note about bees.\n")
    (docs / "sub" / "b.md").write_text("# b\n\nanother plain note.\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.md").write_text(f"# secret\n\n{SECRET} text that must never be indexed.\n")
    real = sync_module.read_listed

    def swapping(path: Path, rel: str, listed: os.stat_result, limit: int, **options: Any) -> bytes:
        if rel == "sub/b.md":
            (docs / "sub").rename(tmp_path / "moved-away")
            (docs / "sub").symlink_to(elsewhere, target_is_directory=True)
        return real(path, rel, listed, limit, **options)

    monkeypatch.setattr(sync_module, "read_listed", swapping)
    with ragkit.Index(tmp_path / "kb.ragkit", embedder=FakeEmbedder(), show_progress=False) as index:
        report = index.sync(docs)
        assert SECRET not in " ".join(d.text for d in index.documents())
        assert {d.id for d in index.documents()} == {"a.md"}
    assert [(f.path, "symlink" in f.reason) for f in report.failed] == [("sub/b.md", True)]
