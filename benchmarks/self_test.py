"""What the dense leg's self-test changes: nDCG@10 of the default with and without it, per labelled collection.

    python benchmarks/self_test.py /tmp/langq/react-zh.ragkit=/tmp/langsets/react-zh \\
        /tmp/scifact.ragkit=../shared/data/scifact ...

Each argument is INDEX=DATA: an index built from a BEIR folder's corpus (``Index(INDEX).add(...)``, as
``benchmarks/entities.py`` builds one) and that folder, whose test queries and qrels are used. Prints one
Markdown row per collection: the corpus fragmentation and dense self-test the index stores
(``ragkit info``), nDCG@10 of bm25, dense, the default with the self-test ignored (the learned state's
``dense_competence`` set to None: the code before it) and the default, and the default minus the better
leg. Queries are embedded as queries, once per collection (``QueryCache``). Not part of CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path


def row(index_path: Path, data: Path) -> str:
    import ragkit
    from ragkit.evaluation.datasets import load_beir
    from ragkit.evaluation.measure import QueryCache, evaluate_index

    dataset = load_beir(data, "test")
    index = ragkit.Index(index_path, show_progress=False)
    cache = QueryCache(index, dataset.queries, show_progress=False)

    def ndcg(mode: str) -> float:
        return evaluate_index(index, dataset, {"mode": mode}, metrics=["ndcg@10"], cache=cache).scores["ndcg@10"]

    bm25, dense, now = ndcg("bm25"), ndcg("dense"), ndcg("hybrid")
    learned = index.learned_state()
    index.learned_state = lambda: dataclasses.replace(learned, dense_competence=None)  # type: ignore[method-assign]
    without = ndcg("hybrid")
    info = index.info()
    fragmentation = "-" if info["corpus_fragmentation"] is None else f"{info['corpus_fragmentation']:.2f}"
    test = "-" if learned.dense_competence is None else f"{learned.dense_competence:.2f}"
    cells = [data.name, fragmentation, test, *(f"{v:.4f}" for v in (bm25, dense, without, now)),
             f"{now - max(bm25, dense):+.4f}"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collections", nargs="+", metavar="INDEX=DATA")
    args = parser.parse_args()
    print("| collection | fragmentation (corpus) | dense self-test | bm25 | dense | default without self-test "
          "| default now | now - better leg |\n|" + "---|" * 8)
    for spec in args.collections:
        index_path, _, data = spec.partition("=")
        print(row(Path(index_path), Path(data)), flush=True)


if __name__ == "__main__":
    main()
