"""Offline: a BM25 leg over pairs of nearby analysed terms (a proximity signal), mixed into the default
hybrid's BM25 share, on a labelled BEIR collection (issue 15).

    python benchmarks/term_pairs.py /tmp/scifact.ragkit ../shared/data/scifact

Pairs within 1 or 3 positions, unordered; prints nDCG@10 per window, split and share. Not part of CI.
"""
import os, sys
from pathlib import Path
import numpy as np
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fusion_study as fs
import ragkit
from ragkit.evaluation.datasets import load_beir
from ragkit.evaluation.metrics import evaluate
from ragkit.index import embedding_text
from ragkit.retrieval.fusion import calibrate_bm25, yielded_weight
from ragkit.storage.bm25 import BM25Index, bm25_ideal_score

index = ragkit.Index(sys.argv[1]); DATA = Path(sys.argv[2])
view = index.snapshot(); N = len(index)
chunks = view.fetch(list(range(N)))
docs = np.array([c.doc_id for c in chunks])
an = index.analyzer
def bigrams(toks, window):
    out = []
    for i, t in enumerate(toks):
        for j in range(i + 1, min(len(toks), i + 1 + window)):
            out.append(t + "_" + toks[j] if t < toks[j] else toks[j] + "_" + t)
    return out
toks = an.tokenize_many([embedding_text(c) for c in chunks])
res = {}
for window in (1, 3):
    bi = BM25Index.build([bigrams(t, window) for t in toks])
    for split in ("train", "test"):
        ds = load_beir(DATA, split, corpus=False)
        enc = index.query_encoder
        rows = []
        for (qid, text), vec in zip(ds.queries.items(), enc.embedder.encode(list(ds.queries.values()))):
            query, _ = enc.encode(text, with_vector=True, vector=vec, adapter=None)
            b, d = view.exact_scores(query, np.arange(N)); st = view.statistics(query)
            qb = bigrams(list(query.tokens), window)
            g = bi.scores(qb); gi = bm25_ideal_score(bi, qb)
            rows.append((qid, np.asarray(b, float), np.asarray(d, float), st, len(set(query.tokens)), g, gi))
        for lam in (0.0, 0.1, 0.2, 0.3, 0.5):
            run = {}
            for qid, b, d, st, terms, g, gi in rows:
                ids = np.union1d(fs.top(b), fs.top(d))
                cb = calibrate_bm25(b[ids], st.bm25_ideal)
                if lam and gi > 0:
                    cb = (1 - lam) * cb + lam * calibrate_bm25(g[ids], gi)
                cd = fs.calibrate_dense(d[ids], np.asarray(st.dense_background), st.n_searched, ramp=fs.ADAPTIVE_RAMP, shift=fs.ADAPTIVE_SHIFT, softness=fs.ADAPTIVE_SOFTNESS)
                w = yielded_weight(0.4, terms, float(cd.max()))
                run[qid] = fs.ranking(ids, (1 - w) * cb + w * cd, docs)
            print(f"window {window} {split} lambda {lam}: {evaluate(run, ds.qrels, ('ndcg@10',))['ndcg@10']:.4f}", flush=True)
