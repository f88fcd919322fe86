"""Query latency at scale: a synthetic index of N chunks (default 100k), searched through the real path.

    python benchmarks/scale.py [--chunks 100000]

Chunk texts are drawn from a Zipf-distributed vocabulary (like natural text) and vectors are random
unit vectors, stored through the same backend write as a real sync (embedding is skipped: it is not
what is measured). Reports p50/p95 milliseconds per query for bm25, dense (exact flat faiss) and
hybrid, excluding the query embedding, plus build time and peak memory.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import tempfile
import time
from dataclasses import replace

import numpy as np

import ragkit
from ragkit.storage.base import Changes, PreparedDocument
from ragkit.types import Chunk, Document


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks**1.1
    p /= p.sum()
    words = rng.choice(len(vocab), size=(n, 80), p=p)
    texts = [" ".join(vocab[row]) for row in words]
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return texts, vectors


CHUNKS_PER_DOCUMENT = 4


def build(path: str, texts: list[str], vectors: np.ndarray) -> ragkit.Index:
    index = ragkit.Index(path, stemming=False, stopwords=False)
    index.backend.set_config(replace(index.config, dimension=vectors.shape[1]).to_dict())  # as a first add does
    tokens = index.analyzer.tokenize_many(texts)
    prepared = []
    for d in range(0, len(texts), CHUNKS_PER_DOCUMENT):  # documents of 4 chunks, for BM25's document share
        rows = range(d, min(d + CHUNKS_PER_DOCUMENT, len(texts)))
        doc = Document(f"d{d}", "\n\n".join(texts[i] for i in rows), {"source": f"synthetic/{d // 1000}/{d}.txt"})
        chunks = [Chunk(f"d{d}#{i - d}", doc.id, texts[i], 0, len(texts[i]), dict(doc.metadata)) for i in rows]
        digests = [hashlib.sha256(texts[i].encode()).hexdigest() for i in rows]
        prepared.append(PreparedDocument(doc, digests[0], chunks, [tokens[i] for i in rows],
                                         [vectors[i] for i in rows], digests))
    index.backend.apply(Changes(add=tuple(prepared)))
    return index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    texts, vectors = synthetic(args.chunks, 384)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        index = build(f"{tmp}/scale.ragkit", texts, vectors)
        build_s = time.perf_counter() - started
        rng = np.random.default_rng(1)
        queries = [" ".join(texts[i].split()[j:j + 6]) for i, j in zip(rng.integers(0, args.chunks, args.queries),
                                                                       rng.integers(0, 70, args.queries))]
        qvecs = vectors[rng.integers(0, args.chunks, args.queries)] + 0.05 * rng.standard_normal((args.queries, 384))
        qvecs = (qvecs / np.linalg.norm(qvecs, axis=1, keepdims=True)).astype(np.float32)
        index.close()
        print(f"{args.chunks} chunks, build {build_s:.1f}s (tokenize + write, no embedding)\n")
        print("| mode | p50 ms | p95 ms | queries/s |\n|---|---|---|---|")
        # BM25 with and without the whole-document share, side by side on the same index (storage/bm25_documents.py)
        for mode, weight in (("bm25", 0.0), ("bm25", 0.5), ("dense", 0.5), ("hybrid", 0.0), ("hybrid", 0.5)):
            index = ragkit.Index(f"{tmp}/scale.ragkit", bm25_document_weight=weight)
            index.search(queries[0], mode="hybrid", query_vector=qvecs[0])  # load the segment once
            times = []
            for q, v in zip(queries, qvecs):
                t = time.perf_counter()
                index.search(q, k=10, mode=mode, query_vector=v)
                times.append((time.perf_counter() - t) * 1000)
            label = mode if mode == "dense" else f"{mode}, document share {weight}"
            print(f"| {label} | {np.percentile(times, 50):.2f} | {np.percentile(times, 95):.2f} | {1000 / np.mean(times):.0f} |")
            index.close()
        print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
