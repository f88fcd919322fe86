"""A learned query adapter: a small linear map, fitted to labelled questions, that moves query
vectors toward the chunks that answer them. It trains in seconds and re-embeds nothing.

The adapter maps a unit query vector ``q`` to ``normalize(q + (q @ down) @ up)`` with a low-rank
``down @ up``. Only queries move: chunk vectors stay as stored, so it works on every backend, and an
all-zero adapter is the untuned model, which is where training starts.

Why training stops on *document-disjoint* questions: from a few hundred labelled questions a linear
map learns two things, how your users phrase questions (which carries over to new documents) and
which documents they tend to ask about (which does not). :func:`fit_query_adapter` holds out
questions whose relevant documents no training question shares, on several such splits, and
trains for the number of steps where their mean loss is lowest, so the stopping point is chosen
for documents the adapter never saw. The contrastive
loss itself is the usual InfoNCE over the candidate chunks, computed with torch (installed with
sentence-transformers) for its gradients.

>>> fit = fit_query_adapter(query_vectors, positives, chunk_vectors, relevant_docs)  # doctest: +SKIP
>>> fit.adapter.apply(index.embed_query("does vitamin D prevent fractures?"))       # doctest: +SKIP
"""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragkit.errors import ConfigError

__all__ = ["AdapterFit", "QueryAdapter", "document_disjoint_split", "fit_query_adapter"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class QueryAdapter:
    """``q -> normalize(q + (q @ down) @ up)``; ``down`` is (dimension, rank), ``up`` (rank, dimension)."""

    down: np.ndarray
    up: np.ndarray

    @property
    def dimension(self) -> int:
        return int(self.down.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Adapted unit vectors, for one vector (1-d) or a batch (2-d)."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.shape[-1] != self.dimension:
            raise ConfigError(f"query adapter expects {self.dimension}-d vectors, got {x.shape[-1]}-d")
        y = x + (x @ self.down) @ self.up
        norm = np.linalg.norm(y, axis=-1, keepdims=True)
        return (y / np.where(norm > 0, norm, 1.0)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (float32 bytes in base64: exact, and a third of the size of a float list)."""
        return {"dimension": self.dimension, "rank": int(self.down.shape[1]),
                "down": pack_float32(self.down), "up": pack_float32(self.up)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QueryAdapter":
        try:
            d, r = int(data["dimension"]), int(data["rank"])
            down = unpack_float32(data["down"]).reshape(d, r)
            up = unpack_float32(data["up"]).reshape(r, d)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"stored query adapter is malformed ({exc}); run `ragkit tune --adapter` again"
            ) from exc
        return cls(down, up)


@dataclass(frozen=True)
class AdapterFit:
    """A fitted adapter, and the validation losses that chose its number of steps."""

    adapter: QueryAdapter
    steps: int
    validation_loss_before: float
    validation_loss_after: float
    n_train: int
    n_validation: int


def document_disjoint_split(
    relevant: Sequence[frozenset[str]], validation_share: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices of training and validation questions such that no training question shares a
    relevant document with a validation question (training questions that would are dropped)."""
    order = list(range(len(relevant)))
    random.Random(seed).shuffle(order)
    validation = sorted(order[: max(1, round(validation_share * len(order)))])
    held_docs = set().union(*(relevant[i] for i in validation)) if validation else set()
    chosen = set(validation)
    train = [i for i in range(len(relevant)) if i not in chosen and not relevant[i] & held_docs]
    return train, validation


def fit_query_adapter(
    query_vectors: np.ndarray,
    positives: Sequence[np.ndarray],
    chunk_vectors: np.ndarray,
    relevant: Sequence[frozenset[str]],
    *,
    rank: int = 32,
    temperature: float = 0.05,
    learning_rate: float = 3e-3,
    max_steps: int = 100,
    folds: int = 5,
    validation_share: float = 0.2,
    seed: int = 0,
) -> AdapterFit:
    """Fit an adapter so each question scores its relevant chunks above the other candidates.

    ``query_vectors[i]`` is question i's unit vector, ``positives[i]`` the rows of ``chunk_vectors``
    that belong to its relevant documents, and ``relevant[i]`` those documents' ids (used only to
    split off document-disjoint validation questions). ``chunk_vectors`` should hold every chunk
    either leg retrieves for any question: they are the negatives.

    The number of steps is chosen on ``folds`` document-disjoint splits (the step where the mean
    validation loss is lowest; 0, the identity, if no step lowers it), then the adapter is trained
    for that many steps on all the questions. One split's minimum is noisy; the mean of several is not.
    """
    import torch

    n = len(query_vectors)
    if not (len(positives) == len(relevant) == n):
        raise ConfigError("query_vectors, positives and relevant must have one entry per question")
    if rank < 1:
        raise ConfigError(f"adapter rank must be >= 1, got {rank}")
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    usable = [i for i in range(n) if len(positives[i])]
    splits = []
    for fold in range(folds):
        train_i, val_i = document_disjoint_split([relevant[i] for i in usable], validation_share, seed + fold)
        if train_i and val_i:
            splits.append(([usable[i] for i in train_i], [usable[i] for i in val_i]))
    if not splits:
        raise ConfigError("too few labelled questions whose relevant chunks were retrieved to fit an adapter")

    chunks = torch.from_numpy(np.ascontiguousarray(chunk_vectors, dtype=np.float32))
    queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
    mask = torch.zeros((n, len(chunks)), dtype=torch.bool)
    for i in usable:
        mask[i, torch.from_numpy(np.asarray(positives[i], dtype=np.int64))] = True
    train = _Trainer(queries, mask, chunks, rank, temperature, learning_rate, seed)

    curves = np.array([train.run(rows, max_steps, validation=val) for rows, val in splits])
    mean = curves.mean(axis=0)  # mean[s]: validation loss after s steps (mean[0]: the identity)
    steps = int(np.argmin(mean))
    down, up = train.fit(usable, steps)
    logger.info("query adapter: %d steps chosen on %d document-disjoint splits (validation loss %.4f -> %.4f), "
                "trained on %d questions", steps, len(splits), mean[0], mean[steps], len(usable))
    n_validation = round(float(np.mean([len(val) for _, val in splits])))
    return AdapterFit(QueryAdapter(down, up), steps, float(mean[0]), float(mean[steps]), len(usable), n_validation)


class _Trainer:
    """Adam on the InfoNCE loss of ``normalize(q + (q @ down) @ up)`` against the chunk vectors."""

    def __init__(self, queries: Any, mask: Any, chunks: Any, rank: int, temperature: float,
                 learning_rate: float, seed: int) -> None:
        self.queries, self.mask, self.chunks = queries, mask, chunks
        self.rank, self.temperature, self.learning_rate, self.seed = rank, temperature, learning_rate, seed

    def _loss(self, down: Any, up: Any, rows: Any) -> Any:
        import torch

        q = self.queries[rows]
        scores = torch.nn.functional.normalize(q + (q @ down) @ up, dim=1) @ self.chunks.T / self.temperature
        answered = torch.logsumexp(scores.masked_fill(~self.mask[rows], float("-inf")), dim=1)
        return (torch.logsumexp(scores, dim=1) - answered).mean()

    def _start(self) -> tuple[Any, Any, Any]:
        import torch

        dim = self.chunks.shape[1]
        generator = torch.Generator().manual_seed(self.seed)
        # `down` starts small and random, `up` at zero: the adapter starts as the identity but can move.
        down = (torch.randn(dim, self.rank, generator=generator) * 0.01).requires_grad_()
        up = torch.zeros(self.rank, dim, requires_grad=True)
        return down, up, torch.optim.Adam([down, up], lr=self.learning_rate)

    def run(self, rows: list[int], steps: int, *, validation: list[int]) -> list[float]:
        """Train on ``rows`` for ``steps`` steps; the validation loss before and after each step."""
        import torch

        down, up, optimizer = self._start()
        train_t, val_t = torch.tensor(rows), torch.tensor(validation)
        with torch.no_grad():
            curve = [float(self._loss(down, up, val_t))]
        for _ in range(steps):
            optimizer.zero_grad()
            self._loss(down, up, train_t).backward()
            optimizer.step()
            with torch.no_grad():
                curve.append(float(self._loss(down, up, val_t)))
        return curve

    def fit(self, rows: list[int], steps: int) -> tuple[np.ndarray, np.ndarray]:
        """``down`` and ``up`` after ``steps`` steps on ``rows`` (zeros, the identity, for 0 steps)."""
        import torch

        down, up, optimizer = self._start()
        if steps == 0:
            return (np.zeros(tuple(down.shape), np.float32), np.zeros(tuple(up.shape), np.float32))
        train_t = torch.tensor(rows)
        for _ in range(steps):
            optimizer.zero_grad()
            self._loss(down, up, train_t).backward()
            optimizer.step()
        return down.detach().numpy().astype(np.float32), up.detach().numpy().astype(np.float32)


def pack_float32(array: np.ndarray) -> str:
    """Float32 bytes in base64, for arrays stored in JSON config: exact, a third of a float list's size."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def unpack_float32(text: str) -> np.ndarray:
    """The flat float32 array :func:`pack_float32` stored."""
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4").copy()
