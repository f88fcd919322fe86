"""Does the default hybrid stay at least as good as the better leg when one leg is broken or weak?

    python benchmarks/degradations.py --index /tmp/scifact.ragkit [--data ../shared/data/scifact]

Starts from a built SciFact index (see scifact.py; or any index built from a BEIR folder --data, as
benchmarks/entities.py builds one) and, on a copy, rewrites the current segment to
degrade one leg, then searches through the normal path. Scenarios:

- ``random dense``: every vector replaced by a random unit vector (a broken or mismatched model);
- ``collapsed dense``: all vectors squeezed around one direction (a model that does not know the
  language: everything looks alike);
- ``noisy dense``: Gaussian noise on the vectors (a much weaker dense leg);
- ``weak bm25``: 3 of 4 term occurrences removed from every chunk (a much weaker lexical leg);
- ``bm25 matches nothing``: the vocabulary renamed, so no query term matches.

Prints nDCG@10 for bm25, dense, the default (adaptive) and the usual fixed fusions, and the margin
of the default over the better single leg.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import ragkit
from ragkit.evaluation.datasets import load_beir
from ragkit.evaluation.measure import QueryCache, evaluate_index
from ragkit.storage.local.store import Store

CONFIGS = {
    "bm25": {"mode": "bm25"},
    "dense": {"mode": "dense"},
    "adaptive (default)": {"mode": "hybrid"},
    "rrf k=60": {"mode": "hybrid", "method": "rrf"},
    "convex minmax 0.5": {"mode": "hybrid", "method": "convex", "weight": 0.5},
    "convex zscore 0.5": {"mode": "hybrid", "method": "convex", "normalization": "zscore", "weight": 0.5},
}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def degrade(arrays: dict[str, np.ndarray], blobs: dict[str, bytes], scenario: str, rng: np.random.Generator) -> None:
    vectors = arrays["vectors"]
    if scenario == "random dense":
        arrays["vectors"] = _unit(rng.standard_normal(vectors.shape))
    elif scenario == "collapsed dense":
        arrays["vectors"] = _unit(np.ones_like(vectors) + 0.01 * rng.standard_normal(vectors.shape))
    elif scenario == "noisy dense":
        arrays["vectors"] = _unit(vectors + 0.09 * rng.standard_normal(vectors.shape).astype(np.float32))
    elif scenario == "weak bm25":
        shape = tuple(int(x) for x in arrays["bm25_shape"])
        tf = sp.csc_matrix((arrays["bm25_data"], arrays["bm25_indices"], arrays["bm25_indptr"]), shape=shape)
        tf.data = rng.binomial(tf.data.astype(np.int64), 0.25).astype(np.float32)
        tf.eliminate_zeros()
        arrays.update(bm25_data=tf.data, bm25_indices=tf.indices.astype(np.int32), bm25_indptr=tf.indptr.astype(np.int64))
    elif scenario == "bm25 matches nothing":
        terms = json.loads(blobs["terms.json"])
        blobs["terms.json"] = json.dumps([f"zz{i}" for i in range(len(terms))]).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="a built SciFact index (benchmarks/scifact.py)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/scifact")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    dataset = load_beir(args.data, args.split, corpus=False)
    scenarios = ["none", "random dense", "collapsed dense", "noisy dense", "weak bm25", "bm25 matches nothing"]
    print(f"{args.data.name} {args.split}, nDCG@10 ({len(dataset.queries)} queries)\n")
    header = ["scenario", *CONFIGS, "default - best leg"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for scenario in scenarios:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "index.ragkit"
            shutil.copytree(args.index, copy)
            store = Store(copy)
            version = int(store.get_meta("segment"))
            arrays, blobs = store.read_segment(version)
            degrade(arrays, blobs, scenario, np.random.default_rng(0))
            store.write_segment(version + 1, arrays, blobs)
            with store.write_transaction() as db:
                Store.set_meta(db, "segment", version + 1)
            store.close()
            index = ragkit.Index(copy)
            cache = QueryCache(index, dataset.queries, show_progress=False)
            scores = {name: evaluate_index(index, dataset, cfg, metrics=["ndcg@10"], cache=cache).scores["ndcg@10"]
                      for name, cfg in CONFIGS.items()}
            margin = scores["adaptive (default)"] - max(scores["bm25"], scores["dense"])
            print(f"| {scenario} | " + " | ".join(f"{scores[n]:.4f}" for n in CONFIGS) + f" | {margin:+.4f} |", flush=True)
            index.close()


if __name__ == "__main__":
    main()
