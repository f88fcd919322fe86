"""What was asked and answered, kept so a rating can be stored with everything the person judged.

A :class:`CompletionRecord` is made from a pipeline :class:`~ragkit.pipeline.rag.Answer` when a chat
completion is answered: the question, the query actually searched (the condensed one), the hits the
prompt showed (ids, scores, markers), the prompt as text and as messages, and the answer. The server
keeps the last few in memory (:class:`RecentCompletions`) and writes one to the feedback store only
when someone rates it, so no question is written to disk unless a person chose to judge its answer.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ragkit.errors import ConfigError

__all__ = ["CompletionRecord", "RecentCompletions", "cited_markers", "common_metadata"]

RECENT_COMPLETIONS = 1000  # answers a server remembers for feedback; older ones can no longer be rated
_MARKERS = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass(frozen=True)
class CompletionRecord:
    """One answered question: enough to show it again, rate it, and learn from the rating.

    ``passages`` are the prompt's passages by marker (``marker``, ``chunk_id``, ``doc_id``,
    ``source``, ``score``); ``hits`` every retrieved hit (``chunk_id``, ``doc_id``, ``rank``, ``score``).
    """

    id: str
    question: str
    query: str
    answer: str
    prompt_text: str
    prompt_messages: list[dict[str, str]]
    passages: list[dict[str, Any]]
    hits: list[dict[str, Any]]
    context_sufficient: bool = True
    created: float = field(default_factory=time.time)
    principal: str | None = None  # who was answered, where the server has principals
    # What the cited documents' metadata has in common (see common_metadata): a scope admits the
    # approved answer as an example exactly where it admits every document the answer rests on.
    cited_metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_answer(cls, completion_id: str, question: str, answer: Any) -> CompletionRecord:
        """The record of a pipeline ``Answer`` (``ragkit.pipeline.rag.Answer``) to ``question`` (the last
        user turn as asked; ``answer.query`` is what was searched)."""
        prompt = answer.prompt
        passages = [{"marker": c.marker, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "source": c.source,
                     "page": c.page, "title": c.title, "score": float(c.score)} for c in prompt.citations.values()]
        hits = [{"chunk_id": h.chunk_id, "doc_id": h.doc_id, "rank": h.rank, "score": float(h.score),
                 "source": h.source} for h in answer.hits]
        return cls(completion_id, question, answer.query, answer.text, prompt.text,
                   [dict(m) for m in prompt.messages], passages, hits, bool(prompt.context_sufficient))

    def cited_doc_ids(self, text: str | None = None) -> list[str]:
        """The documents ``text`` (default: the answer) cites by marker, in order, each once."""
        by_marker = {p["marker"]: p["doc_id"] for p in self.passages}
        cited = [by_marker[m] for m in cited_markers(self.answer if text is None else text) if m in by_marker]
        return list(dict.fromkeys(cited))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompletionRecord:
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise ConfigError(f"feedback record is incomplete: {exc}") from None


def common_metadata(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The metadata every record agrees on: a field they share with one value, or the values common to
    a list field (``acl``). A field they differ on is left out, so a filter on it admits none of them."""
    if not records:
        return {}
    out: dict[str, Any] = {}
    for key, value in records[0].items():
        values = [r.get(key) for r in records]
        if isinstance(value, list) and all(isinstance(v, list) for v in values):
            shared = [v for v in value if all(v in other for other in values[1:])]
            if shared:
                out[key] = shared
        elif not isinstance(value, (dict, list)) and all(v == value for v in values):
            out[key] = value
    return out


def cited_markers(text: str) -> list[int]:
    """The passage markers ``text`` cites (``[1]``, ``[2][3]``, ``[1, 4]``), in order of first mention."""
    found = [int(n) for group in _MARKERS.findall(text or "") for n in group.split(",")]
    return list(dict.fromkeys(found))


class RecentCompletions:
    """The last ``size`` answers by completion id (thread-safe; oldest forgotten first)."""

    def __init__(self, size: int = RECENT_COMPLETIONS) -> None:
        if size < 1:
            raise ConfigError(f"RecentCompletions size must be >= 1, got {size}")
        self.size = size
        self._items: OrderedDict[str, CompletionRecord] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, record: CompletionRecord) -> None:
        with self._lock:
            self._items[record.id] = record
            self._items.move_to_end(record.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, completion_id: str) -> CompletionRecord | None:
        with self._lock:
            return self._items.get(completion_id)

    def __len__(self) -> int:
        return len(self._items)
