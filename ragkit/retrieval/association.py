"""Labelled questions as search evidence: a new query close to a question you labelled lifts the
documents you marked relevant for it ("query association", Scholer & Williams, SIGIR 2002).

Fusion weights and the query adapter learn *how* your users ask; they cannot learn *what* answered
a question before, and users ask again about the same documents. A :class:`QueryAssociations`
remembers each labelled question's (unit) vector and relevant documents. At search time
:func:`association_strengths` gives each associated document the strength of its closest question
(cosine above ``threshold``, rescaled to 0..1), and :func:`lift_scores` adds
``weight * strength * spread`` to that document's candidates, where ``spread`` is the range of the
fused scores, so one weight means the same for every fusion method.

Only candidates are lifted: what the legs and filters let through still decides what can be found,
and a query unlike every labelled question (the usual case on new documents) ranks exactly as before.

A question can also *demote* its documents (a thumbs-down on an answer that cited them): its row's
``polarity`` is negative, at least ``-MAX_DEMOTION``, and multiplies the strength, so the closest
question decides whether a document goes up or down, and a demoted document loses at most
``MAX_DEMOTION`` of what a lifted one gains (its ``association_score`` is then negative).

>>> assoc = QueryAssociations.from_labels(questions, vectors, relevant)   # doctest: +SKIP
>>> association_strengths(assoc.vectors @ query_vector, assoc.keys, threshold=0.5)  # doctest: +SKIP
{'doc-17': (0.62, 3)}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragkit.errors import ConfigError
from ragkit.retrieval.adapter import pack_float32, unpack_float32

__all__ = ["MAX_DEMOTION", "QueryAssociations", "association_strengths", "lift_scores"]

# The largest share of a lift a demotion may take away: a thumbs-down says the cited passages did not
# answer, not that they answer nothing, so a demoted document drops without leaving the candidates.
MAX_DEMOTION = 1.0


@dataclass(frozen=True, eq=False)
class QueryAssociations:
    """Labelled questions: their text, unit vectors (n, dimension) and relevant keys.

    ``key`` says what the keys are: document ids, or source paths (for labels made on a folder).
    """

    questions: tuple[str, ...]
    vectors: np.ndarray
    keys: tuple[tuple[str, ...], ...]
    key: str = "doc_id"
    polarity: tuple[float, ...] | None = None  # per row: 1 lifts, -MAX_DEMOTION..0 demotes; None: all lift

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or not len(self.questions) == len(self.keys) == self.vectors.shape[0]:
            raise ConfigError("query associations: questions, vectors and keys must have one row per question")
        if self.key not in ("doc_id", "source"):
            raise ConfigError(f"query associations: key must be 'doc_id' or 'source', not {self.key!r}")
        if self.polarity is not None and (len(self.polarity) != len(self.questions) or not all(
                p == 1.0 or -MAX_DEMOTION <= p < 0.0 for p in self.polarity)):
            raise ConfigError(f"query associations: polarity needs one value per question, each 1 (lift) or in "
                              f"[-{MAX_DEMOTION}, 0) (demote)")

    def demoting(self, share: float) -> QueryAssociations:
        """These questions as demotions of their documents by ``share`` (0 < share <= MAX_DEMOTION)."""
        if not 0.0 < share <= MAX_DEMOTION:
            raise ConfigError(f"a demotion's share must be in (0, {MAX_DEMOTION}], got {share}")
        return QueryAssociations(self.questions, self.vectors, self.keys, self.key, (-float(share),) * len(self))

    def plus(self, other: QueryAssociations) -> QueryAssociations:
        """Both sets of questions in one (lifting and demoting rows kept as they are)."""
        if other.key != self.key or (len(self) and len(other) and other.dimension != self.dimension):
            raise ConfigError("query associations: only associations with the same key and dimension combine")
        return QueryAssociations(self.questions + other.questions, np.vstack([self.vectors, other.vectors]),
                                 self.keys + other.keys, self.key, self.polarities + other.polarities)

    @property
    def polarities(self) -> tuple[float, ...]:
        return self.polarity if self.polarity is not None else (1.0,) * len(self)

    @classmethod
    def from_labels(
        cls, questions: Sequence[str], vectors: np.ndarray, relevant: Sequence[Sequence[str]], key: str = "doc_id"
    ) -> QueryAssociations:
        """Keep the questions that have at least one relevant key."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not len(questions) == len(relevant) == vectors.shape[0]:
            raise ConfigError(f"query associations: {len(questions)} questions, {len(relevant)} label lists and "
                              f"vectors of shape {vectors.shape}; give one vector row and one list per question")
        rows = [i for i, keys in enumerate(relevant) if keys]
        return cls(tuple(questions[i] for i in rows), vectors[rows],
                   tuple(tuple(sorted(relevant[i])) for i in rows), key)

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    def strengths(self, query_vector: np.ndarray, threshold: float) -> dict[str, tuple[float, int]]:
        """Each associated key's strength for this query, and the row of the question that gave it."""
        if not len(self):
            return {}
        return association_strengths(self.vectors @ np.asarray(query_vector, dtype=np.float32), self.keys, threshold,
                                     self.polarity)

    def to_dict(self) -> dict[str, Any]:
        out = {"key": self.key, "dimension": self.dimension, "questions": list(self.questions),
               "keys": [list(k) for k in self.keys], "vectors": pack_float32(self.vectors)}
        if self.polarity is not None:
            out["polarity"] = list(self.polarity)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryAssociations:
        try:
            questions = tuple(str(q) for q in data["questions"])
            vectors = unpack_float32(data["vectors"]).reshape(len(questions), int(data["dimension"]))
            keys = tuple(tuple(str(k) for k in row) for row in data["keys"])
            polarity = tuple(float(p) for p in data["polarity"]) if data.get("polarity") is not None else None
            return cls(questions, vectors, keys, str(data.get("key", "doc_id")), polarity)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"stored query associations are malformed ({exc}); run `ragkit tune --associate` again"
            ) from exc


def association_strengths(
    similarities: np.ndarray, keys: Sequence[Sequence[str]], threshold: float,
    polarity: Sequence[float] | None = None,
) -> dict[str, tuple[float, int]]:
    """``{key: (strength, question row)}``: for each key, its most similar labelled question above
    ``threshold``, with the similarity rescaled so that ``threshold`` -> 0 and 1 -> 1, times that
    row's ``polarity`` (negative for a demoting question; default 1 for every row)."""
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"association_threshold must be in [0, 1), got {threshold}")
    out: dict[str, tuple[float, int]] = {}
    rows = np.flatnonzero(similarities > threshold)
    for row in rows[np.argsort(-similarities[rows], kind="stable")]:  # closest first: it keeps the key
        strength = min(float((similarities[row] - threshold) / (1.0 - threshold)), 1.0)
        sign = 1.0 if polarity is None else float(polarity[row])
        for key in keys[row]:
            out.setdefault(key, (strength * sign, int(row)))
    return out


def lift_scores(fused: np.ndarray, strengths: np.ndarray, weight: float) -> np.ndarray:
    """``fused + weight * strength * spread(fused)``; ``strengths`` is 0 for unassociated candidates."""
    if not 0.0 <= weight < float("inf"):  # also refuses NaN
        raise ConfigError(f"association_weight must be a finite number >= 0, got {weight}")
    fused = np.asarray(fused, dtype=np.float64)
    spread = float(np.ptp(fused)) if len(fused) > 1 else 0.0
    spread = spread or (abs(float(fused[0])) if len(fused) else 0.0) or 1.0
    return fused + weight * np.asarray(strengths, dtype=np.float64) * spread
