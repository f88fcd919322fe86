"""``Index.sync(dry_run=True)`` / ``ragkit index --dry-run``: what a sync would change, the chunks it would
embed after the embedding cache and an estimate of the time, with nothing written; the embedding bar
counts chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fakes import FakeEmbedder, open_fake_index

DOCS = {
    "varroa.md": "# Varroa\n\nCount varroa mites with a sugar roll of three hundred bees.\n",
    "queens.md": "# Queens\n\nA mated queen lays up to two thousand eggs a day in spring.\n",
    "notes/smoke.txt": "Cool white smoke from dry pine needles calms the guard bees.\n",
}


def write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the index) by its bytes' hash, and its mtime."""
    return {str(p.relative_to(folder)): f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.stat().st_mtime_ns}"
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_dry_run_writes_nothing_and_tells_what_the_sync_then_does(tmp_path: Path) -> None:
    docs, kb = write(tmp_path / "docs", DOCS), tmp_path / "kb"
    embedder = FakeEmbedder()
    with open_fake_index(kb, embedder) as index:
        index.sync(docs)
    write(docs, {"new.md": "A new page about swarms.\n", "queens.md": "# Queens\n\nChanged text on queens.\n"})
    (docs / "notes/smoke.txt").rename(docs / "notes/smoker.txt")
    (docs / "varroa.md").unlink()
    before = snapshot(kb)
    embedder.reset()
    with open_fake_index(kb, embedder) as index:
        dry = index.sync(docs, dry_run=True)
    assert snapshot(kb) == before  # byte-identical, not even touched
    # no sync has embedded enough chunks to record a rate yet: measured on a sample
    assert dry.dry_run and "measured now on 2 of the chunks" in dry.estimate_basis
    assert (dry.added, dry.updated, dry.renamed, dry.removed) == (
        ("new.md",), ("queens.md",), (("notes/smoke.txt", "notes/smoker.txt"),), ("varroa.md",))
    assert dry.summary().startswith("dry run, nothing written: would be 1 added, 1 updated, 1 renamed, 1 removed")
    with open_fake_index(kb, embedder) as index:
        real = index.sync(docs)
    assert (real.added, real.updated, real.renamed, real.removed) == (dry.added, dry.updated, dry.renamed, dry.removed)
    assert (real.chunks_new, real.chunks_embedded) == (dry.chunks_new, dry.chunks_embedded) == (3, 2)  # renamed: cached


def test_a_dry_run_on_a_new_index_creates_nothing(tmp_path: Path) -> None:
    docs, kb = write(tmp_path / "docs", DOCS), tmp_path / "kb"
    with open_fake_index(kb) as index:
        report = index.sync(docs, dry_run=True, exclude=["notes/"])
    assert not kb.exists()
    assert report.added == ("queens.md", "varroa.md") and report.chunks_embedded == 2
    assert "measured now on 2 of the chunks" in report.estimate_basis and report.estimated_seconds is not None
    with open_fake_index(kb) as index:
        assert index.sync(docs).added == ("notes/smoke.txt", "queens.md", "varroa.md")  # the exclude was not kept


def test_chunks_already_embedded_are_not_counted_to_embed(tmp_path: Path) -> None:
    docs, kb = write(tmp_path / "docs", DOCS), tmp_path / "kb"
    with open_fake_index(kb) as index:
        index.sync(docs)
        index.sync(docs, exclude=["varroa.md"])
        dry = index.sync(docs, reset_patterns=True, dry_run=True)
    assert dry.added == ("varroa.md",) and dry.chunks_new == 1 and dry.chunks_embedded == 0
    assert dry.estimated_seconds == 0.0 and dry.estimate_basis == "nothing to embed"
    assert "forgot the remembered patterns (exclude 'varroa.md')" in dry.notes


def test_the_estimate_uses_the_rate_the_last_sync_measured(tmp_path: Path) -> None:
    many = {f"page{i:03}.md": f"Page {i} is about topic{i} and bees.\n" for i in range(200)}
    docs, kb = write(tmp_path / "docs", many), tmp_path / "kb"
    with open_fake_index(kb) as index:
        assert index.sync(docs).chunks_embedded == 200
        rate = index.config.embedding_rate
        assert rate["model"] == index.config.model and rate["chunks"] == 168 and rate["chunks_per_second"] > 0
        write(docs, {f"more{i}.md": f"More text number {i}.\n" for i in range(10)})
        dry = index.sync(docs, dry_run=True)
    assert dry.chunks_embedded == 10
    assert dry.estimate_basis.endswith("as measured when this index last embedded 168 chunks")
    assert abs(dry.estimated_seconds - 10 / rate["chunks_per_second"]) < 1e-6
    assert "10 to embed (about " in dry.summary()


def test_the_embedding_bar_counts_chunks(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    docs = write(tmp_path / "docs", {f"p{i}.md": f"Paragraph {i} on hives.\n" for i in range(150)})
    embedder = FakeEmbedder()
    with open_fake_index(tmp_path / "kb", embedder) as index:
        index.sync(docs, show_progress=True)
    err = capsys.readouterr().err
    assert "embedding" in err and "chunk/s" in err and "/150" in err and "Batches" not in err
    assert embedder.calls == 5 and len(embedder.encoded) == 150  # batches of 32 under one bar


def test_when_long_chunks_are_read_in_windows_the_bar_counts_windows_and_the_rate_chunks(
    tmp_path: Path, capsys  # type: ignore[no-untyped-def]
) -> None:
    class EnglishOnly(FakeEmbedder):  # an Arabic word is 4 model tokens, the estimate's chunks hold more
        def token_counter(self):  # type: ignore[no-untyped-def]
            return lambda text: sum(4 if "\u0600" <= w[0] <= "\u06ff" else 1 for w in text.split())

    words = " ".join(["الخوارزميات", "نظرية", "الألعاب", "التوافقية"] * 10)
    docs = write(tmp_path / "docs", {f"p{i:03}.md": f"{i} {words} {i}\n" for i in range(60)})
    embedder = EnglishOnly(max_seq_length=66)  # 64-token windows: each 40-word chunk is read in 3
    with open_fake_index(tmp_path / "kb", embedder, chunk_overlap=0) as index:
        report = index.sync(docs, show_progress=True)
        rate = index.config.embedding_rate
    err = capsys.readouterr().err
    import re

    windows, chunks = int(re.findall(r"embedding: .*?\| *\d+/(\d+) \[", err)[-1]), report.chunks_embedded
    assert chunks >= 100 and windows > 1.3 * chunks and "window/s" in err  # the bar's total is what it counts
    # the rate is in chunks (a dry run multiplies it by chunks); the first batch, with the model's load, untimed
    assert rate["chunks"] == round((windows - 32) * chunks / windows)
