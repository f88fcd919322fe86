"""SciFact indexed end to end, before and after, side by side in one run: build time, quality, queries.

    python benchmarks/scifact_build.py [--data ../shared/data/scifact] [--work /tmp/scifact-build]
                                       [--before d940317] [--docs N]

Builds the SciFact corpus (title + text per document, ``Index.add`` as benchmarks/scifact.py does) twice,
each in a fresh process so the model load counts: with ragkit as it was at ``--before`` (checked out
once into a git worktree) on today's-then path ``Embedder(runtime="torch", precision="fp32")``, and
with this checkout's default ``Embedder()``. Then, in this process: wall seconds and their ratio;
min/mean cosine of the new index's stored vectors against the fp32 index's (same chunk texts); SciFact
test nDCG@10 of both indexes (hybrid default and dense-only) with query vectors from torch fp32 and
from the default query runtime; and ms/query of each query runtime (one query per call, interleaved).
Prints Markdown tables (README, Embedders) and the load average around each phase. Not part of CI:
the two builds take about 10 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import ragkit
from ragkit.evaluation.datasets import load_beir
from ragkit.evaluation.metrics import doc_ranking_from_hits, evaluate
from ragkit.index import embedding_text
from ragkit.text.embedding import Embedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_latency import ensure_old  # noqa: E402  (the older ragkit as a git worktree, shared)

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "d940317"  # main before issue 21's probe and bulk ordering
BUILD = """
import json, os, sys, time
started = time.perf_counter()
import ragkit
from ragkit.evaluation.datasets import load_beir
from ragkit.text.embedding import Embedder
docs = list(load_beir({data!r}, "test").corpus.values())[:{docs}]
index = ragkit.Index({index!r}, embedder=Embedder(**{options!r}), show_progress=False)
index.add(docs)
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "chunks": len(index), "record": index.backend.get_config()["embedder"],
                  "rate": index.backend.get_config().get("embedding_rate")}}))
"""
MODES = {"hybrid (default)": "hybrid", "dense only": "dense"}


def build(source: Path, index: Path, options: dict[str, str], data: Path, docs: int) -> dict[str, Any]:
    """Index the corpus in a fresh process importing ragkit from ``source``; its seconds, chunks, record."""
    if index.exists():
        raise SystemExit(f"{index} exists: give another --work or remove it")
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1"}
    code = BUILD.format(data=str(data), docs=docs, index=str(index), options=options)
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/tmp",
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"build from {source} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = f"{load:.1f} -> {os.getloadavg()[0]:.1f}"
    print(f"built {index.name} from {source}: {result['seconds']:.1f} s, {result['chunks']} chunks, "
          f"{result['record']['runtime']} {result['record']['precision']}, load {result['load']}", flush=True)
    return result


def stored_cosines(old: ragkit.Index, new: ragkit.Index, docs: list[ragkit.Document]) -> np.ndarray:
    """Cosine of each chunk's vector in ``new`` to the same text's in ``old`` (the embedding cache is keyed
    by the SHA-256 of the chunk's embedding text in both)."""
    hashes = sorted({hashlib.sha256(embedding_text(c).encode("utf-8", "surrogatepass")).hexdigest()
                     for d in docs for c in new.chunker.split(d)})
    a, b = old.backend.cached_vectors(hashes), new.backend.cached_vectors(hashes)
    both = [h for h in hashes if h in a and h in b]
    return np.array([float(np.dot(a[h], b[h])) for h in both])


def ndcg(index: ragkit.Index, queries: dict[str, str], vectors: dict[str, np.ndarray], qrels: Any, mode: str) -> float:
    retriever = index.retriever()
    runs = {qid: doc_ranking_from_hits(retriever.search(text, k=100, mode=mode, query_vector=vectors[qid]))
            for qid, text in queries.items()}
    return evaluate(runs, qrels, ("ndcg@10",))["ndcg@10"]


def query_side(queries: dict[str, str], model: str) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Each query's vector and the median ms/query of torch fp32 and of the default, calls interleaved."""
    embedders = {"torch fp32": Embedder(model, runtime="torch", precision="fp32"), "default": Embedder(model)}
    for emb in embedders.values():
        emb.encode_queries(["warm up: load the model"])
    vectors: dict[str, dict[str, np.ndarray]] = {label: {} for label in embedders}
    times: dict[str, list[float]] = {label: [] for label in embedders}
    for qid, text in queries.items():
        for label, emb in embedders.items():
            began = time.perf_counter()
            vectors[label][qid] = emb.encode_queries([text])[0]
            times[label].append(time.perf_counter() - began)
    plan = "default: " + "/".join(embedders["default"].query_plan())
    print(f"query runtimes: torch fp32, {plan}", flush=True)
    return vectors, {label: 1000 * statistics.median(t) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/scifact")
    parser.add_argument("--work", type=Path, default=Path("/tmp/scifact-build"))
    parser.add_argument("--before", default=BEFORE, help="the commit whose torch fp32 path is the baseline")
    parser.add_argument("--docs", type=int, default=10**9, help="index only the first N documents (a smoke run)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    fp32_path, new_path = args.work / "fp32.ragkit", args.work / "default.ragkit"
    before = build(ensure_old(args.before), fp32_path, {"runtime": "torch", "precision": "fp32"}, args.data, args.docs)
    after = build(ROOT, new_path, {}, args.data, args.docs)
    dataset = load_beir(args.data, "test")
    docs = list(dataset.corpus.values())[: args.docs]
    with ragkit.Index(fp32_path) as old, ragkit.Index(new_path) as new:
        cosines = stored_cosines(old, new, docs)
        load = os.getloadavg()[0]
        vectors, ms = query_side(dataset.queries, old.config.model)
        load_queries = f"{load:.1f} -> {os.getloadavg()[0]:.1f}"
        scores = {(name, mode, q): ndcg(index, dataset.queries, vectors[q], dataset.qrels, mode)
                  for name, index in (("fp32", old), ("default", new)) for mode in MODES.values() for q in vectors}
    print_tables(args, before, after, cosines, ms, scores, load_queries)


def print_tables(args: argparse.Namespace, before: dict, after: dict, cosines: np.ndarray, ms: dict[str, float],
                 scores: dict[tuple[str, str, str], float], load_queries: str) -> None:
    rec = after["record"]
    print(f"\nSciFact, {before['chunks']} chunks; before = {args.before}")
    print("| build | runtime | wall (s) | vs before | chunks/s (embedding) | nDCG@10 hybrid | nDCG@10 dense | load |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r, name in (("before: torch fp32", before, "fp32"), ("after: default", after, "default")):
        runtime = f"{r['record']['runtime']} {r['record']['precision']}"
        rate = (r.get("rate") or {}).get("chunks_per_second", "-")
        print(f"| {label} | {runtime} | {r['seconds']:.1f} | {before['seconds'] / r['seconds']:.2f}x | {rate} "
              f"| {scores[(name, 'hybrid', 'default')]:.4f} | {scores[(name, 'dense', 'default')]:.4f} | {r['load']} |")
    print(f"\nstored vectors ({rec['runtime']} {rec['precision']}) vs fp32: cosine min {cosines.min():.5f}, "
          f"mean {cosines.mean():.5f} over {len(cosines)} chunks")
    print(f"\n| query runtime | ms/query | vs torch fp32 | nDCG@10 hybrid (fp32 index / default index) "
          f"| nDCG@10 dense (fp32 / default) |  (load {load_queries})")
    print("|---|---|---|---|---|")
    for q, q_ms in ms.items():
        print(f"| {q} | {q_ms:.1f} | {ms['torch fp32'] / q_ms:.2f}x | {scores[('fp32', 'hybrid', q)]:.4f} / "
              f"{scores[('default', 'hybrid', q)]:.4f} | {scores[('fp32', 'dense', q)]:.4f} / "
              f"{scores[('default', 'dense', q)]:.4f} |")


if __name__ == "__main__":
    main()
