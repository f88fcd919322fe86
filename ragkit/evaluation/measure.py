"""Measure an index's retrieval on labelled queries (:mod:`ragkit.evaluation.tuning` tunes it to them).

>>> from ragkit.evaluation.datasets import load_beir
>>> test = load_beir("scifact", "test", corpus=False)                           # doctest: +SKIP
>>> evaluate_index(index, test, {"mode": "bm25"}).scores["ndcg@10"]          # doctest: +SKIP
0.6886
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ragkit.errors import DatasetError
from ragkit.evaluation.datasets import EvalDataset
from ragkit.evaluation.metrics import doc_ranking_from_hits, evaluate, per_query
from ragkit.retrieval.association import QueryAssociations

if TYPE_CHECKING:
    from ragkit.index import Index

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map")
# What search does on an index nobody tuned; tuning trials override parts of it, never saved settings.
UNTUNED_SETTINGS: dict[str, Any] = {
    "method": "adaptive", "weight": None, "normalization": "minmax", "rrf_k": 60.0, "depth": None,
    "query_adapter": False, "associations": False,
}
# More labels than this naming nothing in the index make `eval` refuse: a few typos shift the scores
# silently (two mistyped paths took nDCG@10 from 0.910 to 0.747), more mean the wrong index or folder.
MAX_MISSING_LABELS = 3
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "bm25": {"mode": "bm25"},
    "dense": {"mode": "dense"},
    "hybrid": {"mode": "hybrid"},
}


@dataclass(frozen=True)
class EvalResult:
    """Mean scores of one configuration, and each query's scores for error analysis."""

    name: str
    settings: Mapping[str, Any]
    scores: Mapping[str, float]
    per_query: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


class QueryCache:
    """Query vectors computed once and reused across every configuration evaluated."""

    def __init__(self, index: "Index", queries: Mapping[str, str], show_progress: bool) -> None:
        ids = list(queries)
        # queries, not passages: the query prompt and runtime (ragkit.text.embedders.records.QuerySide)
        vectors = index.query_encoder.embedder.encode([queries[q] for q in ids], show_progress=show_progress)
        self.vectors = dict(zip(ids, vectors))

    def associations(self, dataset: EvalDataset) -> QueryAssociations:
        """``dataset``'s labelled questions, with their vectors, as search evidence."""
        qids = list(dataset.queries)
        relevant = [[d for d, g in dataset.qrels.get(q, {}).items() if g > 0] for q in qids]
        return QueryAssociations.from_labels([dataset.queries[q] for q in qids],
                                             np.stack([self.vectors[q] for q in qids]), relevant, dataset.qrels_key)


def evaluate_index(
    index: "Index",
    dataset: EvalDataset,
    settings: Mapping[str, Any],
    *,
    name: str = "",
    metrics: Sequence[str] = DEFAULT_METRICS,
    depth: int = 100,
    cache: QueryCache | None = None,
) -> EvalResult:
    """Run every query of ``dataset`` through ``index.search`` with ``settings`` and score the rankings.

    Chunk hits are turned into document rankings (a document found through several chunks counts once,
    at its best rank), by ``doc_id`` or by ``source`` path as the dataset's qrels are keyed.
    """
    settings = dict(settings)
    mode = settings.pop("mode", "hybrid")
    filters = settings.pop("filters", None)
    retriever = index.retriever(**settings)
    cache = cache or QueryCache(index, dataset.queries, show_progress=False)
    run: dict[str, list[str]] = {}
    for qid, text in dataset.queries.items():
        hits = retriever.search(text, k=depth, mode=mode, filters=filters, query_vector=cache.vectors[qid])
        run[qid] = doc_ranking_from_hits(hits, key=dataset.qrels_key)
    return EvalResult(
        name=name or describe_settings({"mode": mode, **settings}),
        settings={"mode": mode, **settings},
        scores=evaluate(run, dataset.qrels, metrics),
        per_query=per_query(run, dataset.qrels, metrics),
    )


def evaluate_over_untuned(
    index: "Index", dataset: EvalDataset, settings: Mapping[str, Any], metric: str, cache: QueryCache | None = None
) -> EvalResult:
    """Hybrid search with ``settings`` over the untuned defaults (never over settings saved in the
    index), scored on ``dataset``: how tuning scores each candidate."""
    return evaluate_index(index, dataset, {"mode": "hybrid", **UNTUNED_SETTINGS, **settings}, metrics=[metric],
                          cache=cache)


def describe_settings(settings: Mapping[str, Any], sep: str = " ") -> str:
    """``settings`` as ``key=value`` pairs, for a result's name or a message."""
    return sep.join(f"{k}={v}" for k, v in settings.items())


@dataclass(frozen=True)
class MissingLabel:
    """A labelled document id or source path the index does not hold, and where it is used."""

    label: str
    queries: tuple[str, ...]
    nearest: str | None  # the closest id or path the index does hold, as a hint at a typo

    def describe(self, key: str) -> str:
        what = "source path" if key == "source" else "document id"
        hint = f"; did you mean {self.nearest!r}?" if self.nearest else ""
        return f"labelled {what} {self.label!r} (query {', '.join(self.queries)}) is not in the index{hint}"


def missing_labels(index: "Index", dataset: EvalDataset) -> list[MissingLabel]:
    """Every id (or source path) ``dataset`` labels relevant that ``index`` does not hold.

    Such a label can never be found, so it scores as a miss whatever the search does.
    """
    docs = index.documents()
    held = {d.id if dataset.qrels_key == "doc_id" else d.metadata.get("source") for d in docs}
    used: dict[str, list[str]] = {}
    for qid, judged in dataset.qrels.items():
        for label, grade in judged.items():
            if grade > 0 and label not in held:
                used.setdefault(label, []).append(qid)
    names = sorted(h for h in held if isinstance(h, str))
    return [MissingLabel(label, tuple(qids), next(iter(difflib.get_close_matches(label, names, n=1)), None))
            for label, qids in sorted(used.items())]


def check_labels(
    index: "Index", dataset: EvalDataset, *, allow_missing: bool = False, flag: str = "allow_missing=True"
) -> list[MissingLabel]:
    """The missing labels (see :func:`missing_labels`); more than MAX_MISSING_LABELS raise a
    DatasetError listing them, unless ``allow_missing``."""
    missing = missing_labels(index, dataset)
    if len(missing) > MAX_MISSING_LABELS and not allow_missing:
        lines = "\n  ".join(m.describe(dataset.qrels_key) for m in missing)
        raise DatasetError(
            f"{dataset.name}: {len(missing)} labels are not in the index (more than {MAX_MISSING_LABELS}), so "
            f"scores would be wrong:\n  {lines}\nfix the labels or index the right folder, or pass {flag} "
            "to score them as never found"
        )
    return missing
