"""Tests for ragkit.Index: syncing folders, add/delete, search results, filters and the index on disk.

These are the acceptance checks of the Indexer issue, run on real parts: the real embedding
model, SQLite, faiss and files. The sample index is built once per session per backend (see
conftest.py); tests that change anything work on a copy (``backend_copy``, ``fresh_copy``).

Tests that take the ``backend`` fixture (directly or through ``backend_build``, ``backend_samples``,
``backend_copy`` or ``new_index``) run unchanged on both backends: the local one and Milvus Lite.
Tests of the local index's own files (segments, SQLite, pickles, its lock) run on the local one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import Location, SamplesBuild, index_problems, index_storage, open_index
from pdfutil import make_pdf

from ragkit.storage.location import check_index
from ragkit.errors import (
    ConfigError,
    FilterError,
    IndexCorruptError,
    IndexLockedError,
    ModelMismatchError,
)
from ragkit.storage.local.store import Store
from ragkit.types import Document, Hit

AFB = "health/american-foulbrood.md"
AFB_PHRASE = "if in doubt, rope it out"


# --------------------------------------------------------------------------- helpers


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def folder_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def tree_hashes(root: Path, *, sqlite_aux: bool = True) -> dict[str, str]:
    """sha256 of every file under ``root``; ``sqlite_aux=False`` leaves out SQLite's -wal/-shm files."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (sqlite_aux or not p.name.endswith(("-wal", "-shm")))
    }


def sources(hits: list[Hit]) -> list[str | None]:
    return [h.source for h in hits]


def current_segment(index_dir: Path) -> Path:
    versions = sorted(p for p in (index_dir / "segments").iterdir() if p.name[1:].isdigit())
    return versions[-1]


def chunk_count(index, doc_id: str) -> int:  # type: ignore[no-untyped-def]
    """How many chunks a document has, through the public API: a filtered dense search returns them all."""
    return len(index.search("anything", k=10_000, mode="dense", filters={"doc_id": doc_id}))


# --------------------------------------------------------------------- sync: unchanged, edit, rename, delete


def test_second_sync_of_an_unchanged_folder_is_a_fast_no_op(backend_build: SamplesBuild) -> None:
    build = backend_build
    files = folder_files(build.docs_dir)
    assert sorted(build.report.added) == files
    assert build.report.chunks_embedded == build.report.chunks_total > len(files)
    on_disk = tree_hashes(build.index_dir, sqlite_aux=False)

    with open_index(build.location) as index:
        started = time.perf_counter()
        report = index.sync(build.docs_dir)
        seconds = time.perf_counter() - started

    assert sorted(report.unchanged) == files
    assert (report.added, report.updated, report.removed, report.renamed, report.failed) == ((),) * 5
    assert report.chunks_embedded == 0
    assert report.chunks_total == build.report.chunks_total
    assert not report.changed
    assert seconds < 0.1 * build.seconds, (seconds, build.seconds)
    assert tree_hashes(build.index_dir, sqlite_aux=False) == on_disk  # a no-op sync writes nothing


def test_editing_one_file_re_embeds_only_its_changed_chunks(backend_copy: tuple[Location, Path]) -> None:
    index_dir, docs = backend_copy
    rel = "health/small-hive-beetle.md"
    phrase = "quokka lantern protocol"
    paragraph = (
        "\n\n## Club Field Note\n\nOur club calls the evening check of the oil traps the quokka lantern "
        "protocol: lift each trap by torchlight, count the drowned beetles and write the count on the lid.\n"
    )
    with (docs / rel).open("a", encoding="utf-8") as fh:
        fh.write(paragraph)

    with open_index(index_dir) as index:
        report = index.sync(docs)
        assert report.updated == (rel,)
        assert (report.added, report.removed, report.renamed, report.failed) == ((),) * 4
        assert sorted(report.unchanged) == [f for f in folder_files(docs) if f != rel]
        n_chunks = chunk_count(index, rel)
        assert 0 < report.chunks_embedded <= n_chunks
        assert report.chunks_embedded < n_chunks  # the chunks before the new paragraph come from the cache
        assert report.chunks_total == len(index)

        for mode in ("bm25", "hybrid"):
            hits = index.search(phrase, k=3, mode=mode)
            assert hits[0].source == rel, (mode, sources(hits))
            assert phrase in hits[0].text
        doc = next(d for d in index.documents() if d.id == rel)
        assert doc.text.endswith(paragraph)

        again = index.sync(docs)
        assert again.updated == () and again.chunks_embedded == 0


def test_renaming_a_file_moves_it_without_embedding(backend_copy: tuple[Location, Path]) -> None:
    index_dir, docs = backend_copy
    old, new = "health/wax-moth.md", "archive/old-wax-moth-notes.md"
    (docs / "archive").mkdir()
    os.rename(docs / old, docs / new)

    with open_index(index_dir) as index:
        report = index.sync(docs)
        assert report.renamed == ((old, new),)
        assert (report.added, report.updated, report.removed, report.failed) == ((),) * 4
        assert report.chunks_embedded == 0

        hits = index.search("boat-shaped grooves Galleria mellonella", k=5, mode="bm25")
        assert hits[0].source == new
        assert hits[0].doc_id == new
        assert old not in sources(hits)
        ids = {d.id for d in index.documents()}
        assert new in ids and old not in ids
        assert index_problems(index) == []


def test_renaming_a_text_file_without_heading_moves_it_without_embedding(
    backend_copy: tuple[Location, Path],
) -> None:
    index_dir, docs = backend_copy
    old, new = "health/nosema.txt", "health/nosema-notes.txt"
    os.rename(docs / old, docs / new)
    with open_index(index_dir) as index:
        report = index.sync(docs)
        assert report.renamed == ((old, new),)
        assert report.chunks_embedded == 0


_REMOVAL_ONLY_BUG = (
    "BUG ragkit/local.py:149 LocalBackend._write_next_segment(): a write that only removes chunks (a sync "
    "where files were deleted and nothing added, or Index.delete()) calls np.asarray([], np.float32)"
    ".reshape(0, -1), which raises 'ValueError: cannot reshape array of size 0 into shape (0,newaxis)'; "
    "the transaction rolls back, so the deleted file/document can never leave the index"
)


def test_deleting_a_file_removes_it_from_search(backend_copy: tuple[Location, Path]) -> None:
    index_dir, docs = backend_copy
    with open_index(index_dir) as index:
        assert AFB in sources(index.search(AFB_PHRASE, k=10, mode="bm25"))  # found while the file exists
        (docs / AFB).unlink()
        report = index.sync(docs)
        assert report.removed == (AFB,)
        assert (report.added, report.updated, report.renamed, report.failed) == ((),) * 4
        assert report.chunks_embedded == 0
        assert AFB not in sources(index.search(AFB_PHRASE, k=10, mode="bm25"))
        assert AFB not in {d.id for d in index.documents()}
        assert index.info()["documents"] == len(folder_files(docs))
        assert index_problems(index) == []


# --------------------------------------------------------------------------- files that fail to load


def test_problem_files_are_reported_and_the_good_ones_indexed(tmp_path: Path, new_index: Location) -> None:
    docs = tmp_path / "docs"
    write(docs / "binary.txt", b"header\x00\x01\x02 binary payload")
    write(docs / "empty.md", b"")
    write(docs / "latin1.txt", "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e for the picnic".encode("latin-1"))
    pdf = make_pdf(docs / "broken.pdf", ["The ruined ledger of the apiary.", "Second page of the ledger."])
    pdf.write_bytes(pdf.read_bytes()[: pdf.stat().st_size // 2])
    write(docs / "good.md", "# Propolis\n\nBees collect propolis, a resin glue, from tree buds.\n")
    write(docs / "notes/good.txt", "The nuc box arrived with five frames of brood and a marked blue queen.\n")

    with open_index(new_index) as index:
        report = index.sync(docs)
        reasons = {f.path: f.reason for f in report.failed}
        assert set(reasons) == {"binary.txt", "empty.md", "latin1.txt", "broken.pdf"}
        assert "binary" in reasons["binary.txt"]
        assert "empty" in reasons["empty.md"]
        assert "UTF-8" in reasons["latin1.txt"]
        assert "PDF" in reasons["broken.pdf"]
        assert sorted(report.added) == ["good.md", "notes/good.txt"]
        assert {d.id for d in index.documents()} == {"good.md", "notes/good.txt"}
        assert index.search("resin glue from tree buds", k=1, mode="bm25")[0].source == "good.md"
        assert index.search("marked blue queen", k=1, mode="hybrid")[0].source == "notes/good.txt"

        again = index.sync(docs)  # still reported: a failed file is never recorded as indexed
        assert {f.path for f in again.failed} == set(reasons)
        assert sorted(again.unchanged) == ["good.md", "notes/good.txt"]
        assert again.chunks_embedded == 0


def test_a_file_that_turns_unreadable_keeps_its_indexed_version(backend_copy: tuple[Location, Path]) -> None:
    index_dir, docs = backend_copy
    pdf_rel = "seasons/inspection-checklist.pdf"
    with open_index(index_dir) as index:
        old_texts = {d.id: d.text for d in index.documents() if d.id in (AFB, pdf_rel)}
        only_pdf = {"doc_id": pdf_rel}
        query = "inspection checklist"
        pdf_hits = {h.chunk_id for h in index.search(query, k=50, mode="bm25", filters=only_pdf)}
        assert pdf_hits
        write(docs / AFB, "Le couvain d\u00e9truit: br\u00fblez les cadres.".encode("latin-1"))
        pdf = docs / pdf_rel
        pdf.write_bytes(pdf.read_bytes()[:300])

        report = index.sync(docs)
        assert {f.path for f in report.failed} == {AFB, pdf_rel}
        assert (report.updated, report.removed, report.added) == ((), (), ())
        assert {d.id: d.text for d in index.documents() if d.id in (AFB, pdf_rel)} == old_texts
        assert AFB in sources(index.search(AFB_PHRASE, k=10, mode="bm25"))
        still = {h.chunk_id for h in index.search(query, k=50, mode="bm25", filters=only_pdf)}
        assert still == pdf_hits

        again = index.sync(docs)  # the manifest still describes the old version, so it is tried again
        assert {f.path for f in again.failed} == {AFB, pdf_rel}
        assert index_problems(index) == []


def test_a_second_folder_with_the_same_file_names_gets_a_namespace_of_its_own(
    tmp_path: Path, new_index: Location
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write(first / "hives.md", "# Hives\n\nThe long hive holds thirty frames in one horizontal box.\n")
    write(second / "hives.md", "# Hives\n\nThe warre hive stacks small boxes underneath the colony.\n")
    with open_index(new_index) as index:
        assert index.sync(first).added == ("hives.md",)
        report = index.sync(second)  # issue 14: it used to fail as "already exists"
        assert (report.added, report.namespace, report.failed) == (("hives.md",), "second", ())
        assert sorted(d.id for d in index.documents()) == ["hives.md", "second/hives.md"]
        assert index.sync(second).unchanged == ("hives.md",) and index.sync(first).unchanged == ("hives.md",)
        assert sources(index.search("warre hive boxes", k=1)) == ["second/hives.md"]
        assert index_problems(index) == []


# --------------------------------------------------------------------------- opening with other settings


def test_opening_with_another_model_fails_and_changes_nothing(backend_copy: tuple[Location, Path]) -> None:
    index_dir, _ = backend_copy
    before = tree_hashes(index_storage(index_dir))
    with pytest.raises(ModelMismatchError, match="all-MiniLM-L6-v2") as info:
        open_index(index_dir, model="sentence-transformers/paraphrase-MiniLM-L3-v2")
    assert "paraphrase-MiniLM-L3-v2" in str(info.value)
    with pytest.raises(ConfigError, match="chunk_size"):
        open_index(index_dir, chunk_size=128)
    del info
    gc.collect()  # see the xfail test below: a rejected open leaves its connection to the collector
    assert tree_hashes(index_storage(index_dir)) == before
    with open_index(index_dir, model="sentence-transformers/all-MiniLM-L6-v2") as index:  # same model: fine
        assert index.info()["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_rejected_open_closes_the_database_at_once(fresh_copy: tuple[Path, Path]) -> None:
    index_dir, _ = fresh_copy
    before = tree_hashes(index_dir)
    gc.disable()
    try:
        try:
            open_index(index_dir, model="sentence-transformers/paraphrase-MiniLM-L3-v2")
        except ModelMismatchError:
            pass
        assert tree_hashes(index_dir) == before
    finally:
        gc.enable()
        gc.collect()


# --------------------------------------------------------------------------- add() and delete()


NOTE1 = Document("note-1", "The hive scale gained three kilos in the clover flow.", {"author": "ana"})
NOTE2 = Document("note-2", "A swarm settled in the plum tree behind the shed on Sunday.", {"author": "ben"})


def test_add_in_memory_documents(new_index: Location) -> None:
    with open_index(new_index) as index:
        report = index.add([NOTE1, NOTE2])
        assert report.added == ("note-1", "note-2")
        assert report.chunks_embedded == 2 and report.chunks_total == 2
        hit = index.search("clover flow kilos", k=1, mode="bm25")[0]
        assert (hit.doc_id, hit.metadata["author"]) == ("note-1", "ana")
        assert index.search("swarm plum tree", k=1, mode="dense")[0].doc_id == "note-2"

        same = index.add([NOTE1, NOTE2])
        assert same.unchanged == ("note-1", "note-2")
        assert (same.added, same.updated, same.chunks_embedded) == ((), (), 0)

        edited = Document("note-1", "The hive scale lost one kilo after the rain.", {"author": "ana"})
        changed = index.add([edited])
        assert (changed.updated, changed.added, changed.unchanged) == (("note-1",), (), ())
        assert changed.chunks_embedded == 1
        assert index.search("clover", k=5, mode="bm25") == []
        assert index.search("lost a kilo in the rain", k=1, mode="bm25")[0].doc_id == "note-1"
        assert {d.id: d.text for d in index.documents()} == {"note-1": edited.text, "note-2": NOTE2.text}

        with pytest.raises(ConfigError, match="duplicate"):
            index.add([NOTE2, NOTE2])
        assert index.delete(["no-such-id", "nor-this"]) == 0
        assert len(index) == 2
        assert index_problems(index) == []


def test_delete_in_memory_documents(new_index: Location) -> None:
    with open_index(new_index) as index:
        index.add([NOTE1, NOTE2])
        assert index.delete(["note-2", "no-such-id"]) == 1
        assert index.delete(["no-such-id", "note-2"]) == 0
        assert [d.id for d in index.documents()] == ["note-1"]
        assert index.search("swarm plum tree", k=5, mode="bm25") == []
        assert len(index) == 1
        assert index_problems(index) == []


def test_add_refuses_ids_of_synced_files(tmp_path: Path, new_index: Location) -> None:
    write(tmp_path / "docs" / "queen.md", "# Queens\n\nA queen lays two thousand eggs a day in spring.\n")
    with open_index(new_index) as index:
        index.sync(tmp_path / "docs")
        with pytest.raises(ConfigError, match="synced files"):
            index.add([Document("queen.md", "replacement text")])
        assert [d.text for d in index.documents()] == [(tmp_path / "docs" / "queen.md").read_text()]


# --------------------------------------------------------------------------- search results


def test_hits_carry_their_chunk_and_each_legs_evidence(backend_samples: tuple[Location, Path]) -> None:
    index_dir, _ = backend_samples
    query = "when do bees swarm and how do I prevent it?"
    with open_index(index_dir) as index:
        texts = {d.id: d.text for d in index.documents()}
        hybrid = index.search(query, k=10)
        bm25 = {h.chunk_id: h for h in index.search(query, k=100, mode="bm25")}
        dense = {h.chunk_id: h for h in index.search(query, k=100, mode="dense")}

    assert len(hybrid) == 10
    assert [h.rank for h in hybrid] == list(range(1, 11))
    assert all(a.score >= b.score for a, b in zip(hybrid, hybrid[1:]))
    assert len({h.chunk_id for h in hybrid}) == 10
    for hit in hybrid:
        assert isinstance(hit, Hit) and math.isfinite(hit.score)
        assert hit.doc_id in texts and hit.chunk_id.startswith(hit.doc_id)
        assert hit.metadata["source"] == hit.source == hit.doc_id
        assert {"title", "type"} <= set(hit.metadata)
        assert hit.text and texts[hit.doc_id][hit.start : hit.end] == hit.text
        # both legs ran: a leg that did not return the hit shows its exact score, with rank None
        assert hit.bm25_score is not None and hit.dense_score is not None
        assert hit.bm25_rank is not None or hit.dense_rank is not None
        if hit.bm25_rank is not None:  # the leg's evidence is what that leg alone returns
            assert bm25[hit.chunk_id].rank == hit.bm25_rank
            assert bm25[hit.chunk_id].score == pytest.approx(hit.bm25_score, rel=1e-9)
        else:
            assert hit.chunk_id not in bm25
        if hit.dense_rank is not None:
            assert dense[hit.chunk_id].rank == hit.dense_rank
            assert dense[hit.chunk_id].score == pytest.approx(hit.dense_score, rel=1e-6)
        else:
            assert hit.chunk_id not in dense
    assert "seasons/swarming.md" in sources(hybrid[:3])

    for hit in bm25.values():
        assert hit.bm25_score == hit.score and hit.dense_score is None and hit.dense_rank is None
    for hit in dense.values():
        assert hit.dense_score == pytest.approx(hit.score)
        assert hit.bm25_score is None and hit.bm25_rank is None
    json.dumps([h.to_dict() for h in hybrid])  # JSON-ready


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_filter_applies_before_the_top_k_cut(backend_samples: tuple[Location, Path], mode: str) -> None:
    index_dir, _ = backend_samples
    query, k = "varroa mites treatment", 5
    filters = {"source": {"glob": "basics/*"}}
    with open_index(index_dir) as index:
        unfiltered = index.search(query, k=k, mode=mode)
        # precondition: filtering after the top-k cut would leave nothing
        assert not any(s.startswith("basics/") for s in sources(unfiltered))
        hits = index.search(query, k=k, mode=mode, filters=filters)
        # each leg filters before its own depth cut too
        shallow = index.search(query, k=k, mode=mode, filters=filters, depth=k)
    assert len(hits) == k
    assert all(h.source.startswith("basics/") for h in hits), sources(hits)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert len(shallow) == k and all(h.source.startswith("basics/") for h in shallow), sources(shallow)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"type": {"in": ["pdf", "text"]}}, lambda m: m["type"] in ("pdf", "text")),
        ({"source": {"nin": ["health/varroa-mites.md", "glossary.md"]}},
         lambda m: m["source"] not in ("health/varroa-mites.md", "glossary.md")),
        ({"page": {"gte": 2}}, lambda m: m.get("page") is not None and m["page"] >= 2),
        ({"page": {"gt": 1, "lte": 2}}, lambda m: m.get("page") == 2),
        ({"source": {"glob": "health/varroa-*"}}, lambda m: m["source"].startswith("health/varroa-")),
        ({"type": "html"}, lambda m: m["type"] == "html"),
        ({"title": {"ne": "Beekeeping Glossary"}}, lambda m: m["title"] != "Beekeeping Glossary"),
        ({"headings": "Integrated Pest Management"},
         lambda m: "Integrated Pest Management" in m.get("headings", [])),
        ({"type": "markdown", "source": {"glob": "seasons/*"}},
         lambda m: m["type"] == "markdown" and m["source"].startswith("seasons/")),
    ],
    ids=["in", "nin", "gte", "range", "glob", "eq", "ne", "list-field", "and"],
)
def test_filter_operators_select_exactly_the_matching_chunks(  # type: ignore[no-untyped-def]
    backend_samples: tuple[Location, Path], filters, expected
) -> None:
    index_dir, _ = backend_samples
    with open_index(index_dir) as index:
        everything = index.search("bees", k=10_000, mode="dense")  # the dense leg ranks every chunk
        assert len(everything) == len(index)
        want = {h.chunk_id for h in everything if expected(h.metadata)}
        assert 0 < len(want) < len(everything)
        got = index.search("bees", k=10_000, mode="dense", filters=filters)
        assert {h.chunk_id for h in got} == want
        for hit in index.search("varroa honey bees", k=10, mode="hybrid", filters=filters):
            assert hit.chunk_id in want


def test_bad_filters_raise_filter_error(backend_samples: tuple[Location, Path]) -> None:
    index_dir, _ = backend_samples
    with open_index(index_dir) as index:
        with pytest.raises(FilterError, match="colour"):
            index.search("varroa", filters={"colour": "red"})
        with pytest.raises(FilterError, match="like"):
            index.search("varroa", filters={"source": {"like": "health/%"}})
        with pytest.raises(FilterError, match="list"):
            index.search("varroa", mode="bm25", filters={"type": {"in": "pdf"}})
        assert index.search("varroa", filters={"source": {"in": []}}) == []  # valid, matches nothing


# ------------------------------------------------------------------------ on disk: formats, corruption, lock


def _assert_no_pickle(index_dir: Path) -> set[str]:
    import faiss

    kinds = set()
    for path in sorted(index_dir.rglob("*")):
        if not path.is_file():
            continue
        name = path.name
        if name == "ragkit.sqlite":
            assert path.read_bytes()[:16] == b"SQLite format 3\x00"
        elif name in ("ragkit.sqlite-wal", "ragkit.sqlite-shm"):
            pass  # SQLite's own journal files while a connection is open
        elif name.endswith(".npy"):
            array = np.load(path, allow_pickle=False)
            assert array.dtype != object
        elif name.endswith(".json"):
            json.loads(path.read_text(encoding="utf-8"))
        elif name.endswith(".faiss"):
            index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
            assert index.ntotal > 0
        elif name.endswith(".lock"):
            pass
        else:
            pytest.fail(f"unexpected file in the index: {path}")
        kinds.add(path.suffix)
    return kinds


def test_the_index_holds_no_pickles(built_samples: tuple[Path, Path], tmp_path: Path) -> None:
    assert {".sqlite", ".npy", ".json", ".lock"} <= _assert_no_pickle(built_samples[0])

    write(tmp_path / "docs" / "a.md", "# Drones\n\nDrones are male bees that mate with queens in flight.\n")
    write(tmp_path / "docs" / "b.md", "# Workers\n\nWorkers are female bees that forage for nectar.\n")
    with open_index(tmp_path / "hnsw.ragkit", dense_index="hnsw") as index:
        index.sync(tmp_path / "docs")
    assert ".faiss" in _assert_no_pickle(tmp_path / "hnsw.ragkit")
    with open_index(tmp_path / "hnsw.ragkit") as index:  # the stored graph is loaded back and searched
        assert index.search("male bees mating flight", k=1, mode="dense")[0].doc_id == "a.md"


def test_a_corrupted_segment_file_is_named_with_the_rebuild_hint(fresh_copy: tuple[Path, Path]) -> None:
    index_dir, _ = fresh_copy
    vectors = current_segment(index_dir) / "vectors.npy"
    data = bytearray(vectors.read_bytes())
    for i in range(len(data) - 64, len(data)):  # flip bytes in the array body: same size, wrong content
        data[i] ^= 0xFF
    vectors.write_bytes(bytes(data))

    with open_index(index_dir) as index:
        for mode in ("bm25", "hybrid"):
            with pytest.raises(IndexCorruptError) as info:
                index.search("varroa", k=3, mode=mode)
            assert str(vectors) in str(info.value)
            assert "--rebuild" in str(info.value)
    problems = check_index(index_dir)
    assert len(problems) == 1 and "vectors.npy" in problems[0]


def test_a_truncated_segment_file_and_a_garbage_database_are_corruption(
    fresh_copy: tuple[Path, Path],
) -> None:
    index_dir, _ = fresh_copy
    bm25 = current_segment(index_dir) / "bm25_data.npy"
    bm25.write_bytes(bm25.read_bytes()[:100])
    with open_index(index_dir) as index, pytest.raises(IndexCorruptError, match="bm25_data.npy.*--rebuild"):
        index.search("varroa", k=3, mode="bm25")

    db = index_dir / "ragkit.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexCorruptError, match="ragkit.sqlite.*--rebuild"):
        open_index(index_dir)
    assert check_index(index_dir) != []


def test_a_missing_segment_file_is_corruption(fresh_copy: tuple[Path, Path]) -> None:
    index_dir, _ = fresh_copy
    (current_segment(index_dir) / "vectors.npy").unlink()
    with open_index(index_dir) as index, pytest.raises(IndexCorruptError, match="vectors.npy.*--rebuild"):
        index.search("varroa", k=3, mode="bm25")


_HOLD_LOCK = """
import sys
from ragkit.storage.local.store import Store
with Store(sys.argv[1]).writer_lock(0):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_writer_is_refused_while_the_lock_is_held(fresh_copy: tuple[Path, Path]) -> None:
    index_dir, docs = fresh_copy
    write(docs / "new-note.md", "# Note\n\nThe marked queen was seen on frame four of the brood box.\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(index_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with open_index(index_dir, lock_timeout=0) as index:
            with pytest.raises(IndexLockedError, match="lock_timeout"):
                index.sync(docs)
            with pytest.raises(IndexLockedError):
                index.add([Document("memo", "text")])
            with pytest.raises(IndexLockedError):
                index.delete([AFB])
            index.lock_timeout = 0.3
            started = time.perf_counter()
            with pytest.raises(IndexLockedError):
                index.sync(docs)
            assert time.perf_counter() - started >= 0.25  # it waited before giving up
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0

    with open_index(index_dir, lock_timeout=0) as index:
        assert index.sync(docs).added == ("new-note.md",)


def test_the_lock_is_per_open_file_so_it_also_excludes_writers_in_this_process(
    fresh_copy: tuple[Path, Path],
) -> None:
    index_dir, docs = fresh_copy
    write(docs / "new-note.md", "# Note\n\nThe marked queen was seen on frame four of the brood box.\n")
    release = threading.Event()
    locked = threading.Event()

    def hold() -> None:
        with Store(index_dir).writer_lock(0):
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30)
        with open_index(index_dir, lock_timeout=0) as index, pytest.raises(IndexLockedError):
            index.sync(docs)
        threading.Timer(0.3, release.set).start()
        with open_index(index_dir, lock_timeout=30) as index:  # waits for the holder, then writes
            report = index.sync(docs)
        assert report.added == ("new-note.md",)
    finally:
        release.set()
        holder.join(30)


def test_bm25_constants_can_change_on_an_existing_index(backend_copy: tuple[Location, Path]) -> None:
    index_dir, _ = backend_copy
    with open_index(index_dir) as index:
        before = index.search("varroa mites", k=3, mode="bm25")
    with open_index(index_dir, bm25_idf="okapi", bm25_k1=0.9) as index:
        assert (index.config.bm25_idf, index.config.bm25_k1) == ("okapi", 0.9)
        changed = index.search("varroa mites", k=3, mode="bm25")
    assert [h.bm25_score for h in changed] != [h.bm25_score for h in before]
    with open_index(index_dir) as index:  # stored: a plain open keeps them
        assert index.config.bm25_k1 == 0.9
    with pytest.raises(ConfigError, match="idf"):
        open_index(index_dir, bm25_idf="tfidf")
