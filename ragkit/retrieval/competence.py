"""Whether the embedding model can read the corpus: a known-item self-test, run when an index grows.

A few dozen documents are drawn at random; from each, a run of :data:`PROBE_WORDS` consecutive words
(characters, for kana and CJK ideographs) is the query, and its own document the one right answer.
Both legs search the whole index; the mean reciprocal rank (top :data:`PROBE_DEPTH` chunks) of each is
the measure. BM25 finds verbatim words almost always, so the dense leg's MRR as a share of BM25's says
how well the model matches text of this corpus to itself, on the corpus's own scale of difficulty.
Under all-MiniLM-L6-v2: 0.40 to 0.44 for English (SciFact, React's docs), 0.31 to 0.40 for Spanish,
0.13 to 0.18 for Chinese (README, "a model that does not know the language"). The token fragmentation
(:func:`ragkit.text.tokens.fragmentation`) cannot tell Chinese: the model has each ideograph in its
vocabulary, one token each, yet was never trained on the language. No labels are involved, and nothing
but the index's own text and model.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ragkit.storage.base import Query, SearchView
from ragkit.text.embedding import TextEmbedder
from ragkit.text.tokens import WORD_UNIT

logger = logging.getLogger(__name__)

PROBE_WORDS = 8  # the words (or ideographs) of one probe query: a short query, as users type
PROBE_DEPTH = 10  # the ranks that count, in chunks
PROBES = 96  # documents probed; the MRRs' standard error is then about 0.03
MIN_DOCUMENTS = 30  # fewer: known items are trivial to find, so the test says nothing
REMEASURE_GROWTH = 2.0  # measured again once the index holds this many times the documents, or 1/this


@dataclass(frozen=True)
class DenseCompetence:
    """One self-test's result, as the index stores it."""

    documents: int  # documents indexed when measured
    probes: int
    bm25_mrr: float
    dense_mrr: float

    @property
    def ratio(self) -> float | None:
        """The dense leg's MRR as a share of BM25's (None when BM25 found nothing either)."""
        return self.dense_mrr / self.bm25_mrr if self.bm25_mrr > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DenseCompetence":
        return cls(documents=int(data["documents"]), probes=int(data["probes"]),
                   bm25_mrr=float(data["bm25_mrr"]), dense_mrr=float(data["dense_mrr"]))

    def stale(self, documents: int) -> bool:
        """Whether an index of ``documents`` documents should be measured again."""
        return documents >= self.documents * REMEASURE_GROWTH or documents * REMEASURE_GROWTH <= self.documents


def stored(data: Any) -> DenseCompetence | None:
    """The measure an index config holds; None when there is none or it does not parse (logged): a
    damaged value must not stop searches, which read it on each call."""
    if not data:
        return None
    try:
        return DenseCompetence.from_dict(data)
    except (KeyError, TypeError, ValueError):
        logger.warning("ignoring a stored dense_competence that does not parse: %r", data)
        return None


def probe_window(text: str, rng: random.Random, words: int = PROBE_WORDS) -> str | None:
    """A run of ``words`` consecutive words of ``text`` at a random place, as written (punctuation kept);
    None for a text of fewer words."""
    spans = [m.span() for m in WORD_UNIT.finditer(text)]
    if len(spans) < words:
        return None
    start = rng.randrange(len(spans) - words + 1)
    return text[spans[start][0]:spans[start + words - 1][1]]


def reciprocal_rank(doc_ids: Sequence[str], target: str) -> float:
    """1 / the rank of the first chunk of ``target``; 0 when none is among ``doc_ids``."""
    for rank, doc_id in enumerate(doc_ids, start=1):
        if doc_id == target:
            return 1.0 / rank
    return 0.0


def sample_documents(documents: Iterable[tuple[str, str]], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` of ``documents`` drawn uniformly in one pass, holding only ``n`` (reservoir sampling)."""
    rng = random.Random(seed)
    kept: list[tuple[str, str]] = []
    for seen, item in enumerate(documents):
        if seen < n:
            kept.append(item)
        elif (slot := rng.randrange(seen + 1)) < n:
            kept[slot] = item
    return kept


def probes_from(documents: Sequence[tuple[str, str]], seed: int = 0) -> list[tuple[str, str]]:
    """(query, document id) pairs: one window from each document long enough to give one."""
    rng = random.Random(seed)
    found = []
    for doc_id, text in documents:
        window = probe_window(text, rng)
        if window is not None:
            found.append((window, doc_id))
    return found


def measure(view: SearchView, embedder: TextEmbedder, tokenize: Any, probes: Sequence[tuple[str, str]],
            documents: int) -> DenseCompetence:
    """Search each probe on both legs of ``view``. ``tokenize`` gives a query's BM25 terms (the index's
    analyzer). Without probes (every document shorter than a probe) both MRRs are 0: no evidence, kept
    so the next writes do not sample again until the index doubles."""
    if not probes:
        return DenseCompetence(documents, 0, 0.0, 0.0)
    vectors = embedder.encode([q for q, _ in probes])  # one call: batched like indexing
    ranks: dict[str, list[float]] = {"bm25": [], "dense": []}
    for (text, target), vector in zip(probes, vectors):
        query = Query(tuple(tokenize(text)), np.asarray(vector, np.float32))
        for leg, candidates in (("bm25", view.lexical(query, PROBE_DEPTH)), ("dense", view.dense(query, PROBE_DEPTH))):
            ids = [int(i) for i in candidates.ids[:PROBE_DEPTH]]
            ranks[leg].append(reciprocal_rank([c.doc_id for c in view.fetch(ids)] if ids else [], target))
    return DenseCompetence(documents, len(probes), float(np.mean(ranks["bm25"])), float(np.mean(ranks["dense"])))
