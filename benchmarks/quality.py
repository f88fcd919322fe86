"""Retrieval quality on every collection at hand, and how well ``min_score="auto"`` refuses off-topic questions.

    python benchmarks/quality.py --scifact-index /tmp/scifact.ragkit \\
        --collection httpx=/tmp/httpx/docs:benchmarks/questions/httpx.txt \\
        --collection vimru=/tmp/vimru:benchmarks/questions/vimru.txt

Collections: SciFact (an index built by ``benchmarks/scifact.py``, opened as is; its test queries are
the answerable questions and its qrels give nDCG@10), the repository's ``samples/docs`` with
``benchmarks/questions/samples.txt``, and any ``--collection NAME=FOLDER:QUESTIONS`` (a folder indexed
into ``--work`` on first run, one question a line). For each collection, the answerable questions are
its own; the off-topic ones are every other collection's questions plus
``benchmarks/questions/general.txt`` (general knowledge). A question is *refused* when a search with
``min_score="auto"`` (k=5) returns no passage; AUROC is of the best hit's ``relevance`` (answerable
above off-topic). ``--labelled NAME=INDEX:DATA`` adds a collection with labels (an index built from a
BEIR folder, as ``benchmarks/entities.py`` builds one): its test queries are answerable questions, and
it gets an nDCG@10 row as SciFact does; its questions are no other collection's off-topic ones (keyword
queries such as "web server http" are not off-topic for a software library's docs). Prints Markdown tables; nothing here is part of CI.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "questions"
FIXED = {  # the fixed-weight fusions; the best of them on the labels is shown
    "rrf k=60": {"method": "rrf"},
    "convex minmax 0.5": {"method": "convex"},
    "convex zscore 0.5": {"method": "convex", "normalization": "zscore"},
}


def read_questions(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def open_collection(work: Path, name: str, folder: Path):  # type: ignore[no-untyped-def]
    import ragkit

    index = ragkit.Index(work / f"{name}.ragkit")
    if len(index) == 0:
        index.sync(folder)
    return index


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(an answerable question's score > an off-topic one's), ties counting half."""
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    return float(greater + 0.5 * (pos[:, None] == neg[None, :]).mean())


def best_relevance(index, questions: list[str], vectors: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = []
    for text, vector in zip(questions, vectors):
        hits = index.search(text, k=10, query_vector=vector)
        out.append(max((h.relevance or 0.0 for h in hits), default=0.0))
    return np.asarray(out)


def refused(index, questions: list[str], vectors: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray([not index.search(t, k=5, query_vector=v, min_score="auto") for t, v in zip(questions, vectors)])


def refusal_table(indexes: dict, sets: dict[str, list[str]], vectors: dict[str, np.ndarray],
                  answerable_only: frozenset[str] = frozenset()) -> list[str]:
    """Refusal rates and AUROC per collection; the sets in ``answerable_only`` are no other's off-topic."""
    rows = ["| collection | answerable refused | off-topic refused | AUROC (best hit's relevance) |",
            "|---|---|---|---|"]
    for name, index in indexes.items():
        others = [s for s in sets if s != name and s not in answerable_only]
        ans = refused(index, sets[name], vectors[name])
        off = np.concatenate([refused(index, sets[s], vectors[s]) for s in others])
        pos = best_relevance(index, sets[name], vectors[name])
        neg = np.concatenate([best_relevance(index, sets[s], vectors[s]) for s in others])
        rows.append(f"| {name} ({len(ans)} / {len(off)}) | {ans.mean():.1%} | {off.mean():.1%} | "
                    f"{auroc(pos, neg):.3f} |")
    return rows


NDCG_HEADER = ["| collection | bm25 | dense | default (adaptive) | best fixed fusion | default - better leg |",
               "|---|---|---|---|---|---|"]


def ndcg_row(name: str, index, data: Path) -> str:  # type: ignore[no-untyped-def]
    """nDCG@10 on a labelled collection's test queries: each leg, the default, the best fixed fusion."""
    from ragkit.evaluation.datasets import load_beir
    from ragkit.evaluation.metrics import doc_ranking_from_hits, evaluate

    ds = load_beir(data, "test", corpus=False)
    vectors = dict(zip(ds.queries, index.embedder.encode(list(ds.queries.values()))))

    def ndcg(mode: str, **settings: object) -> float:
        runs = {q: doc_ranking_from_hits(index.search(t, k=100, mode=mode, query_vector=vectors[q], **settings))
                for q, t in ds.queries.items()}
        return evaluate(runs, ds.qrels, ("ndcg@10",))["ndcg@10"]

    fixed = {name: ndcg("hybrid", **s) for name, s in FIXED.items()}
    best = max(fixed, key=fixed.__getitem__)
    bm25, dense, default = ndcg("bm25"), ndcg("dense"), ndcg("hybrid")
    return (f"| {name} test | {bm25:.4f} | {dense:.4f} | {default:.4f} | {fixed[best]:.4f} ({best}) | "
            f"{default - max(bm25, dense):+.4f} |")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ragkit
    from ragkit.evaluation.datasets import load_beir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scifact-index", type=Path, help="an index built by benchmarks/scifact.py (read, not written)")
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "scifact")
    p.add_argument("--scifact-questions", type=int, default=300, help="test queries used (default all 300)")
    p.add_argument("--collection", action="append", default=[], metavar="NAME=FOLDER:QUESTIONS")
    p.add_argument("--labelled", action="append", default=[], metavar="NAME=INDEX:DATA",
                   help="an index built from a BEIR folder DATA (e.g. by benchmarks/entities.py): its test "
                        "queries are the answerable questions, its qrels give nDCG@10 (read, not written)")
    p.add_argument("--work", type=Path, default=Path("/tmp/ragkit-quality"), help="where folders are indexed")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    indexes, sets, labelled = {}, {}, {}
    if args.scifact_index:
        labelled["scifact"] = (args.scifact_index, args.data)
    for spec in args.labelled:
        name, _, rest = spec.partition("=")
        index_path, _, data = rest.rpartition(":")
        labelled[name] = (Path(index_path), Path(data))
    for name, (index_path, data) in labelled.items():
        indexes[name] = ragkit.Index(index_path)
        queries = list(load_beir(data, "test", corpus=False).queries.values())
        sets[name] = queries[: args.scifact_questions] if name == "scifact" else queries
    specs = [f"samples={HERE.parent / 'samples' / 'docs'}:{QUESTIONS / 'samples.txt'}", *args.collection]
    for spec in specs:
        name, _, rest = spec.partition("=")
        folder, _, questions = rest.rpartition(":")
        indexes[name] = open_collection(args.work, name, Path(folder))
        sets[name] = read_questions(Path(questions))
    sets["general"] = read_questions(QUESTIONS / "general.txt")
    model = next(iter(indexes.values())).embedder
    vectors = {name: model.encode(qs) for name, qs in sets.items()}
    extra = frozenset(n for n in labelled if n != "scifact")
    print("\n".join(refusal_table(indexes, sets, vectors, extra)))
    if labelled:
        print()
        print("\n".join([*NDCG_HEADER, *(ndcg_row(n, indexes[n], data) for n, (_, data) in labelled.items())]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
