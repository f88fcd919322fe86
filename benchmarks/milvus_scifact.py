"""SciFact on Milvus Lite vs the local backend: the same chunks and vectors, ranking quality and speed.

    python benchmarks/milvus_scifact.py [--source /work/cache/scifact.ragkit] [--data ../shared/data/scifact]

Re-embedding the corpus takes 5+ minutes on 2 cores, so the chunks, their vectors and the config come
from an existing local SciFact index (``--source``, built by ``benchmarks/scifact.py``; opened
read-only). Both backends ingest the same :class:`~ragkit.storage.base.PreparedDocument` batches through
``apply``; both are then searched through ``ragkit.Index`` with the same query vectors. Reported per
backend: nDCG@10 and Recall@10 (k=10 hits; each leg fetches 100 candidates) on the test queries for bm25, dense and hybrid (default adaptive
fusion, and RRF), ms/query excluding the query embedding, and ingestion in chunks/s. Also: how far
Milvus's legs are from the local ones (top-k agreement, score differences), and, for the record, Milvus Lite's
own server-side BM25 function (``standard`` analyzer, no stemming or stopwords) on the same chunks.
Needs ``pip install "ragkit[milvus]"``. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import ragkit
from ragkit.storage.base import Changes, PreparedDocument
from ragkit.evaluation.datasets import load_beir
from ragkit.index import IndexConfig, embedding_text
from ragkit.storage.local.backend import LocalBackend
from ragkit.evaluation.metrics import doc_ranking_from_hits, evaluate
from ragkit.storage.milvus.backend import MilvusBackend
from ragkit.types import Chunk, Document

CONFIGS = {
    "bm25": {"mode": "bm25"},
    "dense": {"mode": "dense"},
    "hybrid (adaptive)": {"mode": "hybrid"},
    "hybrid rrf k=60": {"mode": "hybrid", "method": "rrf"},
}
METRICS = ("ndcg@10", "recall@10")


def read_source(source: Path) -> tuple[dict, list[PreparedDocument]]:
    """Config and prepared documents (chunks, tokens, stored vectors) of a local index, read-only."""
    db = sqlite3.connect(f"file:{source / 'ragkit.sqlite'}?mode=ro", uri=True)
    config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()[0])
    analyzer = IndexConfig.from_dict(config).analyzer
    vectors = {h: np.frombuffer(v, np.float32) for h, v in db.execute("SELECT hash, vector FROM embeddings")}
    chunks: dict[str, list[tuple]] = {}
    for row in db.execute("SELECT id, doc_id, start, end, text, metadata, embed_hash FROM chunks ORDER BY row"):
        chunks.setdefault(row[1], []).append(row)
    prepared = []
    for doc_id, text, metadata, text_hash, root in db.execute(
            "SELECT id, text, metadata, text_hash, root FROM documents ORDER BY id"):
        rows = chunks.get(doc_id, [])
        doc_chunks = [Chunk(r[0], r[1], r[4], r[2], r[3], json.loads(r[5])) for r in rows]
        prepared.append(PreparedDocument(
            document=Document(doc_id, text, json.loads(metadata)), text_hash=text_hash, chunks=doc_chunks,
            tokens=analyzer.tokenize_many([embedding_text(c) for c in doc_chunks]),
            vectors=[vectors[r[6]] for r in rows], embed_hashes=[r[6] for r in rows], root=root,
        ))
    db.close()
    return config, prepared


def ingest(backend, config: dict, prepared: list[PreparedDocument], batch: int) -> float:
    """Chunks per second through ``apply`` (no embedding), in batches of ``batch`` documents."""
    backend.set_config(config)  # a backend takes its settings (dense kind, BM25 constants) from its config
    started = time.perf_counter()
    for start in range(0, len(prepared), batch):
        backend.apply(Changes(add=tuple(prepared[start : start + batch])))
    seconds = time.perf_counter() - started
    backend.close()
    return sum(len(p.chunks) for p in prepared) / seconds


def evaluate_index(index: ragkit.Index, dataset, vectors: dict[str, np.ndarray], k: int) -> dict[str, list]:
    results = {}
    for name, config in CONFIGS.items():
        retriever = index.retriever(**{k: v for k, v in config.items() if k != "mode"})
        runs, hits_by_query = {}, {}
        for qid, text in list(dataset.queries.items())[:3]:  # warm-up: caches, first gRPC calls
            retriever.search(text, k=k, mode=config["mode"], query_vector=vectors[qid])
        started = time.perf_counter()
        for qid, text in dataset.queries.items():
            hits = retriever.search(text, k=k, mode=config["mode"], query_vector=vectors[qid])
            runs[qid] = doc_ranking_from_hits(hits)
            hits_by_query[qid] = [(h.chunk_id, h.score) for h in hits]
        ms = (time.perf_counter() - started) / len(dataset.queries) * 1000
        scores = evaluate(runs, dataset.qrels, METRICS)
        results[name] = [*(scores[m] for m in METRICS), ms, hits_by_query]
    return results


def agreement(local: dict[str, list], milvus: dict[str, list]) -> tuple[float, float]:
    """Mean top-k overlap of two runs' chunk ids, and the largest score difference on shared ids."""
    overlaps, diff = [], 0.0
    for qid, hits in local.items():
        a, b = dict(hits), dict(milvus.get(qid, []))
        overlaps.append(len(a.keys() & b.keys()) / max(len(a), 1))
        diff = max([diff, *(abs(a[c] - b[c]) for c in a.keys() & b.keys())])
    return float(np.mean(overlaps)), diff


def native_bm25(path: Path, prepared: list[PreparedDocument], dataset, k: int) -> tuple[float, float, float]:
    """Milvus Lite's own BM25 function on the chunks' text: (nDCG@10, ms/query, chunks/s ingested)."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    client = MilvusClient(str(path))
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=256)
    schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                 output_field_names=["sparse"]))
    params = client.prepare_index_params()
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection("native", schema=schema)
    client.create_index("native", params, sync=False)
    client.load_collection("native")
    rows = [{"pk": i, "doc_id": c.doc_id, "text": embedding_text(c)}
            for i, c in enumerate(c for p in prepared for c in p.chunks)]
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        client.insert("native", rows[start : start + 1000])
    client.flush("native")
    rate = len(rows) / (time.perf_counter() - started)
    runs = {}
    started = time.perf_counter()
    for qid, text in dataset.queries.items():
        hits = client.search("native", data=[text], anns_field="sparse", limit=k, output_fields=["doc_id"],
                             search_params={"metric_type": "BM25"})[0]
        runs[qid] = list(dict.fromkeys(h["entity"]["doc_id"] for h in hits))
    ms = (time.perf_counter() - started) / len(dataset.queries) * 1000
    client.close()
    return evaluate(runs, dataset.qrels, ["ndcg@10"])["ndcg@10"], ms, rate


def query_vectors(index: ragkit.Index, dataset, cache: Path) -> dict[str, np.ndarray]:
    """The test queries' vectors: from ``cache`` (scifact_queries.npy + ids) when present, else embedded."""
    ids_file, vec_file = cache / "scifact_query_ids.json", cache / "scifact_queries.npy"
    if ids_file.exists() and vec_file.exists():
        cached = dict(zip(json.loads(ids_file.read_text()), np.load(vec_file)))
        if all(q in cached for q in dataset.queries):
            return {q: cached[q] for q in dataset.queries}
    return {q: index.embed_query(text) for q, text in dataset.queries.items()}


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/cache/scifact.ragkit"))
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/scifact")
    parser.add_argument("--batch", type=int, default=500, help="documents per apply() (default 500)")
    parser.add_argument("-k", type=int, default=10, help="hits per query (default 10: each leg fetches 100)")
    parser.add_argument("--limit", type=int, help="only the first N documents (a quick run; scores drop)")
    parser.add_argument("--no-native", action="store_true", help="skip Milvus Lite's own BM25 function")
    args = parser.parse_args()
    dataset = load_beir(args.data, "test", corpus=False)
    config, prepared = read_source(args.source)
    prepared = prepared[: args.limit] if args.limit else prepared
    n_chunks = sum(len(p.chunks) for p in prepared)
    work = Path(tempfile.mkdtemp(prefix="milvus_scifact_"))
    try:
        rates = {
            "local": ingest(LocalBackend(work / "local.ragkit"), config, prepared, args.batch),
            "milvus-lite": ingest(MilvusBackend.from_uri(f"milvus-lite://{work}/kb.db"), config, prepared, args.batch),
        }
        results = {}
        for name, location in (("local", work / "local.ragkit"), ("milvus-lite", f"milvus-lite://{work}/kb.db")):
            with ragkit.Index(location, show_progress=False) as index:
                vectors = query_vectors(index, dataset, args.source.parent)
                results[name] = evaluate_index(index, dataset, vectors, args.k)
        rows = []
        for method in CONFIGS:
            row = [method]
            for name in results:
                ndcg, recall, ms, _ = results[name][method]
                row += [f"{ndcg:.4f}", f"{recall:.4f}", f"{ms:.1f}"]
            rows.append(row)
        print(f"SciFact test: {len(dataset.queries)} queries, {len(prepared)} documents, {n_chunks} chunks, "
              f"{args.batch} documents per apply\n")
        print(table(["method", "local nDCG@10", "local R@10", "local ms/q", "Milvus Lite nDCG@10",
                     "Milvus R@10", "Milvus ms/q"], rows))
        print(f"\ningestion (apply, no embedding): local {rates['local']:.0f} chunks/s, "
              f"Milvus Lite {rates['milvus-lite']:.0f} chunks/s")
        for method in ("bm25", "dense", "hybrid (adaptive)"):
            overlap, diff = agreement(results["local"][method][3], results["milvus-lite"][method][3])
            print(f"{method}: top-{args.k} chunk overlap with local {overlap:.4f}, largest score difference {diff:.2e}")
        if not args.no_native:
            ndcg, ms, rate = native_bm25(work / "native.db", prepared, dataset, args.k)
            print(f"\nMilvus Lite's own BM25 function (standard analyzer): nDCG@10 {ndcg:.4f}, {ms:.1f} ms/query, "
                  f"ingestion {rate:.0f} chunks/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
