"""Evaluation datasets: BEIR folders and labelled JSONL question files.

An :class:`EvalDataset` holds queries, graded judgements (qrels) and, where
the dataset ships one, the corpus. Errors name the file, the line and the id,
so a broken dataset is fixed in one look rather than found through odd scores.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ragkit.errors import ConfigError, DatasetError
from ragkit.types import Document

__all__ = ["EvalDataset", "load_beir", "load_labelled_jsonl", "split_queries"]

logger = logging.getLogger(__name__)

QrelsKey = Literal["doc_id", "source"]


@dataclass(frozen=True)
class EvalDataset:
    """Queries with graded judgements, and the corpus where one is loaded.

    ``qrels`` maps query id -> {id: grade}; ids are document ids or, when
    ``qrels_key == "source"``, source paths relative to the indexed folder.

    >>> ds = load_beir("data/scifact")  # doctest: +SKIP
    >>> len(ds.queries), len(ds.corpus)  # doctest: +SKIP
    (300, 5183)
    """

    corpus: dict[str, Document] | None
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str
    qrels_key: QrelsKey = field(default="doc_id")

    def __post_init__(self) -> None:
        if self.qrels_key not in ("doc_id", "source"):
            raise ConfigError(f"qrels_key must be 'doc_id' or 'source', not {self.qrels_key!r}")
        unknown = [qid for qid in self.qrels if qid not in self.queries]
        if unknown:
            raise DatasetError(f"{self.name}: qrels name queries with no text: {unknown[:5]}")


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; a bad line raises naming file and line."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def _record_id(path: Path, lineno: int, record: dict[str, Any]) -> str:
    value = record.get("_id")
    # Some BEIR exports write numeric ids; qrels read them as strings, so compare as strings.
    if value is None or isinstance(value, (dict, list, bool)) or str(value) == "":
        raise DatasetError(f"{path}:{lineno}: missing or invalid '_id'")
    return str(value)


def _records_by_id(path: Path, what: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each record of a BEIR JSONL file with its id; an id seen before is an error."""
    seen: set[str] = set()
    for lineno, record in _read_jsonl(path):
        record_id = _record_id(path, lineno, record)
        if record_id in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate {what} id {record_id!r}")
        seen.add(record_id)
        yield record_id, record


def _read_beir_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for doc_id, record in _records_by_id(path, "document"):
        title = str(record.get("title") or "")
        text = str(record.get("text") or "")
        # BEIR's own retrievers embed title + " " + text; keep that, without a stray space.
        full = f"{title} {text}" if title and text else title or text
        corpus[doc_id] = Document(id=doc_id, text=full, metadata={"title": title})
    return corpus


def _read_beir_queries(path: Path) -> dict[str, str]:
    return {qid: str(record.get("text") or "") for qid, record in _records_by_id(path, "query")}


def _read_qrels_tsv(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """Yield (line number, query id, doc id, grade); skips the 'query-id corpus-id score' header."""
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) != 3:
                raise DatasetError(
                    f"{path}:{lineno}: expected 'query-id<TAB>corpus-id<TAB>score', got {line!r}"
                )
            qid, doc_id, score = (part.strip() for part in parts)
            if lineno == 1 and qid.lower() in ("query-id", "query_id", "qid"):
                continue
            try:
                grade = int(float(score)) if float(score).is_integer() else None
            except ValueError:
                grade = None
            if grade is None:
                raise DatasetError(f"{path}:{lineno}: score must be an integer, not {score!r}")
            yield lineno, qid, doc_id, grade


def load_beir(
    folder: str | Path, split: str = "test", *, corpus: bool = True, strict: bool = True
) -> EvalDataset:
    """Load a BEIR dataset folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Only queries judged in the split are kept. A judgement naming an unknown
    query or document raises :class:`DatasetError` (file, line, id); with
    ``strict=False`` such judgements are dropped with one logged warning.
    ``corpus=False`` skips reading the corpus (and so cannot check doc ids).

    >>> ds = load_beir("data/scifact", "test")  # doctest: +SKIP
    >>> sum(len(j) for j in ds.qrels.values())  # doctest: +SKIP
    339
    """
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise DatasetError(f"{qrels_path}: no qrels for split {split!r}; available splits: {available}")
    docs = _read_beir_corpus(root / "corpus.jsonl") if corpus else None
    all_queries = _read_beir_queries(root / "queries.jsonl")

    qrels: dict[str, dict[str, int]] = {}
    dropped: list[str] = []
    for lineno, qid, doc_id, grade in _read_qrels_tsv(qrels_path):
        problem = None
        if qid not in all_queries:
            problem = f"query id {qid!r} is not in {root / 'queries.jsonl'}"
        elif docs is not None and doc_id not in docs:
            problem = f"document id {doc_id!r} is not in {root / 'corpus.jsonl'}"
        elif qrels.get(qid, {}).get(doc_id, grade) != grade:
            problem = f"conflicting grades for query {qid!r}, document {doc_id!r}"
        if problem:
            if strict:
                raise DatasetError(f"{qrels_path}:{lineno}: {problem}")
            dropped.append(f"line {lineno}: {problem}")
            continue
        qrels.setdefault(qid, {})[doc_id] = grade
    if dropped:
        # One warning, not thousands: the count plus the first few reasons.
        logger.warning("%s: dropped %d judgement(s): %s", qrels_path, len(dropped), "; ".join(dropped[:5]))
    queries = {qid: all_queries[qid] for qid in qrels}
    return EvalDataset(corpus=docs, queries=queries, qrels=qrels, name=f"{root.name}/{split}")


def _normalise_source(path: str) -> str:
    # Hit sources are POSIX paths relative to the indexed folder; accept "./a.md" and "a\\b.md".
    return str(PurePosixPath(path.replace("\\", "/")))


def _labelled_judgements(path: Path, lineno: int, record: dict[str, Any]) -> tuple[QrelsKey, dict[str, int]]:
    keys = [k for k in ("relevant_doc_ids", "relevant_source_paths") if k in record]
    if len(keys) != 1:
        raise DatasetError(
            f"{path}:{lineno}: give exactly one of 'relevant_doc_ids' or 'relevant_source_paths'"
        )
    qrels_key: QrelsKey = "doc_id" if keys[0] == "relevant_doc_ids" else "source"
    ids = record[keys[0]]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise DatasetError(f"{path}:{lineno}: {keys[0]!r} must be a non-empty list of strings")
    norm = _normalise_source if qrels_key == "source" else str
    judgements = {norm(i): 1 for i in ids}
    grades = record.get("grades") or {}
    if not isinstance(grades, dict):
        raise DatasetError(f"{path}:{lineno}: 'grades' must be an object {{id: grade}}")
    for raw_id, grade in grades.items():
        if norm(raw_id) not in judgements:
            raise DatasetError(f"{path}:{lineno}: 'grades' names {raw_id!r}, which is not in {keys[0]!r}")
        if isinstance(grade, bool) or not isinstance(grade, int):
            raise DatasetError(f"{path}:{lineno}: grade for {raw_id!r} must be an integer, not {grade!r}")
        judgements[norm(raw_id)] = grade
    return qrels_key, judgements


def load_labelled_jsonl(path: str | Path) -> EvalDataset:
    """Load questions labelled with relevant document ids or source paths (no corpus).

    Each line: ``{"question": ..., "relevant_doc_ids": [...]}`` or
    ``{"question": ..., "relevant_source_paths": [...]}``, optionally with
    ``"id"`` (default ``"q<line>"``) and ``"grades": {id: grade}`` (default 1).
    All lines must use the same key; it is recorded as ``qrels_key``.

    >>> ds = load_labelled_jsonl("eval/questions.jsonl")  # doctest: +SKIP
    >>> ds.qrels_key  # doctest: +SKIP
    'source'
    """
    path = Path(path)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    dataset_key: QrelsKey | None = None
    for lineno, record in _read_jsonl(path):
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{path}:{lineno}: 'question' must be a non-empty string")
        qid = str(record.get("id", f"q{lineno}"))
        if qid in queries:
            raise DatasetError(f"{path}:{lineno}: duplicate question id {qid!r}")
        qrels_key, judgements = _labelled_judgements(path, lineno, record)
        if dataset_key is not None and qrels_key != dataset_key:
            raise DatasetError(
                f"{path}:{lineno}: uses {qrels_key!r} ids but earlier lines use {dataset_key!r}; pick one"
            )
        dataset_key = qrels_key
        queries[qid] = question
        qrels[qid] = judgements
    if not queries:
        raise DatasetError(f"{path}: no questions found")
    return EvalDataset(
        corpus=None, queries=queries, qrels=qrels, name=path.stem, qrels_key=dataset_key or "doc_id"
    )


def split_queries(
    dataset: EvalDataset, fraction: float = 0.5, seed: int = 0
) -> tuple[EvalDataset, EvalDataset]:
    """Split the queries at random (reproducibly, given ``seed``): ``fraction`` go to the first part.

    Both parts share the corpus. Useful to tune on one half and report on the other.

    >>> tune, test = split_queries(ds, 0.5, seed=0)  # doctest: +SKIP
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction must be between 0 and 1, not {fraction!r}")
    # Sort first so the split depends only on the ids and the seed, not on file order.
    shuffled = sorted(dataset.queries)
    random.Random(seed).shuffle(shuffled)
    first = set(shuffled[: math.floor(fraction * len(shuffled) + 0.5)])

    def part(keep: bool, suffix: str) -> EvalDataset:
        queries = {qid: text for qid, text in dataset.queries.items() if (qid in first) == keep}
        qrels = {qid: dict(j) for qid, j in dataset.qrels.items() if qid in queries}
        return EvalDataset(dataset.corpus, queries, qrels, f"{dataset.name}:{suffix}", dataset.qrels_key)

    return part(True, "a"), part(False, "b")
