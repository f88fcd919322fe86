"""People's judgements of answers, kept in ``feedback.sqlite`` inside the index folder.

One row per rated completion (a later rating of the same completion replaces the earlier one): the
rating (``up``/``down`` or none), a correction ("the answer it should have given"), a comment, when
and by whom (the token's principal, where the server has principals), and the whole
:class:`~ragkit.feedback.record.CompletionRecord` that was judged.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so :meth:`FeedbackStore.add`
returns only after the row is on disk; a server killed (SIGKILL, power loss) right after answering
``POST /v1/feedback`` with 200 keeps it. The file is separate from ``ragkit.sqlite`` so rating never
takes the index's writer lock and a sync never waits for a rating.

>>> store = FeedbackStore.for_index("kb.ragkit")                          # doctest: +SKIP
>>> store.add(record, rating="up", principal="alice")                     # doctest: +SKIP
>>> [f.output for f in store.approved()]                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragkit.errors import ConfigError
from ragkit.feedback.record import CompletionRecord
from ragkit.storage.local.swap import KEPT_ACROSS_REBUILD

__all__ = ["FEEDBACK_FILE", "RATINGS", "Feedback", "FeedbackStore", "Rating"]

FEEDBACK_FILE = KEPT_ACROSS_REBUILD[0]  # so ``ragkit index --rebuild`` carries it into the new folder
Rating = Literal["up", "down"]
RATINGS = ("up", "down")
MAX_TEXT = 20_000  # characters of a correction or comment

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    completion_id TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    principal TEXT,
    rating TEXT CHECK (rating IS NULL OR rating IN ('up', 'down')),
    correction TEXT,
    comment TEXT,
    record TEXT NOT NULL
)"""


@dataclass(frozen=True)
class Feedback:
    """One stored judgement and the completion it judges."""

    id: int
    completion_id: str
    created: float
    principal: str | None
    rating: Rating | None
    correction: str | None
    comment: str | None
    record: CompletionRecord

    @property
    def approved(self) -> bool:
        """A thumbs-up, or a correction (the correction is then the answer); never a bare thumbs-down."""
        return bool(self.correction) or self.rating == "up"

    @property
    def output(self) -> str:
        """The answer a person approved: the correction when there is one, else the model's answer."""
        return self.correction or self.record.answer

    @property
    def cited_doc_ids(self) -> list[str]:
        """The documents the approved answer cites (the correction's markers when corrected)."""
        return self.record.cited_doc_ids(self.output)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "completion_id": self.completion_id, "created": self.created,
                "principal": self.principal, "rating": self.rating, "correction": self.correction,
                "comment": self.comment, "approved": self.approved, **{
                    k: v for k, v in self.record.to_dict().items() if k not in ("id", "created")},
                "answered": self.record.created}


class FeedbackStore:
    """The feedback database at ``path`` (created by the first :meth:`add`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def for_index(cls, index: Any) -> FeedbackStore:
        """The store inside an index's folder (an ``Index`` or its path; local indexes only)."""
        folder = getattr(index, "path", index)
        if "://" in str(folder):
            raise ConfigError(f"feedback is stored inside a local index folder; {folder} is not one")
        return cls(Path(folder) / FEEDBACK_FILE)

    def __repr__(self) -> str:
        return f"FeedbackStore({str(self.path)!r})"

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            raise FileNotFoundError(self.path)
        if write and not self.path.parent.is_dir():
            raise ConfigError(f"no index folder at {self.path.parent}; feedback is stored inside it")
        with closing(sqlite3.connect(self.path, timeout=10.0)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # the commit is on disk before add() returns
            if write:
                db.execute(_SCHEMA)
            with db:
                yield db

    def add(self, record: CompletionRecord, *, rating: Rating | None = None, correction: str | None = None,
            comment: str | None = None, principal: str | None = None) -> Feedback:
        """Store (or replace) the judgement of ``record``; returns it once it is on disk."""
        if rating is not None and rating not in RATINGS:
            raise ConfigError(f"rating must be one of {', '.join(RATINGS)} or none, got {rating!r}")
        correction, comment = _text(correction, "correction"), _text(comment, "comment")
        if rating is None and not correction and not comment:
            raise ConfigError("feedback needs a rating ('up' or 'down'), a correction or a comment")
        created = time.time()
        with self._connect(write=True) as db:
            db.execute(
                "INSERT INTO feedback (completion_id, created, principal, rating, correction, comment, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (completion_id) DO UPDATE SET created = excluded.created, "
                "principal = excluded.principal, rating = excluded.rating, correction = excluded.correction, "
                "comment = excluded.comment",
                (record.id, created, principal, rating, correction, comment, json.dumps(record.to_dict())))
            (row_id,) = db.execute("SELECT id FROM feedback WHERE completion_id = ?", (record.id,)).fetchone()
        return Feedback(row_id, record.id, created, principal, rating, correction, comment, record)

    def all(self) -> list[Feedback]:
        """Every stored judgement, oldest first (none when nothing was ever rated)."""
        try:
            with self._connect() as db:
                rows = db.execute("SELECT id, completion_id, created, principal, rating, correction, comment, "
                                  "record FROM feedback ORDER BY id").fetchall()
        except FileNotFoundError:
            return []
        return [Feedback(*row[:7], CompletionRecord.from_dict(json.loads(row[7]))) for row in rows]

    def version(self) -> tuple[int, float, int]:
        """A stamp of the ratings and corrections stored (count, newest time, sum of ids): it changes when
        one is added, re-rated or deleted, so a periodic refresh can skip a run when nothing is new.
        Comment-only feedback does not count: it teaches ranking nothing."""
        try:
            with self._connect() as db:
                row = db.execute("SELECT COUNT(*), COALESCE(MAX(created), 0), COALESCE(SUM(id), 0) FROM feedback "
                                 "WHERE rating IS NOT NULL OR correction IS NOT NULL").fetchone()
        except FileNotFoundError:
            return (0, 0.0, 0)
        return (int(row[0]), float(row[1]), int(row[2]))

    def approved(self) -> list[Feedback]:
        """The judgements whose answer a person approved (see :attr:`Feedback.approved`)."""
        return [f for f in self.all() if f.approved]

    def delete(self, feedback_ids: list[int] | None = None) -> int:
        """Remove judgements by id, or all of them (``None``); returns how many were removed."""
        if not self.path.exists():
            return 0
        with self._connect(write=True) as db:
            if feedback_ids is None:
                return db.execute("DELETE FROM feedback").rowcount
            marks = ",".join("?" * len(feedback_ids))
            return db.execute(f"DELETE FROM feedback WHERE id IN ({marks})", list(feedback_ids)).rowcount if feedback_ids else 0

    def export_jsonl(self, out: Any) -> int:
        """Write every judgement as one JSON object per line to the text stream ``out``; returns the count."""
        items = self.all()
        for item in items:
            out.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
        return len(items)


def _text(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {type(value).__name__}")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise ConfigError(f"{name} is {len(value)} characters; at most {MAX_TEXT} are kept")
    return value or None
