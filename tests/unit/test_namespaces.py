"""Folders in one index (``Index.sync``'s ``prefix``, ``ragkit.ingest.folders``): a namespace per folder so
two folders with the same relative paths share an index; remembered include/exclude patterns."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeEmbedder, open_fake_index

from ragkit import ConfigError

DOCS = {"intro.md": "# Intro\n\nHow to install the hive.\n", "guide/setup.md": "# Setup\n\nPlace the hive in sun.\n"}


def write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


def ids(index) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(d.id for d in index.documents())


def test_documents_added_by_hand_leave_the_first_folder_its_bare_ids(tmp_path: Path) -> None:
    from ragkit import Document

    a = write(tmp_path / "a" / "docs", DOCS)
    with open_fake_index(tmp_path / "kb") as index:
        index.add([Document("pool/1", "A note added by hand.")])
        assert index.sync(a).namespace == ""
        assert ids(index) == ["guide/setup.md", "intro.md", "pool/1"]


def test_two_folders_with_the_same_paths_share_an_index_and_never_remove_each_other(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "docs", DOCS)
    b = write(tmp_path / "b" / "manual", {**DOCS, "only-b.md": "Only in b.\n"})
    with open_fake_index(tmp_path / "kb") as index:
        assert index.sync(a).namespace == ""  # the first folder of an index: ids as they always were
        report = index.sync(b)
        assert report.namespace == "manual" and sorted(report.added) == ["guide/setup.md", "intro.md", "only-b.md"]
        assert not report.failed and not report.removed
        assert ids(index) == ["guide/setup.md", "intro.md", "manual/guide/setup.md", "manual/intro.md",
                              "manual/only-b.md"]
        (b / "intro.md").unlink()
        report = index.sync(b)
        assert report.removed == ("intro.md",)  # removal stays inside b's namespace
        assert "intro.md" in ids(index) and "manual/intro.md" not in ids(index)
        assert index.sync(a).unchanged == ("guide/setup.md", "intro.md")
        hits = index.search("install the hive", k=5, filters={"source": {"glob": "manual/*"}})
        assert hits and all(h.source.startswith("manual/") for h in hits)


def test_prefix_names_the_namespace_and_a_taken_one_is_refused(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "docs", DOCS)
    b = write(tmp_path / "b" / "docs", DOCS)  # the same folder name
    c = write(tmp_path / "c" / "docs", DOCS)
    with open_fake_index(tmp_path / "kb") as index:
        index.sync(a)
        assert index.sync(b).namespace == "docs"
        with pytest.raises(ConfigError, match="namespace 'docs' is already used by the folder .*--prefix NAME"):
            index.sync(c)
        assert index.sync(c, prefix="team/c").namespace == "team/c"
        assert "team/c/intro.md" in ids(index)
        with pytest.raises(ConfigError, match="namespace prefix '../up'"):
            index.sync(write(tmp_path / "d", DOCS), prefix="../up")


def test_a_new_prefix_moves_the_folders_documents_without_embedding_them_again(tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", DOCS)
    embedder = FakeEmbedder()
    with open_fake_index(tmp_path / "kb", embedder) as index:
        index.sync(docs)
        (docs / "intro.md").unlink()
        embedder.reset()
        moved = index.sync(docs, prefix="v2")
        assert moved.namespace == "v2" and moved.added == ("guide/setup.md",) and moved.removed == ("intro.md",)
        assert moved.chunks_embedded == 0 and embedder.encoded == []
        note = "namespace '' -> 'v2': every document of this folder moves to its new id (vectors reused, nothing"
        assert moved.notes == (note + " embedded again)",)
        assert ids(index) == ["v2/guide/setup.md"] and not index.backend.verify()
        assert index.sync(docs).unchanged == ("guide/setup.md",)
        with pytest.raises(ConfigError, match="sync it without shard"):
            index.sync(docs, prefix="v3", shard=(0, 2))


def test_the_first_folder_may_take_a_prefix_too(tmp_path: Path) -> None:
    with open_fake_index(tmp_path / "kb") as index:
        index.sync(write(tmp_path / "docs", DOCS), prefix="v1")
        assert ids(index) == ["v1/guide/setup.md", "v1/intro.md"]
        assert index.sync(tmp_path / "docs").namespace == "v1"  # remembered


def test_an_index_synced_before_namespaces_keeps_its_ids_and_embeds_nothing(tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", DOCS)
    embedder = FakeEmbedder()
    with open_fake_index(tmp_path / "kb", embedder) as index:
        index.sync(docs)
        config = index.config.to_dict()
        del config["folders"]  # as an index written before folders were remembered
        index.backend.set_config(config)
    with open_fake_index(tmp_path / "kb", embedder) as index:
        assert index.config.folders is None
        write(docs, {"new.md": "A new page.\n"})
        report = index.sync(docs)
        assert report.namespace == "" and report.added == ("new.md",) and report.chunks_embedded == 1
        assert ids(index) == ["guide/setup.md", "intro.md", "new.md"]
        other = index.sync(write(tmp_path / "more", DOCS))  # a second folder gets a namespace
        assert other.namespace == "more" and not other.failed


def test_patterns_are_remembered_per_folder_until_replaced_or_reset(tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {**DOCS, "drafts/wip.md": "Work in progress.\n"})
    with open_fake_index(tmp_path / "kb") as index:
        first = index.sync(docs, exclude=["drafts/**"])
        assert first.exclude == ("drafts/**",) and "exclude patterns (none) -> 'drafts/**'" in first.notes[0]
        again = index.sync(docs)
        assert again.exclude == ("drafts/**",) and not again.added and not again.removed
        assert "using the remembered patterns: exclude 'drafts/**'" in again.notes[0]
        assert [s.path for s in again.skipped] == ["drafts/"]
        replaced = index.sync(docs, exclude=["guide/"])
        assert replaced.added == ("drafts/wip.md",) and replaced.removed == ("guide/setup.md",)
        assert "exclude patterns 'drafts/**' -> 'guide/' (remembered)" in replaced.notes
        reset = index.sync(docs, reset_patterns=True)
        assert reset.added == ("guide/setup.md",) and reset.exclude == ()
        assert reset.notes == ("forgot the remembered patterns (exclude 'guide/')",)
        only = index.sync(docs, include=["*.md", "!intro.md"])
        assert only.removed == ("intro.md",) and index.sync(docs).include == ("*.md", "!intro.md")
        assert index.folder_settings(docs).include == ("*.md", "!intro.md")


def test_ignore_files_can_be_turned_off_and_that_is_remembered(tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {**DOCS, ".gitignore": "guide/\n"})
    with open_fake_index(tmp_path / "kb") as index:
        assert index.sync(docs).added == ("intro.md",)
        off = index.sync(docs, ignore_files=False)
        assert off.added == ("guide/setup.md",) and "not read from now on" in off.notes[0]
        assert index.sync(docs).unchanged == ("guide/setup.md", "intro.md")


def test_an_index_copied_with_its_folder_and_re_pointed_keeps_the_ids(tmp_path: Path) -> None:
    import shutil

    from conftest import rebase_index

    docs, kb = write(tmp_path / "docs", DOCS), tmp_path / "kb"
    with open_fake_index(kb) as index:
        index.sync(docs)
    shutil.copytree(docs, tmp_path / "copy" / "docs")
    shutil.copytree(kb, tmp_path / "copy" / "kb")
    rebase_index(tmp_path / "copy" / "kb", docs, tmp_path / "copy" / "docs")  # the folder is recorded by path
    with open_fake_index(tmp_path / "copy" / "kb") as index:
        report = index.sync(tmp_path / "copy" / "docs")
        assert report.namespace == "" and report.unchanged == ("guide/setup.md", "intro.md") and not report.failed


def test_two_open_indexes_keep_each_others_folders(tmp_path: Path) -> None:
    a, b = write(tmp_path / "a", DOCS), write(tmp_path / "b", DOCS)
    with open_fake_index(tmp_path / "kb") as first:
        first.sync(a)
        with open_fake_index(tmp_path / "kb") as second:  # opened before `first` remembers a pattern
            first.sync(a, exclude=["guide/"])
            assert second.sync(b).namespace == "b"
            assert second.folder_settings(a).exclude == ("guide/",)  # not lost to a stale config
        assert first.sync(a).exclude == ("guide/",) and first.folder_settings(b).namespace == "b"
