"""Issue 14 (bugs 4, 5, 6) and issue 19 on the local backend with the fake embedder: what an index
costs and writes over its life (embedding cache kept across remove/re-add and rebuilds, nothing
stored before the model loads, no index created by a search) and what `ragkit search` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import FakeEmbedder, open_fake_index
from ragkit.cli.commands import main

DOCS = {
    "guide.md": "# Guide\n\nBees forage for nectar in spring and summer.\n",
    "release-notes.md": "# Release notes\n\nVersion two adds a smoker and a new hive tool.\n",
    "health.md": "# Health\n\nVarroa mites are treated in late summer.\n",
}


def write_docs(folder: Path, docs: dict[str, str] = DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, text in docs.items():
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


# -- issue 19: what came from a file is printed without its control characters ------------------------
def test_search_table_escapes_ansi_in_file_names(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    docs = write_docs(tmp_path / "docs", {"\x1b[31mred\x1b[0m.md": "# Head\x1b[2J\n\nBees \x1b]0;x\x07 swarm.\n"})
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        assert not index.sync(docs).failed
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: FakeEmbedder(name))
    assert main(["search", "bees swarm", "--index", str(tmp_path / "kb.ragkit")]) == 0
    out = capsys.readouterr().out
    assert "red" in out and "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred" in out  # shown as a visible escape, not dropped silently


# -- bug 5: a model that does not load leaves nothing behind ----------------------------------------
class UnloadableEmbedder(FakeEmbedder):
    """What a mistyped model name gives: nothing about it can be loaded."""

    def token_counter(self):  # type: ignore[no-untyped-def]
        from ragkit.errors import ModelNotAvailableError

        raise ModelNotAvailableError(f"cannot load the tokenizer of {self.name!r}")

    def encode(self, texts, *, show_progress=False):  # type: ignore[no-untyped-def]
        self.token_counter()


def fake_model(name: str, device: str | None = None) -> FakeEmbedder:
    return UnloadableEmbedder(name) if "typo" in name else FakeEmbedder(name)


def test_a_mistyped_model_is_not_saved(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    docs, kb = write_docs(tmp_path / "docs"), tmp_path / "kb.ragkit"
    monkeypatch.setattr("ragkit.index.Embedder", fake_model)
    assert main(["index", str(docs), "--index", str(kb), "--model", "minilm-typo", "-q"]) == 2
    assert "cannot load" in capsys.readouterr().err
    assert not kb.exists()  # nothing was written: no folder, no config naming the typo
    assert main(["index", str(docs), "--index", str(kb), "--model", "fake-good", "-q"]) == 0
    assert "3 added" in capsys.readouterr().out
    with open_fake_index(kb, FakeEmbedder("fake-good")) as index:
        assert index.info()["model"] == "fake-good" and len(index) == 3


def test_an_index_with_no_chunks_may_change_its_model(tmp_path: Path) -> None:
    docs, kb = write_docs(tmp_path / "docs"), tmp_path / "kb.ragkit"
    with open_fake_index(kb, FakeEmbedder("old-model")) as index:
        index.add([])  # written, but nothing embedded
        assert index.backend.get_config()["model"] == "old-model"
    with open_fake_index(kb, FakeEmbedder("new-model")) as index:
        assert index.sync(docs).chunks_embedded == 3
        assert index.backend.get_config()["model"] == "new-model"
    from ragkit.errors import ModelMismatchError

    with pytest.raises(ModelMismatchError):  # once it holds chunks, the model is fixed
        open_fake_index(kb, FakeEmbedder("third-model"))


# -- bug 6: opening an index to search it creates nothing ------------------------------------------
def test_searching_a_mistyped_path_leaves_no_folder(tmp_path: Path) -> None:
    kb = tmp_path / "kb.ragit"
    with open_fake_index(kb) as index:
        assert index.search("oauth") == [] and len(index) == 0 and index.info()["chunks"] == 0
        assert index.delete(["x"]) == 0
    assert not kb.exists()


def test_a_new_index_is_created_by_its_first_write(tmp_path: Path) -> None:
    docs, kb = write_docs(tmp_path / "docs"), tmp_path / "kb.ragkit"
    with open_fake_index(kb, dense_index="hnsw") as index:
        assert not kb.exists()
        assert index.sync(docs).added and (kb / "ragkit.sqlite").exists()
        assert index.search("varroa mites", k=1)[0].source == "health.md"
    with open_fake_index(kb) as index:
        assert index.config.dense_index == "hnsw" and len(index) == 3


# -- bug 4: text embedded once is never embedded again ---------------------------------------------
def test_remove_then_re_add_embeds_nothing(tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    docs, kb = write_docs(tmp_path / "docs"), tmp_path / "kb.ragkit"
    with open_fake_index(kb, fake_embedder) as index:
        assert index.sync(docs).chunks_embedded == 3
        report = index.sync(docs, exclude=["release-notes.md"])
        assert report.removed == ("release-notes.md",) and report.chunks_embedded == 0
        fake_embedder.reset()
        report = index.sync(docs, reset_patterns=True)  # the exclude undone (patterns are remembered)
        assert report.added == ("release-notes.md",) and report.chunks_embedded == 0
        assert fake_embedder.encoded == []
        assert index.search("smoker hive tool", k=1)[0].source == "release-notes.md"
        assert not index.backend.verify()


def test_gc_trims_unused_vectors_only(tmp_path: Path, fake_embedder: FakeEmbedder, capsys) -> None:  # type: ignore[no-untyped-def]
    docs, kb = write_docs(tmp_path / "docs"), tmp_path / "kb.ragkit"
    with open_fake_index(kb, fake_embedder) as index:
        index.sync(docs)
        (docs / "release-notes.md").unlink()
        index.sync(docs)
        assert index.gc() == {"removed": 0, "unused_kept": 1, "unused_bytes": 4 * len(index.embed_query("x"))}
        assert index.gc(max_age_days=None, max_bytes=0)["removed"] == 1
    write_docs(docs)
    assert main(["gc", "--index", str(kb)]) == 0 and "removed 0" in capsys.readouterr().out
    with open_fake_index(kb, fake_embedder) as index:
        assert index.sync(docs).chunks_embedded == 1  # it was trimmed, so it is embedded again
        (docs / "guide.md").unlink()
        index.sync(docs)
    assert main(["gc", "--index", str(kb), "--max-mb", "0"]) == 0
    assert "removed 1 unused" in capsys.readouterr().out
    with open_fake_index(kb, fake_embedder) as index:
        assert len(index) == 2 and not index.backend.verify()  # vectors in use are never trimmed
        assert index.search("varroa mites", k=1)[0].source == "health.md"


def test_the_cache_is_bounded_by_age(tmp_path: Path, fake_embedder: FakeEmbedder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time

    docs, kb = write_docs(tmp_path / "docs"), tmp_path / "kb.ragkit"
    with open_fake_index(kb, fake_embedder) as index:
        index.sync(docs)
        index.sync(docs, exclude=["guide.md"])
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now + 31 * 86400)  # a month on, any write trims it
        index.sync(docs, exclude=["guide.md", "health.md"])
        assert index.gc(max_age_days=None)["unused_kept"] == 1  # health.md's; guide.md's went with that write
        monkeypatch.undo()
        # the excludes undone: guide.md's vector was too old; health.md's was kept
        assert index.sync(docs, reset_patterns=True).chunks_embedded == 1


def test_rebuild_reuses_the_old_indexs_vectors(tmp_path: Path, fake_embedder: FakeEmbedder, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    docs, kb = write_docs(tmp_path / "docs"), tmp_path / "kb.ragkit"
    with open_fake_index(kb, fake_embedder) as index:
        index.sync(docs)
    made: list[FakeEmbedder] = []
    monkeypatch.setattr("ragkit.index.Embedder", lambda name, device=None: made.append(FakeEmbedder(name)) or made[-1])
    assert main(["index", str(docs), "--index", str(kb), "--model", fake_embedder.name, "--rebuild", "-q"]) == 0
    out = capsys.readouterr().out
    assert "3 added" in out and "0 chunks embedded" in out and made[-1].encoded == []
    with open_fake_index(kb, fake_embedder) as index:
        assert len(index) == 3 and not index.backend.verify()
    # with another model the old vectors are worthless: everything is embedded with the new one
    assert main(["index", str(docs), "--index", str(kb), "--model", "other-model", "--rebuild", "-q"]) == 0
    assert len(made[-1].encoded) == 3
    with open_fake_index(kb, FakeEmbedder("other-model")) as index:
        assert index.backend.gc(max_bytes=0, max_age_days=None)["removed"] == 0  # none of the old model's left
