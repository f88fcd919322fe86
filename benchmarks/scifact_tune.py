"""SciFact tuning benchmark: what `ragkit tune` (fusion settings; with --adapter a learned query
adapter; with --associate the training questions as evidence) gains on the test queries when it is
fitted on the train queries only.

    python benchmarks/scifact_tune.py [--data ../shared/data/scifact] [--index /tmp/scifact.ragkit] \
        [--runs fusion associate adapter adapter+associate] [--seeds 0 1 2]

Each row is one `tune` run on the train split; its choice is then scored on the test split (the test
queries decide nothing). Because SciFact's train and test claims were written from the same abstracts,
most test queries have a relevant document that some train query also has; the last two columns split
the test queries into those ("seen documents") and the rest ("unseen documents"), so a gain that only
memorises which documents get asked about shows up as such. Not part of CI: each run takes minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scifact import build, table  # noqa: E402

from ragkit.retrieval.adapter import document_disjoint_split  # noqa: E402
from ragkit.evaluation.datasets import EvalDataset, load_beir  # noqa: E402
from ragkit.evaluation.measure import QueryCache, evaluate_over_untuned  # noqa: E402
from ragkit.evaluation.tuning import tune  # noqa: E402

METRIC = "ndcg@10"


def per_query(index, dataset, settings, cache) -> dict[str, float]:  # type: ignore[no-untyped-def]
    result = evaluate_over_untuned(index, dataset, settings, METRIC, cache)
    return {q: s[METRIC] for q, s in result.per_query.items()}


def document_disjoint_halves(train: EvalDataset, test: EvalDataset) -> tuple[EvalDataset, EvalDataset]:
    """All labelled queries of both splits, cut in two parts that share no relevant document."""
    queries = {**{f"train-{q}": t for q, t in train.queries.items()}, **{f"test-{q}": t for q, t in test.queries.items()}}
    qrels = {**{f"train-{q}": r for q, r in train.qrels.items()}, **{f"test-{q}": r for q, r in test.qrels.items()}}
    qids = [q for q in queries if q in qrels]
    first, second = document_disjoint_split([frozenset(qrels[q]) for q in qids], 0.5, seed=0)

    def part(rows: list[int], name: str) -> EvalDataset:
        ids = [qids[i] for i in rows]
        return EvalDataset(None, {q: queries[q] for q in ids}, {q: qrels[q] for q in ids}, name)

    return part(first, "disjoint-a"), part(second, "disjoint-b")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/scifact")
    ap.add_argument("--index", type=Path, default=Path("/tmp/scifact.ragkit"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--runs", nargs="+", default=["fusion", "associate", "adapter", "adapter+associate"],
                    choices=["fusion", "associate", "adapter", "adapter+associate"],
                    help="which tune runs; the adapter runs repeat for each seed")
    ap.add_argument("--disjoint", action="store_true",
                    help="instead of train/test, split all labelled queries into two halves that share no "
                         "relevant document: tuning on documents the scored queries never ask about")
    args = ap.parse_args()

    index, _ = build(args.index, args.data)
    train = load_beir(args.data, "train", corpus=False)
    test = load_beir(args.data, "test", corpus=False)
    if args.disjoint:
        train, test = document_disjoint_halves(train, test)
    seen_docs = {d for rel in train.qrels.values() for d, g in rel.items() if g > 0}
    seen = {q for q, rel in test.qrels.items() if any(d in seen_docs for d, g in rel.items() if g > 0)}
    plain = QueryCache(index, test.queries, show_progress=False)
    default = per_query(index, test, {}, plain)

    def split_means(scores: dict[str, float]) -> tuple[float, float]:
        parts = ([scores[q] for q in test.queries if q in seen], [scores[q] for q in test.queries if q not in seen])
        return tuple(float(np.mean(p)) if p else float("nan") for p in parts)  # type: ignore[return-value]

    d_seen, d_unseen = split_means(default)
    rows = [["untuned default", "adaptive w=0.4", "-", f"{np.mean(list(default.values())):.4f}", "-",
             f"{d_seen:.4f}", f"{d_unseen:.4f}", "-"]]
    runs = [("fusion only", False, False, 0)] if "fusion" in args.runs else []
    runs += [("--associate", False, True, 0)] if "associate" in args.runs else []
    for name, associate in (("adapter", False), ("adapter+associate", True)):
        if name in args.runs:
            flags = "--adapter --associate" if associate else "--adapter"
            runs += [(f"{flags} --seed {s}", True, associate, s) for s in args.seeds]
    for label, adapter, associate, seed in runs:
        started = time.perf_counter()
        result = tune(index, train, test, adapter=adapter, adapter_rank=args.rank, associate=associate, seed=seed)
        seconds = time.perf_counter() - started
        learned = {"query_adapter": result.adapter.adapter if result.adapter else False,
                   "associations": result.associations or False}
        tuned = per_query(index, test, {**result.best, **learned}, plain)
        t_seen, t_unseen = split_means(tuned)
        chosen = ", ".join(f"{k}={v}" for k, v in result.best.items() if k not in ("query_adapter", "associations"))
        chosen = chosen or "untuned (adaptive w=0.4)"
        steps = f"{result.adapter.steps}" if result.adapter else "-"
        rows.append([label, chosen, f"{result.train_score:.4f}", f"{result.heldout_score:.4f}", steps,
                     f"{t_seen:.4f}", f"{t_unseen:.4f}", "saved" if result.accepted else "refused"])
        print(f"{label}: {seconds:.0f} s", file=sys.stderr, flush=True)
    print(f"SciFact: tuned on {len(train.queries)} train queries, scored on {len(test.queries)} test queries "
          f"({len(seen)} with a document some train query also has, {len(test.queries) - len(seen)} without); "
          f"{METRIC}\n")
    print(table(["tune run", "chosen fusion", "train", "test", "adapter steps", "test, seen docs",
                 "test, unseen docs", "guard (test as held-out)"], rows))


if __name__ == "__main__":
    main()
