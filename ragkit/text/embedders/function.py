"""A plain function as the embedder: ``texts -> vectors``, named by the caller.

The name is the embedder's identity in the index (a function has no stable name of its own), so
reopening an index with another function under the same name is the caller's promise that it
embeds the same way.

>>> emb = CallableEmbedder(lambda texts: model.embed(texts), name="my-team/embedder-v3")  # doctest: +SKIP
>>> index = ragkit.Index("kb.ragkit", embedder=emb)                                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ragkit.errors import ConfigError
from ragkit.text.embedders.folder import Prompts
from ragkit.text.tokens import resolve_token_counter

EmbedFunction = Callable[[list[str]], Any]


class CallableEmbedder:
    """Wraps ``embed(texts) -> (n, dim) array-like``; ``embed_queries`` when queries differ.

    Vectors are checked (one per text, finite, non-zero) and L2-normalised to float32.
    """

    kind = "callable"

    def __init__(
        self, embed: EmbedFunction, *, name: str, embed_queries: EmbedFunction | None = None,
        query_prompt: str = "", passage_prompt: str = "", max_seq_length: int = 512, tokenizer: str | None = None,
    ) -> None:
        if not callable(embed) or (embed_queries is not None and not callable(embed_queries)):
            raise ConfigError("embed= and embed_queries= must be callables taking a list of texts")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"name must be a non-empty string naming the embedder, got {name!r}")
        self.name = name
        self.prompts = Prompts(query=query_prompt, passage=passage_prompt)
        self.max_seq_length = int(max_seq_length)
        self._embed, self._embed_queries = embed, embed_queries or embed
        self._tokenizer = tokenizer
        self._dimension: int | None = None

    def __repr__(self) -> str:
        return f"CallableEmbedder(name={self.name!r})"

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.encode(["dimension probe"]).shape[1])
        return self._dimension

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "prompts": self.prompts.to_dict(),
                "runtime": self.kind, "precision": "caller"}

    def use_prompts(self, prompts: Prompts) -> None:
        self.prompts = prompts

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._call(self._embed, [self.prompts.passage + t for t in texts])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._call(self._embed_queries, [self.prompts.query + t for t in texts])

    def token_counter(self) -> Callable[[str], int]:
        return resolve_token_counter(self._tokenizer)

    def _call(self, embed: EmbedFunction, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        try:
            vectors = np.asarray(embed(texts), dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"embedder {self.name!r} returned something that is not a 2-d array: {exc}") from exc
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ConfigError(f"embedder {self.name!r} returned shape {vectors.shape} for {len(texts)} texts")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
            raise ConfigError(f"embedder {self.name!r} returned a zero or non-finite vector")
        self._dimension = vectors.shape[1]
        return np.ascontiguousarray(vectors / norms)
