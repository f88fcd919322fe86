"""Crash safety: SIGKILL a process in the middle of ``Index.sync`` and check what it leaves behind.

A child process opens the index, loads the model, then syncs the folder each time the test asks.
The test changes the folder, asks for a sync and kills the child after a random (seeded) delay.
After every kill the index must open, pass ``check_index``, and hold exactly the documents of the
folder as it was before that sync or as it is after it: never a mixture, never a broken index.

The test runs unchanged on both backends (the ``backend`` fixture): the local index, whose write
commits with one SQLite transaction, and Milvus Lite, whose killed write is rolled back when the
index next opens (see ``ragkit/milvus.py``).
"""

from __future__ import annotations

import random
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Location, index_location, index_storage, location_problems, open_index

pytestmark = pytest.mark.slow

CHILD = r"""
import sys
import ragkit

index = ragkit.Index(sys.argv[1], show_progress=False)
# Load and run the model now (torch's first batches of a new shape are slow), so a kill lands in the sync.
for n in (1, 3, 6):
    index.embedder.encode(["hive queen drone worker brood comb frame super nectar pollen " * 3] * n)
index.chunker
print("ready", flush=True)
for _ in sys.stdin:
    report = index.sync(sys.argv[2])
    print("done", report.summary(), flush=True)
"""

WORDS = (
    "hive queen drone worker brood comb frame super nectar pollen propolis wax smoke veil swarm colony "
    "apiary forage clover heather lime acacia syrup fondant mite varroa beetle moth entrance winter spring"
).split()


class Folder:
    """A folder of short Markdown notes, changed in a seeded random way."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.serial = 0
        root.mkdir()
        for _ in range(12):
            self.add()

    def text(self) -> str:
        self.serial += 1
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(8, 30)))
        return f"# Note {self.serial}\n\nmarker{self.serial}x {words}.\n"

    def add(self) -> None:
        (self.root / f"note-{self.serial + 1:03d}.md").write_text(self.text(), encoding="utf-8")

    def change(self) -> None:
        """Add three notes, append to two, delete one and rename one: a write with every kind of change."""
        for _ in range(3):
            self.add()
        files = sorted(self.root.glob("*.md"))
        for path in self.rng.sample(files, 2):
            with path.open("a", encoding="utf-8") as fh:
                words = " ".join(self.rng.sample(WORDS, 6))
                fh.write(f"\nAppended marker{self.serial + 1}x {words}.\n")
            self.serial += 1
        victim, moved = self.rng.sample(files, 2)
        victim.unlink()
        moved.rename(moved.with_name(f"renamed-{self.serial}-{moved.name}"))

    def state(self) -> dict[str, str]:
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(self.root.glob("*.md"))}


def leftovers(location: Location) -> list[str]:
    """Temporary files that killed writes left and the next write should have cleared."""
    folder = index_storage(location)
    if (folder / "segments").is_dir():  # local: segment folders being built
        return [p.name for p in (folder / "segments").iterdir() if ".tmp" in p.name]
    from ragkit.storage.milvus.lite import broken_index_files

    rollback = [p.name for p in folder.rglob("ragkit-rollback*")]  # Milvus Lite: write markers and snapshots
    return rollback + [p.name for c in folder.glob("collections/*") for p in broken_index_files(c)]


def index_state(index_dir: Location) -> dict[str, str]:
    with open_index(index_dir) as index:
        state = {d.id: d.text for d in index.documents()}
        for doc_id, text in list(state.items())[:: max(1, len(state) // 4)]:  # the segment agrees with SQLite
            marker = text.split()[3].rstrip(".")
            hits = index.search(marker, k=3, mode="bm25")
            assert hits and hits[0].doc_id == doc_id, (marker, doc_id, [h.doc_id for h in hits])
    return state


def read_line(child: subprocess.Popen[str], timeout: float) -> str:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, f"child said nothing for {timeout}s"
    return child.stdout.readline()


def start_child(index_dir: Location, docs: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(index_dir), str(docs)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = read_line(child, 120)
    assert line.strip() == "ready", line
    return child


def ask_sync(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("sync\n")
    child.stdin.flush()


def test_a_sync_killed_at_any_moment_leaves_the_old_or_the_new_index(tmp_path: Path, backend: str) -> None:
    rng = random.Random(20240611)
    folder = Folder(tmp_path / "docs", rng)
    index_dir = index_location(backend, tmp_path)
    with open_index(index_dir) as index:
        assert not index.sync(folder.root).failed
    state = index_state(index_dir)
    assert state == folder.state()

    # One uninterrupted round measures how long a sync of one round of changes takes here.
    child = start_child(index_dir, folder.root)
    folder.change()
    started = time.perf_counter()
    ask_sync(child)
    assert read_line(child, 120).startswith("done")
    duration = time.perf_counter() - started
    # The child keeps the index open (Milvus Lite lets one process open it at a time), so what this sync
    # wrote is checked after the first kill round, which reuses the child.
    state = folder.state()

    delays = [0.02, 2 * duration + 0.2] + [rng.uniform(0.02, 1.5 * duration + 0.05) for _ in range(6)]
    outcomes = []
    for round_, delay in enumerate(delays):
        if round_:  # the first kill round reuses the measuring child, which is idle now
            child = start_child(index_dir, folder.root)
        before = state
        folder.change()
        after = folder.state()
        ask_sync(child)
        time.sleep(delay)
        child.kill()  # SIGKILL: no cleanup handlers run
        child.wait(30)
        finished = "done" in child.stdout.read()  # type: ignore[union-attr]

        assert location_problems(index_dir) == [], f"kill after {delay:.3f}s"
        state = index_state(index_dir)
        assert state in (before, after), f"kill after {delay:.3f}s left a mixture"
        if finished:
            assert state == after
        outcomes.append((round(delay, 3), finished, "after" if state == after else "before"))

    print(f"sync of one round: {duration:.2f}s; kills (delay, child reported done, index state): {outcomes}")
    assert any(not finished for _, finished, _ in outcomes), f"no kill interrupted a sync: {outcomes}"

    # The next uninterrupted sync catches up and clears what killed writes left behind.
    folder.change()
    with open_index(index_dir) as index:
        report = index.sync(folder.root)
    assert not report.failed
    assert index_state(index_dir) == folder.state()
    assert location_problems(index_dir) == []
    assert leftovers(index_dir) == []
