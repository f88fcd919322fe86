"""Snippets: the words of a passage around its best match of a query, for showing a hit.

A word matches when it shares a BM25 term with the query (the same :class:`~ragkit.text.analysis.Analyzer`,
so "swarming" matches "swarm" and ``CORSMiddleware`` matches "cors middleware"). The window of
``words`` words that covers the most distinct query terms wins (then the most matches, then the
earliest), centred on its matches; an ellipsis marks each side where the passage goes on.

>>> snippet("Bees swarm in May. Queens lay eggs. Drones do not sting.", "when do queens lay", words=5)
'… in May. Queens lay eggs. …'
"""

from __future__ import annotations

import re

from ragkit.text.analysis import Analyzer

__all__ = ["ELLIPSIS", "snippet"]

ELLIPSIS = "…"
_WORD = re.compile(r"\S+")
_MARKUP_ONLY = re.compile(r"^(?:#{1,6}|[-*+>|]|```\S*|~~~\S*)$")  # heading marks, bullets, fences


def snippet(text: str, query: str, *, words: int = 25, analyzer: Analyzer | None = None) -> str:
    """The ``words`` words of ``text`` around the best match of ``query``'s terms, on one line,
    with ``…`` where text was left out; the passage's start when nothing matches."""
    if words < 1:
        raise ValueError(f"words must be at least 1, got {words}")
    tokens = [w for w in _WORD.findall(text) if not _MARKUP_ONLY.match(w)]
    if len(tokens) <= words:
        return " ".join(tokens)
    analyzer = analyzer or Analyzer()
    wanted = set(analyzer.tokenize(query))
    matches = [wanted.intersection(terms) for terms in analyzer.tokenize_many(tokens)] if wanted else []
    start = _best_window(matches, words) if any(matches) else 0
    end = start + words
    return " ".join([ELLIPSIS] * (start > 0) + tokens[start:end] + [ELLIPSIS] * (end < len(tokens)))


def _best_window(matches: list[set[str]], words: int) -> int:
    """The start of the window of ``words`` words with the most distinct matched terms, then the most
    matched words; moved so that its matches sit in the middle."""
    best, best_key = 0, (-1, -1)
    for start in range(len(matches) - words + 1):
        window = matches[start : start + words]
        key = (len(set().union(*window)), sum(1 for m in window if m))
        if key > best_key:
            best, best_key = start, key
    hits = [i for i in range(best, best + words) if matches[i]]
    middle = (hits[0] + hits[-1]) // 2
    return max(0, min(middle - words // 2, len(matches) - words))
