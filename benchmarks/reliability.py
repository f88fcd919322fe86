"""Crash safety and read availability at a larger scale than the test suite.

    python benchmarks/reliability.py [--kills 50] [--pool 150] [--files 100] [--readers 4] [--writes 3]

Two scenarios, both through real child processes (see ``tests/test_reliability.py``, whose functions this
runs; children never load the model because every text comes from a pre-embedded pool):

- ``sigkill``: ``--kills`` times, change the folder (add, edit, delete, rename), start a sync in a child
  and SIGKILL it at a random moment of the sync; after each kill the index must pass ``check_index`` and
  hold the documents of the folder before or after that sync. Reports how many kills landed inside the
  sync, how many after its commit, and how many left a half-written segment behind.
- ``readers``: ``--readers`` processes search in a loop (BM25, hybrid with a precomputed query vector, and
  BM25 with a metadata filter) while a writer process syncs ``--writes`` changed folder states. Reports
  queries, failures, and latency percentiles for queries that started during a write vs. outside one.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_reliability as rel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--pool", type=int, default=150, help="distinct pre-embedded texts")
    parser.add_argument("--files", type=int, default=100, help="files in the synced folder")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--writes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        started = time.perf_counter()
        pool = rel.make_pool(args.pool, seed=args.seed)
        rel.build_pool_index(base / "warm.ragkit", pool)
        vectors = rel.save_query_vectors(base / "warm.ragkit", rel.QUERIES, base / "queries.npy")
        print(f"pool of {args.pool} texts embedded in {time.perf_counter() - started:.1f}s; "
              f"folder of {args.files} files\n")

        kill_dir = base / "kill"
        kill_dir.mkdir()
        shutil.copytree(base / "warm.ragkit", kill_dir / "index.ragkit")
        folder = rel.PoolFolder(kill_dir / "docs", pool, random.Random(args.seed), files=args.files)
        with rel.open_index(kill_dir / "index.ragkit") as index:
            index.sync(folder.root)
        kills = rel.run_kill_scenario(kill_dir / "index.ragkit", folder, kills=args.kills,
                                      rng=random.Random(args.seed))

        read_dir = base / "read"
        read_dir.mkdir()
        shutil.copytree(base / "warm.ragkit", read_dir / "index.ragkit")
        rng = random.Random(args.seed + 1)
        folder = rel.PoolFolder(read_dir / "docs", pool, rng, files=args.files, reserved=1)
        with rel.open_index(read_dir / "index.ragkit") as index:
            index.sync(folder.root)
        readers = rel.run_reader_scenario(read_dir / "index.ragkit", folder, vectors, read_dir,
                                          readers=args.readers, writes=args.writes)

    print("| sigkill scenario | value |\n|---|---|")
    print(f"| kills | {kills.kills} |")
    print(f"| killed mid-sync | {kills.mid_sync} ({kills.mid_sync_committed} after the commit) |")
    print(f"| killed after the sync returned | {kills.finished} |")
    print(f"| killed before the sync began | {kills.kills - kills.started} |")
    print(f"| kills that left a temporary or uncommitted segment | {kills.orphans} |")
    print("| failures (check_index problems or mixed states) | 0 |")  # any failure raises before this line
    print(f"| uninterrupted sync (median) | {kills.sync_seconds * 1000:.0f} ms |")
    print(f"| wall time | {kills.seconds:.1f} s |\n")

    during = readers.during_writes()
    all_latencies = [lat for r in readers.readers for _, lat, _ in r["timings"]]
    writes = ", ".join(f"{(b - a) * 1000:.0f}" for a, b in readers.writes)
    print("| readers scenario | value |\n|---|---|")
    print(f"| readers x writes | {len(readers.readers)} x {len(readers.writes)} (write ms: {writes}) |")
    print(f"| queries (during writes) | {readers.queries} ({len(during)}) |")
    print(f"| failed queries | {len(readers.failures)} |")
    print(f"| p50 / p95 ms, all queries | {np.percentile(all_latencies, 50) * 1000:.1f} / "
          f"{np.percentile(all_latencies, 95) * 1000:.1f} |")
    print(f"| p95 ms during writes | {readers.p95_ms(during):.1f} |")
    print(f"| every reader saw the final version | {all(r['confirmed'] >= 20 for r in readers.readers)} |")
    for failure in readers.failures[:10]:
        print("  failure:", failure)


if __name__ == "__main__":
    main()
