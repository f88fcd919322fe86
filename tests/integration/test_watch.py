"""``Index.watch``: an edit is searchable within seconds of the save, a burst of saves costs a few
syncs, and stopping leaves a whole index (fake embedder: the watcher is under test, not the model)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fakes import open_fake_index

from ragkit.storage.location import check_index

pytest.importorskip("watchfiles")


class Watching:
    """An index watching a folder in a thread, and the reports of its syncs."""

    def __init__(self, folder: Path, index_path: Path) -> None:
        self.index = open_fake_index(index_path)
        self.reports: list = []
        self.stop = threading.Event()
        self.synced = threading.Event()
        self.thread = threading.Thread(target=self.index.watch, args=(folder,),
                                       kwargs={"on_sync": self._seen, "stop": self.stop}, daemon=True)
        self.thread.start()
        assert self.synced.wait(30), "the first sync did not run"

    def _seen(self, report) -> None:  # type: ignore[no-untyped-def]
        self.reports.append(report)
        self.synced.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.index.close()


@pytest.fixture
def watching(tmp_path: Path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "hives.md").write_text("# Hives\n\nA national hive has eleven frames.\n")
    w = Watching(folder, folder / "kb.ragkit")  # the index inside the folder: its writes are not changes
    yield w, folder
    w.close()


def found(index_path: Path, query: str) -> bool:
    with open_fake_index(index_path) as reader:  # another reader, as a server would be
        return any(query in h.text for h in reader.search(query, k=3, mode="bm25"))


def test_an_edit_is_searchable_within_3_seconds(watching) -> None:
    w, folder = watching
    assert len(w.reports) == 1 and w.reports[0].added == ("hives.md",)
    saved = time.monotonic()
    (folder / "mites.md").write_text("# Mites\n\nSugar rolls count phoretic varroa.\n")
    while not found(folder / "kb.ragkit", "phoretic varroa"):
        assert time.monotonic() - saved < 3.0, f"not searchable 3 s after the save: {w.reports}"
        time.sleep(0.05)
    assert len(w.reports) == 2  # the index's own writes triggered nothing


def test_a_burst_of_50_saves_costs_a_few_syncs(watching) -> None:
    w, folder = watching
    for i in range(50):  # an editor saving again and again, 10 ms apart
        (folder / "hives.md").write_text(f"# Hives\n\nA national hive has eleven frames. Save {i}.\n")
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while not found(folder / "kb.ragkit", "Save 49") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # and nothing more comes
    syncs = len(w.reports) - 1
    assert 1 <= syncs <= 4, f"{syncs} syncs for one burst"
    assert found(folder / "kb.ragkit", "Save 49")


def test_stop_ends_the_watch_and_the_index_is_whole(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(20):
        (folder / f"n{i}.md").write_text(f"# Note {i}\n\nComb {i} is drawn.\n")
    w = Watching(folder, tmp_path / "kb.ragkit")
    (folder / "late.md").write_text("late arrival")
    w.close()  # stopping during or between syncs
    assert check_index(tmp_path / "kb.ragkit") == []
    with open_fake_index(tmp_path / "kb.ragkit") as index:
        assert len(index.documents()) in (20, 21)


WATCHER = r"""
import sys
sys.path.insert(0, sys.argv[3])
from fakes import open_fake_index
index = open_fake_index(sys.argv[2])
index.watch(sys.argv[1], on_sync=lambda report: print("synced", flush=True), debounce_ms=100)
"""


def test_a_sigkill_during_a_watched_sync_leaves_the_index_before_or_after(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    folder, index_path = tmp_path / "docs", tmp_path / "kb.ragkit"
    folder.mkdir()
    (folder / "first.md").write_text("# First\n\nThe first note.\n")
    tests = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", WATCHER, str(folder), str(index_path), str(tests)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "synced"  # the first sync is written
        for i in range(200):  # a batch that takes a while to sync
            (folder / f"n{i}.md").write_text(f"# Note {i}\n\n" + f"Comb {i} is drawn out. " * 200)
        time.sleep(0.6)  # into the sync of the batch
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert check_index(index_path) == []
    with open_fake_index(index_path) as index:
        ids = {d.id for d in index.documents()}
    print(f"\nkilled with {len(ids)} documents indexed")
    # Each sync is whole: the index holds what one sync saw, and the notes were written in order, so that
    # is the first note plus n0..nK for some K (a batch can end while a slow machine is still writing).
    assert ids == {"first.md", *(f"n{i}.md" for i in range(len(ids) - 1))}, sorted(ids)
