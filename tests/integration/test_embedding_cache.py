"""Issue 14, bug 4, on both backends: text embedded once is not embedded again when its file is
removed and comes back (an undone ``--exclude``), and ``gc`` trims only vectors no chunk uses.
The fake embedder stands in for the model; the storage is real (SQLite + segments, Milvus Lite)."""

from __future__ import annotations

from pathlib import Path

from conftest import Location, index_problems
from fakes import FakeEmbedder, open_fake_index

DOCS = {
    "guide.md": "# Guide\n\nBees forage for nectar in spring and summer.\n",
    "release-notes.md": "# Release notes\n\nVersion two adds a smoker and a new hive tool.\n",
    "health.md": "# Health\n\nVarroa mites are treated in late summer.\n",
}


def test_remove_and_re_add_embed_nothing(new_index: Location, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for rel, text in DOCS.items():
        (docs / rel).write_text(text, encoding="utf-8")
    embedder = FakeEmbedder()
    with open_fake_index(new_index, embedder) as index:
        assert index.sync(docs).chunks_embedded == 3
        assert index.sync(docs, exclude=["release-notes.md"]).removed == ("release-notes.md",)
        embedder.reset()
        report = index.sync(docs, reset_patterns=True)  # the exclude undone (patterns are remembered)
        assert report.added == ("release-notes.md",) and report.chunks_embedded == 0 and embedder.encoded == []
        assert index.search("smoker hive tool", k=1, mode="bm25")[0].source == "release-notes.md"
        assert index.search("smoker hive tool", k=1, mode="dense")[0].source == "release-notes.md"
        assert index.gc(max_bytes=0, max_age_days=None)["removed"] == 0  # every vector is in use
        index.sync(docs, exclude=["release-notes.md"])
        assert index.gc(max_bytes=0, max_age_days=None)["removed"] == 1
        assert index.sync(docs, reset_patterns=True).chunks_embedded == 1  # trimmed, so embedded again
        assert index_problems(index) == []
