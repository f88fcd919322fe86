"""Text every loader returns: newlines normalised, control characters and lone surrogates gone, and
:class:`TextBuilder`, which assembles a document's text from parts with its structure and its cap."""

from __future__ import annotations

import re
from typing import Any

from ragkit.errors import LoadError
from ragkit.types import Document

__all__ = ["TextBuilder", "clean"]

# Cc characters except \t and \n (\r is normalised before this is applied).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """Normalise newlines, drop control characters and replace lone surrogates (from JSON escapes
    such as "\\ud800"), which no tokenizer, database or terminal can encode."""
    text = text.encode("utf-8", "replace").decode("utf-8") if _SURROGATE.search(text) else text
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


class TextBuilder:
    """A document's text built from blocks, with the structure the chunker follows.

    ``heading`` starts a section (an outline entry, so no Markdown syntax is needed in the text);
    ``location`` marks where a slide, sheet or page begins (``[offset, {"slide": 3}]`` metadata, copied
    onto each chunk); ``add`` appends a block. Past ``max_chars`` the text is cut: with
    ``truncate=True`` the rest is dropped and a note says where, else it is a LoadError.
    """

    def __init__(self, source: str, max_chars: int, *, truncate: bool = False) -> None:
        self.source, self.max_chars, self.truncate = source, max_chars, truncate
        self._parts: list[str] = []
        self._size = 0
        self.outline: list[list[Any]] = []
        self.locations: list[list[Any]] = []
        self.notes: list[str] = []
        self.full = False  # the cap was reached: callers stop reading

    def _offset(self) -> int:
        return self._size + (2 if self._parts else 0)  # blocks are joined by a blank line

    def heading(self, title: str, level: int = 1) -> None:
        title = clean(title).strip()
        if title and not self.full:
            self.outline.append([self._offset(), level, title])
            self.add(title)

    def location(self, **where: Any) -> None:
        if not self.full:
            self.locations.append([self._offset(), where])

    def add(self, block: str, where: str = "") -> bool:
        """Append a block of text; False once the cap is reached (the block is dropped or cut)."""
        block = clean(block).strip()
        if self.full or not block:
            return not self.full
        offset = self._offset()
        if offset + len(block) > self.max_chars:
            if not self.truncate:
                raise LoadError(self.source, f"text too long: over {self.max_chars} characters"
                                             f"{' at ' + where if where else ''} (max_chars)")
            block = block[: max(0, self.max_chars - offset)]
            self.full = True
            self.notes.append(f"text truncated at {self.max_chars} characters (max_chars)"
                              f"{': ' + where + ' and after not indexed' if where else ''}")
            if not block:
                return False
        if self._parts:
            self._parts.append("\n\n")
        self._parts.append(block)
        self._size = offset + len(block)
        return not self.full

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def document(self, metadata: dict[str, Any], empty: str = "no text") -> Document:
        """The document, with ``outline``, ``locations`` and ``notes`` in its metadata."""
        text = self.text
        if not text.strip():
            raise LoadError(self.source, empty)
        meta = {**metadata, "outline": self.outline}
        if self.locations:
            meta["locations"] = self.locations
        if self.notes:
            meta["notes"] = list(self.notes)
        return Document(self.source, text, meta)
