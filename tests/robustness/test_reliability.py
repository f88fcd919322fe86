"""Reliability: SIGKILLs in the middle of syncs, readers querying through writes, and no code run on load.

Child processes never load the embedding model, which keeps 50 kills affordable. Every folder in these
tests is made of texts from a fixed *pool*; the pool is embedded once, in this process, into a warm-up
index as in-memory documents (``pool/<n>``), and each test works on a copy of that index. A sync of the
folder then finds every chunk's vector in the embedding cache (SQLite) and never imports torch; the
children check that (``'torch' not in sys.modules``, ``chunks_embedded == 0``). The pool documents stay
in the index on purpose: the cache trims vectors no chunk uses (``storage/local/cache.py``: by age and
size, and ``ragkit gc``), so they pin the pool's vectors while files come and go. Comparisons of "what the
index holds" look only at documents synced from the folder (those with a ``source``).

``benchmarks/reliability.py`` runs the same scenarios at a larger scale through the functions here.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import open_index

from ragkit.storage.location import check_index
from ragkit.errors import IndexCorruptError
from ragkit.types import Document

WORDS = (
    "hive queen drone worker brood comb frame super nectar pollen propolis wax smoke veil swarm colony "
    "apiary forage clover heather lime acacia syrup fondant mite varroa beetle moth entrance winter spring"
).split()
QUERIES = ["queen brood", "varroa mite", "winter syrup", "swarm colony", "nectar pollen", "wax comb frame",
           "smoke veil", "clover heather acacia"]
POOL_SIZE = 48
FOLDER_FILES = 16


# ------------------------------------------------------------------------------ the pre-embedded pool


def make_pool(n: int, seed: int = 11) -> list[str]:
    """``n`` Markdown notes, each with a unique marker word ``pool<i>x``; every fifth spans several chunks."""
    rng = random.Random(seed)
    pool = []
    for i in range(n):
        body = " ".join(rng.choices(WORDS, k=rng.randint(8, 40)))
        text = f"# Note {i}\n\npool{i}x {body}.\n"
        if i % 5 == 0:
            sections = [" ".join(rng.choices(WORDS, k=120)) + "." for _ in range(3)]
            text += "".join(f"\n## Part {j}\n\n{s}\n" for j, s in enumerate(sections))
        pool.append(text)
    return pool


def build_pool_index(index_dir: Path, pool: list[str]) -> None:
    """Embed every pool text into a new index (loads the model in this process)."""
    with open_index(index_dir) as index:
        index.add([Document(f"pool/{i}", text) for i, text in enumerate(pool)])


def save_query_vectors(index_dir: Path, queries: list[str], out: Path) -> Path:
    """Embed the queries once here, so readers can search hybrid without a model."""
    with open_index(index_dir) as index:
        np.save(out, np.stack([index.embed_query(q) for q in queries]), allow_pickle=False)
    return out


class PoolFolder:
    """A folder of notes whose texts come from the pool, changed in a seeded random way."""

    def __init__(self, root: Path, pool: list[str], rng: random.Random, *, files: int = FOLDER_FILES,
                 reserved: int = 0) -> None:
        self.root, self.pool, self.rng = root, pool, rng
        self.usable = len(pool) - reserved  # the last ``reserved`` variants are kept for later markers
        self.variant: dict[str, int] = {}  # relative path -> pool index
        self.serial = 0
        self.clock = time.time_ns()
        (root / "sub").mkdir(parents=True)
        self.target = files
        for _ in range(files):
            self.add()

    def _write(self, rel: str, variant: int) -> None:
        path = self.root / rel
        path.write_text(self.pool[variant], encoding="utf-8")
        self.clock += 1_000_000_000  # a distinct mtime even when the size does not change
        os.utime(path, ns=(self.clock, self.clock))
        self.variant[rel] = variant

    def add(self, variant: int | None = None) -> str:
        self.serial += 1
        rel = f"note-{self.serial:04d}.md"
        self._write(rel, self.rng.randrange(self.usable) if variant is None else variant)
        return rel

    def change(self) -> None:
        """Add, edit two, delete one, rename one (sometimes into ``sub/``): every kind of change at once."""
        for _ in range(self.rng.randint(1, 3) if len(self.variant) <= self.target else 1):
            self.add()
        edit1, edit2, victim, moved = self.rng.sample(sorted(self.variant), 4)
        for rel in (edit1, edit2):
            self._write(rel, (self.variant[rel] + self.rng.randrange(1, self.usable)) % self.usable)
        (self.root / victim).unlink()
        del self.variant[victim]
        self.serial += 1
        new = f"sub/moved-{self.serial:04d}.md" if self.rng.random() < 0.5 else f"moved-{self.serial:04d}.md"
        (self.root / moved).rename(self.root / new)
        self.variant[new] = self.variant.pop(moved)

    def state(self) -> dict[str, str]:
        return {rel: self.pool[v] for rel, v in sorted(self.variant.items())}


def index_state(index_dir: Path, spot_check: str | None = None) -> dict[str, str]:
    """The folder documents of the index (id -> text).

    ``spot_check``: a marker word; BM25 must return exactly the documents SQLite says contain it,
    i.e. the segment's arrays and the records agree.
    """
    with open_index(index_dir) as index:
        docs = index.documents()
        state = {d.id: d.text for d in docs if "source" in d.metadata}
        if spot_check is not None:
            holders = {d.id for d in docs if spot_check in d.text.split()}
            found = {h.doc_id for h in index.search(spot_check, k=200, mode="bm25")}
            assert holders and found == holders, (spot_check, found ^ holders)
    return state


def orphan_segments(index_dir: Path) -> list[str]:
    """Segment folders a write left behind: temporary ones, and ones newer than the committed pointer."""
    with open_index(index_dir) as index:
        current = index.backend.snapshot().version
    names = [p.name for p in (index_dir / "segments").iterdir()]
    return [n for n in names if ".tmp" in n or (n[1:].isdigit() and int(n[1:]) > current)]


def assert_only_safe_files(index_dir: Path) -> None:
    """Only SQLite, .npy (no object arrays), .json, .faiss and the lock file; nothing left by a crash."""
    for path in index_dir.rglob("*"):
        if path.is_dir():
            assert ".tmp" not in path.name, f"leftover temporary segment {path}"
            continue
        name = path.name
        if name in ("ragkit.sqlite", "ragkit.sqlite-wal", "ragkit.sqlite-shm", "writer.lock"):
            continue
        assert path.suffix in (".npy", ".json", ".faiss"), f"unexpected file {path}"
        if path.suffix == ".npy":
            assert np.load(path, allow_pickle=False).dtype != object
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------- child processes

KILL_CHILD = r"""
import sys, time
import ragkit

index = ragkit.Index(sys.argv[1], show_progress=False)
index.chunker  # the tokenizer, loaded without torch
print("ready", "torch" in sys.modules, flush=True)
for _ in sys.stdin:
    print("start", flush=True)
    started = time.perf_counter()
    report = index.sync(sys.argv[2])
    print("done", "torch" in sys.modules, report.chunks_embedded, len(report.failed),
          time.perf_counter() - started, flush=True)
"""


def read_line(child: subprocess.Popen[str], timeout: float) -> str:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, f"child said nothing for {timeout}s"
    return child.stdout.readline()


def start_child(script: str, *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    line = read_line(child, 60)
    assert line.split() == ["ready", "False"], f"child not ready, or it imported torch: {line!r}"
    return child


def tell(child: subprocess.Popen[str], line: str = "go") -> None:
    assert child.stdin is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()


def reap(child: subprocess.Popen[str]) -> str:
    """Close the child's pipes, wait for it, and return what it printed and we had not read."""
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.close()
    except BrokenPipeError:  # it was killed
        pass
    child.wait(30)
    rest = child.stdout.read()
    child.stdout.close()
    return rest


def finish(child: subprocess.Popen[str], timeout: float = 60) -> tuple[int, float]:
    """Wait for a sync's ``done`` line; check it needed no model; return (failed files, sync seconds)."""
    line = read_line(child, timeout)
    while line.startswith("start"):
        line = read_line(child, timeout)
    word, torch, embedded, failed, seconds = line.split()
    assert (word, torch, embedded) == ("done", "False", "0"), f"the sync embedded or imported torch: {line!r}"
    return int(failed), float(seconds)


# ---------------------------------------------------------------------------------- kill scenario


@dataclass
class KillStats:
    kills: int = 0
    started: int = 0  # the child had begun the sync when killed
    mid_sync: int = 0  # begun and not finished: killed inside Index.sync
    mid_sync_committed: int = 0  # of those, killed after the commit (index already in the new state)
    finished: int = 0  # the sync had returned before the kill
    orphans: int = 0  # kills that left a new half-written or uncommitted segment folder (the risky window)
    sync_seconds: float = 0.0  # median duration of the uninterrupted syncs (go -> done, as seen here)
    seconds: float = 0.0
    outcomes: list[tuple[float, str, str]] = field(default_factory=list)  # (delay, phase, index state)


def uninterrupted_sync(index_dir: Path, folder: PoolFolder) -> float:
    """Change the folder and let a child sync it to the end; return the go -> done time seen here."""
    folder.change()
    child = start_child(KILL_CHILD, str(index_dir), str(folder.root))
    go = time.perf_counter()
    tell(child)
    assert finish(child)[0] == 0
    took = time.perf_counter() - go
    reap(child)
    assert index_state(index_dir) == folder.state()
    return took


def run_kill_scenario(index_dir: Path, folder: PoolFolder, *, kills: int, rng: random.Random,
                      recalibrate: int = 10) -> KillStats:
    """Change the folder, start a sync in a child, SIGKILL it after a random delay; check after each kill.

    Delays are uniform over 0 to 1.1x the median of the last three uninterrupted syncs, which are
    re-measured every ``recalibrate`` kills (the machine's load changes how long a sync takes).
    """
    stats = KillStats()
    started_at = time.perf_counter()
    durations = [uninterrupted_sync(index_dir, folder) for _ in range(3)]
    synced = index_state(index_dir)
    for n in range(kills):
        if n and n % recalibrate == 0:
            durations.append(uninterrupted_sync(index_dir, folder))
            synced = index_state(index_dir)
        folder.change()
        after = folder.state()
        marker = f"pool{folder.variant[rng.choice(sorted(after))]}x"
        orphans_before = set(orphan_segments(index_dir))
        child = start_child(KILL_CHILD, str(index_dir), str(folder.root))
        delay = rng.uniform(0.0, 1.1 * statistics.median(durations[-3:]))
        tell(child)
        time.sleep(delay)
        child.kill()  # SIGKILL: no cleanup handler, no finally block runs
        output = reap(child)
        began, done = "start" in output, "done" in output

        stats.orphans += bool(set(orphan_segments(index_dir)) - orphans_before)
        problems = check_index(index_dir)
        assert problems == [], f"kill after {delay:.3f}s: {problems}"
        state = index_state(index_dir, spot_check=marker)
        assert state in (synced, after), f"kill after {delay:.3f}s left a mixture of the two states"
        if done:
            assert state == after
        phase = "finished" if done else "mid-sync" if began else "before start"
        label = "after" if state == after else "before"
        stats.kills += 1
        stats.started += began
        stats.finished += done
        stats.mid_sync += began and not done
        stats.mid_sync_committed += began and not done and label == "after"
        stats.outcomes.append((round(delay, 3), phase, label))
        synced = state

    # An uninterrupted sync catches up and removes what the killed writes left behind.
    uninterrupted_sync(index_dir, folder)
    assert check_index(index_dir) == []
    stats.sync_seconds = statistics.median(durations)
    stats.seconds = time.perf_counter() - started_at
    return stats


# -------------------------------------------------------------------------------- reader scenario

READER_CHILD = r"""
import json, os, sys, time
import numpy as np
import ragkit

index_dir, queries_path, vectors_path, final_path, out_path, limit = sys.argv[1:7]
queries = json.load(open(queries_path, encoding="utf-8"))
vectors = np.load(vectors_path, allow_pickle=False)
index = ragkit.Index(index_dir, show_progress=False)
print("ready", "torch" in sys.modules, flush=True)
failures, timings, versions, sizes = [], [], set(), set()
final, confirmed, i = None, 0, 0
deadline = time.monotonic() + float(limit)
while time.monotonic() < deadline and confirmed < 20:
    q, kind = i % len(queries), ("bm25", "hybrid", "filtered")[i % 3]
    started = time.monotonic()
    try:
        if kind == "bm25":
            hits = index.search(queries[q], k=5, mode="bm25")
        elif kind == "hybrid":
            hits = index.search(queries[q], k=5, query_vector=vectors[q])
        else:
            hits = index.search(queries[q], k=5, mode="bm25", filters={"type": "markdown"})
        if not hits:
            failures.append(f"{kind} {queries[q]!r}: no hits")
    except Exception as exc:
        failures.append(f"{kind} {queries[q]!r}: {type(exc).__name__}: {exc}")
    timings.append((started, time.monotonic() - started, kind))
    version = index.backend.snapshot().version  # which committed segment answered (internal, for the test)
    versions.add(version)
    sizes.add(len(index))
    if final is None and os.path.exists(final_path):
        final = json.load(open(final_path, encoding="utf-8"))
    if final is not None and version == final["version"]:
        hits = index.search(final["marker"], k=5, mode="bm25")  # the file added by the last sync
        confirmed += final["doc_id"] in {hit.doc_id for hit in hits}
    i += 1
json.dump({"queries": len(timings), "failures": failures, "timings": timings, "versions": sorted(versions),
           "sizes": sorted(sizes), "confirmed": confirmed, "torch": "torch" in sys.modules},
          open(out_path, "w", encoding="utf-8"))
"""


@dataclass
class ReaderStats:
    readers: list[dict[str, Any]]
    writes: list[tuple[float, float]]  # (start, end) of each writer sync, time.monotonic()
    final_version: int
    seconds: float

    @property
    def queries(self) -> int:
        return sum(r["queries"] for r in self.readers)

    @property
    def failures(self) -> list[str]:
        return [f for r in self.readers for f in r["failures"]]

    def during_writes(self) -> list[float]:
        """Latencies (s) of queries that started while the writer was syncing."""
        return [lat for r in self.readers for start, lat, _ in r["timings"]
                if any(a <= start <= b for a, b in self.writes)]

    def p95_ms(self, latencies: list[float]) -> float:
        return float(np.percentile(latencies, 95) * 1000) if latencies else float("nan")


def run_reader_scenario(index_dir: Path, folder: PoolFolder, vectors: Path, work: Path, *, readers: int = 4,
                        writes: int = 3, pause: float = 0.3, limit: float = 120.0) -> ReaderStats:
    """``readers`` processes search in a loop while a writer process syncs ``writes`` changed states."""
    started_at = time.perf_counter()
    queries_path, final_path = work / "queries.json", work / "final.json"
    queries_path.write_text(json.dumps(QUERIES), encoding="utf-8")
    outs = [work / f"reader{i}.json" for i in range(readers)]
    procs = [
        start_child(READER_CHILD, *map(str, (index_dir, queries_path, vectors, final_path, out, limit)))
        for out in outs
    ]
    writer = start_child(KILL_CHILD, str(index_dir), str(folder.root))
    spans = []
    time.sleep(pause)
    for round_ in range(writes):
        folder.change()
        if round_ == writes - 1:
            marker_rel = folder.add(variant=len(folder.pool) - 1)  # a text no earlier state had
        begin = time.monotonic()
        tell(writer)
        assert finish(writer, timeout=limit)[0] == 0
        spans.append((begin, time.monotonic()))
        time.sleep(pause)
    reap(writer)
    with open_index(index_dir) as index:
        version = index.backend.snapshot().version
    tmp = final_path.with_suffix(".tmp")
    marker = f"pool{folder.variant[marker_rel]}x"
    tmp.write_text(json.dumps({"version": version, "marker": marker, "doc_id": marker_rel}), encoding="utf-8")
    tmp.rename(final_path)
    for proc in procs:
        proc.wait(limit + 30)
        reap(proc)
        assert proc.returncode == 0
    return ReaderStats([json.loads(out.read_text(encoding="utf-8")) for out in outs], spans, version,
                       time.perf_counter() - started_at)


# ------------------------------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Warm:
    index_dir: Path  # the warm-up index: every pool text embedded, no folder synced
    pool: list[str]
    vectors: Path  # QUERIES embedded, float32 (len(QUERIES), dim)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Warm:
    base = tmp_path_factory.mktemp("pool")
    pool = make_pool(POOL_SIZE)
    build_pool_index(base / "warm.ragkit", pool)
    vectors = save_query_vectors(base / "warm.ragkit", QUERIES, base / "queries.npy")
    return Warm(base / "warm.ragkit", pool, vectors)


def synced_copy(warm: Warm, tmp_path: Path, seed: int, **folder_options: Any) -> tuple[Path, PoolFolder]:
    """A copy of the warm-up index with a fresh pool folder synced into it (cache hits only)."""
    index_dir = tmp_path / "index.ragkit"
    shutil.copytree(warm.index_dir, index_dir)
    folder = PoolFolder(tmp_path / "docs", warm.pool, random.Random(seed), **folder_options)
    with open_index(index_dir) as index:
        report = index.sync(folder.root)
    assert not report.failed and report.chunks_embedded == 0
    assert index_state(index_dir) == folder.state()
    return index_dir, folder


# --------------------------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_fifty_sigkills_during_syncs_leave_the_old_or_the_new_state(warm: Warm, tmp_path: Path) -> None:
    index_dir, folder = synced_copy(warm, tmp_path, seed=5)
    stats = run_kill_scenario(index_dir, folder, kills=50, rng=random.Random(20240611))
    print(f"\n{stats.kills} kills in {stats.seconds:.1f}s (sync {stats.sync_seconds * 1000:.0f} ms): "
          f"{stats.mid_sync} mid-sync ({stats.mid_sync_committed} after the commit), {stats.finished} after "
          f"the sync returned, {stats.kills - stats.started} before it began; {stats.orphans} left a "
          "temporary or uncommitted segment folder")
    assert stats.kills == 50
    assert stats.mid_sync >= 25, stats.outcomes  # most kills land inside the sync, not around it
    assert any(label == "before" for _, phase, label in stats.outcomes if phase == "mid-sync")
    assert_only_safe_files(index_dir)


@pytest.mark.slow
def test_four_readers_never_fail_while_a_writer_syncs_three_times(warm: Warm, tmp_path: Path) -> None:
    index_dir, folder = synced_copy(warm, tmp_path, seed=9, reserved=1)
    with open_index(index_dir) as index:
        first_version = index.backend.snapshot().version
    stats = run_reader_scenario(index_dir, folder, warm.vectors, tmp_path, readers=4, writes=3)
    during = stats.during_writes()
    print(f"\n{len(stats.readers)} readers, {stats.queries} queries ({len(during)} during writes), "
          f"{len(stats.failures)} failed; p95 during writes {stats.p95_ms(during):.1f} ms; "
          f"versions seen {[r['versions'] for r in stats.readers]}")
    assert stats.failures == []
    assert stats.final_version == first_version + 3
    for reader in stats.readers:
        assert not reader["torch"]
        assert reader["queries"] >= 100, reader["queries"]
        assert reader["confirmed"] >= 20  # it searched the final version and found the text added last
        assert reader["versions"][0] <= first_version + 1 and reader["versions"][-1] == stats.final_version
    assert len(during) >= 20  # the readers really were querying while the writer wrote
    assert check_index(index_dir) == []


class _Payload:
    """Unpickling this creates ``marker``: the proof that a loader ran pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _plant_pickle(index_dir: Path, marker: Path, *, forge_manifest: bool) -> Path:
    """Put a pickled object array in place of the current vectors.npy (and maybe forge its sha256)."""
    with open_index(index_dir) as index:
        folder = index.backend.store.segment_dir(index.backend.snapshot().version)
    target = folder / "vectors.npy"
    np.save(target, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    if forge_manifest:
        import hashlib

        manifest = json.loads((folder / "manifest.json").read_text())
        data = target.read_bytes()
        manifest["files"]["vectors.npy"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return target


def _touch_everything(index_dir: Path) -> list[str]:
    """Open, search in every mode, and check the index; return the errors met (type names)."""
    errors = []
    with open_index(index_dir) as index:
        vector = np.zeros(384, np.float32)
        vector[0] = 1.0
        for mode in ("bm25", "hybrid", "dense"):
            try:
                index.search("queen brood", k=3, mode=mode, query_vector=vector)
            except Exception as exc:  # noqa: BLE001 - which error it is, is asserted by the callers
                errors.append(type(exc).__name__)
    assert check_index(index_dir) != []
    return errors


def test_the_pickle_payload_works_when_unpickled(tmp_path: Path) -> None:
    """The control for the two tests below: loading the planted file *with* pickle creates the marker."""
    marker = tmp_path / "pwned"
    np.save(tmp_path / "evil.npy", np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(tmp_path / "evil.npy", allow_pickle=False)
    assert not marker.exists()
    np.load(tmp_path / "evil.npy", allow_pickle=True)[0].close()
    assert marker.exists()


def test_a_pickled_npy_is_refused_by_its_checksum_and_never_unpickled(warm: Warm, tmp_path: Path) -> None:
    index_dir, _ = synced_copy(warm, tmp_path, seed=3)
    assert_only_safe_files(index_dir)
    marker = tmp_path / "pwned"
    _plant_pickle(index_dir, marker, forge_manifest=False)
    with open_index(index_dir) as index, pytest.raises(IndexCorruptError, match="vectors.npy.*corrupt"):
        index.search("queen brood", mode="bm25")
    assert _touch_everything(index_dir) == ["IndexCorruptError"] * 3
    problems = check_index(index_dir)
    assert any("vectors.npy" in p for p in problems), problems
    assert not marker.exists()


def test_a_pickled_npy_with_a_forged_checksum_is_still_never_unpickled(warm: Warm, tmp_path: Path) -> None:
    index_dir, _ = synced_copy(warm, tmp_path, seed=4)
    marker = tmp_path / "pwned"
    _plant_pickle(index_dir, marker, forge_manifest=True)
    errors = _touch_everything(index_dir)
    assert len(errors) == 3  # every search fails ...
    assert not marker.exists()  # ... and none of them unpickled the payload


def test_a_pickled_npy_with_a_forged_checksum_is_index_corruption(warm: Warm, tmp_path: Path) -> None:
    index_dir, _ = synced_copy(warm, tmp_path, seed=4)
    marker = tmp_path / "pwned"
    _plant_pickle(index_dir, marker, forge_manifest=True)
    with open_index(index_dir) as index, pytest.raises(IndexCorruptError):
        index.search("queen brood", mode="bm25")
