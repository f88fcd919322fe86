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
from typing import Any

from ragkit.errors import ConfigError
from ragkit.ingest.pieces import CHARS, HEADING, PARA, TABLE, WORDS, Piece, PieceCutter
from ragkit.ingest.sections import PARAGRAPH, Block, markdown_blocks, outline_blocks, parse_outline
from ragkit.ingest.table_chunks import BigTable, table_chunks, table_pieces
from ragkit.text.tokens import TokenCounter, approximate_token_count, hf_token_counter
from ragkit.types import Chunk, Document

# The token counters live in ragkit.text.tokens; they are named here too for code that imported them from here.
__all__ = [
    "Chunker", "TokenCounter", "approximate_token_count", "at_most_estimate", "embedding_windows", "hf_token_counter",
]

logger = logging.getLogger(__name__)

# Document metadata too large to copy onto every chunk.
_BULKY_KEYS = frozenset({"pages", "outline", "locations", "notes"})
_NON_SPACE = re.compile(r"\S+")


@dataclass
class _Draft:
    """The chunk being filled: its pieces, how many lead ones repeat the previous chunk, their total."""

    pieces: list[Piece] = field(default_factory=list)
    n_overlap: int = 0
    tokens: int = 0

    @property
    def has_new_text(self) -> bool:
        return len(self.pieces) > self.n_overlap

    @property
    def fresh(self) -> bool:
        """Nothing in it yet but overlap and the section's heading."""
        return all(p.level == HEADING for p in self.pieces[self.n_overlap :])

    def add(self, piece: Piece, overlap: bool = False) -> None:
        self.pieces.append(piece)
        self.tokens += piece.tokens
        self.n_overlap += overlap

    def drop_first(self) -> None:
        self.tokens -= self.pieces.pop(0).tokens
        self.n_overlap -= self.n_overlap > 0



class _Queue:
    """The pieces still to pack: those pushed back first, then the rest, made only when needed."""

    def __init__(self, pieces: Iterator[Piece]) -> None:
        self._ready: deque[Piece] = deque()
        self._rest = pieces

    def peek(self, i: int = 0) -> Piece | None:
        while len(self._ready) <= i:
            if (piece := next(self._rest, None)) is None:
                return None
            self._ready.append(piece)
        return self._ready[i]

    def __bool__(self) -> bool:
        return self.peek() is not None

    def popleft(self) -> Piece:
        self.peek()
        return self._ready.popleft()

    def push_front(self, pieces: Sequence[Piece]) -> None:
        self._ready.extendleft(reversed(pieces))


def at_most_estimate(count_tokens: TokenCounter) -> TokenCounter:
    """A counter giving the smaller of ``count_tokens(text)`` and :func:`approximate_token_count`: a chunk
    budget that does not collapse for text the model's tokenizer handles poorly.

    An English WordPiece vocabulary (all-MiniLM-L6-v2's) cuts an Arabic word into 4.4 pieces on average
    (1.7 for English, measured on translated papers), so a 254-token chunk held about 58 Arabic words
    where it holds 150 English ones; BM25 then scored three chunks per short abstract, each alone, and
    lost 0.04 nDCG@10 to the same BM25 over whole documents (``benchmarks/languages.py``). The estimate
    (one token per four letters of a word, one per CJK character or mark) counts what a tokenizer that
    knows the script would make, and is nearly always above the model's count on English, so English chunks
    are as before (13 of SciFact's 5,183 documents chunk differently); a chunk of Arabic holds as many words as an English one, and the embedder reads its first
    ``max_seq_length`` tokens (a model that splits a script this finely has little to say about it).
    """

    def count(text: str) -> int:
        return min(count_tokens(text), approximate_token_count(text))

    return count


def overlaps(chunks: Sequence[Chunk], text: str) -> list[str]:
    """Each chunk's part of ``text`` (its document's) that an earlier chunk already holds: its overlap
    with the chunks before it ("" for the first). The rest of the chunk is the document's, each once."""
    out, seen = [], 0
    for chunk in chunks:
        out.append(text[chunk.start:min(chunk.end, seen)] if chunk.start < seen else "")
        seen = max(seen, chunk.end)
    return out


def embedding_windows(text: str, count_tokens: TokenCounter, limit: int) -> list[str]:
    """``text`` as consecutive runs of words of at most ``limit`` tokens each by ``count_tokens`` (the
    model's): ``[text]`` when it fits, as every chunk does whose budget counted the model's tokens.

    A chunk sized by :func:`at_most_estimate` may be longer than the model's window; embedded whole, the
    model would read only its start. Measured on Arabic abstracts (all-MiniLM-L6-v2): truncated, the dense
    leg fell from 0.162 to 0.070 nDCG@10 and looked sure of its wrong answers, dragging the default hybrid
    from 0.869 to 0.647; each window embedded and the vectors averaged, dense 0.100 and hybrid 0.904 (BM25
    0.907). A word longer than the window is a window of its own (the model reads its start).
    """
    if count_tokens(text) <= limit:
        return [text]
    windows, start, end, used = [], None, 0, 0
    for match in _NON_SPACE.finditer(text):
        tokens = count_tokens(match.group())  # WordPiece and BPE pre-split at spaces: counts add up
        if start is not None and used + tokens > limit:
            windows.append(text[start:end])
            start, used = None, 0
        if start is None:
            start = match.start()
        end, used = match.end(), used + tokens
    if start is not None:
        windows.append(text[start:end])
    return windows


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
        self._cut = PieceCutter(self.count_tokens, self.limit, self._window)

    def __repr__(self) -> str:
        return f"Chunker(chunk_size={self.chunk_size}, overlap={self.overlap}, max_tokens={self.max_tokens})"

    def split(self, document: Document) -> list[Chunk]:
        """The chunks of ``document`` in document order, ids ``"<doc id>#<i>"``; ``[]`` for blank text."""
        text = document.text
        spans: list[tuple[int, int, tuple[str, ...], str | None]] = []
        for _, section in groupby(self._blocks(document), key=itemgetter(0)):
            first = next(section)
            spans += [(s, e, first[1], h) for s, e, h in self._section(text, chain([first], section))]
        meta = document.metadata
        base = {k: v for k, v in meta.items() if k not in _BULKY_KEYS}
        page_of = _offset_lookup(meta.get("pages"), document.id, "pages")
        where = _offset_lookup(meta.get("locations"), document.id, "locations")
        chunks = []
        for i, (start, end, headings, header) in enumerate(spans):
            metadata = {**base, "headings": list(headings)}
            if page_of is not None:
                metadata["page"], metadata["page_end"] = page_of(start), page_of(end - 1)
            if where is not None and isinstance(found := where(start), dict):
                metadata.update(found)  # {"slide": 3}, {"sheet": "Yields"}
            if header is not None:
                metadata["table_header"] = header
            chunks.append(Chunk(f"{document.id}#{i}", document.id, text[start:end], start, end, metadata))
        logger.debug("chunked %s into %d chunks", document.id, len(chunks))
        return chunks

    def _section(self, text: str, blocks: Iterator[Block]) -> Iterator[tuple[int, int, str | None]]:
        """One section's chunk spans and the table header each repeats: its pieces packed, except
        that a table too large for a chunk is chunked on its own, by rows (see :mod:`table_chunks`)."""
        stream = (item for _, _, level, start, end in blocks
                  for item in (table_pieces(self._cut, text, start, end, level) if level == PARAGRAPH
                               else self._cut.block_pieces(text, start, end, level)))
        big: list[BigTable] = []

        def pieces() -> Iterator[Piece]:
            for item in stream:  # one generator: the next call goes on after the table
                if isinstance(item, BigTable):
                    big.append(item)
                    return
                yield item

        while True:
            yield from ((start, end, None) for start, end in self._pack(text, pieces()))
            if not big:
                return
            table = big.pop()
            header = text[table.start : table.header_end]
            yield from ((s, e, header if repeat else None) for s, e, repeat in table_chunks(self._cut, text, table))

    def _blocks(self, document: Document) -> Iterator[Block]:
        """Structure from Markdown syntax, except for a PDF's text: its outline, if it has one, or none."""
        meta = document.metadata
        if meta.get("type") == "pdf" or "outline" in meta:
            outline = parse_outline(meta.get("outline") or [], document.id)
            return outline_blocks(document.text, outline or [])
        return markdown_blocks(document.text)

    # -- pieces: spans that each fit the budget ---------------------------------------------


    # -- packing pieces into chunks --------------------------------------------------------

    def _pack(self, text: str, pieces: Iterator[Piece]) -> list[tuple[int, int]]:
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
            if nxt.level == PARA and len(sentences := list(self._cut.sentence_pieces(text, nxt.start, nxt.end))) > 1:
                queue.popleft()
                queue.push_front(sentences)
                return True
            if draft.n_overlap == 0 and nxt.level not in (CHARS, TABLE):  # a table is never cut
                end, run = nxt.end, 1
                # The run of word pieces, up to a window of text: enough to fill one chunk.
                while (after := queue.peek(run)) is not None and after.level == WORDS == nxt.level \
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

    def _fill_after(self, text: str, start: int, block_start: int, block_end: int) -> list[Piece] | None:
        """A block cut into a first run of words that fits after ``text[start:block_start]``, and the rest."""
        words = [(m.start(), m.end()) for m in _NON_SPACE.finditer(text, block_start, block_end)]
        j, _ = self._cut.longest_fit(text, start, [e for _, e in words], 0, 0)
        if j < 0:
            return None
        if j == len(words) - 1:  # it all fits after all: the summed counts overestimated
            return [Piece(block_start, block_end, self._cut.count(text, block_start, block_end), WORDS)]
        first = Piece(block_start, words[j][1], self._cut.count(text, block_start, words[j][1]), WORDS)
        return [first, *self._cut.word_pieces(text, words[j + 1][0], block_end)]

    def _verified(self, text: str, draft: _Draft) -> tuple[list[Piece], list[Piece]]:
        """The draft's pieces, shrunk until the real count fits (summed piece counts are an estimate),
        and the pieces pushed back for the next chunk."""
        kept, n_overlap, pushed_back = list(draft.pieces), draft.n_overlap, []
        while self._cut.count(text, kept[0].start, kept[-1].end) > self.limit:
            if len(kept) > n_overlap + 1:
                pushed_back.insert(0, kept.pop())
            elif n_overlap:
                kept.pop(0)
                n_overlap -= 1
            else:
                break  # one piece is counted on its own and fits, bar the one-character case
        return kept, pushed_back

    def _overlap_tail(self, text: str, pieces: list[Piece]) -> list[Piece]:
        """The trailing sentences/pieces of a chunk totalling at most ``overlap`` tokens, never all of it."""
        budget, tail = self.overlap, []
        for piece in reversed(pieces):
            if piece.tokens <= budget:
                tail.append(piece)
                budget -= piece.tokens
                continue
            if piece.level == PARA:
                for sentence in reversed(list(self._cut.sentence_pieces(text, piece.start, piece.end))):
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


def _offset_lookup(marks: Any, doc_id: str, key: str) -> Callable[[int], Any] | None:
    """A function from text offset to the value in force there, from ``[[start_offset, value], ...]``
    (``pages``: page numbers; ``locations``: ``{"slide": 3}`` and the like)."""
    if not marks:
        return None
    try:
        pairs = sorted(((int(offset), value) for offset, value in marks), key=itemgetter(0))
    except (TypeError, ValueError):
        logger.warning("document %s: ignoring malformed %r metadata", doc_id, key)
        return None
    starts = [offset for offset, _ in pairs]

    def value_at(offset: int) -> Any:
        return pairs[max(bisect_right(starts, offset) - 1, 0)][1]

    return value_at
