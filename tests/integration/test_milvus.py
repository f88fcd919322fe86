"""The Milvus backend on a real Milvus Lite: the same Index API, the same answers as the local backend.

A small folder (12 notes) is indexed once per module into Milvus Lite *and* into a local index, the
oracle: search results, scores and filters must agree. Tests that change the index work on a copy
of the Milvus Lite file. Slow parts (marked): a sync killed in subprocesses (at ragkit's write steps
and at random moments), two ``--shard`` workers.

The Indexer and Retriever acceptance tests (test_index.py, test_retrieval.py) run on Milvus Lite too,
through conftest's ``backend`` fixture; this module holds what is particular to Milvus.
"""

from __future__ import annotations

import os
import random
import re
import select
import shutil
import subprocess
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import open_index, rebase_index

try:
    import milvus_lite  # noqa: F401
    import pymilvus  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip('the Milvus backend needs pymilvus and milvus-lite: pip install "ragkit[milvus]"',
                allow_module_level=True)

from ragkit.storage.base import Changes, PreparedDocument
from ragkit.errors import ConfigError, IndexLockedError
from ragkit.storage.milvus import lite, statistics
from ragkit.storage.milvus.backend import MilvusBackend
from ragkit.storage.milvus.expressions import condition
from ragkit.types import Chunk, Document

HOT = "Varroa mites spread fast. Count varroa weekly, treat varroa with oxalic acid; varroa kills colonies."
COLD = "The apiary was quiet. {word} grew by the hedge, and one note mentions varroa in passing."
NOTES = {
    # Different lengths, so no two notes tie on a score (ties are ordered by backend row ids).
    **{f"hot/varroa-{i}.md": f"# Varroa {i}\n\nmarker{i}x {HOT} Hive {i} was checked{' twice' * i}.\n"
       for i in range(1, 5)},
    **{f"cold/note-{i}.md": f"# Note {i}\n\nmarker{i + 4}x " + COLD.format(word=w) + " Quiet." * i + "\n"
       for i, w in enumerate(["Clover", "Heather", "Lime trees", "Acacia"], start=1)},
    "garden/roses.md": "# Roses\n\nmarker9x Prune roses in early spring; aphids and spider mites attack them.\n",
    "garden/tomato_plants.md": "# Tomatoes\n\nmarker10x Tomatoes need warmth and water. Pinch out side shoots.\n",
    "garden/compost.md": "# Compost\n\nmarker11x Turn the compost heap monthly; worms do the rest.\n",
    "kitchen/honey.md": "# Honey\n\nmarker12x Extract honey from capped frames in late summer. Honey keeps for years.\n",
}
QUERIES = ["varroa treatment", "when to prune roses", "honey extraction", "warm tomatoes water", "worms"]
EXTRA = [  # in-memory documents with numeric and list metadata, for filters
    Document("paper-a", "A study of mite loads in 2019 colonies.", {"year": 2019, "tags": ["mites", "survey"]}),
    Document("paper-b", "Oxalic acid trial on mites, 2021.", {"year": 2021, "tags": ["mites", "treatment"]}),
    Document("paper-c", "Pollen diversity and colony health.", {"year": 2023.5, "tags": ["pollen"]}),
]


def uri(path: Path) -> str:
    return f"milvus-lite://{path}"


def write_notes(root: Path, notes: dict[str, str]) -> Path:
    for rel, text in notes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(milvus_db, local_dir, docs)``: the notes and EXTRA in Milvus Lite and in a local index."""
    base = tmp_path_factory.mktemp("milvus")
    docs = write_notes(base / "docs", NOTES)
    for location in (uri(base / "kb.db"), base / "local.ragkit"):
        with open_index(location) as index:
            report = index.sync(docs)
            assert not report.failed and len(report.added) == len(NOTES)
            index.add(EXTRA)
    return base / "kb.db", base / "local.ragkit", docs


@pytest.fixture
def copy(built: tuple[Path, Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """``(milvus_db, docs)``: a private copy of the built Milvus Lite index and of its notes, free to change."""
    db, _, docs = built
    shutil.copytree(db, tmp_path / "kb.db")  # nothing holds it open between tests
    shutil.copytree(docs, tmp_path / "docs")  # copy2: mtimes kept, so the notes are "unchanged"
    rebase_index(tmp_path / "kb.db", docs, tmp_path / "docs")
    return tmp_path / "kb.db", tmp_path / "docs"


def results(index, query: str, mode: str, **options):  # type: ignore[no-untyped-def]
    return [(h.chunk_id, h.score, h.bm25_score, h.dense_score) for h in index.search(query, mode=mode, **options)]


def assert_same_results(ours: list, theirs: list, rel: float = 1e-5, abs_: float = 1e-6) -> None:
    assert [r[0] for r in ours] == [r[0] for r in theirs]
    for a, b in zip(ours, theirs):
        for x, y in zip(a[1:], b[1:]):
            assert (x is None) == (y is None) and (x is None or x == pytest.approx(y, rel=rel, abs=abs_)), (a, b)


def assert_statistics_exact(backend: MilvusBackend) -> None:
    """The stored BM25 statistics equal what the chunks hold (no drift after a write or a crash)."""
    counts: Counter[int] = Counter()
    for row in backend.cols.scan("", "pk >= 0", ["sparse", "dl"]):
        counts.update(t for t in row["sparse"] if t != statistics.EMPTY_TERM)
        counts[statistics.N_CHUNKS] += 1
        counts[statistics.N_TOKENS] += row["dl"]
    stored = statistics.sums(backend.cols, list(counts))
    assert {t: n for t, n in stored.items() if n} == +counts


# --------------------------------------------------------------------------- search parity with local


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_search_returns_what_the_local_backend_returns(built: tuple[Path, Path, Path], mode: str) -> None:
    db, local_dir, _ = built
    with open_index(uri(db)) as milvus, open_index(local_dir) as local:
        for query in QUERIES:
            assert_same_results(results(milvus, query, mode, k=5), results(local, query, mode, k=5))
        if mode == "hybrid":
            for method in ("rrf", "convex", "dbsf"):
                assert_same_results(results(milvus, QUERIES[0], mode, k=5, method=method),
                                    results(local, QUERIES[0], mode, k=5, method=method))


def test_info_counts_and_documents_match_the_local_index(built: tuple[Path, Path, Path]) -> None:
    db, local_dir, _ = built
    with open_index(uri(db)) as milvus, open_index(local_dir) as local:
        assert {k: milvus.info()[k] for k in ("documents", "chunks", "files")} == \
            {k: local.info()[k] for k in ("documents", "chunks", "files")}
        assert milvus.info()["bytes_on_disk"] > 0
        assert milvus.documents() == local.documents()
        assert_statistics_exact(milvus.backend)


# --------------------------------------------------------------------------- filters


FILTERS = [
    {"source": "hot/varroa-1.md"},
    {"source": {"glob": "cold/*"}},
    {"source": {"glob": "garden/tomato_*"}},  # "_" is a LIKE wildcard: checked client-side
    {"source": {"glob": "[hc]o*/*"}},  # a character class: checked client-side
    {"type": {"in": ["markdown", "text"]}, "title": {"ne": "Roses"}},
    {"title": {"nin": ["Roses", "Compost"]}},
    {"doc_id": {"in": ["paper-a", "paper-c", "cold/note-1.md"]}},
    {"year": {"gte": 2020}},
    {"year": {"lt": 2021.5}, "tags": "mites"},
    {"tags": {"in": ["pollen", "survey"]}},
    {"tags": {"ne": "mites"}},  # list field, not eq/in: checked client-side
    {"chunk_id": {"glob": "hot/*#0"}},
    {"title": {"gt": "Note 2", "lte": "Varroa 2"}},
]


@pytest.mark.parametrize("filters", FILTERS, ids=[str(f) for f in FILTERS])
@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_filters_select_the_same_chunks_as_local(built: tuple[Path, Path, Path], filters: dict, mode: str) -> None:
    db, local_dir, _ = built
    with open_index(uri(db)) as milvus, open_index(local_dir) as local:
        for query in ("varroa mites", "colony"):
            ours = milvus.search(query, k=50, mode=mode, filters=filters)
            theirs = local.search(query, k=50, mode=mode, filters=filters)
            assert sorted(h.chunk_id for h in ours) == sorted(h.chunk_id for h in theirs), (query, filters)


def test_conditions_translate_to_milvus_expressions() -> None:
    assert condition("source", "eq", 'a"b', {"str"}) == ('source == "a\\"b"', True)
    assert condition("page", "ne", 3, {"int", "null"}) == ("page is null or page != 3", True)
    assert condition("year", "in", [1, 2], {"int"}) == ('metadata["year"] == 1 or metadata["year"] == 2', True)
    assert condition("tags", "eq", "x", {"list"}) == ('json_contains_any(metadata["tags"], ["x"])', True)
    assert condition("source", "glob", "a/*.md", {"str"}) == ('source like "a/%.md"', True)
    assert condition("source", "glob", "a_b/*", {"str"}) == ('source like "a_b/%"', False)  # superset
    assert condition("mixed", "eq", 1, {"int", "str"}) == (None, False)  # Python decides


# --------------------------------------------------------------------------- sync semantics
# (the Indexer's acceptance scenarios run on Milvus Lite in test_index.py, through the `backend` fixture)


def test_a_long_document_is_stored_in_parts_and_read_back_whole(tmp_path: Path) -> None:
    text = "é" * 70_000 + " tail"  # 140 KB of UTF-8: three rows of at most 60 KB
    chunk = Chunk("long#0", "long", "tail", len(text) - 4, len(text))
    vector = np.ones(8, np.float32) / np.sqrt(8)
    backend = MilvusBackend.from_uri(uri(tmp_path / "kb.db"))
    try:
        backend.apply(Changes(add=(PreparedDocument(Document("long", text), "h", [chunk], [["tail"]], [vector], ["e"]),)))
        assert list(backend.iter_documents()) == [("long", text, {})]
        assert backend.counts() == {"documents": 1, "chunks": 1, "files": 0}
    finally:
        backend.close()


def test_server_mode_statistics_are_delta_rows_that_rebuild_folds(copy: tuple[Path, Path]) -> None:
    db, _ = copy
    with open_index(uri(db)) as index:
        expected = {q: results(index, q, "bm25", k=5) for q in QUERIES}
        index.backend.exclusive = False  # what a Milvus server's writers do: insert-only statistics
        index.delete(["paper-b"])
        index.add([EXTRA[1]])
        assert index.backend.cols.meta("stats_deltas") is True
        assert_statistics_exact(index.backend)
        deltas = {q: results(index, q, "bm25", k=5) for q in QUERIES}
        index.backend.rebuild_statistics()
        assert index.backend.cols.meta("stats_deltas") is False
        assert_statistics_exact(index.backend)
        for query in QUERIES:
            assert_same_results(results(index, query, "bm25", k=5), deltas[query])
            assert_same_results(deltas[query], expected[query])


# --------------------------------------------------------------------------- opening, locking, errors


def test_uri_errors_and_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"ending in \.db"):
        MilvusBackend.from_uri(f"milvus-lite://{tmp_path}/kb.sqlite")
    with pytest.raises(ConfigError, match="no Milvus Lite index"):
        MilvusBackend.from_uri(f"milvus-lite://{tmp_path}/missing.db", create=False)
    with pytest.raises(ConfigError, match="collection"):
        MilvusBackend.from_uri("milvus://localhost:19530")
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(ImportError, match=r'pip install "ragkit\[milvus\]"'):
        MilvusBackend.from_uri(f"milvus-lite://{tmp_path}/kb.db")


def test_without_milvus_lites_private_api_a_write_falls_back_to_repair_by_resync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A milvus-lite without the private calls the rollback needs: one warning naming its version, and
    writes still work, guarded by the unfinished-write marker instead of a snapshot."""
    monkeypatch.setattr(lite, "missing_private_api", lambda: ["MilvusLite.create_snapshot"])
    lite.rollback_supported.cache_clear()
    try:
        chunk = Chunk("d#0", "d", "varroa mites", 0, 12)
        vector = np.ones(8, np.float32) / np.sqrt(8)
        with caplog.at_level("WARNING"):
            for round_ in range(2):  # two opens, two writes: still one warning
                backend = MilvusBackend.from_uri(uri(tmp_path / "kb.db"))
                try:
                    doc = Document("d", f"varroa mites {round_}")
                    backend.apply(Changes(add=(PreparedDocument(doc, f"h{round_}", [chunk], [["varroa", "mites"]],
                                                                [vector], ["e"]),)))
                    assert list(backend.iter_documents()) == [("d", doc.text, {})]
                    assert backend.verify() == []
                    assert not list((tmp_path / "kb.db").rglob(f"{lite.ROLLBACK}*"))  # no snapshot, no marker
                finally:
                    backend.close()
        warnings = [r.getMessage() for r in caplog.records if "lacks" in r.getMessage()]
        assert len(warnings) == 1 and metadata.version("milvus-lite") in warnings[0], warnings
        assert "MilvusLite.create_snapshot" in warnings[0] and "re-sync" in warnings[0]
    finally:
        lite.rollback_supported.cache_clear()  # the next test probes the real milvus-lite again


def test_the_capability_probe_finds_what_the_installed_milvus_lite_has() -> None:
    assert lite.missing_private_api() == []  # the tests above exercise the rollback, not the fallback


def test_writers_exclude_each_other_in_process_and_other_processes_are_refused(copy: tuple[Path, Path]) -> None:
    db, docs = copy
    with open_index(uri(db)) as first, open_index(uri(db)) as second:
        with first.backend.writer_lock(0):
            with pytest.raises(IndexLockedError):
                second.sync(docs)
        cli = subprocess.run([sys.executable, "-m", "ragkit.cli", "index", str(docs), "--index", uri(db), "-q"],
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 2 and "open in another process" in cli.stderr, cli.stderr
    assert first.backend.client is None and second.backend.client is None


# --------------------------------------------------------------------------- crashes and shards

CHILD = r"""
import os, sys, time
import ragkit
from ragkit.storage.milvus import backend as milvus
stop_at = sys.argv[3]
if stop_at != "-":  # announce, then wait to be killed at this step of apply()
    original = getattr(milvus.MilvusBackend, stop_at)
    def announce(self, *args, **kwargs):
        result = original(self, *args, **kwargs) if stop_at == "_insert_chunks" else None
        print("at", stop_at, flush=True)
        time.sleep(60)
        return result
    setattr(milvus.MilvusBackend, stop_at, announce)
else:  # announce where apply() starts, and go on: the parent kills at a random moment from there
    apply = milvus.MilvusBackend.apply
    def announce(self, changes):
        print("applying", flush=True)
        return apply(self, changes)
    milvus.MilvusBackend.apply = announce
index = ragkit.Index(sys.argv[1], show_progress=False)
index.embedder.encode(["warm up the model"])
print("ready", flush=True)
sys.stdin.readline()
print("done", index.sync(sys.argv[2]).summary(), flush=True)
"""


def read_line(child: subprocess.Popen[str], timeout: float) -> str:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, f"child said nothing for {timeout}s"
    return child.stdout.readline()


def change(root: Path, rng: random.Random, serial: int) -> None:
    """Add two notes, edit one, delete one, rename one."""
    for i in range(2):
        (root / f"new-{serial}-{i}.md").write_text(f"# New\n\nmarker{serial}{i}y fresh note {serial} {i}.\n")
    files = sorted(root.rglob("*.md"))
    edited, gone, moved = rng.sample(files, 3)
    with edited.open("a") as fh:
        fh.write(f"\nedited marker{serial}e.\n")
    gone.unlink()
    moved.rename(moved.with_name(f"moved-{serial}-{moved.name}"))


def state(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.md"))}


@pytest.mark.slow
def test_a_killed_sync_leaves_an_index_that_answers_and_one_resync_repairs(copy: tuple[Path, Path]) -> None:
    """Killed between (and inside) ragkit's write steps: the write is rolled back when the index opens."""
    _killed_syncs(copy, ["_mark_intent", "_insert_chunks", "_write_documents", "_write_manifest"])


@pytest.mark.slow
def test_a_sync_killed_at_a_random_moment(copy: tuple[Path, Path]) -> None:
    """Killed anywhere in the write (ragkit's and Milvus Lite's own files, its index builds included)."""
    outcomes = _killed_syncs(copy, ["-"] * 4)
    print(f"kills (delay after apply() began, child finished): {outcomes}")
    assert any(not finished for _, finished in outcomes), f"no kill interrupted a write: {outcomes}"


def test_an_index_file_a_kill_left_half_written_is_rebuilt_when_the_index_opens(
    copy: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
) -> None:
    """Milvus Lite writes each segment's index file in place (not write-then-rename), and loads any file
    of that name: a SIGKILL in the middle of one used to leave an index that never opened again
    ("File is too small"). ragkit removes the incomplete file and Milvus Lite rebuilds it from the data."""
    db, _ = copy
    with open_index(uri(db)) as index:
        expected = {q: results(index, q, "hybrid", k=5) for q in QUERIES[:2]}
    indexes = db / "collections" / "ragkit" / "partitions" / "_default" / "indexes"
    files = {kind: next(indexes.glob(f"*{kind}")) for kind in (".dense.flat.idx", ".doc_id.inverted.sidx")}
    sizes = {kind: path.stat().st_size for kind, path in files.items()}
    for kind, path in files.items():
        for cut in (4, sizes[kind] - 1):  # where a kill can stop the write: in the header, before the end
            os.truncate(path, cut)
            caplog.clear()
            with caplog.at_level("WARNING", logger="ragkit.storage.milvus"), open_index(uri(db)) as index:
                for query in QUERIES[:2]:
                    assert_same_results(results(index, query, "hybrid", k=5), expected[query])
                assert index.search("varroa", k=3, filters={"doc_id": "hot/varroa-1.md"})  # the scalar index
            assert path.name in caplog.text and "half-written" in caplog.text, (kind, cut)
            assert path.stat().st_size == sizes[kind], (kind, cut)  # rebuilt whole


def test_snapshot_files_a_kill_left_half_written_are_removed_when_the_index_opens(copy: tuple[Path, Path]) -> None:
    """A kill inside Milvus Lite's create_snapshot leaves its ``metadata/NAME.json.tmp``; a kill inside
    ragkit's marker write leaves ``ragkit-rollback.PREFIX.json.tmp``. Neither names a finished write: the
    next open removes both and the index answers as before."""
    db, _ = copy
    with open_index(uri(db)) as index:
        expected = results(index, QUERIES[0], "hybrid", k=5)
    metadata_dir = db / "collections" / "ragkit" / "snapshots" / "metadata"
    metadata_dir.mkdir(parents=True, exist_ok=True)
    planted = [metadata_dir / f"{lite.ROLLBACK}-{'0' * 32}.json.tmp", db / f"{lite.ROLLBACK}.ragkit.json.tmp"]
    for path in planted:
        path.write_text('{"snapshot_format_version": 1, "na', encoding="utf-8")  # cut mid-write
    with open_index(uri(db)) as index:
        assert_same_results(results(index, QUERIES[0], "hybrid", k=5), expected)
    assert [p for p in planted if p.exists()] == []
    assert not list(db.rglob(f"{lite.ROLLBACK}*"))


def _killed_syncs(copy: tuple[Path, Path], stops: list[str]) -> list[tuple[float, bool]]:
    """Sync in a child killed at each of ``stops``; returns (delay, finished) of the random kills."""
    db, docs = copy
    rng = random.Random(7)
    outcomes = []
    for serial, stop_at in enumerate(stops):
        before = state(docs)
        change(docs, rng, serial)
        after = state(docs)
        child = subprocess.Popen([sys.executable, "-c", CHILD, uri(db), str(docs), stop_at],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert read_line(child, 180).strip() == "ready"
        child.stdin.write("go\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        if stop_at == "-":  # a kill at a random moment of the write (or just before it)
            assert read_line(child, 120).strip() == "applying"
            delay = rng.uniform(-0.05, 0.5)  # apply() takes 0.1-0.4 s here; Milvus Lite builds indexes after it
            try:
                child.wait(timeout=max(delay, 0.0))
            except subprocess.TimeoutExpired:
                pass
        else:
            assert read_line(child, 120).strip() == f"at {stop_at}"
        child.kill()
        child.wait()
        finished = "done" in child.stdout.read()  # type: ignore[union-attr]
        if stop_at == "-":
            outcomes.append((round(delay, 3), finished))
        with open_index(uri(db)) as index:
            assert index.search("varroa", k=3)  # opens and answers
            # the whole index is as before the sync or as after it (a killed write is rolled back), never a mixture
            held = {d.id: d.text for d in index.documents() if d.id in before or d.id in after}
            assert held == after if finished else held in (before, after), (stop_at, finished)
            assert index.backend.verify() == [], stop_at  # consistent at once, before any repair
            index.sync(docs)
            assert {d.id: d.text for d in index.documents() if d.id in after or d.id in before} == after
            assert_statistics_exact(index.backend)
            chunk_docs = {r["doc_id"] for r in index.backend.cols.scan("", "pk >= 0", ["doc_id"])}
            assert chunk_docs == {d.id for d in index.documents()}  # no orphan chunks
            for doc_id, text in after.items():
                marker = re.search(r"marker\w+", text).group()  # type: ignore[union-attr]
                assert index.search(marker, k=1, mode="bm25")[0].doc_id == doc_id, (stop_at, marker)
    return outcomes


@pytest.mark.slow
def test_two_shard_workers_build_the_same_index_as_one(tmp_path: Path) -> None:
    docs = write_notes(tmp_path / "docs", NOTES)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # Milvus Lite lets one process open a file at a time, so the two workers run one after the other;
    # on a Milvus server they would run at once.
    for shard in ("0/2", "1/2"):
        run = subprocess.run([sys.executable, "-m", "ragkit.cli", "index", str(docs), "--index",
                              uri(tmp_path / "shards.db"), "--shard", shard, "-q"],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr
    with open_index(uri(tmp_path / "single.db")) as single:
        single.sync(docs)
        expected = {(q, m): results(single, q, m, k=5) for q in QUERIES for m in ("bm25", "dense", "hybrid")}
        documents = single.documents()
    with open_index(uri(tmp_path / "shards.db")) as sharded:
        assert sharded.documents() == documents
        final = sharded.sync(docs)  # the final unsharded sync finds nothing left to do
        assert final.chunks_embedded == 0 and len(final.unchanged) == len(NOTES)
        assert_statistics_exact(sharded.backend)
        for query in QUERIES:
            for mode in ("bm25", "dense", "hybrid"):
                # each worker batches its own share of the chunks: where the probe picks bf16 passages, a
                # cosine depends on its batch's padding (fp32: ~1e-7); 1.0e-3 of a 0.218 cosine was seen, so
                # 1e-2 relative: the order of the hits, compared exactly, is what this test is about
                assert_same_results(results(sharded, query, mode, k=5), expected[(query, mode)], rel=1e-2, abs_=2e-3)
