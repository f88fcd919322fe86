"""A learned query adapter: a small linear map, fitted to labelled questions, that moves query
vectors toward the chunks that answer them. It trains in seconds and re-embeds nothing.

The adapter maps a unit query vector ``q`` to ``normalize(q + (q @ down) @ up)`` with a low-rank
``down @ up``. Only queries move: chunk vectors stay as stored, so it works on every backend, and an
all-zero adapter is the untuned model, which is where training starts.

Why training stops on *document-disjoint* questions: from a few hundred labelled questions a linear
map learns two things, how your users phrase questions (which carries over to new documents) and
which documents they tend to ask about (which does not). :func:`fit_query_adapter` holds out
questions whose relevant documents no training question shares and stops when the loss on those
stops falling, so the stopping point is chosen for documents the adapter never saw. The contrastive
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

from .errors import ConfigError

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
                "down": _b64(self.down), "up": _b64(self.up)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QueryAdapter":
        try:
            d, r = int(data["dimension"]), int(data["rank"])
            down = _from_b64(data["down"]).reshape(d, r)
            up = _from_b64(data["up"]).reshape(r, d)
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
    max_steps: int = 150,
    validation_share: float = 0.2,
    seed: int = 0,
) -> AdapterFit:
    """Fit an adapter so each question scores its relevant chunks above the other candidates.

    ``query_vectors[i]`` is question i's unit vector, ``positives[i]`` the rows of ``chunk_vectors``
    that belong to its relevant documents, and ``relevant[i]`` those documents' ids (used only to
    split off document-disjoint validation questions). ``chunk_vectors`` should hold every chunk
    either leg retrieves for any question: they are the negatives.
    """
    import torch

    n = len(query_vectors)
    if not (len(positives) == len(relevant) == n):
        raise ConfigError("query_vectors, positives and relevant must have one entry per question")
    if rank < 1:
        raise ConfigError(f"adapter rank must be >= 1, got {rank}")
    usable = [i for i in range(n) if len(positives[i])]
    train_i, val_i = document_disjoint_split([relevant[i] for i in usable], validation_share, seed)
    train_i, val_i = [usable[i] for i in train_i], [usable[i] for i in val_i]
    if not train_i or not val_i:
        raise ConfigError("too few labelled questions whose relevant chunks were retrieved to fit an adapter")

    torch.manual_seed(seed)
    chunks = torch.from_numpy(np.ascontiguousarray(chunk_vectors, dtype=np.float32))
    queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
    mask = torch.zeros((n, len(chunks)), dtype=torch.bool)
    for i in usable:
        mask[i, torch.from_numpy(np.asarray(positives[i], dtype=np.int64))] = True
    dim = chunks.shape[1]
    generator = torch.Generator().manual_seed(seed)
    # `down` starts small and random, `up` at zero: the adapter starts as the identity but can move.
    down = (torch.randn(dim, rank, generator=generator) * 0.01).requires_grad_()
    up = torch.zeros(rank, dim, requires_grad=True)
    optimizer = torch.optim.Adam([down, up], lr=learning_rate)
    train_t, val_t = torch.tensor(train_i), torch.tensor(val_i)

    def loss(rows: torch.Tensor) -> torch.Tensor:
        q = queries[rows]
        scores = torch.nn.functional.normalize(q + (q @ down) @ up, dim=1) @ chunks.T / temperature
        answered = torch.logsumexp(scores.masked_fill(~mask[rows], float("-inf")), dim=1)
        return (torch.logsumexp(scores, dim=1) - answered).mean()

    with torch.no_grad():
        before = best = float(loss(val_t))
    best_state, best_step = (down.detach().clone(), up.detach().clone()), 0
    for step in range(1, max_steps + 1):
        optimizer.zero_grad()
        loss(train_t).backward()
        optimizer.step()
        with torch.no_grad():
            current = float(loss(val_t))
        if current < best:
            best, best_state, best_step = current, (down.detach().clone(), up.detach().clone()), step
    if best_step == 0:  # no step helped the held-out questions: the identity
        best_state = (torch.zeros(dim, rank), torch.zeros(rank, dim))
    logger.info("query adapter: %d steps, validation loss %.4f -> %.4f (%d train, %d validation questions)",
                best_step, before, best, len(train_i), len(val_i))
    adapter = QueryAdapter(best_state[0].numpy().astype(np.float32), best_state[1].numpy().astype(np.float32))
    return AdapterFit(adapter, best_step, before, best, len(train_i), len(val_i))


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _from_b64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4").copy()
