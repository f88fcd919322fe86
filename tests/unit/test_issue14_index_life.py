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
