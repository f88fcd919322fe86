"""Test doubles that need no model: a deterministic embedder for unit tests of anything that embeds.

:class:`FakeEmbedder` satisfies :class:`ragkit.text.embedding.TextEmbedder`, so
``Index(path, embedder=FakeEmbedder())`` builds and searches a real index (both retrieval legs, the
embedding cache, the stored config) in milliseconds. Its vectors are feature hashes of word unigrams
and character trigrams, so texts that share words (or word stems: "swarm", "swarming") are closer
than unrelated texts, and a dense-leg test can assert a ranking that would fail on random vectors.

Hashing uses :mod:`hashlib`, not the built-in ``hash`` (salted per process): the same text gives the
same vector in every process, on every run.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

NAME = "ragkit-test/hashing-embedder"
DIMENSION = 64
MAX_SEQ_LENGTH = 256
WORD_WEIGHT = 1.0
TRIGRAM_WEIGHT = 0.5

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=65536)
def _bucket(feature: str) -> tuple[int, float]:
    """The bucket a feature lands in and its sign (+1 or -1), from a stable hash."""
    digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % DIMENSION, 1.0 if (value >> 32) & 1 else -1.0


def features(text: str) -> list[tuple[str, float]]:
    """``(feature, weight)`` pairs of a text: each lowercased word, and each character trigram of
    each word padded with ``#`` (so "swarm" and "swarming" share "#sw", "swa", "war", "arm")."""
    out: list[tuple[str, float]] = []
    for word in _WORD.findall(text.lower()):
        out.append(("w:" + word, WORD_WEIGHT))
        padded = f"#{word}#"
        out.extend(("c:" + padded[i : i + 3], TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return out


def embed(text: str) -> np.ndarray:
    """One L2-normalized float32 vector. A text with no words gets a fixed unit vector of its own."""
    vector = np.zeros(DIMENSION, dtype=np.float64)
    for feature, weight in features(text):
        bucket, sign = _bucket(feature)
        vector[bucket] += sign * weight
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        bucket, sign = _bucket("empty:")
        vector[bucket] = sign
        norm = 1.0
    return (vector / norm).astype(np.float32)


def word_count(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


class FakeEmbedder:
    """A deterministic, model-free :class:`~ragkit.text.embedding.TextEmbedder`.

    ``calls`` counts ``encode`` calls and ``encoded`` lists every text embedded, in order (documents
    and queries alike), so a test can assert how much an operation re-embedded.
    """

    def __init__(self, name: str = NAME, *, max_seq_length: int = MAX_SEQ_LENGTH) -> None:
        self.name = name
        self._max_seq_length = max_seq_length
        self.calls = 0
        self.encoded: list[str] = []

    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @property
    def dimension(self) -> int:
        return DIMENSION

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.encoded.extend(texts)
        if not len(texts):
            return np.zeros((0, DIMENSION), dtype=np.float32)
        return np.stack([embed(t) for t in texts]).astype(np.float32, copy=False)

    def token_counter(self) -> Callable[[str], int]:
        return word_count

    def reset(self) -> None:
        """Forget the counts (e.g. after building a fixture index)."""
        self.calls = 0
        self.encoded.clear()

    def __repr__(self) -> str:
        return f"FakeEmbedder({self.name!r})"


def open_fake_index(path, embedder: FakeEmbedder | None = None, **options):  # type: ignore[no-untyped-def]
    """``ragkit.Index(path, embedder=FakeEmbedder(), show_progress=False)``: use it as a context manager."""
    from ragkit import Index

    return Index(path, embedder=embedder or FakeEmbedder(), show_progress=False, **options)
