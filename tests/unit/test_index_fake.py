"""``ragkit.Index`` end to end on the fake embedder: sync, add, delete, the three search modes, filters,
what gets re-embedded, and what is stored. Milliseconds per test; the real model is in tests/integration/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fakes import NAME, FakeEmbedder, embed, open_fake_index
from ragkit import ConfigError, Document, FilterError, ModelMismatchError

DOCS = {
    "varroa.md": "# Varroa\n\nCount varroa mites with a sugar roll of three hundred bees.\n",
    "queens.md": "# Queens\n\nA mated queen lays up to two thousand eggs a day in spring.\n",
    "notes/smoke.txt": "Cool white smoke from dry pine needles calms the guard bees.\n",
    "notes/harvest.txt": "Extract honey when most of the frame is capped with wax.\n",
}

# A document long enough for several chunks at chunk_size=12 (the fake counts words).
LONG = "\n\n".join(
    f"Paragraph {i} talks about topic{i} and nothing else at all here." for i in range(6)
)


def write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write(tmp_path / "docs", DOCS)


@pytest.fixture
def synced(fake_index, fake_embedder: FakeEmbedder, docs: Path):  # type: ignore[no-untyped-def]
    report = fake_index.sync(docs)
    assert not report.failed
    fake_embedder.reset()
    return fake_index


# -- sync -------------------------------------------------------------------------------------------
def test_first_sync_adds_and_embeds_every_file(fake_index, fake_embedder: FakeEmbedder, docs: Path) -> None:
    report = fake_index.sync(docs)
    assert sorted(report.added) == sorted(DOCS)
    assert not (report.updated or report.removed or report.renamed or report.failed or report.unchanged)
    assert report.chunks_embedded == report.chunks_total == len(fake_index) == len(DOCS)
    assert len(fake_embedder.encoded) == len(DOCS)  # one chunk per short file, each embedded once
    info = fake_index.info()
    assert info["model"] == NAME and info["dimension"] == 64 and info["documents"] == len(DOCS)
    assert {d.id for d in fake_index.documents()} == set(DOCS)


def test_a_second_sync_reads_and_embeds_nothing(synced, fake_embedder: FakeEmbedder, docs: Path) -> None:
    report = synced.sync(docs)
    assert sorted(report.unchanged) == sorted(DOCS) and not report.changed
    assert report.chunks_embedded == 0 and fake_embedder.calls == 0


def test_a_touched_file_is_unchanged_and_not_embedded(synced, fake_embedder: FakeEmbedder, docs: Path) -> None:
    path = docs / "queens.md"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    report = synced.sync(docs)
    assert "queens.md" in report.unchanged and not report.changed
    assert fake_embedder.calls == 0


def test_an_edit_re_embeds_only_the_chunks_whose_text_changed(fake_embedder: FakeEmbedder, tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {"long.md": LONG})
    with open_fake_index(tmp_path / "small.ragkit", fake_embedder, chunk_size=12, chunk_overlap=0) as index:
        first = index.sync(docs)
        assert first.chunks_total >= 4, "the test needs a document of several chunks"
        fake_embedder.reset()
        (docs / "long.md").write_text(LONG.replace("topic3", "swarming"), encoding="utf-8")
        report = index.sync(docs)
        assert report.updated == ("long.md",)
        assert report.chunks_embedded == 1 and len(fake_embedder.encoded) == 1
        assert "swarming" in fake_embedder.encoded[0]
        assert report.chunks_total == first.chunks_total
        assert index.search("swarming", k=1, mode="bm25")[0].text.count("swarming") == 1


def test_a_rename_moves_the_document_without_embedding(synced, fake_embedder: FakeEmbedder, docs: Path) -> None:
    (docs / "queens.md").rename(docs / "royalty.md")
    report = synced.sync(docs)
    assert report.renamed == (("queens.md", "royalty.md"),)
    assert report.chunks_embedded == 0
    assert {d.id for d in synced.documents()} == set(DOCS) - {"queens.md"} | {"royalty.md"}
    assert synced.search("queen eggs", k=1, mode="bm25")[0].doc_id == "royalty.md"


def test_a_deleted_file_leaves_the_index(synced, docs: Path) -> None:
    (docs / "varroa.md").unlink()
    report = synced.sync(docs)
    assert report.removed == ("varroa.md",) and report.chunks_total == len(DOCS) - 1
    assert all(h.doc_id != "varroa.md" for h in synced.search("varroa mites", k=10))


def test_identical_chunk_text_is_embedded_once(fake_index, fake_embedder: FakeEmbedder, tmp_path: Path) -> None:
    docs = write(tmp_path / "docs", {"a.txt": "Bees dance to show the way.\n", "b.txt": "Bees dance to show the way.\n"})
    report = fake_index.sync(docs)
    assert report.chunks_total == 2 and report.chunks_embedded == 1 and len(fake_embedder.encoded) == 1


def test_a_file_that_fails_to_load_is_reported_and_the_rest_indexed(fake_index, docs: Path) -> None:
    (docs / "broken.txt").write_bytes(b"\x00\x01binary junk\x00")
    report = fake_index.sync(docs)
    assert [f.path for f in report.failed] == ["broken.txt"]
    assert sorted(report.added) == sorted(DOCS)


def test_sync_of_a_missing_folder_is_a_config_error(fake_index, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        fake_index.sync(tmp_path / "nowhere")


# -- add and delete ---------------------------------------------------------------------------------
def test_add_replace_and_delete_documents(fake_index, fake_embedder: FakeEmbedder) -> None:
    docs = [Document("faq-1", "Bees swarm in late spring."), Document("faq-2", "Wax moths eat old comb.")]
    report = fake_index.add(docs)
    assert report.added == ("faq-1", "faq-2") and report.chunks_embedded == 2
    fake_embedder.reset()
    again = fake_index.add(docs)
    assert again.unchanged == ("faq-1", "faq-2") and not again.added and fake_embedder.calls == 0
    changed = fake_index.add([Document("faq-2", "Wax moths destroy stored comb.")])
    assert changed.updated == ("faq-2",) and changed.chunks_embedded == 1
    assert fake_index.search("destroy", k=1, mode="bm25")[0].doc_id == "faq-2"
    assert fake_index.delete(["faq-1", "faq-1", "missing"]) == 1
    assert {d.id for d in fake_index.documents()} == {"faq-2"} and len(fake_index) == 1
    assert fake_index.delete(["faq-1"]) == 0


def test_add_refuses_duplicate_ids_and_ids_of_synced_files(synced) -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        synced.add([Document("x", "one"), Document("x", "two")])
    with pytest.raises(ConfigError, match="synced files"):
        synced.add([Document("queens.md", "not from the file")])
    assert len(synced) == len(DOCS)


def test_metadata_change_alone_updates_the_document(fake_index) -> None:
    fake_index.add([Document("d", "Propolis seals small gaps.", {"tag": "old"})])
    report = fake_index.add([Document("d", "Propolis seals small gaps.", {"tag": "new"})])
    assert report.updated == ("d",)
    assert fake_index.search("propolis", k=1, filters={"tag": "new"})[0].doc_id == "d"
    assert fake_index.search("propolis", k=1, filters={"tag": "old"}) == []


# -- search -----------------------------------------------------------------------------------------
def test_bm25_mode_returns_only_matching_chunks_with_their_bm25_evidence(synced) -> None:
    hits = synced.search("varroa mites", k=10, mode="bm25")
    assert [h.doc_id for h in hits] == ["varroa.md"]
    hit = hits[0]
    assert hit.bm25_rank == 1 and hit.bm25_score is not None and hit.bm25_score > 0
    assert hit.dense_rank is None and hit.dense_score is None and hit.score == pytest.approx(hit.bm25_score)


def test_dense_mode_scores_are_the_cosine_of_the_fake_vectors(synced) -> None:
    query = "guard bees smoke"
    hits = synced.search(query, k=10, mode="dense")
    assert len(hits) == len(DOCS) and [h.rank for h in hits] == list(range(1, len(DOCS) + 1))
    by_doc = {d.id: d.text for d in synced.documents()}
    for hit in hits:
        assert hit.bm25_rank is None and hit.dense_rank == hit.rank
        assert hit.dense_score == pytest.approx(float(embed(query) @ embed(hit.text)), abs=1e-5)
        assert by_doc[hit.doc_id][hit.start : hit.end] == hit.text
    assert [h.dense_score for h in hits] == sorted((h.dense_score for h in hits), reverse=True)
    assert hits[0].doc_id == "notes/smoke.txt"


def test_dense_mode_finds_a_related_text_without_shared_words(fake_index) -> None:
    """Trigrams make "swarming" close to "swarms": the dense leg finds what BM25 (stemmed "swarm" vs
    "swarming" aside) would, and ranks it above unrelated text."""
    fake_index.add([Document("a", "Colonies swarmed twice"), Document("b", "Honey extraction uses a spinner"),
                    Document("c", "Varroa treatment with oxalic acid")])
    assert fake_index.search("swarming colony", k=1, mode="dense")[0].doc_id == "a"
    assert fake_index.search("treating varroa", k=1, mode="dense")[0].doc_id == "c"


def test_hybrid_hits_carry_both_legs_and_are_ranked(synced) -> None:
    hits = synced.search("how many varroa mites are in three hundred bees", k=4)
    assert hits[0].doc_id == "varroa.md"
    assert hits[0].bm25_rank == 1 and hits[0].dense_rank is not None
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.chunk_id for h in hits}) == len(hits)


def test_k_limits_the_hits(synced) -> None:
    assert len(synced.search("bees", k=2)) == 2
    assert len(synced.search("bees", k=2, mode="dense")) == 2


def test_a_query_vector_replaces_embedding_the_query(synced, fake_embedder: FakeEmbedder) -> None:
    vector = embed("cool white smoke")
    hits = synced.search("unrelated words entirely", k=1, mode="dense", query_vector=vector)
    assert hits[0].doc_id == "notes/smoke.txt" and fake_embedder.calls == 0


def test_a_repeated_query_is_embedded_once(synced, fake_embedder: FakeEmbedder) -> None:
    first = synced.search("queen eggs", k=3)
    second = synced.search("queen eggs", k=3)
    assert first == second and fake_embedder.encoded == ["queen eggs"]


def test_empty_query_gives_nothing_and_bad_arguments_are_config_errors(synced) -> None:
    assert synced.search("   ", k=3) == [] and synced.search("", k=3, mode="dense") == []
    with pytest.raises(ConfigError, match="mode"):
        synced.search("bees", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be"):
        synced.search("bees", k=0)


def test_an_empty_index_finds_nothing(fake_index) -> None:
    for mode in ("hybrid", "bm25", "dense"):
        assert fake_index.search("bees", k=5, mode=mode) == []


# -- filters ----------------------------------------------------------------------------------------
def test_filters_restrict_every_mode(synced) -> None:
    for mode in ("hybrid", "bm25", "dense"):
        hits = synced.search("bees", k=10, mode=mode, filters={"source": {"glob": "notes/*"}})
        assert hits and {h.doc_id for h in hits} <= {"notes/smoke.txt", "notes/harvest.txt"}, mode


def test_filters_apply_before_the_top_k_cut(synced) -> None:
    """The one matching document is returned even though it ranks last without the filter."""
    unfiltered = synced.search("varroa mites sugar roll", k=10, mode="dense")
    last = unfiltered[-1].doc_id
    hits = synced.search("varroa mites sugar roll", k=1, mode="dense", filters={"doc_id": last})
    assert [h.doc_id for h in hits] == [last]


def test_filter_operators_on_metadata(synced) -> None:
    assert {h.doc_id for h in synced.search("bees", k=10, filters={"type": "markdown"})} <= {"varroa.md", "queens.md"}
    found = {h.doc_id for h in synced.search("bees", k=10, mode="dense", filters={"doc_id": {"in": ["queens.md",
                                                                                                  "varroa.md"]}})}
    assert found == {"queens.md", "varroa.md"}
    none = synced.search("bees", k=10, mode="dense", filters={"doc_id": {"nin": list(DOCS)}})
    assert none == []
    headed = synced.search("bees", k=10, mode="dense", filters={"headings": "Queens"})  # any element of a list
    assert [h.doc_id for h in headed] == ["queens.md"]


def test_an_unknown_filter_field_or_operator_is_a_filter_error(synced) -> None:
    with pytest.raises(FilterError, match="unknown filter field 'sorce'"):
        synced.search("bees", filters={"sorce": "x"})
    with pytest.raises(FilterError, match="unknown filter operator"):
        synced.search("bees", filters={"source": {"like": "x"}})


# -- what is stored ---------------------------------------------------------------------------------
def test_a_reopened_index_searches_the_same(synced, fake_embedder: FakeEmbedder, tmp_path: Path) -> None:
    before = synced.search("queen eggs spring", k=4)
    synced.close()
    with open_fake_index(tmp_path / "kb.ragkit", FakeEmbedder()) as again:
        assert again.search("queen eggs spring", k=4) == before
        assert again.config.model == NAME and again.config.dimension == 64


def test_a_copied_index_directory_is_a_working_index(synced, tmp_path: Path) -> None:
    synced.close()
    shutil.copytree(tmp_path / "kb.ragkit", tmp_path / "copy.ragkit")
    with open_fake_index(tmp_path / "copy.ragkit") as copy:
        assert len(copy) == len(DOCS)
        assert copy.search("varroa", k=1, mode="bm25")[0].doc_id == "varroa.md"


def test_another_model_is_refused_and_changes_nothing(synced, tmp_path: Path) -> None:
    synced.close()
    with pytest.raises(ModelMismatchError, match=NAME):
        open_fake_index(tmp_path / "kb.ragkit", FakeEmbedder("ragkit-test/other-embedder"))
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        assert index.config.model == NAME and len(index) == len(DOCS)


def test_model_and_embedder_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="disagree"):
        open_fake_index(tmp_path / "kb.ragkit", model="sentence-transformers/all-MiniLM-L6-v2")


def test_vectors_of_another_dimension_are_refused(synced) -> None:
    class Wider(FakeEmbedder):
        def encode(self, texts, *, show_progress=False):  # type: ignore[no-untyped-def]
            vectors = super().encode(texts)
            return np.hstack([vectors, np.zeros((len(vectors), 8), np.float32)])

    synced.embedder = Wider()
    with pytest.raises(ModelMismatchError, match="72-d"):
        synced.add([Document("new", "Bee bread is fermented pollen.")])
    assert len(synced) == len(DOCS)


def test_fixed_options_cannot_change_on_reopen(synced, tmp_path: Path) -> None:
    synced.close()
    with pytest.raises(ConfigError, match="chunk_size"):
        open_fake_index(tmp_path / "kb.ragkit", chunk_size=64)
