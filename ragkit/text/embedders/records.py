"""What an index records about its embedder, and how an opened index holds an embedder to it.

The record (``IndexConfig.embedder``) is ``{"kind", "name", "prompts", "runtime", "precision"}``
(services add ``base_url``). Kind and name are the identity: vectors from another embedder live in
another space, so an index refuses it (:class:`~ragkit.errors.EmbedderMismatchError`, naming both).
Prompts are part of what the passage vectors mean, so an opened index hands its stored prompts to
the embedder. Runtime and precision may differ as long as both are exact (fp32, bf16 within cosine
0.999); a lossy mismatch (int8 on one side only) is logged as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.errors import ConfigError, EmbedderMismatchError
from ragkit.text.embedders.folder import Prompts
from ragkit.text.embedding import LOSSY, Embedder, FullEmbedder, TextEmbedder

logger = logging.getLogger(__name__)

CUSTOM = "custom"  # any object with just TextEmbedder's members
SERVICES = ("openai-compatible", "ollama")
NOT_LOCAL = (*SERVICES, "callable")  # kinds an index cannot open as a local sentence-transformers model


def is_full(embedder: object) -> bool:
    """Whether ``embedder`` has :class:`FullEmbedder`'s members, looked up on its type: ``isinstance``
    on the protocol would read ``dimension``, which may load a model or call a service."""
    return all(callable(getattr(type(embedder), m, None)) for m in ("encode_queries", "record", "use_prompts"))


def record_of(embedder: TextEmbedder) -> dict[str, Any]:
    if is_full(embedder):
        return dict(embedder.record())
    return {"kind": CUSTOM, "name": embedder.name}


def identity(record: dict[str, Any]) -> str:
    """``kind:name`` (prompts appended when set), as errors show it."""
    prompts = Prompts.from_dict(record.get("prompts"))
    shown = f"{record.get('kind', CUSTOM)} {record.get('name')!r}"
    if prompts != Prompts():
        shown += f" (query prompt {prompts.query!r}, passage prompt {prompts.passage!r})"
    return shown


def check_same(stored: dict[str, Any] | None, embedder: TextEmbedder, where: object) -> None:
    """Refuse an embedder of another kind or name than the stored one."""
    if not stored:
        return  # an index from before records, or a new one
    current = record_of(embedder)
    kinds = {stored.get("kind", CUSTOM), current["kind"]}
    # an object with only TextEmbedder's members is known by its name alone, as before records
    same_kind = CUSTOM in kinds or len(kinds) == 1
    if not same_kind or stored.get("name") != current["name"]:
        raise EmbedderMismatchError(
            f"index {where} was built with embedder {identity(stored)}, not {identity(current)}; "
            "open it with the embedder that built it, or rebuild it into a new directory"
        )


def adopt(stored: dict[str, Any] | None, embedder: TextEmbedder, where: object) -> None:
    """Check ``embedder`` against the stored record, then give it the stored prompts and precision."""
    if stored and isinstance(embedder, Embedder):
        # before any record(): an "auto" precision decided now would run the bf16 probe (and import
        # torch) in a process that only searches; the stored precision is what new passages must match
        embedder.use_precision(str(stored.get("precision")))
    check_same(stored, embedder, where)
    if not stored or not is_full(embedder):
        return
    prompts = Prompts.from_dict(stored.get("prompts"))
    current = record_of(embedder)
    if Prompts.from_dict(current.get("prompts")) != prompts:
        logger.info("index %s: using its stored prompts %s", where, prompts.to_dict())
        embedder.use_prompts(prompts)
    lossy = {p for p in (stored.get("precision"), current.get("precision")) if p in LOSSY}
    if lossy and stored.get("precision") != current.get("precision"):
        logger.warning("index %s holds %s vectors; this embedder makes %s vectors, so scores are approximate",
                       where, stored.get("precision"), current.get("precision"))


def from_record(stored: dict[str, Any]) -> FullEmbedder:
    """Rebuild a service embedder from its record (``Index(path)`` on an index a service built)."""
    kind, name = stored.get("kind"), str(stored.get("name", ""))
    prompts = Prompts.from_dict(stored.get("prompts"))
    if kind in SERVICES:
        from ragkit.text.embedders.remote import OllamaEmbedder, OpenAIEmbedder

        cls = OpenAIEmbedder if kind == "openai-compatible" else OllamaEmbedder
        return cls(stored.get("base_url"), model=name.split(":", 1)[1], query_prompt=prompts.query,
                   passage_prompt=prompts.passage)
    raise ConfigError(f"index was built with embedder {identity(stored)}, which ragkit cannot rebuild on its "
                      "own; pass it again: Index(path, embedder=...)")


class QuerySide:
    """The embedder as the query encoder sees it: ``encode`` embeds queries (query prompt, query runtime)."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self.name = embedder.name

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if is_full(self.embedder):
            return self.embedder.encode_queries(texts)
        return self.embedder.encode(texts)

    @property
    def max_seq_length(self) -> int:
        return self.embedder.max_seq_length

    def token_counter(self) -> Any:
        return self.embedder.token_counter()

    def query_token_counter(self) -> Any:
        """The embedder's counter for queries (:meth:`Embedder.query_token_counter`), else its own."""
        count = getattr(self.embedder, "query_token_counter", None)
        return count() if callable(count) else self.embedder.token_counter()
