"""ragkit.text.snippets: the words around a passage's best match of the query, and the CLI's hit table."""

from __future__ import annotations

import pytest

from ragkit.cli.commands import format_hits
from ragkit.text.analysis import Analyzer
from ragkit.text.snippets import ELLIPSIS, snippet
from ragkit.types import Hit

FILLER = " ".join(f"filler{i}" for i in range(40))
AFTER = " ".join(f"after{i}" for i in range(40))
PASSAGE = f"# Middleware\n\n{FILLER} Use `CORSMiddleware` to allow cross-origin requests from a browser. {AFTER}"


def test_the_window_holds_the_match_with_ellipses_on_both_sides() -> None:
    text = snippet(PASSAGE, "how do I add CORS middleware")
    words = text.split()
    assert words[0] == ELLIPSIS and words[-1] == ELLIPSIS and len(words) == 25 + 2
    assert "`CORSMiddleware`" in words
    assert 8 <= words.index("`CORSMiddleware`") <= 18  # near the middle, not at an edge


def test_the_window_covering_most_query_terms_wins() -> None:
    text = "bees " * 30 + "queen " + "x " * 30 + "bees queen swarm " + "y " * 30
    assert "swarm" in snippet(text, "bees queen swarm", words=10)


def test_matching_uses_the_analyzer_stemming_and_stopwords() -> None:
    text = f"{FILLER} The colony was swarming in May. {FILLER}"
    assert "swarming" in snippet(text, "when do colonies swarm")
    assert "swarming" not in snippet(text, "swarm", analyzer=Analyzer(stemming=False))


def test_no_match_gives_the_start_and_a_short_passage_is_whole() -> None:
    assert snippet(PASSAGE, "zebra").startswith("Middleware filler0")
    assert snippet(PASSAGE, "zebra").endswith(ELLIPSIS)
    assert snippet("# Title\n\nShort text.", "text") == "Title Short text."
    assert snippet("", "anything") == ""


def test_a_window_must_hold_a_word() -> None:
    with pytest.raises(ValueError, match="words"):
        snippet(PASSAGE, "cors", words=0)


def test_the_search_table_shows_the_words_around_the_match() -> None:
    hit = Hit("cors.md#0", "cors.md", PASSAGE, 1.0, {"source": "cors.md", "headings": ["Middleware"]}, rank=1)
    table = format_hits([hit], width=100, query="CORS middleware")
    assert "CORSMiddleware" in table and "cross-origin" in table
    assert "filler0 " not in table  # the passage's start is not what is shown
    shown = [line for line in table.splitlines() if line.startswith("    ")]
    assert 1 <= len(shown) <= 3 and all(len(line) <= 100 for line in shown)
