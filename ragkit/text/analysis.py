"""Text analysis for the lexical (BM25) index: text in, index terms out.

Lowercase, split into Unicode words, drop stopwords, stem with Snowball
(PyStemmer). Scripts written without spaces between words (Chinese, Japanese,
Thai, Lao, Khmer, Myanmar) have no word boundaries a regex can find, so their
runs become overlapping character bigrams, the standard fallback of CJK
search engines (Lucene's CJKBigramFilter): a sentence never collapses into one
giant token, and no dictionary is needed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from ragkit.errors import ConfigError

# Unicode blocks of scripts written without spaces between words.
_NO_SPACE_RANGES = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\uff66-\uff9f"  # Halfwidth Katakana
)
_NO_SPACE_RUN = re.compile(f"[{_NO_SPACE_RANGES}]+")


def _combining_marks() -> str:
    """A regex class body of the BMP's combining marks, which ``\\w`` misses (Thai, Devanagari vowel signs)."""
    ranges: list[list[int]] = []
    for code in range(0x300, 0x10000):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_LETTER = f"[^\\W_]|[{_combining_marks()}]"
# A word: letters, digits and marks; apostrophes inside words ("don't") are dropped, not split on.
_WORD = re.compile(f"(?:{_LETTER})+(?:['’](?:{_LETTER})+)*")

# A compact English stopword list (the NLTK list minus negations, which carry meaning in claims).
ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just let me more most my
    myself of off on once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours yourself
    yourselves s t d ll m o re ve y""".split()
)


@lru_cache(maxsize=16)
def _stemmer(language: str):  # type: ignore[no-untyped-def]
    import Stemmer

    try:
        return Stemmer.Stemmer(language)
    except KeyError as exc:
        valid = ", ".join(sorted(Stemmer.algorithms()))
        raise ConfigError(f"unknown stemming language {language!r}; valid: {valid}") from exc


@dataclass(frozen=True)
class Analyzer:
    """Turns text into BM25 terms. Settings are stored in the index config.

    >>> Analyzer().tokenize("The bees were swarming in May")
    ['bee', 'swarm', 'may']
    >>> Analyzer(stemming=False, stopwords=False).tokenize("東京の蜂")
    ['東京', '京の', 'の蜂']
    """

    language: str = "english"
    stopwords: bool = True
    stemming: bool = True
    extra_stopwords: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.stemming:
            _stemmer(self.language)  # fail early on an unknown language

    @property
    def _stopword_set(self) -> frozenset[str]:
        base = ENGLISH_STOPWORDS if (self.stopwords and self.language == "english") else frozenset()
        return base | self.extra_stopwords

    def tokenize(self, text: str) -> list[str]:
        """Index terms of one text, in order, duplicates kept (BM25 counts them)."""
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: list[str]) -> list[list[str]]:
        stop = self._stopword_set
        stem = _stemmer(self.language).stemWords if self.stemming else None
        out = []
        for text in texts:
            words = [w for w in _split_words(text) if w not in stop]
            if stem is not None:
                words = [w for w in stem(words) if w]  # some stemmers strip a word to nothing
            out.append(words)
        return out

    def to_config(self) -> dict[str, object]:
        return {
            "language": self.language,
            "stopwords": self.stopwords,
            "stemming": self.stemming,
            "extra_stopwords": sorted(self.extra_stopwords),
        }

    @classmethod
    def from_config(cls, config: dict[str, object]) -> "Analyzer":
        return cls(
            language=str(config.get("language", "english")),
            stopwords=bool(config.get("stopwords", True)),
            stemming=bool(config.get("stemming", True)),
            extra_stopwords=frozenset(config.get("extra_stopwords", ()) or ()),  # type: ignore[arg-type]
        )


def _split_words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    words: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group().replace("'", "").replace("’", "")
        if _NO_SPACE_RUN.search(word):
            words.extend(_split_no_space_script(word))
        else:
            words.append(word)
    return words


def _split_no_space_script(word: str) -> list[str]:
    """Split a word containing spaceless-script runs: runs become bigrams, the rest stays whole."""
    pieces: list[str] = []
    pos = 0
    for run in _NO_SPACE_RUN.finditer(word):
        if run.start() > pos:
            pieces.append(word[pos : run.start()])
        chars = run.group()
        pieces.extend([chars] if len(chars) == 1 else [chars[i : i + 2] for i in range(len(chars) - 1)])
        pos = run.end()
    if pos < len(word):
        pieces.append(word[pos:])
    return pieces
