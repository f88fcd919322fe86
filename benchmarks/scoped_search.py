"""What a scoped search costs: the same queries unfiltered and under a tenant's filter (issue 20).

    python benchmarks/scoped_search.py [--chunks 4000] [--teams 4] [--queries 200] [--rounds 3] [--milvus-lite]

A synthetic index (Zipf-distributed words, random unit vectors, written through the backend like a
real sync; embedding skipped, the query vector given) whose chunks belong to ``--teams`` teams. A
filtered search scores its rows with their own statistics (BM25 document frequencies, N and avgdl,
the dense background), built once per filter and snapshot; this prints milliseconds per query for
hybrid and BM25 searches unfiltered, under a warm team scope, and under a filter seen for the first
time (the scope's mask, statistics and background sample built in that search). The phases run
interleaved in ``--rounds`` rounds, so a shared machine's load falls on all of them alike.
``--milvus-lite`` measures a Milvus Lite index instead (there a new filter scans its rows' sparse
vectors once; use fewer queries: Milvus Lite is 30 to 80 times slower per query).

To compare with other code, run it with that code first on the path:
``git archive REV ragkit templates | tar -x -C /tmp/old && PYTHONPATH=/tmp/old python benchmarks/scoped_search.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time

import numpy as np

import ragkit
from ragkit.storage.base import Changes, PreparedDocument
from ragkit.types import Chunk, Document


def synthetic(n: int, dim: int) -> tuple[list[str], np.ndarray]:
    """The synthetic corpus of benchmarks/scale.py (Zipf words, random unit vectors)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from scale import synthetic as corpus

    return corpus(n, dim)


def build(path: str, texts: list[str], vectors: np.ndarray, teams: int) -> ragkit.Index:
    index = ragkit.Index(path, stemming=False, stopwords=False)
    prepared = []
    for i, (text, toks, vec) in enumerate(zip(texts, index.analyzer.tokenize_many(texts), vectors)):
        doc = Document(f"d{i}", text, {"source": f"synthetic/{i}.txt", "team": f"t{i % teams}", "n": i})
        digest = hashlib.sha256(text.encode()).hexdigest()
        chunk = Chunk(f"d{i}#0", doc.id, text, 0, len(text), dict(doc.metadata))
        prepared.append(PreparedDocument(doc, digest, [chunk], [toks], [vec], [digest]))
    index.backend.apply(Changes(add=tuple(prepared)))
    return index


def timed(index: ragkit.Index, queries: list[str], qvecs: np.ndarray, mode: str,
          filters: object) -> list[tuple[float, float]]:
    """(wall ms, CPU ms) of each search: on a shared machine the CPU time is the steadier number."""
    out = []
    for i, (q, v) in enumerate(zip(queries, qvecs)):
        f = filters(i) if callable(filters) else filters
        t, c = time.perf_counter(), time.process_time()
        index.search(q, k=10, mode=mode, query_vector=v, filters=f)
        out.append(((time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--teams", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--milvus-lite", action="store_true", help="a Milvus Lite index instead of a local one")
    args = parser.parse_args()
    texts, vectors = synthetic(args.chunks, 384)
    rng = np.random.default_rng(1)
    picks = rng.integers(0, args.chunks, args.queries)
    queries = [" ".join(texts[i].split()[j:j + 6]) for i, j in zip(picks, rng.integers(0, 70, args.queries))]
    qvecs = vectors[picks] + 0.05 * rng.standard_normal((args.queries, 384))
    qvecs = (qvecs / np.linalg.norm(qvecs, axis=1, keepdims=True)).astype(np.float32)
    fresh = iter(range(10**9))  # a filter no search used before: its scope is built in the timed search
    phases = {
        "unfiltered": None,
        "team scope (warm)": {"team": "t0"},
        "new filter each query (cold)": lambda i: {"team": "t0", "n": {"gte": -1 - next(fresh)}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        where = f"milvus-lite://{tmp}/scoped.db" if args.milvus_lite else f"{tmp}/scoped.ragkit"
        index = build(where, texts, vectors, args.teams)
        for mode in ("hybrid", "bm25"):
            index.search(queries[0], mode=mode, query_vector=qvecs[0], filters={"team": "t0"})  # load, warm
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for mode in ("hybrid", "bm25"):
                for name, filters in phases.items():
                    times.setdefault((mode, name), []).extend(timed(index, queries, qvecs, mode, filters))
    load = os.getloadavg()
    backend = "Milvus Lite" if args.milvus_lite else "local"
    print(f"ragkit from {os.path.dirname(ragkit.__file__)}, {backend} backend; {args.chunks} chunks, {args.teams} teams "
          f"({args.chunks // args.teams} chunks in scope), {args.queries} queries x {args.rounds} rounds, k=10, "
          f"query vector given; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| mode | filter | p50 ms | p95 ms | mean ms | CPU ms/query |\n|---|---|---|---|---|---|")
    for (mode, name), pairs in times.items():
        ms, cpu = np.asarray(pairs).T
        print(f"| {mode} | {name} | {np.percentile(ms, 50):.3f} | {np.percentile(ms, 95):.3f} | {ms.mean():.3f} "
              f"| {cpu.mean():.3f} |")


if __name__ == "__main__":
    main()
