"""Pieces: the spans a :class:`~ragkit.ingest.chunking.Chunker` packs into chunks, each within the budget.

A block (a paragraph, a heading, a table row) that fits is one piece; one too long is cut into
sentences, a sentence into runs of words and a word into runs of characters, so every piece fits
whatever the text looks like. Long spans are counted a window at a time, so cutting costs memory in
proportion to a window of text, not to the document.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from ragkit.text.tokens import TokenCounter

__all__ = ["CHARS", "HEADING", "PARA", "SENTENCE", "TABLE", "WORDS", "Piece", "PieceCutter", "trim"]

logger = logging.getLogger(__name__)

# CJK sentence marks end a sentence even without a following space, since CJK text has none.
# CJK sentence marks end a sentence even without a following space, since CJK text has none.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]’”»]*(?=\s|$)|[。！？]+[」』）”’]*")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "fig", "eq"}
)
_NON_SPACE = re.compile(r"\S+")

# Piece levels, coarsest first (the first two are the block kinds of ragkit.ingest.sections); a
# table row (TABLE) is never cut unless it alone is over the budget.
HEADING, PARA, SENTENCE, WORDS, CHARS, TABLE = range(6)


class Piece(NamedTuple):
    """A span that fits the budget on its own, with its token count."""

    start: int
    end: int
    tokens: int
    level: int



def trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _sentence_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Trimmed sentence spans of ``text[start:end]``; a simple rule, not a linguistic parser."""
    cur = start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match[0] == ".":
            before = text[max(start, match.start() - 12) : match.start()].split()
            word = before[-1].lstrip("([\"'").lower() if before else ""
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        s, e = trim(text, cur, match.end())
        if s < e:
            yield s, e
        cur = match.end()
    s, e = trim(text, cur, end)
    if s < e:
        yield s, e


class PieceCutter:
    """Cuts spans of a text into pieces of at most ``limit`` tokens as ``count_tokens`` counts them;
    ``window``: characters counted at once."""

    def __init__(self, count_tokens: TokenCounter, limit: int, window: int) -> None:
        self.count_tokens, self.limit, self._window = count_tokens, limit, window

    def count(self, text: str, start: int, end: int) -> int:
        """The tokens of ``text[start:end]``, or ``limit + 1`` for "more than fit".

        A span longer than a window is counted a window at a time (cut at a space) and given up on
        once over the limit: a tokenizer's memory grows with its input (about 500 bytes per token),
        so a whole 8 MB line counted at once would cost gigabytes."""
        if end - start <= self._window:
            return self.count_tokens(text[start:end])
        total = 0
        while start < end:
            cut = min(end, start + self._window)
            if cut < end and (space := max(text.rfind(" ", start, cut), text.rfind("\n", start, cut))) > start:
                cut = space
            total += self.count_tokens(text[start:cut])
            if total > self.limit:
                return self.limit + 1
            start = cut
        return total

    def block_pieces(self, text: str, start: int, end: int, level: int) -> Iterator[Piece]:
        start, end = trim(text, start, end)
        if start == end:
            return
        tokens = self.count(text, start, end)
        if tokens <= self.limit:
            yield Piece(start, end, tokens, level)
        else:
            yield from self.sentence_pieces(text, start, end, known=(start, end))

    def sentence_pieces(
        self, text: str, start: int, end: int, known: tuple[int, int] | None = None
    ) -> Iterator[Piece]:
        for s, e in _sentence_spans(text, start, end):
            # A paragraph that is one sentence was already counted (and found too long).
            tokens = self.limit + 1 if (s, e) == known else self.count(text, s, e)
            if tokens <= self.limit:
                yield Piece(s, e, tokens, SENTENCE)
            else:
                yield from self.word_pieces(text, s, e)

    def word_pieces(self, text: str, start: int, end: int) -> Iterator[Piece]:
        """Runs of words that fit, read a window of text at a time (a piece never crosses a window's
        end), so that a long sentence costs the memory of a window's words, not of all of them."""
        pos, guess = start, 0
        while pos < end:
            stop = min(end, pos + self._window)
            words = [(m.start(), m.end()) for m in _NON_SPACE.finditer(text, pos, stop)]
            if not words:
                return
            if stop < end and words[-1][1] == stop and not text[stop].isspace():  # a word cut by the window
                if len(words) > 1:
                    words.pop()  # read whole with the next window
                else:
                    words[0] = (words[0][0], _NON_SPACE.match(text, words[0][0], end).end())  # type: ignore[union-attr]
            ends = [e for _, e in words]
            i = 0
            while i < len(words):
                j, tokens = self.longest_fit(text, words[i][0], ends, i, guess)
                if j >= i:
                    yield Piece(words[i][0], ends[j], tokens, WORDS)
                    i, guess = j + 1, j - i
                else:
                    yield from self.char_pieces(text, *words[i])
                    i += 1
            pos = ends[-1]

    def char_pieces(self, text: str, start: int, end: int) -> Iterator[Piece]:
        guess = 0
        while start < end:
            cands = range(start + 1, end + 1)
            j, tokens = self.longest_fit(text, start, cands, 0, guess)
            if j < 0:  # not even one character fits: emit it anyway rather than lose text
                logger.warning("character %r alone exceeds the %d-token limit", text[start], self.limit)
                j, tokens = 0, self.count_tokens(text[start : start + 1])
            yield Piece(start, cands[j], tokens, CHARS)
            start, guess = cands[j], j

    def longest_fit(
        self, text: str, start: int, cands: Sequence[int], lo: int, guess: int
    ) -> tuple[int, int]:
        """The largest ``j >= lo`` with ``text[start:cands[j]]`` within the limit, and its count.

        Gallops from ``lo + guess`` (the previous piece's size, so similar pieces take few probes),
        then binary-searches; returns ``(lo - 1, -1)`` if not even ``cands[lo]`` fits.
        """
        limit, count = self.limit, self.count

        def fit(j: int) -> int:
            tokens = count(text, start, cands[j])
            return tokens if tokens <= limit else -1

        n = len(cands)
        good, good_n, bad, step = lo - 1, -1, n, 1
        probe = min(lo + max(guess, 0), n - 1)
        if (tokens := fit(probe)) >= 0:
            good, good_n = probe, tokens
            while good + step < n:
                if (tokens := fit(good + step)) < 0:
                    bad = good + step
                    break
                good, good_n, step = good + step, tokens, step * 2
        else:
            bad = probe
            while bad - step >= lo:
                if (tokens := fit(bad - step)) >= 0:
                    good, good_n = bad - step, tokens
                    break
                bad, step = bad - step, step * 2
        while bad - good > 1:
            mid = (good + bad) // 2
            if (tokens := fit(mid)) >= 0:
                good, good_n = mid, tokens
            else:
                bad = mid
        return good, good_n
