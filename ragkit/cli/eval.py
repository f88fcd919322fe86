"""``ragkit eval`` and ``ragkit tune``: measure retrieval on labelled queries, tune fusion to them."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from ragkit.cli.table import render_table
from ragkit.errors import ConfigError
from ragkit.evaluation.measure import MAX_MISSING_LABELS


def register(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help={"eval": "measure retrieval on labelled queries",
                                   "tune": "tune fusion settings on labelled queries and save them"}[name])
    p.add_argument("--index", required=True, help="index directory (built from --beir's corpus if empty)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--beir", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    source.add_argument("--queries", type=Path, help='JSONL of {"question", "relevant_doc_ids" | "relevant_source_paths"}')
    if name == "tune":
        source.add_argument("--from-feedback", action="store_true",
                            help="learn from the answers people approved in the playground: their questions lift "
                                 "the documents they cite for similar queries (cross-validated; fusion kept)")
    p.add_argument("--split", default="test" if name == "eval" else "train", help="BEIR qrels split")
    p.add_argument("--metric", default="ndcg@10", help="metric to report first / to tune (default ndcg@10)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="the results as JSON: to FILE, or alone to print them instead of the table")
    p.add_argument("--allow-missing", action="store_true",
                   help=f"score even when more than {MAX_MISSING_LABELS} labelled ids or paths are not in the index")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default 0)")
    p.add_argument("-q", "--quiet", action="store_true")
    if name == "eval":
        p.add_argument("--config", action="append", default=[], metavar="JSON",
                       help='extra configuration to evaluate, e.g. \'{"method": "rrf", "rrf_k": 20}\'')
        p.add_argument("--per-query", type=Path, help="write each query's scores (JSONL) for error analysis")
        p.set_defaults(func=cmd_eval)
    else:
        p.add_argument("--heldout-split", help="BEIR split to check the tuned settings on (default: hold out "
                       "--holdout of the training queries)")
        p.add_argument("--holdout", type=float, default=0.3,
                       help="fraction of the queries held out to check the choice, without --heldout-split (default 0.3)")
        p.add_argument("--plot", type=Path, help="draw the metric against the fusion weight (needs matplotlib)")
        p.add_argument("--adapter", action="store_true",
                       help="also fit a query adapter to the training queries (see ragkit.adapter)")
        p.add_argument("--adapter-rank", type=int, default=32, help="rank of the query adapter (default 32)")
        p.add_argument("--associate", action="store_true",
                       help="keep the training questions as evidence: documents labelled for a similar "
                            "question are lifted (see ragkit.association)")
        p.add_argument("--seed", type=int, default=0, help="seed of the adapter's validation split and start")
        p.add_argument("--dry-run", action="store_true", help="report, do not save")
        p.add_argument("--force", action="store_true", help="save even if held-out score is below the default")
        p.set_defaults(func=cmd_tune)


def _open(args: argparse.Namespace, split: str | None = None) -> tuple[Any, Any]:
    from ragkit.evaluation.datasets import load_beir, load_labelled_jsonl
    from ragkit.evaluation.measure import check_labels
    from ragkit.index import Index

    index = Index(args.index, show_progress=not args.quiet, lock_timeout=args.wait)
    if args.beir:
        dataset = load_beir(args.beir, split or args.split, corpus=len(index) == 0)
        if len(index) == 0:
            index.add(dataset.corpus.values())  # type: ignore[union-attr]
    else:
        dataset = load_labelled_jsonl(args.queries)
        if len(index) == 0:
            raise ConfigError(f"index {args.index} is empty: index your folder first with `ragkit index`")
    for missing in check_labels(index, dataset, allow_missing=args.allow_missing, flag="--allow-missing"):
        print(f"warning: {missing.describe(dataset.qrels_key)}", file=sys.stderr)
    return index, dataset


def _write_json(target: str | None, data: Any) -> bool:
    """Write ``data`` to the ``--json`` target; True when it went to stdout (so no table is printed)."""
    text = json.dumps(data, indent=1, default=str)
    if target == "-":
        print(text)
        return True
    if target:
        Path(target).write_text(text)
    return False


def cmd_eval(args: argparse.Namespace) -> int:
    from ragkit.evaluation.measure import DEFAULT_CONFIGS, DEFAULT_METRICS, UNTUNED_SETTINGS, QueryCache, evaluate_index

    index, dataset = _open(args)
    configs = dict(DEFAULT_CONFIGS)
    if index.config.retrieval or index.config.query_adapter or index.config.query_associations:
        configs["hybrid"] = {"mode": "hybrid"}
        configs["hybrid (untuned default)"] = {"mode": "hybrid", **UNTUNED_SETTINGS}
    for raw in args.config:
        try:
            extra = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"--config {raw!r} is not JSON: {exc}") from exc
        configs[raw] = {"mode": "hybrid", **extra}
    assoc = index.query_associations
    own = set(assoc.questions) & set(dataset.queries.values()) if assoc is not None else set()
    if own:
        print(f"note: {len(own)} of these questions are among the index's {len(assoc)} labelled questions "  # type: ignore[arg-type]
              "(tune --associate): their 'hybrid' scores use their own labels", file=sys.stderr)
    metrics = [args.metric, *(m for m in DEFAULT_METRICS if m != args.metric)]
    cache = QueryCache(index, dataset.queries, show_progress=not args.quiet)
    results = [evaluate_index(index, dataset, s, name=n, metrics=metrics, cache=cache) for n, s in configs.items()]
    data = [{"name": r.name, "settings": r.settings, "scores": r.scores} for r in results]
    if not _write_json(args.json, data):
        print(f"{dataset.name}: {len(dataset.queries)} queries, index {args.index} ({len(index)} chunks)")
        print(render_table(["configuration", *metrics], [[r.name, *(r.scores[m] for m in metrics)] for r in results]))
    if args.per_query:
        with open(args.per_query, "w") as fh:
            for r in results:
                for qid, scores in r.per_query.items():
                    fh.write(json.dumps({"config": r.name, "query_id": qid, "query": dataset.queries.get(qid),
                                         **scores}) + "\n")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    if args.from_feedback:
        return cmd_tune_from_feedback(args)
    from ragkit.evaluation.datasets import load_beir
    from ragkit.evaluation.measure import describe_settings
    from ragkit.evaluation.tuning import MIN_TUNING_GAIN, split_for_tuning, tune

    index, train = _open(args)
    say = functools.partial(print, file=sys.stderr if args.json == "-" else sys.stdout)  # stdout: the JSON alone
    heldout = None
    if args.beir and args.heldout_split:
        heldout = load_beir(args.beir, args.heldout_split, corpus=False)
    else:  # the guard needs queries the choice was not made on
        train, heldout = split_for_tuning(train, args.holdout, seed=0, option="--holdout")
    result = tune(index, train, heldout, metric=args.metric, adapter=args.adapter, adapter_rank=args.adapter_rank,
                  associate=args.associate, seed=args.seed, show_progress=not args.quiet)
    best = dict(result.best)
    fusion = {k: v for k, v in best.items() if k != "query_adapter" and not k.startswith("association")}
    chosen = describe_settings(fusion, ", ") if fusion else f"the untuned default (no setting beat it by {MIN_TUNING_GAIN})"
    say(f"tuned on {len(train.queries)} queries ({train.name}); best fusion for {result.metric}: {chosen}")
    if result.adapter:
        fit = result.adapter
        say(f"query adapter: rank {args.adapter_rank}, {fit.steps} steps, loss on {fit.n_validation} "
              f"document-disjoint validation queries {fit.validation_loss_before:.4f} -> {fit.validation_loss_after:.4f}")
    if args.associate:
        if result.associations is not None:
            say(f"associations: {len(result.associations)} labelled questions kept as evidence, weight "
                  f"{best['association_weight']}, threshold {best['association_threshold']} "
                  f"(two-fold cross-validated {result.metric} {result.train_score:.4f})")
        else:
            top = max((s for _, s in result.association_cv), default=None)
            say("associations: not kept, no cross-validated gain"
                  + (f" (best {top:.4f})" if top is not None else ""))
    say(render_table(["", "train", "held-out"], [["tuned", result.train_score, result.heldout_score],
                                                     ["default", result.default_train_score, result.default_heldout_score]]))
    if args.plot:
        _plot(result, args.plot)
        say(f"plot: {args.plot}")
    _write_json(args.json, {"best": best, "train": result.train_score, "heldout": result.heldout_score,
                            "default_train": result.default_train_score,
                            "default_heldout": result.default_heldout_score,
                            "accepted": result.accepted, "reason": result.reason,
                            "adapter_steps": result.adapter.steps if result.adapter else None,
                            "association_cv": result.association_cv, "trials": result.trials})
    if not result.accepted and not args.force:
        print(f"not saved: {result.reason}", file=sys.stderr)
        return 1
    if args.dry_run:
        say("dry run: not saved")
        return 0
    index.save_retrieval_settings(best)
    index.save_query_adapter(result.adapter.adapter if result.adapter else None)
    index.save_query_associations(result.associations)
    say(f"saved to {args.index}: plain `search` now uses {describe_settings(best, ', ')}")
    return 0


def cmd_tune_from_feedback(args: argparse.Namespace) -> int:
    """``tune --from-feedback``: approved answers as query associations, through tune's guard."""
    from ragkit.cli.common import open_index
    from ragkit.feedback.associations import saved_settings, tune_from_feedback
    from ragkit.feedback.store import FeedbackStore

    if args.adapter or args.plot or args.heldout_split:
        raise ConfigError("--from-feedback learns query associations only; drop --adapter, --plot and --heldout-split")
    index = open_index(args.index, lock_timeout=args.wait, show_progress=not args.quiet)
    store = FeedbackStore.for_index(args.index)
    result = tune_from_feedback(index, store, holdout=args.holdout, metric=args.metric, seed=args.seed,
                                show_progress=not args.quiet)
    say = functools.partial(print, file=sys.stderr if args.json == "-" else sys.stdout)
    kept = result.associations is not None and result.accepted
    if kept:
        demoting = sum(p < 0 for p in result.associations.polarities)  # type: ignore[union-attr]
        say(f"associations: {len(result.associations) - demoting} approved answers kept as evidence"  # type: ignore[arg-type]
            + (f", {demoting} rejected ones as demotions" if demoting else "") + ", weight "
            f"{result.best['association_weight']}, threshold {result.best['association_threshold']} "
            f"(two-fold cross-validated {result.metric} {result.train_score:.4f})")
    say(render_table(["", "train", "held-out"], [["with feedback", result.train_score, result.heldout_score],
                                                 ["without", result.default_train_score, result.default_heldout_score]]))
    _write_json(args.json, {"best": dict(result.best), "train": result.train_score, "heldout": result.heldout_score,
                            "default_train": result.default_train_score, "default_heldout": result.default_heldout_score,
                            "accepted": result.accepted, "associations": len(result.associations or ()),
                            "association_cv": result.association_cv})
    if not kept and not (args.force and result.associations is not None):
        why = result.reason if not result.accepted else "no cross-validated gain over search without them"
        print(f"not saved: {why}", file=sys.stderr)
        return 1
    if args.dry_run:
        say("dry run: not saved")
        return 0
    index.save_retrieval_settings(saved_settings(index, result))
    index.save_query_associations(result.associations)
    say(f"saved to {args.index}: plain `search` now lifts documents cited by approved answers to similar questions")
    return 0


def _plot(result: Any, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError('--plot needs matplotlib: pip install "ragkit[plot]"') from exc
    series: dict[str, list[tuple[float, float]]] = {}
    for settings, score in result.trials:
        if "weight" in settings and "depth" not in settings:
            label = settings["method"] + (f" {settings['normalization']}" if "normalization" in settings else "")
            label += f" k={settings['rrf_k']}" if "rrf_k" in settings else ""
            series.setdefault(label, []).append((settings["weight"], score))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(series.items()):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.axhline(result.default_train_score, color="grey", linestyle="--", label="default (train)")
    ax.set_xlabel("dense weight (BM25 gets 1 - weight)")
    ax.set_ylabel(f"{result.metric} (training queries)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
