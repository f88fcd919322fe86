"""Tests for ragkit.citations: markers, citation fields, and reading citations back from answers."""

from __future__ import annotations

import doctest

import pytest

from ragkit.prompting import citations
from ragkit.prompting.citations import Citation, citations_for, extract_citations
from ragkit.prompting.builder import PromptBuilder
from ragkit.types import Hit

HITS = [
    Hit(
        "c-varroa",
        "pests.md",
        "Count mites with an alcohol wash.",
        0.9,
        {"source": "pests.md", "title": "Pests", "page": 4},
        rank=1,
    ),
    Hit(
        "c-swarm", "swarms.md", "Swarm cells hang from the bottom bars.", 0.7, {"source": "swarms.md"}, rank=2
    ),
    Hit("c-honey", "harvest.md", "Extract honey below 18.6 % water.", 0.5, {"title": "Harvest"}, rank=3),
]
MAP = citations_for(HITS)


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(citations).failed == 0


def test_markers_follow_the_order_given_and_carry_the_hit() -> None:
    assert list(MAP) == [1, 2, 3]
    first = MAP[1]
    assert (first.marker, first.chunk_id, first.doc_id) == (1, "c-varroa", "pests.md")
    assert (first.source, first.page, first.title, first.score) == ("pests.md", 4, "Pests", 0.9)
    assert first.text == HITS[0].text and first.label == "[1]"
    assert MAP[3].source is None and MAP[3].page is None


def test_shown_text_overrides_the_hit_text() -> None:
    shown = citations_for(HITS[:1], ["Count mites."])
    assert shown[1].text == "Count mites."


def test_snippet_is_short_and_cut_at_a_word() -> None:
    long = Citation(1, "c", "d", None, None, None, "word " * 100, 1.0)
    assert len(long.snippet) <= 201 and long.snippet.endswith("…")
    assert not long.snippet[:-1].endswith(" ")
    assert MAP[1].snippet == HITS[0].text


def test_marker_must_be_positive() -> None:
    with pytest.raises(ValueError, match="marker must be >= 1"):
        Citation(0, "c", "d", None, None, None, "t", 1.0)


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Use an alcohol wash [1].", [1]),
        ("Both apply [1][3].", [1, 3]),
        ("Both apply [3][1], again [1].", [3, 1]),
        ("See [1, 2].", [1, 2]),
        ("See [2; 1].", [2, 1]),
        ("See [1-3].", [1, 2, 3]),
        ("See [1–2].", [1, 2]),
        ("Spaces [ 2 , 3 ] are fine.", [2, 3]),
        ("Unknown [7] and [0] are ignored, [2] is not.", [2]),
        ("Not citations: [a], [1.5], (1), 1].", []),
        ("No citations at all.", []),
    ],
)
def test_extract_citations_forms(answer: str, expected: list[int]) -> None:
    assert [c.marker for c in extract_citations(answer, MAP)] == expected


def test_extract_from_a_built_prompt_and_cited() -> None:
    prompt = PromptBuilder("qa").build("How do I count mites?", HITS)
    answer = "Use an alcohol wash [1]; swarm cells are unrelated [2, 9]."
    used = extract_citations(answer, prompt)
    assert [c.chunk_id for c in used] == ["c-varroa", "c-swarm"]
    assert prompt.cited(answer) == used
    assert "[1]" in prompt.text and "[3]" in prompt.text
