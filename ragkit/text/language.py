"""Language-aware stemming for ``language="auto"``: each word is stemmed for the script it is written in.

A corpus is rarely one language, and the analyzer must treat a query exactly as the documents it
should match. Choosing the stemmer *per word, by its script* does both without a detector's
guesses: a Cyrillic word gets Snowball's Russian stemmer, a Greek word the Greek one, an Arabic-script
word the Arabic one, wherever it occurs (a Russian manual quoting English commands, an English paper
citing Greek, a query in either), and the same word always gives the same term. Latin-script words
keep the ``base`` stemmer (English), as do scripts with no Snowball stemmer; scripts written without
spaces become character bigrams before stemming and pass through unchanged.

Measured (BM25 alone, MRR@10, known-item queries: the longest line of each paragraph of Vim's
tutor, searched among the other paragraphs, 31 to 74 per language): Russian 0.509 with the English
stemmer -> 0.552 with ``auto``; Greek 0.349 -> 0.377; Chinese, German and English unchanged (0.551,
0.314, 0.492); bm25s on the same documents (English stopwords, no stemmer) 0.445, 0.273, 0.366,
0.248, 0.492 (``benchmarks/languages.py``). On SciFact, ``auto`` gives the very same 790,387 terms
as ``english``.
Not covered, on measurement: Latin-script languages other than English keep the English stemmer and
stopwords, since the language's own did not help BM25 (nDCG@10 over whole documents, sections of the
React docs' translations, ``benchmarks/languages.py``): own stemmer French 0.594 -> 0.587, Spanish
0.617 -> 0.618, Italian 0.637 -> 0.647; the language's stopwords (bm25s's lists) added to English ones
0.594 -> 0.589, 0.617 -> 0.610, 0.637 -> 0.632; German on Vim's tutor 0.314 vs 0.312. A detector
choosing them per document would also have to guess a short query's language, and a wrong guess
stems the query unlike its documents. Give ``language=`` for a corpus in one such language.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

AUTO = "auto"
BASE_LANGUAGE = "english"  # Latin script and anything without a stemmer of its own

# (first code point, last code point, Snowball language): scripts that have one language's stemmer.
SCRIPTS: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "russian"),  # Cyrillic; the Russian stemmer leaves other Cyrillic words mostly whole
    (0x0530, 0x058F, "armenian"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x08A0, 0x08FF, "arabic"),
    (0x0900, 0x097F, "hindi"),  # Devanagari
    (0x0B80, 0x0BFF, "tamil"),
    (0x1F00, 0x1FFF, "greek"),  # Greek extended (polytonic)
)
_FIRST_NON_LATIN = SCRIPTS[0][0]


def _script(code: int) -> str | None:
    if code < _FIRST_NON_LATIN:
        return None
    for low, high, language in SCRIPTS:
        if low <= code <= high:
            return language
    return None


def script_language(word: str) -> str | None:
    """The Snowball language of ``word``'s script when it begins and ends in one script that has a
    stemmer, else None (Latin; no stemmer; mixed words such as "cd8α" or "κstudy", which the base
    stemmer leaves whole where they are not Latin: the Greek stemmer would strip the α)."""
    if not word:
        return None
    first = _script(ord(word[0]))
    return first if first is not None and _script(ord(word[-1])) == first else None


StemWords = Callable[[Sequence[str]], list[str]]


def stem_by_script(words: Sequence[str], stemmer: Callable[[str], StemWords]) -> list[str]:
    """``words`` stemmed, each with the stemmer of its script (``stemmer(language)`` gives the
    batch ``stemWords`` of a language); order kept. One batch call per script present."""
    groups: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        groups.setdefault(script_language(word) or BASE_LANGUAGE, []).append(i)
    if len(groups) <= 1:
        return stemmer(next(iter(groups), BASE_LANGUAGE))(list(words))
    out = list(words)
    for language, positions in groups.items():
        for i, stem in zip(positions, stemmer(language)([words[i] for i in positions])):
            out[i] = stem
    return out


# -- clitics (analysis version 3): words written onto the next one, split off before stemming ----------

# Elided articles and pronouns of French, Italian and Catalan (Lucene's ElisionFilter sets for French and
# Italian): "l'état" is "état", "dell'arte" is "arte". No English word begins with one of these and an
# apostrophe ("o'clock", "I'm" and "y'all" keep theirs), so the rule needs no language guess.
ELIDED = frozenset({
    "c", "d", "j", "l", "m", "n", "s", "t", "v", "qu", "jusqu", "quoiqu", "lorsqu", "puisqu",
    "all", "dall", "dell", "nell", "sull", "coll", "pell", "gl", "agl", "dagl", "degl", "negl", "sugl", "un",
})
_APOSTROPHES = re.compile("['’]")
# Arabic "and"/"so" (و, ف) before the article ال: Snowball's Arabic stemmer strips بال, كال, لل but not
# وال, فال, so "والخوارزميات" kept a term of its own where "الخوارزميات" and "بالخوارزميات" share one.
_ARABIC_CONJUNCTION = re.compile("^[وف](?=ال..)")


# English contractions: "user's", "don't", "we'll" keep one term, as before version 5.
CONTRACTIONS = frozenset({"s", "t", "d", "ll", "m", "re", "ve"})


def apostrophe_head(word: str) -> str | None:
    """The word before an apostrophe that joins a suffix to it, where that is a word of its own:
    Turkish writes case endings after an apostrophe on names ("Python'daki", "API'ye",
    "response'larınız"), and without its head the name was never a term (BM25 0.565 against bm25s's
    0.625 on Turkish docs). None for English contractions, one-letter heads ("o'clock") and elided
    articles (:func:`detach_clitics` takes those off)."""
    if "'" not in word and "’" not in word:
        return None
    parts = _APOSTROPHES.split(word)
    head, suffix = parts[0], parts[-1]
    if len(head) < 2 or head.lower() in ELIDED or suffix.lower() in CONTRACTIONS:
        return None
    return head


def detach_clitics(word: str) -> str:
    """``word`` without a leading elided article ("L'État" -> "État") or Arabic conjunction before the
    article, and without apostrophes ("don't" -> "dont", as versions 1 and 2 do)."""
    if "'" in word or "’" in word:
        head, rest = _APOSTROPHES.split(word, maxsplit=1)
        return _APOSTROPHES.sub("", rest if rest and head.lower() in ELIDED else word)
    if word[:1] in ("و", "ف"):
        return _ARABIC_CONJUNCTION.sub("", word)
    return word
