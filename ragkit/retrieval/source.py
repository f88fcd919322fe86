"""What a search needs of an index, as narrow protocols: a storage view, a query encoder, learned state.

:class:`ragkit.Index` satisfies :class:`SearchSource`; the retriever depends only on this, never on
``Index``, so retrieval can be tested (and reused) over any storage backend and any embedder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Literal, Protocol, Sequence

import numpy as np

from ragkit.retrieval.adapter import QueryAdapter
from ragkit.retrieval.association import QueryAssociations
from ragkit.storage.base import Query, SearchView
from ragkit.storage.util import LRU
from ragkit.text.analysis import Analyzer
from ragkit.text.embedding import TextEmbedder
from ragkit.text.tokens import approximate_token_count, fragmentation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LearnedState:
    """What tuning (and indexing) taught an index, read once per search so a long-lived retriever sees a
    re-tune."""

    query_adapter: QueryAdapter | None = None
    query_associations: QueryAssociations | None = None
    # how finely the model cuts the indexed text (ragkit.text.tokens.fragmentation); None: not measured
    corpus_fragmentation: float | None = None
    # the dense leg's known-item MRR as a share of BM25's (ragkit.retrieval.competence); None: not measured
    dense_competence: float | None = None


class QueryEncoder:
    """Turns query text into what storage searches with: BM25 tokens and the model's unit vector.

    The last ``cache_size`` query vectors are kept (a chat app asks the same questions again, and
    evaluation asks every query once per setting); ``adapter`` maps a raw vector into the space the
    learned query adapter was trained for.
    """

    def __init__(self, analyzer: Analyzer, embedder: TextEmbedder, *, cache_size: int = 256) -> None:
        self.analyzer = analyzer
        self.embedder = embedder
        self._vectors: LRU[str, np.ndarray] = LRU(cache_size)
        self._counter: Callable[[str], int] | None | Literal[False] = False  # False: not looked up yet

    def fragmentation(self, query: str) -> float | None:
        """How finely the model's tokenizer cuts the query (:func:`ragkit.text.tokens.fragmentation`);
        None when the embedder counts with the estimate itself (no tokenizer of its own)."""
        try:
            if self._counter is False:
                count = getattr(self.embedder, "query_token_counter", None) or getattr(self.embedder, "token_counter", None)
                counter = count() if callable(count) else None
                self._counter = None if counter is None or counter is approximate_token_count else counter
            return None if self._counter is None else fragmentation(self._counter(query), query)
        except Exception:  # noqa: BLE001 - evidence, not a requirement: a search must not fail for it
            logger.debug("could not count the query's tokens; fusing without its fragmentation", exc_info=True)
            self._counter = None
            return None

    def tokens(self, query: str) -> tuple[str, ...]:
        return tuple(self.analyzer.tokenize(query))

    def vector(self, query: str) -> np.ndarray:
        """The query's raw unit vector (cached)."""
        return self._vectors.get_or_make(query, lambda: self.embedder.encode([query])[0])

    def encode(
        self, query: str, *, with_vector: bool, vector: np.ndarray | None = None,
        adapter: QueryAdapter | None = None,
    ) -> tuple[Query, np.ndarray | None]:
        """The :class:`Query` for storage (vector adapted) and the raw vector (for associations).

        ``vector`` is a raw vector the caller already has; ``with_vector=False`` skips embedding.
        """
        raw = vector if vector is not None else (self.vector(query) if with_vector else None)
        adapted = raw if raw is None or adapter is None else adapter.apply(raw)
        return Query(self.tokens(query), adapted), raw


class SearchSource(Protocol):
    """What :class:`~ragkit.retrieval.retriever.HybridRetriever` needs of an index."""

    @property
    def query_encoder(self) -> QueryEncoder: ...
    def snapshot(self) -> SearchView | None: ...
    def learned_state(self) -> LearnedState: ...


def positions(ids: np.ndarray) -> Sequence[int]:
    """Row ids as plain ints, the form ``SearchView.fetch`` takes."""
    return [int(i) for i in ids]
