"""Text analysis for the lexical (BM25) index: text in, index terms out.

Lowercase, split into Unicode words, drop stopwords, stem with Snowball
(PyStemmer). Scripts written without spaces between words (Chinese, Japanese,
Thai, Lao, Khmer, Myanmar) have no word boundaries a regex can find, so their
runs become overlapping character bigrams, the standard fallback of CJK
search engines (Lucene's CJKBigramFilter): a sentence never collapses into one
giant token, and no dictionary is needed.

Analysis is versioned, since an index's terms must be made the same way at build and query time:
:data:`ANALYZER_VERSION` is what new indexes get, and an index keeps the version it was built with
(``analyzer_version`` in its config; an index from before versions is version 1).

- version 1: the above.
- version 2: code identifiers also index as their parts, the whole token kept: ``CORSMiddleware``
  gives ``corsmiddleware cors middleware``, ``get_db_session`` gives ``get_db_session get db
  session``, ``HTTPException`` gives ``httpexception http exception``. Parts are cut at underscores
  and where a capitalised part starts (``getDb``, ``HTTPException``); never at digits (``BRCA1``),
  nor before a run of capitals (``miRNA``, ``MSCs`` and ``mRNA`` stay whole), so scientific terms
  keep their one term (BM25 nDCG@10 on SciFact: 0.6898 with version 1, 0.6897 with version 2).
- version 3: clitics come off before stemming (:func:`ragkit.text.language.detach_clitics`): French,
  Italian and Catalan elided articles (``l'état`` gives ``état``, not ``létat``) and Arabic و/ف before
  the article (``والخوارزميات`` stems as ``الخوارزميات`` does). BM25 nDCG@10 (``benchmarks/languages.py``):
  French docs 0.568 -> 0.594 (whole documents), Arabic 0.599 -> 0.608 (paper sections), 0.910 -> 0.913
  (abstracts); SciFact's BM25 leg unchanged (0.6889 in both on the same tree).
- version 4: a word of two or more letters then digits also indexes as its letters, the whole word
  kept: ``python3`` gives ``python3 python``, ``BRCA1`` gives ``brca1 brca``, ``CD4`` gives ``cd4 cd``
  (``x86``, ``p53`` and ``3d`` stay whole). A query for "python" then finds ``python3`` and one for
  ``python3`` still prefers it. BM25 nDCG@10 on SciFact train 0.6931 -> 0.7004 (the default hybrid
  0.7284 -> 0.7309); the Debian descriptions 0.5284 -> 0.5246 (hybrid 0.6981 -> 0.7023); React's
  docs in English, French and Chinese unchanged.
- version 5: a word joined to a suffix by an apostrophe also indexes as its head
  (:func:`ragkit.text.language.apostrophe_head`): ``Python'daki`` gives ``pythondaki python``,
  ``FastAPI'nin`` gives ``fastapinin fastapi`` (not the joined word's case parts, ``fastap inin``); English contractions (``user's``, ``don't``)
  and elided articles stay as before; and Korean words become bigrams of syllables, as Chinese and
  Japanese runs do (particles and endings attach to Korean words). BM25 nDCG@10 (FastAPI's docs,
  ``benchmarks/languages.py``): Turkish 0.565 -> 0.611, Korean 0.493 -> 0.663; text with neither gets
  the very same terms as version 4.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache, partial

from ragkit.errors import ConfigError
from ragkit.text.language import AUTO, apostrophe_head, detach_clitics, stem_by_script

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
# Version 5: Korean too. Hangul is written with spaces, but a word carries its particles and endings
# ("응답을", "사용한"), so whole words rarely match; bigrams do, as Lucene's CJKBigramFilter does for
# Hangul. BM25 nDCG@10 on FastAPI's Korean docs: 0.493 -> 0.663 (bm25s 0.502).
_HANGUL_RANGES = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # Jamo, compatibility Jamo, syllables
_BIGRAM_RUN = re.compile(f"[{_NO_SPACE_RANGES}{_HANGUL_RANGES}]+")


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
# Version 2: underscores join a word's parts too (get_db_session is one identifier).
_IDENTIFIER = re.compile(f"(?:{_LETTER})+(?:(?:['’]|_+)(?:{_LETTER})+)*")

# Version 4: the letters of a word that ends in digits (python3, BRCA1) are a term of their own too.
_LETTERS_THEN_DIGITS = re.compile(r"([^\W\d_]{2,})\d+")

ANALYZER_VERSION = 5  # what a new index gets
ANALYZER_VERSIONS = (1, 2, 3, 4, 5)

# A compact English stopword list (the NLTK list minus negations, which carry meaning in claims).
ENGLISH_STOPWORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "let", "me", "more", "most", "my", "myself", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "s", "t", "d", "ll", "m", "o", "re", "ve", "y"]
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
    version: int = ANALYZER_VERSION

    def __post_init__(self) -> None:
        if self.version not in ANALYZER_VERSIONS:
            raise ConfigError(f"unknown analyzer version {self.version!r}; valid: {ANALYZER_VERSIONS}")
        if self.stemming and self.language != AUTO:
            _stemmer(self.language)  # fail early on an unknown language

    @property
    def _stopword_set(self) -> frozenset[str]:
        base = ENGLISH_STOPWORDS if (self.stopwords and self.language in ("english", AUTO)) else frozenset()
        return base | self.extra_stopwords

    def tokenize(self, text: str) -> list[str]:
        """Index terms of one text, in order, duplicates kept (BM25 counts them)."""
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: list[str]) -> list[list[str]]:
        stop = self._stopword_set
        stem = _stemmer(self.language).stemWords if self.stemming and self.language != AUTO else None
        if self.stemming and self.language == AUTO:  # each word by its script: ragkit.text.language
            stem = partial(stem_by_script, stemmer=lambda language: _stemmer(language).stemWords)
        out = []
        split = (_split_words if self.version == 1 else _split_identifiers if self.version == 2
                 else partial(_split_identifiers, clitics=True, letter_parts=self.version >= 4,
                              heads=self.version >= 5, bigrams=_BIGRAM_RUN if self.version >= 5 else _NO_SPACE_RUN))
        for text in texts:
            words = [w for w in split(text) if w not in stop]
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
            "version": self.version,
        }

    @classmethod
    def from_config(cls, config: dict[str, object]) -> Analyzer:
        return cls(
            language=str(config.get("language", "english")),
            stopwords=bool(config.get("stopwords", True)),
            stemming=bool(config.get("stemming", True)),
            extra_stopwords=frozenset(config.get("extra_stopwords", ()) or ()),  # type: ignore[arg-type]
            version=int(config.get("version", ANALYZER_VERSION)),  # type: ignore[call-overload]
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


def _split_no_space_script(word: str, bigrams: re.Pattern[str] = _NO_SPACE_RUN) -> list[str]:
    """Split a word containing runs of ``bigrams``' scripts: runs become bigrams, the rest stays whole."""
    pieces: list[str] = []
    pos = 0
    for run in bigrams.finditer(word):
        if run.start() > pos:
            pieces.append(word[pos : run.start()])
        chars = run.group()
        pieces.extend([chars] if len(chars) == 1 else [chars[i : i + 2] for i in range(len(chars) - 1)])
        pos = run.end()
    if pos < len(word):
        pieces.append(word[pos:])
    return pieces


def _split_identifiers(
    text: str, clitics: bool = False, letter_parts: bool = False, heads: bool = False,
    bigrams: re.Pattern[str] = _NO_SPACE_RUN,
) -> list[str]:
    """Version 2's words: version 1's, and each identifier's parts after the whole of it; version 3's
    (``clitics``) also without elided articles and Arabic conjunctions (:func:`detach_clitics`);
    version 4's (``letter_parts``) also each word's letters before its trailing digits; version 5's
    (``heads``) also the head of a word an apostrophe joins to a suffix (:func:`apostrophe_head`), and
    (``bigrams``: :data:`_BIGRAM_RUN`) Korean words as bigrams."""
    words = _identifier_words(text, clitics, heads, bigrams)
    if not letter_parts:
        return words
    out: list[str] = []
    for word in words:
        out.append(word)
        if word[-1:].isdigit() and (match := _LETTERS_THEN_DIGITS.fullmatch(word)):
            out.append(match.group(1))
    return out


def _identifier_words(
    text: str, clitics: bool, heads: bool = False, bigrams: re.Pattern[str] = _NO_SPACE_RUN
) -> list[str]:
    words: list[str] = []
    for match in _IDENTIFIER.finditer(unicodedata.normalize("NFKC", text)):
        word = match.group()
        head = apostrophe_head(word) if heads else None
        if clitics:
            word = detach_clitics(word)
        elif "'" in word or "’" in word:
            word = word.replace("'", "").replace("’", "")
        # A joined word's case parts would cut at its suffix ("FastAPInin": "fastap", "inin").
        _add_identifier(words, word, bigrams, parts=head is None)
        if head is not None:
            _add_identifier(words, head, bigrams)
    return words


def _add_identifier(words: list[str], word: str, bigrams: re.Pattern[str], parts: bool = True) -> None:
    """Append ``word``'s terms: lower-cased (runs of ``bigrams``' scripts as bigrams), then
    (``parts``) its parts if it is a code identifier."""
    lower = word.lower()
    if bigrams.search(word):
        words.extend(p for part in lower.split("_") if part for p in _split_no_space_script(part, bigrams))
        return
    words.append(lower)
    if parts and (lower != word or "_" in word):  # most words: lower-case, one part
        pieces = [p for piece in word.split("_") if piece for p in _case_parts(piece)]
        if len(pieces) > 1:
            words.extend(p.lower() for p in pieces)


def _case_parts(word: str) -> list[str]:
    """``word`` cut before each capitalised part: an upper-case letter followed by a lower-case one,
    after a lower-case letter or digit (``getDb``, ``Auth2Password``) or ending a run of capitals when
    two lower-case letters follow (``HTTPException``, not ``MSCs``). A run of capitals after
    lower-case letters is not cut off (``miRNA``, ``getURL``); a one-letter part joins the next."""
    if word[1:] == word[1:].lower() or word == word.upper():  # no change of case inside: most words
        return [word]
    cuts = [0]
    for i in range(1, len(word) - 1):
        prev, char, after = word[i - 1], word[i], word[i + 1]
        if char.isupper() and after.islower() and (
            prev.islower() or prev.isdigit() or prev.isupper() and i + 2 < len(word) and word[i + 2].islower()
        ):
            cuts.append(i)
    parts = [word[a:b] for a, b in zip(cuts, [*cuts[1:], len(word)])]
    merged: list[str] = []
    for part in parts:
        if merged and len(merged[-1]) == 1:
            merged[-1] += part
        else:
            merged.append(part)
    return merged
