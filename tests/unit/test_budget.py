"""Tests for ragkit.budget (priority packing, caps, truncation) and ragkit.tokens (token counters)."""

from __future__ import annotations

import doctest
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragkit.prompting import budget as budget_module
from ragkit.text import tokens
from ragkit.prompting.budget import Budget, Candidate, allocate, truncate_to_sentences
from ragkit.errors import ConfigError, ModelNotAvailableError
from ragkit.text.tokens import approximate_token_count, count_message_tokens, resolve_token_counter


def words(text: str) -> int:
    return len(text.split())


def items(kind: str, *costs: int) -> list[Candidate]:
    return [Candidate(f"{kind}{i}", "", cost) for i, cost in enumerate(costs)]


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(budget_module).failed == 0
    assert doctest.testmod(tokens).failed == 0


# -- Budget -----------------------------------------------------------------------------------
def test_budget_limit_and_validation() -> None:
    assert Budget(1000, 200).limit == 800
    with pytest.raises(ConfigError, match="max_tokens > reserve_tokens"):
        Budget(500, 500)
    with pytest.raises(ConfigError, match="max_tokens > reserve_tokens"):
        Budget(500, -1)
    with pytest.raises(ConfigError, match="max_history_tokens must be None or >= 0"):
        Budget(max_history_tokens=-5)
    with pytest.raises(ConfigError, match="min_passages"):
        Budget(min_passages=-1)


# -- allocate: the priority order ---------------------------------------------------------------
def test_min_passages_come_before_examples() -> None:
    got = allocate(
        100, items("p", 40, 40, 40), items("e", 30), [], budget=Budget(min_passages=2), counter=words
    )
    assert got.passages == (0, 1)
    assert got.examples == ()
    assert [(o.kind, o.key) for o in got.omitted] == [("example", "e0"), ("passage", "p2")]


def test_examples_then_history_then_remaining_passages() -> None:
    got = allocate(
        100,
        items("p", 20, 20, 20),
        items("e", 25, 25),
        items("h", 10, 10, 10),
        budget=Budget(min_passages=1),
        counter=words,
    )
    # 20 (p0) + 50 (examples) + 30 (history) = 100: nothing is left for p1 and p2.
    assert got.passages == (0,) and got.examples == (0, 1) and got.history == (0, 1, 2)
    assert {o.key for o in got.omitted} == {"p1", "p2"}
    assert got.tokens == 100


def test_history_is_kept_newest_first_and_contiguous() -> None:
    got = allocate(25, [], [], items("h", 5, 5, 30, 10, 10), budget=Budget(), counter=words)
    assert got.history == (3, 4)  # h2 does not fit, so h0 and h1 go too, though they would fit
    reasons = {o.key: o.reason for o in got.omitted}
    assert "over the token budget" in reasons["h2"]
    assert reasons["h0"] == reasons["h1"] == "older than a history turn that did not fit"


def test_drop_skips_a_big_passage_and_tries_the_next() -> None:
    got = allocate(50, items("p", 30, 60, 15), [], [], budget=Budget(), counter=words)
    assert got.passages == (0, 2)
    (omission,) = got.omitted
    assert omission.key == "p1" and "60 tokens, 20 left" in omission.reason


def test_per_part_caps() -> None:
    got = allocate(
        1000,
        items("p", 30, 30, 30),
        items("e", 20, 20),
        items("h", 10, 10, 10),
        budget=Budget(max_passage_tokens=65, max_example_tokens=25, max_history_tokens=15),
        counter=words,
    )
    assert got.passages == (0, 1) and got.examples == (0,) and got.history == (2,)
    reasons = {o.key: o.reason for o in got.omitted}
    assert reasons["p2"].startswith("over max_passage_tokens")
    assert reasons["e1"].startswith("over max_example_tokens")
    assert reasons["h1"].startswith("over max_history_tokens")


def test_truncate_cuts_at_a_sentence_and_records_it() -> None:
    text = "One two three. Four five six. Seven eight nine."
    passage = Candidate.of("long", text, words, overhead=2)
    got = allocate(9, [passage], [], [], budget=Budget(), counter=words, overflow="truncate")
    assert got.passage_texts == ("One two three. Four five six.",)
    (omission,) = got.omitted
    assert omission.key == "long" and omission.reason == "truncated from 11 to 8 tokens"


def test_truncate_drops_when_not_even_one_sentence_fits() -> None:
    passage = Candidate.of("long", "One two three four five. Six.", words, overhead=2)
    got = allocate(5, [passage], [], [], budget=Budget(), counter=words, overflow="truncate")
    assert got.passages == () and "over the token budget" in got.omitted[0].reason


def test_negative_room_fits_nothing() -> None:
    got = allocate(-10, items("p", 1), items("e", 1), items("h", 1), budget=Budget(), counter=words)
    assert (got.passages, got.examples, got.history) == ((), (), ())
    assert len(got.omitted) == 3


def test_unknown_overflow_lists_valid_values() -> None:
    with pytest.raises(ConfigError, match="valid: drop, truncate"):
        allocate(10, [], [], [], budget=Budget(), counter=words, overflow="squeeze")  # type: ignore[arg-type]


# -- truncate_to_sentences ----------------------------------------------------------------------
def test_truncate_to_sentences_cases() -> None:
    text = "Bees sting. Wasps sting more! Do ants bite? Yes."
    assert truncate_to_sentences(text, 100, words) == text
    assert truncate_to_sentences(text, 5, words) == "Bees sting. Wasps sting more!"
    assert truncate_to_sentences(text, 1, words) == ""
    assert truncate_to_sentences("no sentence mark at all", 3, words) == ""
    assert truncate_to_sentences("蜜蜂。黄蜂。", 1, len) == ""
    assert truncate_to_sentences("蜜蜂。黄蜂。", 3, len) == "蜜蜂。"


@settings(max_examples=80, deadline=None)
@given(
    sentences=st.lists(st.text(alphabet="abc ", min_size=1, max_size=20), min_size=1, max_size=12),
    limit=st.integers(0, 60),
)
def test_truncation_is_a_fitting_sentence_prefix(sentences: list[str], limit: int) -> None:
    text = " ".join(s.strip() + "." for s in sentences)
    cut = truncate_to_sentences(text, limit, approximate_token_count)
    assert approximate_token_count(cut) <= limit
    assert text.startswith(cut)
    assert cut == "" or cut.endswith(".")


# -- token counters ---------------------------------------------------------------------------
def test_default_counter_is_the_documented_approximation() -> None:
    count = resolve_token_counter(None)
    assert count is approximate_token_count and resolve_token_counter("approximate") is count
    assert count("") == 0
    assert count("bee") == 1  # short word: one token
    assert count("beekeeping") == 3  # ceil(10 / 4)
    assert count("Hi, bee!") == 4  # two words, two punctuation marks
    assert count("蜜蜂") == 2  # one per CJK character


def test_callable_counter_is_used_as_is() -> None:
    assert resolve_token_counter(words) is words


def test_hf_tokenizer_by_name_works_offline() -> None:
    count = resolve_token_counter("sentence-transformers/all-MiniLM-L6-v2")
    assert count("bees make honey") == 3
    assert count("varroa " * 600) > 600  # no truncation at the model's 512-token window


def test_unknown_tokenizer_is_a_clear_error() -> None:
    with pytest.raises(
        ModelNotAvailableError, match=r"token_counter '/no/such/tokenizer'.*tiktoken:<encoding>"
    ):
        resolve_token_counter("/no/such/tokenizer")


def test_tiktoken_without_the_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import tiktoken -> ImportError
    with pytest.raises(ConfigError, match="pip install tiktoken"):
        resolve_token_counter("tiktoken:cl100k_base")
    with pytest.raises(ConfigError, match="needs an encoding name"):
        resolve_token_counter("tiktoken:")


def test_bad_counter_type_lists_what_is_accepted() -> None:
    with pytest.raises(ConfigError, match="tiktoken:<encoding>"):
        resolve_token_counter(42)  # type: ignore[arg-type]


def test_message_tokens_add_framing() -> None:
    messages = [{"role": "system", "content": "a b"}, {"role": "user", "content": "c"}]
    expected = tokens.REPLY_OVERHEAD + 2 * tokens.MESSAGE_OVERHEAD + (1 + 2) + (1 + 1)
    assert count_message_tokens(messages, words) == expected
    assert count_message_tokens([], words) == tokens.REPLY_OVERHEAD
