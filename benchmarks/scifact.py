"""SciFact benchmark: ranking quality and speed of ragkit's legs and fusion, side by side with rank_bm25.

    python benchmarks/scifact.py [--data ../shared/data/scifact] [--index /tmp/scifact.ragkit]

Builds (or reuses) a ragkit index of the corpus (title + text per document), then reports on the
test queries nDCG@10, Recall@100 and MRR@10 (document level: a document found through several chunks
counts once) for bm25, dense and each fusion method, with per-query latency excluding the query
embedding; rank_bm25's BM25Okapi on the same tokens for speed; build time and peak memory.
Not part of CI: embedding the corpus takes about 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

import ragkit
from ragkit.evaluation.datasets import load_beir
from ragkit.evaluation.metrics import doc_ranking_from_hits, evaluate

METRICS = ("ndcg@10", "recall@100", "mrr@10")
CONFIGS = {
    "bm25": {"mode": "bm25"},
    "dense": {"mode": "dense"},
    "hybrid (default: adaptive)": {"mode": "hybrid"},
    "hybrid rrf k=60": {"mode": "hybrid", "method": "rrf", "rrf_k": 60},
    "hybrid convex minmax w=0.5": {"mode": "hybrid", "method": "convex", "weight": 0.5},
    "hybrid convex zscore w=0.5": {"mode": "hybrid", "method": "convex", "normalization": "zscore", "weight": 0.5},
    "hybrid dbsf w=0.5": {"mode": "hybrid", "method": "dbsf", "weight": 0.5},
}


def build(index_path: Path, data: Path) -> tuple[ragkit.Index, float]:
    dataset = load_beir(data, "test")
    started = time.perf_counter()
    index = ragkit.Index(index_path, show_progress=True)
    if len(index) == 0:
        index.add(dataset.corpus.values())
    return index, time.perf_counter() - started


def run(index: ragkit.Index, data: Path, split: str) -> tuple[list[list[str]], float]:
    dataset = load_beir(data, split, corpus=False)
    queries = dataset.queries
    vectors = {qid: index.embed_query(text) for qid, text in queries.items()}
    rows = []
    for name, config in CONFIGS.items():
        settings = {k: v for k, v in config.items() if k != "mode"}
        retriever = index.retriever(**settings)
        runs = {}
        for qid, text in queries.items():
            hits = retriever.search(text, k=100, mode=config["mode"], query_vector=vectors[qid])
            runs[qid] = doc_ranking_from_hits(hits)
        started = time.perf_counter()  # latency as an app sees it: top 10, query vector given
        for qid, text in queries.items():
            retriever.search(text, k=10, mode=config["mode"], query_vector=vectors[qid])
        ms = (time.perf_counter() - started) / len(queries) * 1000
        scores = evaluate(runs, dataset.qrels, METRICS)
        rows.append([name, *(f"{scores[m]:.4f}" for m in METRICS), f"{ms:.2f}"])
    return rows, len(queries)


def rank_bm25_speed(index: ragkit.Index, data: Path, n_queries: int = 50) -> tuple[float, float]:
    """Queries/second of rank_bm25.BM25Okapi and of ragkit's BM25 leg on the same token lists."""
    from rank_bm25 import BM25Okapi

    dataset = load_beir(data, "test")
    analyzer = index.analyzer
    corpus = analyzer.tokenize_many([d.text for d in dataset.corpus.values()])
    queries = [analyzer.tokenize(q) for q in list(dataset.queries.values())[:n_queries]]
    okapi = BM25Okapi(corpus)
    started = time.perf_counter()
    for q in queries:
        scores = okapi.get_scores(q)
        np.argpartition(-scores, 100)[:100]
    theirs = n_queries / (time.perf_counter() - started)
    snap = index.backend.snapshot().snap  # the local backend's in-memory BM25 arrays
    started = time.perf_counter()
    for _ in range(5):
        for q in queries:
            snap.bm25.top_k(q, 100)
    ours = 5 * n_queries / (time.perf_counter() - started)
    return ours, theirs


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/scifact")
    parser.add_argument("--index", type=Path, default=Path("/tmp/scifact.ragkit"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    index, build_s = build(args.index, args.data)
    rows, n = run(index, args.data, args.split)
    print(f"SciFact {args.split}: {n} queries, {len(index)} chunks, index build {build_s:.0f}s "
          f"(0 if reused), peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n")
    print(table(["method", *METRICS, "ms/query, k=10 (excl. embedding)"], rows))
    ours, theirs = rank_bm25_speed(index, args.data)
    print(f"\nBM25 queries/s on SciFact: ragkit {ours:.0f}, rank_bm25 {theirs:.1f} -> {ours / theirs:.0f}x")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "bm25_qps": [ours, theirs]}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
