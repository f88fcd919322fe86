"""Tests for ragkit.ingest.sync: planning a folder sync against a manifest, without an index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragkit.errors import ConfigError
from ragkit.ingest.files import file_sha256
from ragkit.ingest.sync import dedupe_documents, in_shard, plan_sync
from ragkit.storage.base import FileEntry
from ragkit.types import Document


def write(root: Path, rel: str, text: str) -> tuple[Path, str]:
    path = root / rel
    path.write_text(text)
    return path, rel


def load_one(path: Path, rel: str) -> list[Document]:
    return [Document(id=rel, text=path.read_text())]


def entry(path: Path, rel: str, doc_ids: tuple[str, ...] | None = None) -> FileEntry:
    stat = path.stat()
    return FileEntry(rel, stat.st_size, stat.st_mtime_ns, file_sha256(path), doc_ids or (rel,))


def test_new_changed_touched_renamed_and_vanished_files_are_told_apart(tmp_path):
    kept, changed, touched, moved = (write(tmp_path, n, f"text of {n}") for n in ("a.md", "b.md", "c.md", "d.md"))
    manifest = {rel: entry(path, rel) for path, rel in (kept, changed, touched, moved)}
    manifest["gone.md"] = FileEntry("gone.md", 1, 1, "0" * 64, ("gone.md",))
    write(tmp_path, "b.md", "new text of b")
    os.utime(touched[0], ns=(1, 1))  # same content, other mtime
    moved[0].rename(tmp_path / "e.md")
    new = write(tmp_path, "f.md", "a new file")
    files = [kept, changed, touched, (tmp_path / "e.md", "e.md"), new]
    plan = plan_sync(tmp_path, manifest, files=files, load=load_one)
    assert plan.unchanged == ["a.md", "c.md"]
    assert plan.updated == ["b.md"] and plan.added == ["f.md"] and plan.renamed == [("d.md", "e.md")]
    assert plan.removed == ["gone.md"] and plan.failed == []
    assert sorted(plan.remove_doc_ids) == ["b.md", "d.md", "gone.md"]
    assert sorted(plan.remove_files) == ["d.md", "gone.md"]
    assert sorted(e.path for e in plan.upsert_files) == ["b.md", "c.md", "e.md", "f.md"]
    assert [d.id for d, _ in plan.documents] == ["b.md", "e.md", "f.md"]


def test_a_file_that_fails_to_load_keeps_its_indexed_version(tmp_path):
    path, rel = write(tmp_path, "a.md", "old")
    manifest = {rel: entry(path, rel)}
    write(tmp_path, "a.md", "changed")

    def broken(path: Path, rel: str) -> list[Document]:
        raise RuntimeError("loader bug")

    plan = plan_sync(tmp_path, manifest, files=[(path, rel)], load=broken)
    assert [(f.path, f.reason) for f in plan.failed] == [("a.md", "RuntimeError: loader bug")]
    assert plan.removed == [] and plan.remove_doc_ids == [] and plan.upsert_files == []


def test_the_plan_rejects_files_whose_ids_clash(tmp_path):
    files = [write(tmp_path, n, n) for n in ("a.md", "b.md", "c.md", "d.md")]
    same_id = {"b.md": "a.md"}  # b.md's document takes a.md's id

    def load(path: Path, rel: str) -> list[Document]:
        return [Document(id=same_id.get(rel, rel), text=rel)]

    old = FileEntry("d.md", 0, 0, "0" * 64, ("d.md",))  # d.md replaces its own document: no clash
    plan = plan_sync(tmp_path, {"d.md": old}, files=files, load=load,
                     existing=lambda ids: [i for i in ids if i in ("c.md", "d.md")])
    assert [(f.path, f.reason) for f in plan.failed] == [
        ("b.md", "duplicate document id 'a.md'"),
        ("c.md", "document id 'c.md' already exists (another file, folder or add())"),
    ]
    assert plan.added == ["a.md"] and plan.updated == ["d.md"]
    assert [e.path for e in plan.upsert_files] == ["a.md", "d.md"]
    assert [(d.id, rel) for d, rel in plan.documents] == [("a.md", "a.md"), ("d.md", "d.md")]


def test_without_existing_the_plan_keeps_every_document(tmp_path):
    files = [write(tmp_path, n, n) for n in ("a.md", "b.md")]
    plan = plan_sync(tmp_path, {}, files=files, load=lambda path, rel: [Document(id="x", text=rel)])
    assert len(plan.documents) == 2 and plan.failed == []


def test_a_shard_plans_only_its_files(tmp_path):
    files = [write(tmp_path, f"{i}.md", str(i)) for i in range(12)]
    manifest = {f"gone{i}.md": FileEntry(f"gone{i}.md", 1, 1, "0" * 64, (f"gone{i}.md",)) for i in range(12)}
    plans = [plan_sync(tmp_path, manifest, files=files, load=load_one, shard=(i, 3)) for i in range(3)]
    assert sorted(r for p in plans for r in p.added) == sorted(rel for _, rel in files)
    assert sorted(r for p in plans for r in p.removed) == sorted(manifest)
    assert all(in_shard(r, (i, 3)) for i, p in enumerate(plans) for r in p.added + p.removed)
    with pytest.raises(ConfigError, match="shard must be"):
        in_shard("a.md", (3, 3))


def test_dedupe_keeps_the_first_document_of_each_id():
    docs = [(Document(id="a", text="1"), "x"), (Document(id="a", text="2"), "y"), (Document(id="b", text="3"), "z")]
    kept, dupes = dedupe_documents(docs)
    assert [(d.text, o) for d, o in kept] == [("1", "x"), ("3", "z")] and dupes == [("y", "a")]
