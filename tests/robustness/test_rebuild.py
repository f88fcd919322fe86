"""``ragkit index FOLDER --rebuild`` never costs the old index (issue 19, part 1).

A rebuild takes the writer lock, builds beside the old index and swaps only on success: a mistyped
folder, another writer holding the lock, a failing build and SIGKILL at random moments all leave the
old index intact, and a reader holding the index open (what ``ragkit serve`` does) follows the swap.
Everything here uses the model-free ``FakeEmbedder``, so the whole file runs in seconds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakes import FakeEmbedder

import ragkit
from ragkit.cli.commands import main
from ragkit.errors import IndexLockedError, RebuildError
from ragkit.storage.local.store import file_lock
from ragkit.storage.local.swap import rebuild

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent.parent


def notes(folder: Path, marker: str, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.md"):
        old.unlink()
    for i in range(n):
        (folder / f"{marker}-{i}.md").write_text(f"# {marker} {i}\n\n{marker}word note {i} about bees.\n")
    return folder


def fake_index(path: Path) -> ragkit.Index:
    return ragkit.Index(path, embedder=FakeEmbedder(), show_progress=False)


def build_from(folder: Path):  # type: ignore[no-untyped-def]
    def build(path: Path) -> ragkit.SyncReport:
        with fake_index(path) as index:
            return index.sync(folder)
    return build


def doc_ids(path: Path) -> set[str]:
    with fake_index(path) as index:
        assert index.backend.verify() == []
        return {d.id for d in index.documents()}


@pytest.fixture
def old(tmp_path: Path) -> Path:
    kb = tmp_path / "kb.ragkit"
    build_from(notes(tmp_path / "old-docs", "old"))(kb)
    return kb


def no_leftovers(kb: Path) -> bool:
    return [p.name for p in kb.parent.iterdir() if p.name.startswith(f".{kb.name}.")] == []


def test_a_missing_folder_leaves_the_old_index_untouched(old: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    before = doc_ids(old)
    rc = main(["index", str(tmp_path / "no-such-folder"), "--index", str(old), "--rebuild", "-q"])
    assert rc == 2
    assert "untouched" in capsys.readouterr().err
    assert doc_ids(old) == before and len(before) == 6


def test_another_writer_holding_the_lock_leaves_the_old_index_untouched(old: Path, tmp_path: Path) -> None:
    before = doc_ids(old)
    new_docs = notes(tmp_path / "new-docs", "new")
    with file_lock(old / "writer.lock", 0.0, "held by the test"):
        with pytest.raises(IndexLockedError, match="untouched"):
            rebuild(old, build_from(new_docs))
    assert doc_ids(old) == before and no_leftovers(old)


def test_a_failing_build_leaves_the_old_index_untouched(old: Path) -> None:
    before = doc_ids(old)

    def broken(path: Path) -> None:
        build_from(old.parent / "old-docs")(path)
        raise OSError(28, "No space left on device")

    with pytest.raises(RebuildError, match="untouched"):
        rebuild(old, broken)
    assert doc_ids(old) == before and no_leftovers(old)


def test_a_rebuild_swaps_in_the_new_index(old: Path, tmp_path: Path) -> None:
    report = rebuild(old, build_from(notes(tmp_path / "new-docs", "new")))
    assert len(report.added) == 6
    assert doc_ids(old) == {f"new-{i}.md" for i in range(6)} and no_leftovers(old)


def test_a_reader_holding_the_index_follows_the_swap(old: Path, tmp_path: Path) -> None:
    """What ``ragkit serve`` does: one Index open for the process's life, searching from threads."""
    reader = fake_index(old)
    assert reader.search("oldword", k=1)[0].doc_id.startswith("old-")
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_forever() -> None:
        while not stop.is_set():
            try:
                reader.search("bees note", k=3)
            except BaseException as exc:  # noqa: BLE001 - the test reports any failure
                errors.append(exc)

    threads = [threading.Thread(target=search_forever) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        rebuild(old, build_from(notes(tmp_path / "new-docs", "new")))
        swapped = time.monotonic()
        while reader.search("newword", k=1)[0].doc_id.startswith("old-"):
            assert time.monotonic() - swapped < 3, "the reader still answers from the old index"
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert {h.doc_id for h in reader.search("bees note", k=20)} <= {f"new-{i}.md" for i in range(6)}
    reader.close()


def test_a_writer_opened_before_the_swap_writes_into_the_new_index(old: Path, tmp_path: Path) -> None:
    writer = fake_index(old)
    rebuild(old, build_from(notes(tmp_path / "new-docs", "new")))
    writer.sync(notes(tmp_path / "more-docs", "more", n=2))  # a second folder: its own namespace
    writer.close()
    assert {f"more-docs/more-{i}.md" for i in range(2)} <= doc_ids(old)


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from fakes import FakeEmbedder
import ragkit
from ragkit.storage.local.swap import rebuild

def build(path):
    with ragkit.Index(path, embedder=FakeEmbedder(), show_progress=False) as index:
        return index.sync(sys.argv[3])

print("ready", flush=True)
rebuild(sys.argv[2], build, lock_timeout=None)
print("done", flush=True)
"""


def test_sigkill_at_random_moments_leaves_the_old_or_the_new_index(tmp_path: Path) -> None:
    kb = tmp_path / "kb.ragkit"
    a, b = notes(tmp_path / "a", "alpha", n=30), notes(tmp_path / "b", "beta", n=30)
    build_from(a)(kb)
    states = {"alpha": {f"alpha-{i}.md" for i in range(30)}, "beta": {f"beta-{i}.md" for i in range(30)}}
    rng = random.Random(19)
    seen = set()
    duration = None  # of one uninterrupted rebuild: the kills land anywhere from its start to past its end
    for attempt in range(16):
        source = b if attempt % 2 == 0 else a
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(TESTS), str(kb), str(source)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        started = time.monotonic()
        if duration is None:
            assert child.stdout.readline().strip() == "done"
            duration = time.monotonic() - started
        else:
            time.sleep(rng.uniform(0.0, 1.2 * duration))
            child.send_signal(signal.SIGKILL)
        child.wait()
        ids = doc_ids(kb)
        assert ids in states.values(), f"kill {attempt}: a mixture or an empty index ({len(ids)} docs)"
        if attempt:
            seen.add("new" if ids == states["beta" if source == b else "alpha"] else "old")
    assert seen == {"old", "new"}, f"the kills all landed on one side of the swap: {seen}"
    # the leftovers of killed rebuilds are removed by the next one
    rebuild(kb, build_from(a))
    assert no_leftovers(kb)
    assert os.listdir(kb)
