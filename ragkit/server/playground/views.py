"""What each playground view shows, as plain values for its Jinja2 template (no HTML is built here).

Every string from documents, questions and answers reaches the page only through the templates,
which escape it (autoescape on); matched terms are marked by splitting text into ``(text, matched)``
segments, never by inserting markup into it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragkit.prompting.builder import Prompt, PromptBuilder
from ragkit.types import Document, Hit

__all__ = ["Passage", "filter_fields", "highlight", "parse_filters", "passage_in_document", "prompt_parts", "search_rows"]

_WORDS = re.compile(r"(\w+)")
SNIPPET_CHARS = 400
MAX_FIELD_VALUES = 30  # a field with more distinct values gets a text box instead of a list
_SKIPPED_FIELDS = {"pages", "headings", "title"}


def highlight(text: str, terms: set[str], analyzer: Any) -> list[tuple[str, bool]]:
    """``text`` as segments, each ``(piece, matched)``; a word is matched when its index term is a query term."""
    out: list[tuple[str, bool]] = []
    for piece in _WORDS.split(text):
        matched = bool(piece) and piece[0].isalnum() and bool(set(analyzer.tokenize(piece)) & terms)
        if out and out[-1][1] == matched:
            out[-1] = (out[-1][0] + piece, matched)
        elif piece:
            out.append((piece, matched))
    return out


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"


def search_rows(hits: Sequence[Hit], query: str, analyzer: Any) -> list[dict[str, Any]]:
    """One row per hit: rank, scores and ranks of each leg, the association lift, a highlighted snippet."""
    terms = set(analyzer.tokenize(query))
    return [{
        "hit": h, "source": h.source or h.doc_id, "page": h.metadata.get("page"), "title": h.metadata.get("title"),
        "segments": highlight(_snippet(h.text), terms, analyzer),
    } for h in hits]


def filter_fields(documents: Sequence[Document]) -> list[dict[str, Any]]:
    """The metadata fields documents carry: each with its values (few) or none (many: a text box)."""
    values: dict[str, set[str]] = {}
    for doc in documents:
        for key, value in doc.metadata.items():
            if key in _SKIPPED_FIELDS or isinstance(value, (list, dict)) or value is None:
                continue
            values.setdefault(key, set()).add(str(value))
    return [{"name": key, "choices": sorted(found) if len(found) <= MAX_FIELD_VALUES else None}
            for key, found in sorted(values.items())]


def parse_filters(given: Mapping[str, str]) -> dict[str, Any] | None:
    """Filters from the search form's ``filter.FIELD`` values: a value or a CLI expression (``~glob``,
    ``>=3``, ``!=v``, ``a,b``)."""
    from ragkit.storage.filters import parse_cli_filter

    out = {}
    for key, value in given.items():
        name, raw = key.removeprefix("filter."), (value or "").strip()
        if key.startswith("filter.") and name and raw:
            expression = name + raw if raw[0] in "~<>!=" else f"{name}={raw}"
            key, value = parse_cli_filter(expression)
            out[key] = value
    return out or None


@dataclass(frozen=True)
class Passage:
    """A hit's passage in its document: the chunks before and after it, where it is."""

    doc_id: str
    source: str | None
    title: str | None
    page: Any
    before: list[str]
    text: str
    after: list[str]
    found: bool


def passage_in_document(document: Document | None, chunks: Sequence[Any], chunk_id: str, around: int = 1) -> Passage:
    """The chunk ``chunk_id`` of ``document`` (split into ``chunks``) with ``around`` neighbours each side."""
    if document is None:
        return Passage("", None, None, None, [], "", [], False)
    at = next((i for i, c in enumerate(chunks) if c.id == chunk_id), None)
    meta = document.metadata
    if at is None:
        return Passage(document.id, meta.get("source"), meta.get("title"), None, [], document.text[:2000], [], False)
    chunk = chunks[at]
    return Passage(document.id, meta.get("source"), meta.get("title"), chunk.metadata.get("page"),
                   [c.text for c in chunks[max(0, at - around):at]], chunk.text,
                   [c.text for c in chunks[at + 1:at + 1 + around]], True)


def prompt_parts(prompt: Prompt, builder: PromptBuilder, question: str) -> dict[str, Any]:
    """The prompt view: messages with token counts, passages, examples with similarity and origin, dropped."""
    count = builder.count
    similarity: dict[int, float] = {}
    if prompt.examples and builder.examples is not None:
        scores = builder.examples.similarity(question)
        for i, example in enumerate(builder.examples):
            similarity[id(example)] = float(scores[i])
    return {
        "prompt": prompt,
        "messages": [{"role": m["role"], "content": m["content"], "tokens": count(m["content"])} for m in prompt.messages],
        "passages": [{"citation": c, "tokens": count(c.text)} for c in prompt.citations.values()],
        "examples": [{"example": e, "tokens": count(e.input) + count(e.output), "similarity": similarity.get(id(e)),
                      "origin": _origin(e.metadata)} for e in prompt.examples],
        "text_tokens": count(prompt.text),
    }


def _origin(metadata: Mapping[str, Any]) -> str:
    if metadata.get("origin") == "feedback":
        how = "corrected" if metadata.get("corrected") else "thumbs up"
        return f"feedback #{metadata.get('feedback_id')} ({how})"
    return str(metadata.get("source") or "examples file")
