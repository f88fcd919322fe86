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


# --- --study: document-level fusion and title legs, measured on a split (issue 15, Build item 3) ---
# Each leg's candidates are read once per query (with the exact fill-in scores the default uses), then
# every variant is scored from them, so the study costs one search per query plus one embedding of the
# titles. Variants: today's chunk-level adaptive fusion; each leg's calibrated chunk scores aggregated
# to documents (max, or max + a share of the second best) before fusing; and a title leg added to each
# chunk's fused score (BM25 over the titles, share of their ideal score; or the cosine to the title's
# vector, calibrated as the dense leg is).

def _leg_data(index: ragkit.Index, queries: dict[str, str], vectors: dict[str, np.ndarray]) -> dict[str, dict]:
    from ragkit.retrieval.fusion import calibrate_bm25, calibrate_dense

    encoder = index.retriever().source.query_encoder
    view = index.retriever().source.snapshot()
    data = {}
    for qid, text in queries.items():
        query, _ = encoder.encode(text, with_vector=True, vector=vectors[qid], adapter=None)
        union = np.union1d(view.lexical(query, 100).ids, view.dense(query, 100).ids)
        bm25, dense = view.exact_scores(query, union)
        stats = view.statistics(query)
        data[qid] = {"docs": [r.doc_id for r in view.fetch([int(i) for i in union])],
                     "b": calibrate_bm25(bm25, stats.bm25_ideal),
                     "d": calibrate_dense(dense, stats.dense_background, stats.n_searched, ramp=2.0, shift=0.5,
                                          softness=0.25)}
    return data


def _best(values: np.ndarray, groups: np.ndarray, n: int, second: float = 0.0) -> np.ndarray:
    """Per document: its best chunk's value, plus ``second`` times its second best (0 if none)."""
    order = np.lexsort((-values, groups))
    g, v = groups[order], values[order]
    first = np.r_[True, g[1:] != g[:-1]]
    out = np.zeros(n)
    out[g[first]] = v[first]
    follows = np.flatnonzero(~first)
    runner = follows[first[follows - 1]]  # right after its document's best: the second best
    out[g[runner]] += second * np.maximum(v[runner], 0.0)
    return out


class _Titles:
    """BM25 (Lucene IDF, k1 1.5, b 0.75) over the titles, and each title's vector."""

    def __init__(self, index: ragkit.Index, titles: dict[str, str]) -> None:
        import scipy.sparse as sp

        self.pos = {doc: i for i, doc in enumerate(titles)}
        self.analyzer = index.analyzer
        tokens = self.analyzer.tokenize_many(list(titles.values()))
        self.vocab: dict[str, int] = {}
        cells = [(i, self.vocab.setdefault(t, len(self.vocab))) for i, ts in enumerate(tokens) for t in ts]
        rows, cols = zip(*cells)
        self.tf = sp.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(tokens), len(self.vocab)))
        self.tf.sum_duplicates()
        lengths = np.array([len(t) for t in tokens], dtype=np.float64)
        self.norm = 1.5 * (0.25 + 0.75 * lengths / lengths.mean())
        df = np.diff(self.tf.indptr)
        self.idf = np.log(1 + (len(tokens) - df + 0.5) / (df + 0.5))
        self.vectors = np.asarray(index.embedder.encode(list(titles.values()), show_progress=True))

    def bm25_share(self, text: str) -> np.ndarray:
        scores, ideal = np.zeros(len(self.pos)), 0.0
        for term in {self.vocab[t] for t in self.analyzer.tokenize(text) if t in self.vocab}:
            rows, tf = self.tf.indices[self.tf.indptr[term]:self.tf.indptr[term + 1]], \
                self.tf.data[self.tf.indptr[term]:self.tf.indptr[term + 1]]
            scores[rows] += self.idf[term] * tf * 2.5 / (tf + self.norm[rows])
            ideal += self.idf[term]
        return scores / ideal if ideal > 0 else scores

    def dense(self, vector: np.ndarray) -> np.ndarray:
        from ragkit.retrieval.fusion import calibrate_dense

        cos = self.vectors @ vector
        return calibrate_dense(cos, cos, len(cos), ramp=2.0, shift=0.5, softness=0.25)


def _variant(leg: dict, title: np.ndarray | None, level: str, second: float = 0.0) -> list[str]:
    docs, groups = np.unique(np.array(leg["docs"]), return_inverse=True)
    extra = np.zeros(len(docs)) if title is None else title
    if level == "chunk":
        fused = _best(0.6 * leg["b"] + 0.4 * leg["d"] + extra[groups], groups, len(docs))
    else:
        fused = 0.6 * _best(leg["b"], groups, len(docs), second) + 0.4 * _best(leg["d"], groups, len(docs), second) + extra
    return list(docs[np.lexsort((docs, -fused))])


def study(index: ragkit.Index, data: Path, split: str) -> list[list[str]]:
    dataset = load_beir(data, split)
    vectors = dict(zip(dataset.queries, index.embedder.encode(list(dataset.queries.values()))))
    legs = _leg_data(index, dataset.queries, vectors)
    titles = _Titles(index, {d.id: str(d.metadata.get("title") or "") for d in dataset.corpus.values()})
    rows = []

    def score(name: str, title_of, level: str = "chunk", second: float = 0.0) -> None:  # type: ignore[no-untyped-def]
        run = {}
        for qid, leg in legs.items():
            docs = np.unique(np.array(leg["docs"]))
            title = None if title_of is None else title_of(qid)[[titles.pos[d] for d in docs]]
            run[qid] = _variant(leg, title, level, second)
        rows.append([name, f"{evaluate(run, dataset.qrels, ('ndcg@10',))['ndcg@10']:.4f}"])

    score("chunk-level adaptive (today's default)", None)
    for second in (0.0, 0.05, 0.25):
        score(f"document-level: max + {second:g} x second best", None, "document", second)
    for share in (0.05, 0.1):
        score(f"+ title BM25 leg x {share:g}", lambda q, s=share: s * titles.bm25_share(dataset.queries[q]))
    for share in (0.03, 0.05, 0.1):
        score(f"+ title dense leg x {share:g}", lambda q, s=share: s * titles.dense(vectors[q]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/scifact")
    parser.add_argument("--index", type=Path, default=Path("/tmp/scifact.ragkit"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--study", action="store_true",
                        help="document-level fusion and title legs on --split (choose on train), instead of the table")
    args = parser.parse_args()
    if args.study:
        print(table(["variant", "nDCG@10"], study(ragkit.Index(args.index), args.data, args.split)))
        return
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
