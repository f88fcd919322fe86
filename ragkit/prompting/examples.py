"""Few-shot examples: load them from JSONL, JSON or CSV, and pick the ones that suit a question.

Each example is an ``input`` and an ``output`` (both non-empty strings) and optional ``metadata``.
Files:

* JSONL: one object per line, ``{"input": ..., "output": ..., "metadata": {...}}``; blank lines skipped.
* JSON: an array of such objects, or ``{"examples": [...]}``.
* CSV: a header with ``input`` and ``output`` columns; a ``metadata`` column holds a JSON object,
  any other column becomes a metadata entry.

A malformed record raises :class:`~ragkit.errors.ExampleFormatError` naming the file and line.
Other keys of a JSON record are kept in ``metadata``.

Selection strategies (:meth:`ExampleSet.select`):

* ``"fixed"``: file order.
* ``"random"``: a shuffle seeded by ``seed``, the same for the same seed.
* ``"similar"``: hybrid relevance of each example's input to the question: BM25 over ragkit's
  :class:`~ragkit.analysis.Analyzer` terms and cosine similarity of embeddings, min-max
  normalized and combined with weights ``(bm25, dense)`` (:func:`ragkit.fusion.convex_combination`).
  Best first.
* ``"mmr"``: the same relevance, re-ordered by maximal marginal relevance so the picks differ
  from each other (:func:`ragkit.diversity.maximal_marginal_relevance`).

``max_tokens`` caps the selection's total tokens: examples that would exceed it are skipped and
the next in order is tried.

Example::

    examples = ExampleSet.load("samples/examples.jsonl")
    picked = examples.select("How do I count varroa mites?", k=3, strategy="similar")
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ragkit.text.analysis import Analyzer
from ragkit.retrieval.diversity import maximal_marginal_relevance
from ragkit.errors import ConfigError, ExampleFormatError, LoadError
from ragkit.retrieval.fusion import LegCandidates, convex_combination
from ragkit.storage.bm25 import BM25Index, BM25Params

__all__ = ["STRATEGIES", "Example", "ExampleSet", "Strategy"]

Strategy = Literal["fixed", "random", "similar", "mmr"]
STRATEGIES = ("fixed", "random", "similar", "mmr")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
_MMR_POOL = 50  # MMR re-orders at most this many of the most relevant examples (or 4k)


@dataclass(frozen=True)
class Example:
    """One demonstration: what the model is given and what it should answer."""

    input: str
    output: str
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)  # hashable by input/output

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ExampleFormatError(f"example {name} must be a non-empty string, got {value!r}")
        if not isinstance(self.metadata, Mapping):
            raise ExampleFormatError(
                f"example metadata must be an object, got {type(self.metadata).__name__}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "metadata": dict(self.metadata)}


class TextEncoder(Protocol):
    """Texts in, unit vectors out: what ``similar`` and ``mmr`` need, e.g. an ``Embedder``."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@lru_cache(maxsize=1)
def _default_embedder() -> TextEncoder:
    from ragkit.text.embedding import Embedder

    return Embedder()


class ExampleSet:
    """An ordered collection of :class:`Example` with selection strategies.

    ``embedder`` (default: the shared offline default model, loaded on first use) and
    ``analyzer`` serve the ``similar`` and ``mmr`` strategies; ``weights`` are the BM25 and
    dense weights of their hybrid score.
    """

    def __init__(
        self,
        examples: Iterable[Example | Mapping[str, Any]],
        *,
        source: str | None = None,
        embedder: TextEncoder | None = None,
        analyzer: Analyzer | None = None,
        weights: tuple[float, float] = (0.3, 0.7),
    ) -> None:
        self.examples: tuple[Example, ...] = tuple(
            e if isinstance(e, Example) else _example(e, source or "<examples>", f"item {i}")
            for i, e in enumerate(examples, start=1)
        )
        if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"weights must be two non-negative numbers (bm25, dense), got {weights!r}")
        self.source = source
        self.weights = weights
        self._embedder = embedder
        self._analyzer = analyzer or Analyzer()
        self._bm25: BM25Index | None = None
        self._vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]

    def __repr__(self) -> str:
        return f"ExampleSet({len(self)} examples{f' from {self.source!r}' if self.source else ''})"

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> ExampleSet:
        """Load by suffix: ``.jsonl``/``.ndjson``, ``.json`` or ``.csv``."""
        kind = SUFFIXES.get(Path(path).suffix.lower())
        if kind is None:
            raise ConfigError(f"{path}: unknown examples file type; valid suffixes: {', '.join(SUFFIXES)}")
        return getattr(cls, f"from_{kind}")(path, **kwargs)

    @classmethod
    def from_jsonl(cls, path: str | Path, **kwargs: Any) -> ExampleSet:
        examples = []
        for lineno, line in enumerate(_read(path).splitlines(), start=1):
            if not line.strip():
                continue
            record = _loads(line, path, lineno)
            examples.append(_example(record, str(path), f"line {lineno}"))
        return cls(examples, source=str(path), **kwargs)

    @classmethod
    def from_json(cls, path: str | Path, **kwargs: Any) -> ExampleSet:
        text = _read(path)
        data = _loads(text, path)
        items = data.get("examples") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ExampleFormatError(
                f'{path}, line 1: expected an array of examples or {{"examples": [...]}}'
            )
        lines = _item_lines(text, items, top_level=isinstance(data, list))
        return cls(
            [_example(item, str(path), where) for item, where in zip(items, lines, strict=True)],
            source=str(path),
            **kwargs,
        )

    @classmethod
    def from_csv(cls, path: str | Path, **kwargs: Any) -> ExampleSet:
        reader = csv.reader(_read(path).splitlines(keepends=True))
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in ("input", "output") if c not in header]
        if missing:
            raise ExampleFormatError(
                f"{path}, line 1: missing column(s) {', '.join(missing)}; "
                f"found: {', '.join(header) or 'nothing'}"
            )
        examples = []
        while True:
            lineno = reader.line_num + 1
            row = next(reader, None)
            if row is None:
                break
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ExampleFormatError(
                    f"{path}, line {lineno}: expected {len(header)} fields, found {len(row)}"
                )
            examples.append(
                _example(
                    _csv_record(dict(zip(header, row, strict=True)), path, lineno),
                    str(path),
                    f"line {lineno}",
                )
            )
        return cls(examples, source=str(path), **kwargs)

    # -- selection --------------------------------------------------------------------------
    def select(
        self,
        question: str,
        k: int,
        strategy: Strategy = "similar",
        seed: int | None = 0,
        *,
        max_tokens: int | None = None,
        token_counter: Callable[[str], int] | None = None,
        lambda_: float = 0.5,
    ) -> list[Example]:
        """Up to ``k`` examples for ``question`` by ``strategy``, within ``max_tokens`` if given."""
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown example strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
        if k < 0:
            raise ConfigError(f"k must be >= 0, got {k}")
        if k == 0 or not self.examples:
            return []
        order = self._order(question, k, strategy, seed, lambda_)
        return _take_within(self.examples, order, k, max_tokens, token_counter)

    def similarity(self, question: str) -> np.ndarray:
        """Hybrid relevance in [0, 1] of each example's input to ``question`` (see module docstring)."""
        return self._relevance(question)[0]

    def _relevance(self, question: str) -> tuple[np.ndarray, np.ndarray]:
        """Fused scores of all examples, and the question's embedding."""
        n = len(self.examples)
        ids = np.arange(n)
        bm25 = self._lexical().scores(self._analyzer.tokenize(question))
        query = self._embed([question])[0]
        dense = (self._embeddings() @ query).astype(np.float64)
        fused_ids, fused = convex_combination(
            [LegCandidates(ids, bm25), LegCandidates(ids, dense)], weights=self.weights
        )
        out = np.empty(n, dtype=np.float64)
        out[fused_ids] = fused
        return out, query

    def _order(
        self, question: str, k: int, strategy: Strategy, seed: int | None, lambda_: float
    ) -> list[int]:
        n = len(self.examples)
        if strategy == "fixed":
            return list(range(n))
        if strategy == "random":
            order = list(range(n))
            random.Random(seed).shuffle(order)
            return order
        scores, query = self._relevance(question)
        ranked = sorted(range(n), key=lambda i: (-scores[i], i))
        if strategy == "similar":
            return ranked
        pool = ranked[: max(_MMR_POOL, 4 * k)]
        picked = maximal_marginal_relevance(query, self._embeddings()[pool], scores[pool], len(pool), lambda_)
        return [pool[i] for i in picked] + ranked[len(pool) :]

    def _lexical(self) -> BM25Index:
        if self._bm25 is None:
            self._bm25 = BM25Index.build(self._analyzer.tokenize_many([e.input for e in self.examples]), BM25Params(idf="okapi"))
        return self._bm25

    def _embeddings(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self._embed([e.input for e in self.examples])
        return self._vectors

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embedder is None:
            self._embedder = _default_embedder()
        # Examples' inputs are questions, matched against a question: both sides get the model's query
        # prompt (and query runtime) where the embedder has one, never the passage prompt.
        encode = getattr(self._embedder, "encode_queries", None) or self._embedder.encode
        return encode(list(texts))


def _take_within(
    examples: Sequence[Example],
    order: Sequence[int],
    k: int,
    max_tokens: int | None,
    token_counter: Callable[[str], int] | None,
) -> list[Example]:
    if max_tokens is None:
        return [examples[i] for i in order[:k]]
    from ragkit.text.tokens import resolve_token_counter

    count = resolve_token_counter(token_counter)
    picked, used = [], 0
    for i in order:
        cost = count(examples[i].input) + count(examples[i].output)
        if used + cost <= max_tokens:
            picked.append(examples[i])
            used += cost
            if len(picked) == k:
                break
    return picked


def _loads(text: str, path: str | Path, lineno: int | None = None) -> Any:
    """JSON from ``text`` (one JSONL line when ``lineno`` is given); errors name the file and line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = lineno if lineno is not None else exc.lineno
        raise ExampleFormatError(f"{path}, line {line}: not valid JSON ({exc.msg}, column {exc.colno})") from exc


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(path, f"cannot read examples file: {exc}") from exc


def _example(record: Any, path: str, where: str) -> Example:
    if not isinstance(record, Mapping):
        raise ExampleFormatError(
            f"{path}, {where}: expected an object with input and output, got {type(record).__name__}"
        )
    for key in ("input", "output"):
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            problem = "missing" if key not in record else f"must be a non-empty string, got {value!r}"
            raise ExampleFormatError(f"{path}, {where}: {key!r} {problem}")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise ExampleFormatError(
            f"{path}, {where}: 'metadata' must be an object, got {type(metadata).__name__}"
        )
    extra = {k: v for k, v in record.items() if k not in ("input", "output", "metadata")}
    return Example(record["input"], record["output"], {**extra, **metadata})


def _csv_record(row: dict[str, str], path: str | Path, lineno: int) -> dict[str, Any]:
    record: dict[str, Any] = dict(row)
    raw = record.pop("metadata", "") or ""
    if raw.strip():
        try:
            record["metadata"] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ExampleFormatError(
                f"{path}, line {lineno}: metadata is not valid JSON ({exc.msg})"
            ) from exc
    return record


def _item_lines(text: str, items: list[Any], *, top_level: bool) -> list[str]:
    """``"line N"`` where each of ``items`` starts in ``text``; ``"item i"`` where unsure."""
    decoder = json.JSONDecoder()
    lines: list[str] = []
    pos = text.find("[", 0 if top_level else text.find('"examples"')) + 1
    while pos > 0 and len(lines) < len(items):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        if value != items[len(lines)]:
            break
        lines.append(f"line {text.count(chr(10), 0, pos) + 1}")
        pos = end
    return lines + [f"item {i}" for i in range(len(lines) + 1, len(items) + 1)]
