"""Split documents into chunks that follow Markdown structure and fit a token budget.

A :class:`Chunker` cuts a document into sections at Markdown ATX headings (``#`` to ``######``;
``#`` lines inside fenced code blocks do not count), then packs each section's paragraphs greedily
up to the budget. A paragraph too long for one chunk is cut into sentences, a sentence into runs of
words and a word into runs of characters, so every chunk fits whatever the text looks like. Chunks
never cross a section boundary and ``chunk.text == document.text[chunk.start:chunk.end]`` always.
A PDF's text is not Markdown: its sections come from its outline (see :mod:`ragkit.ingest.sections`).
The text is read a block and a window at a time, so chunking costs memory in proportion to a chunk
(and the chunks made), not to the document.

Example::

    chunker = Chunker(chunk_size=256, overlap=32)
    chunks = chunker.split(Document(id="guide.md", text=markdown))
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, groupby
from operator import itemgetter
from typing import Any, NamedTuple

from ragkit.errors import ConfigError
from ragkit.ingest.sections import Block, markdown_blocks, outline_blocks, parse_outline
from ragkit.text.tokens import TokenCounter, approximate_token_count, hf_token_counter
from ragkit.types import Chunk, Document

# The token counters live in ragkit.text.tokens; they are named here too for code that imported them from here.
__all__ = ["Chunker", "TokenCounter", "approximate_token_count", "hf_token_counter"]

logger = logging.getLogger(__name__)

# Document metadata too large to copy onto every chunk.
_BULKY_KEYS = frozenset({"pages", "outline"})

# CJK sentence marks end a sentence even without a following space, since CJK text has none.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]’”»]*(?=\s|$)|[。！？]+[」』）”’]*")
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "fig", "eq"}
)
_NON_SPACE = re.compile(r"\S+")

# Piece levels, coarsest first (the first two are the block kinds of ragkit.ingest.sections).
_HEADING, _PARA, _SENTENCE, _WORDS, _CHARS = range(5)


class _Piece(NamedTuple):
    """A span that fits the budget on its own, with its token count."""

    start: int
    end: int
    tokens: int
    level: int


@dataclass
class _Draft:
    """The chunk being filled: its pieces, how many lead ones repeat the previous chunk, their total."""

    pieces: list[_Piece] = field(default_factory=list)
    n_overlap: int = 0
    tokens: int = 0

    @property
    def has_new_text(self) -> bool:
        return len(self.pieces) > self.n_overlap

    @property
    def fresh(self) -> bool:
        """Nothing in it yet but overlap and the section's heading."""
        return all(p.level == _HEADING for p in self.pieces[self.n_overlap :])

    def add(self, piece: _Piece, overlap: bool = False) -> None:
        self.pieces.append(piece)
        self.tokens += piece.tokens
        self.n_overlap += overlap

    def drop_first(self) -> None:
        self.tokens -= self.pieces.pop(0).tokens
        self.n_overlap -= self.n_overlap > 0


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
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
        s, e = _trim(text, cur, match.end())
        if s < e:
            yield s, e
        cur = match.end()
    s, e = _trim(text, cur, end)
    if s < e:
        yield s, e


class _Queue:
    """The pieces still to pack: those pushed back first, then the rest, made only when needed."""

    def __init__(self, pieces: Iterator[_Piece]) -> None:
        self._ready: deque[_Piece] = deque()
        self._rest = pieces

    def peek(self, i: int = 0) -> _Piece | None:
        while len(self._ready) <= i:
            if (piece := next(self._rest, None)) is None:
                return None
            self._ready.append(piece)
        return self._ready[i]

    def __bool__(self) -> bool:
        return self.peek() is not None

    def popleft(self) -> _Piece:
        self.peek()
        return self._ready.popleft()

    def push_front(self, pieces: Sequence[_Piece]) -> None:
        self._ready.extendleft(reversed(pieces))


class Chunker:
    """Splits documents into :class:`~ragkit.types.Chunk` objects of at most ``chunk_size`` tokens.

    ``overlap`` tokens' worth of trailing sentences of a chunk start the next chunk of the same
    section (0 disables). ``count_tokens`` defaults to :func:`approximate_token_count`; pass
    :func:`hf_token_counter` of the embedding model's tokenizer for exact budgets. ``max_tokens``
    (e.g. the model's window) caps the budget further.

    Example::

        chunker = Chunker(chunk_size=128, overlap=16)
        for chunk in chunker.split(doc):
            print(chunk.id, chunk.metadata["headings"], chunk.text[:40])
    """

    def __init__(
        self,
        *,
        chunk_size: int = 256,
        overlap: int = 32,
        count_tokens: TokenCounter | None = None,
        max_tokens: int | None = None,
    ) -> None:
        if not _is_int(chunk_size) or chunk_size <= 0:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if not _is_int(overlap) or not 0 <= overlap < chunk_size:
            raise ConfigError(f"overlap must be an integer in [0, chunk_size={chunk_size}), got {overlap!r}")
        if max_tokens is not None and (not _is_int(max_tokens) or max_tokens <= 0):
            raise ConfigError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
        if count_tokens is not None and not callable(count_tokens):
            raise ConfigError(f"count_tokens must be a callable, not {type(count_tokens).__name__}")
        self.chunk_size = chunk_size
        self.overlap = overlap
        self.max_tokens = max_tokens
        self.count_tokens: TokenCounter = count_tokens or approximate_token_count
        self.limit = chunk_size if max_tokens is None else min(chunk_size, max_tokens)
        # Text counted at once: wide enough that a window of prose holds more than a chunk's tokens.
        self._window = max(4096, 16 * self.limit)

    def __repr__(self) -> str:
        return f"Chunker(chunk_size={self.chunk_size}, overlap={self.overlap}, max_tokens={self.max_tokens})"

    def split(self, document: Document) -> list[Chunk]:
        """The chunks of ``document`` in document order, ids ``"<doc id>#<i>"``; ``[]`` for blank text."""
        text = document.text
        spans: list[tuple[int, int, tuple[str, ...]]] = []
        for _, section in groupby(self._blocks(document), key=itemgetter(0)):
            first = next(section)
            blocks = chain([first], section)
            pieces = (p for _, _, level, start, end in blocks for p in self._block_pieces(text, start, end, level))
            spans += [(start, end, first[1]) for start, end in self._pack(text, pieces)]
        base = {k: v for k, v in document.metadata.items() if k not in _BULKY_KEYS}
        page_of = _page_lookup(document.metadata.get("pages"), document.id)
        chunks = []
        for i, (start, end, headings) in enumerate(spans):
            metadata = {**base, "headings": list(headings)}
            if page_of is not None:
                metadata["page"], metadata["page_end"] = page_of(start), page_of(end - 1)
            chunks.append(Chunk(f"{document.id}#{i}", document.id, text[start:end], start, end, metadata))
        logger.debug("chunked %s into %d chunks", document.id, len(chunks))
        return chunks

    def _blocks(self, document: Document) -> Iterator[Block]:
        """Structure from Markdown syntax, except for a PDF's text: its outline, if it has one, or none."""
        meta = document.metadata
        if meta.get("type") == "pdf" or "outline" in meta:
            outline = parse_outline(meta.get("outline") or [], document.id)
            return outline_blocks(document.text, outline or [])
        return markdown_blocks(document.text)

    # -- pieces: spans that each fit the budget ---------------------------------------------

    def _count(self, text: str, start: int, end: int) -> int:
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

    def _block_pieces(self, text: str, start: int, end: int, level: int) -> Iterator[_Piece]:
        start, end = _trim(text, start, end)
        if start == end:
            return
        tokens = self._count(text, start, end)
        if tokens <= self.limit:
            yield _Piece(start, end, tokens, level)
        else:
            yield from self._sentence_pieces(text, start, end, known=(start, end))

    def _sentence_pieces(
        self, text: str, start: int, end: int, known: tuple[int, int] | None = None
    ) -> Iterator[_Piece]:
        for s, e in _sentence_spans(text, start, end):
            # A paragraph that is one sentence was already counted (and found too long).
            tokens = self.limit + 1 if (s, e) == known else self._count(text, s, e)
            if tokens <= self.limit:
                yield _Piece(s, e, tokens, _SENTENCE)
            else:
                yield from self._word_pieces(text, s, e)

    def _word_pieces(self, text: str, start: int, end: int) -> Iterator[_Piece]:
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
                j, tokens = self._longest_fit(text, words[i][0], ends, i, guess)
                if j >= i:
                    yield _Piece(words[i][0], ends[j], tokens, _WORDS)
                    i, guess = j + 1, j - i
                else:
                    yield from self._char_pieces(text, *words[i])
                    i += 1
            pos = ends[-1]

    def _char_pieces(self, text: str, start: int, end: int) -> Iterator[_Piece]:
        guess = 0
        while start < end:
            cands = range(start + 1, end + 1)
            j, tokens = self._longest_fit(text, start, cands, 0, guess)
            if j < 0:  # not even one character fits: emit it anyway rather than lose text
                logger.warning("character %r alone exceeds the %d-token limit", text[start], self.limit)
                j, tokens = 0, self.count_tokens(text[start : start + 1])
            yield _Piece(start, cands[j], tokens, _CHARS)
            start, guess = cands[j], j

    def _longest_fit(
        self, text: str, start: int, cands: Sequence[int], lo: int, guess: int
    ) -> tuple[int, int]:
        """The largest ``j >= lo`` with ``text[start:cands[j]]`` within the limit, and its count.

        Gallops from ``lo + guess`` (the previous piece's size, so similar pieces take few probes),
        then binary-searches; returns ``(lo - 1, -1)`` if not even ``cands[lo]`` fits.
        """
        limit, count = self.limit, self._count

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

    # -- packing pieces into chunks --------------------------------------------------------

    def _pack(self, text: str, pieces: Iterator[_Piece]) -> list[tuple[int, int]]:
        """Greedily pack one section's pieces into chunk spans, with overlap between them."""
        queue, spans = _Queue(pieces), []
        draft = _Draft()
        while queue or draft.has_new_text:
            if queue and self._take_next(text, draft, queue):
                continue
            kept, pushed_back = self._verified(text, draft)
            queue.push_front(pushed_back)
            spans.append((kept[0].start, kept[-1].end))
            draft = _Draft()
            for piece in self._overlap_tail(text, kept) if self.overlap else []:
                draft.add(piece, overlap=True)
        return spans

    def _take_next(self, text: str, draft: _Draft, queue: _Queue) -> bool:
        """Move the next piece (or part of it) into the draft; False when the draft is full."""
        nxt = queue.peek()
        assert nxt is not None
        if draft.tokens + nxt.tokens > self.limit and draft.pieces and draft.fresh:
            # Rather than leave a heading alone or drop the overlap, cut the next paragraph into
            # sentences, and after a heading even a long block into words, to fill the chunk.
            if nxt.level == _PARA and len(sentences := list(self._sentence_pieces(text, nxt.start, nxt.end))) > 1:
                queue.popleft()
                queue.push_front(sentences)
                return True
            if draft.n_overlap == 0 and nxt.level != _CHARS:
                end, run = nxt.end, 1
                # The run of word pieces, up to a window of text: enough to fill one chunk.
                while (after := queue.peek(run)) is not None and after.level == _WORDS == nxt.level \
                        and after.end - nxt.start <= self._window:
                    end, run = after.end, run + 1
                if (split := self._fill_after(text, draft.pieces[0].start, nxt.start, end)) is not None:
                    for _ in range(run):
                        queue.popleft()
                    queue.push_front(split[1:])
                    draft.add(split[0])
                    return True
            while draft.pieces and draft.tokens + nxt.tokens > self.limit and not draft.has_new_text:
                draft.drop_first()  # the overlap must not crowd out new text
        if draft.tokens + nxt.tokens <= self.limit or not draft.pieces:
            draft.add(queue.popleft())
            return True
        return False

    def _fill_after(self, text: str, start: int, block_start: int, block_end: int) -> list[_Piece] | None:
        """A block cut into a first run of words that fits after ``text[start:block_start]``, and the rest."""
        words = [(m.start(), m.end()) for m in _NON_SPACE.finditer(text, block_start, block_end)]
        j, _ = self._longest_fit(text, start, [e for _, e in words], 0, 0)
        if j < 0:
            return None
        if j == len(words) - 1:  # it all fits after all: the summed counts overestimated
            return [_Piece(block_start, block_end, self._count(text, block_start, block_end), _WORDS)]
        first = _Piece(block_start, words[j][1], self._count(text, block_start, words[j][1]), _WORDS)
        return [first, *self._word_pieces(text, words[j + 1][0], block_end)]

    def _verified(self, text: str, draft: _Draft) -> tuple[list[_Piece], list[_Piece]]:
        """The draft's pieces, shrunk until the real count fits (summed piece counts are an estimate),
        and the pieces pushed back for the next chunk."""
        kept, n_overlap, pushed_back = list(draft.pieces), draft.n_overlap, []
        while self._count(text, kept[0].start, kept[-1].end) > self.limit:
            if len(kept) > n_overlap + 1:
                pushed_back.insert(0, kept.pop())
            elif n_overlap:
                kept.pop(0)
                n_overlap -= 1
            else:
                break  # one piece is counted on its own and fits, bar the one-character case
        return kept, pushed_back

    def _overlap_tail(self, text: str, pieces: list[_Piece]) -> list[_Piece]:
        """The trailing sentences/pieces of a chunk totalling at most ``overlap`` tokens, never all of it."""
        budget, tail = self.overlap, []
        for piece in reversed(pieces):
            if piece.tokens <= budget:
                tail.append(piece)
                budget -= piece.tokens
                continue
            if piece.level == _PARA:
                for sentence in reversed(list(self._sentence_pieces(text, piece.start, piece.end))):
                    if sentence.tokens > budget:
                        break
                    tail.append(sentence)
                    budget -= sentence.tokens
            break
        tail.reverse()
        # Repeating the whole chunk would make no progress.
        while tail and tail[0].start <= pieces[0].start:
            tail.pop(0)
        return tail


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _page_lookup(pages: Any, doc_id: str) -> Callable[[int], Any] | None:
    """A function from text offset to page number, from ``[[start_offset, page_no], ...]``."""
    if not pages:
        return None
    try:
        pairs = sorted((int(offset), number) for offset, number in pages)
    except (TypeError, ValueError):
        logger.warning("document %s: ignoring malformed 'pages' metadata", doc_id)
        return None
    starts = [offset for offset, _ in pairs]

    def page_of(offset: int) -> Any:
        return pairs[max(bisect_right(starts, offset) - 1, 0)][1]

    return page_of
