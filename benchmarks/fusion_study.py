"""Fusion variants measured offline on any labelled collection: what issue 15 tried before the short-query yield.

    python benchmarks/fusion_study.py --index /tmp/scifact.ragkit --data ../shared/data/scifact --split train
    python benchmarks/fusion_study.py --index /tmp/ragkit-entities/index.ragkit --data /tmp/ragkit-entities/data

Reads each query's exact BM25 and dense scores for *every* chunk once (so a variant that searches
again, dense pseudo-relevance feedback, needs no second search), then scores every variant from them:
the candidates are each leg's top 100 as in a search, fused as ``adaptive_fusion`` does, documents
ranked by their best chunk. Prints nDCG@10 per variant; the README's "keyword queries" table is from
this. Not part of CI.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ragkit.retrieval.fusion import (
    ADAPTIVE_RAMP,
    ADAPTIVE_SHIFT,
    ADAPTIVE_SOFTNESS,
    calibrate_bm25,
    calibrate_dense,
    yielded_weight,
)
from ragkit.storage.base import BACKGROUND_SAMPLE

DEPTH = 100


def harvest(index, queries: dict[str, str]) -> tuple[list[dict], dict]:  # type: ignore[no-untyped-def]
    """Per query: every chunk's BM25 and dense score, the calibration statistics, the term count; and
    the collection: every chunk's vector, document, and the background sample's vectors."""
    view = index.snapshot()
    all_ids = np.arange(len(index))  # an unfiltered view's rows are positions 0..N-1
    vectors = np.asarray(view.vectors(all_ids), np.float64)
    sample = np.linspace(0, len(all_ids) - 1, min(len(all_ids), BACKGROUND_SAMPLE)).astype(np.int64)
    collection = {"vectors": vectors, "sample": vectors[sample], "sample_ids": sample,  # as the local backend samples it
                  "docs": np.array([r.doc_id for r in view.fetch(all_ids.tolist())])}
    encoder = index.query_encoder
    out = []
    for (qid, text), vec in zip(queries.items(), encoder.embedder.encode(list(queries.values()))):
        query, _ = encoder.encode(text, with_vector=True, vector=vec, adapter=None)
        bm25, dense = view.exact_scores(query, all_ids)
        stats = view.statistics(query)
        out.append({"qid": qid, "b": np.asarray(bm25, np.float64), "d": np.asarray(dense, np.float64),
                    "vec": np.asarray(query.needs_vector(), np.float64), "terms": len(set(query.tokens)),
                    "ideal": stats.bm25_ideal, "n": stats.n_searched,
                    "bg": np.asarray(stats.dense_background, np.float64)})
    return out, collection


def top(scores: np.ndarray, k: int = DEPTH) -> np.ndarray:
    return np.argpartition(-scores, min(k, len(scores) - 1))[:k]


def calibrated_dense(q: dict, cosine: np.ndarray, background: np.ndarray) -> np.ndarray:
    return calibrate_dense(cosine, background, q["n"], ramp=ADAPTIVE_RAMP, shift=ADAPTIVE_SHIFT,
                           softness=ADAPTIVE_SOFTNESS)


def legs(q: dict, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both legs' calibrated scores for the candidates ``ids``."""
    return calibrate_bm25(q["b"][ids], q["ideal"]), calibrated_dense(q, q["d"][ids], q["bg"])


def candidates(q: dict) -> np.ndarray:
    return np.union1d(top(q["b"]), top(q["d"]))


Variant = Callable[[dict, dict], tuple[np.ndarray, np.ndarray]]


def weighted(share: Callable[[dict, np.ndarray, np.ndarray], float]) -> Variant:
    """``(1 - w) * bm25 + w * dense`` on calibrated scores, with a per-query dense share ``w``."""
    def fuse(q: dict, collection: dict) -> tuple[np.ndarray, np.ndarray]:
        ids = candidates(q)
        b, d = legs(q, ids)
        w = share(q, b, d)
        return ids, (1 - w) * b + w * d
    return fuse


def prf(m: int, beta: float, mix: float) -> Variant:
    """Dense pseudo-relevance feedback: ``q + beta * mean`` of the top ``m`` fused chunks' vectors,
    searched again; its calibrated scores mixed with the first dense leg's (``mix``: the new share)."""
    def fuse(q: dict, collection: dict) -> tuple[np.ndarray, np.ndarray]:
        ids = candidates(q)
        b, d = legs(q, ids)
        q2 = q["vec"] + beta * collection["vectors"][ids[np.argsort(-(0.6 * b + 0.4 * d))[:m]]].mean(0)
        q2 /= np.linalg.norm(q2)
        cosine2 = collection["vectors"] @ q2
        ids = np.union1d(ids, top(cosine2))
        b, d = legs(q, ids)
        d2 = calibrated_dense(q, cosine2[ids], collection["sample"] @ q2)
        return ids, 0.6 * b + 0.4 * ((1 - mix) * d + mix * d2)
    return fuse


def centroid(share: float) -> Variant:
    """Plus ``share`` x the calibrated cosine to the candidate's document centroid (its chunks' mean)."""
    def fuse(q: dict, collection: dict) -> tuple[np.ndarray, np.ndarray]:
        ids = candidates(q)
        b, d = legs(q, ids)
        c = calibrated_dense(q, collection["centroids"][ids] @ q["vec"], q["bg"])
        return ids, 0.6 * b + 0.4 * d + share * c
    return fuse


def yielded_centroid(share: float) -> Variant:
    """The default (with the short-query yield), plus ``share`` x the calibrated centroid cosine."""
    def fuse(q: dict, collection: dict) -> tuple[np.ndarray, np.ndarray]:
        ids = candidates(q)
        b, d = legs(q, ids)
        w = yielded_weight(0.4, q["terms"], float(d.max()))
        c = calibrated_dense(q, collection["centroids"][ids] @ q["vec"], q["bg"])
        return ids, (1 - w) * b + w * d + share * c
    return fuse


def dense_document_share(h: float, base: float = 0.4) -> Variant:
    """The default, its dense leg a chunk's cosine mixed with its document centroid's (``h`` the
    document's share), calibrated against the same mixture over the background sample."""
    def fuse(q: dict, collection: dict) -> tuple[np.ndarray, np.ndarray]:
        mixed = (1 - h) * q["d"] + h * (collection["centroids"] @ q["vec"])
        ids = np.union1d(top(q["b"]), top(mixed))
        b = calibrate_bm25(q["b"][ids], q["ideal"])
        sample = collection["sample_ids"]
        bg = (1 - h) * q["bg"] + h * (collection["centroids"][sample] @ q["vec"])
        d = calibrated_dense(q, mixed[ids], bg)
        w = yielded_weight(base, q["terms"], float(d.max()))
        return ids, (1 - w) * b + w * d
    return fuse


def odds(g: float) -> Callable[[dict, np.ndarray, np.ndarray], float]:
    def share(q: dict, b: np.ndarray, d: np.ndarray) -> float:
        if b.max() <= 0 or d.max() <= 0:
            return 0.4
        o = 0.4 / 0.6 * (d.max() / b.max()) ** g
        return o / (1 + o)
    return share


VARIANTS: dict[str, Variant] = {
    "adaptive, dense share 0.4 (before the yield)": weighted(lambda q, b, d: 0.4),
    "adaptive with the short-query yield (the default)": weighted(
        lambda q, b, d: yielded_weight(0.4, q["terms"], float(d.max()))),
    **{f"fixed dense share {w}": weighted(lambda q, b, d, w=w: w) for w in (0.5, 0.6, 0.7)},
    **{f"share from odds x (dense/bm25 best)^{g}": weighted(odds(g)) for g in (1.0, 2.0)},
    "share from query length alone (0.4 + 0.1 per term below 6)": weighted(
        lambda q, b, d: min(0.8, 0.4 + 0.1 * max(0, 6 - q["terms"]))),
    **{f"dense PRF m={m} b={b} mix={x}": prf(m, b, x) for m, b, x in ((3, 0.5, 0.5), (10, 0.5, 1.0))},
    "+ document-centroid dense leg x 0.1": centroid(0.1),
    **{f"the default + document-centroid leg x {x}": yielded_centroid(x) for x in (0.05, 0.1, 0.2)},
    **{f"the default, dense leg with a document share {h}": dense_document_share(h) for h in (0.25, 0.5, 0.75)},
    **{f"the default with dense share {w}": dense_document_share(0.0, w) for w in (0.45, 0.5)},
    **{f"the default with dense share {w}, document share 0.5": dense_document_share(0.5, w) for w in (0.45, 0.5)},
}


def ranking(ids: np.ndarray, fused: np.ndarray, docs: np.ndarray) -> list[str]:
    """Documents by their best chunk's fused score."""
    seen: dict[str, None] = {}
    for i in ids[np.lexsort((ids, -fused))]:
        seen.setdefault(str(docs[i]), None)
    return list(seen)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ragkit
    from ragkit.evaluation.datasets import load_beir
    from ragkit.evaluation.metrics import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="an index built from --data (read only)")
    parser.add_argument("--data", type=Path, required=True, help="the BEIR folder")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    dataset = load_beir(args.data, args.split, corpus=False)
    queries, collection = harvest(ragkit.Index(args.index), dataset.queries)
    groups = np.unique(collection["docs"], return_inverse=True)[1]
    sums = np.zeros((groups.max() + 1, collection["vectors"].shape[1]))
    np.add.at(sums, groups, collection["vectors"])
    collection["centroids"] = (sums / np.linalg.norm(sums, axis=1, keepdims=True))[groups]
    print(f"{args.data.name} {args.split}: {len(queries)} queries, nDCG@10\n\n| variant | nDCG@10 |\n|---|---|")
    for name, fuse in VARIANTS.items():
        run = {q["qid"]: ranking(*fuse(q, collection), collection["docs"]) for q in queries}
        print(f"| {name} | {evaluate(run, dataset.qrels, ('ndcg@10',))['ndcg@10']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
