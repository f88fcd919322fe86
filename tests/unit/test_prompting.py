"""Tests for ragkit.prompting: the budget is never exceeded, and what goes in, what is left out and why."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import re
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from ragkit.prompting import builder as prompting
from ragkit.errors import ConfigError, TemplateError
from ragkit.prompting.examples import Example, ExampleSet
from ragkit.prompting.builder import Prompt, PromptBuilder
from ragkit.text.tokens import approximate_token_count, count_message_tokens
from ragkit.types import Hit

WORDS = (
    "bees hive varroa mites swarm queen honey frames brood colony wax nectar pollen supers smoker "
    "oxalic acid treatment winter spring extractor comb drone worker cells capped"
).split()


def hit(i: int, text: str, score: float = 1.0, **meta: object) -> Hit:
    return Hit(f"c{i}", f"doc{i}.md", text, score, {"source": f"doc{i}.md", **meta}, rank=i)


def sentences(n: int, words_each: int = 8, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(" ".join(rng.choice(WORDS, words_each)).capitalize() + "." for _ in range(n))


class HashEmbedder:
    """A tiny stand-in for the embedding model: bag-of-words vectors, so no model is loaded here."""

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def word_counter(text: str) -> int:
    return len(text.split())


def char_counter(text: str) -> int:
    return (len(text) + 2) // 3


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(prompting).failed == 0


# -- the hard budget: property test ------------------------------------------------------------------
texts = st.one_of(
    st.builds(sentences, st.integers(1, 60), st.integers(1, 25), st.integers(0, 10**6)),
    st.text(min_size=1, max_size=400),  # anything, punctuation and all scripts included
)
messages = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": texts})


@settings(
    max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    budget=st.integers(256, 32768),
    reserve=st.integers(0, 2048),
    template=st.sampled_from(["qa", "chat", "summarize", "fewshot"]),
    passages=st.lists(texts, max_size=25),
    examples=st.lists(st.tuples(texts.filter(str.strip), texts.filter(str.strip)), max_size=8),
    history=st.lists(messages, max_size=10),
    counter=st.sampled_from([None, word_counter, char_counter]),
    overflow=st.sampled_from(["drop", "truncate"]),
    examples_as=st.sampled_from(["inline", "turns"]),
    caps=st.tuples(*[st.one_of(st.none(), st.integers(0, 4000))] * 3),
    min_passages=st.integers(0, 3),
)
def test_prompt_never_exceeds_the_budget(
    budget,
    reserve,
    template,
    passages,
    examples,
    history,
    counter,
    overflow,
    examples_as,
    caps,
    min_passages,
) -> None:
    """The budget is ``max_tokens - reserve_tokens``; the rendered text and messages stay within it."""
    builder = PromptBuilder(
        template,
        examples=ExampleSet([Example(a, b) for a, b in examples]) if examples else None,
        example_strategy="fixed",
        num_examples=len(examples),
        max_tokens=budget + reserve,
        reserve_tokens=reserve,
        token_counter=counter,
        overflow=overflow,
        examples_as=examples_as,
        max_passage_tokens=caps[0],
        max_example_tokens=caps[1],
        max_history_tokens=caps[2],
        min_passages=min_passages,
    )
    hits = [hit(i + 1, text, score=1.0 / (i + 1)) for i, text in enumerate(passages)]
    try:
        prompt = builder.build("How do I treat varroa mites in late summer?", hits, history=history)
    except ConfigError as exc:  # too little room is a clear error, never an empty context
        assert hits and "no passage fits the token budget" in str(exc)
        return
    count = counter or approximate_token_count
    assert count(prompt.text) <= budget
    assert count_message_tokens(prompt.messages, count) <= budget
    assert (
        prompt.token_count == max(count(prompt.text), count_message_tokens(prompt.messages, count)) <= budget
    )
    # what went in, plus what was left out (or cut), accounts for every passage
    ids = [h.chunk_id for h in prompt.passages]
    assert ids == sorted(ids, key=lambda c: int(c[1:]))  # rank order
    assert list(prompt.citations) == list(range(1, len(ids) + 1))
    left_out = {o.key for o in prompt.dropped if o.kind == "passage" and not o.reason.startswith("truncated")}
    assert set(ids) | left_out == {h.chunk_id for h in hits} and not set(ids) & left_out
    assert prompt.context_sufficient == bool(prompt.passages)
    event("something left out" if prompt.dropped else "everything fit")
    target(prompt.token_count / budget)  # steer towards prompts that fill the budget


def test_tight_budget_drops_and_reports_passages() -> None:
    hits = [hit(i, sentences(30, seed=i)) for i in range(1, 6)]
    prompt = PromptBuilder("qa", max_tokens=900, reserve_tokens=100).build("Why?", hits)
    assert prompt.token_count <= 800
    assert 0 < len(prompt.passages) < 5
    dropped = [o for o in prompt.dropped if o.kind == "passage"]
    assert {o.key for o in dropped} == {h.chunk_id for h in hits} - {h.chunk_id for h in prompt.passages}
    assert all("over the token budget" in o.reason for o in dropped)


def test_truncate_keeps_a_sentence_prefix_of_the_passage() -> None:
    long = hit(1, sentences(200, seed=3))
    prompt = PromptBuilder("qa", max_tokens=700, reserve_tokens=100, overflow="truncate").build(
        "Why?", [long]
    )
    assert prompt.passages == [long]
    shown = prompt.citations[1].text
    assert long.text.startswith(shown) and shown.endswith(".") and len(shown) < len(long.text)
    assert shown in prompt.text and long.text not in prompt.text
    assert prompt.dropped[0].key == "c1" and prompt.dropped[0].reason.startswith("truncated from")
    assert prompt.token_count <= 600


def test_question_and_template_alone_over_budget_is_a_clear_error() -> None:
    builder = PromptBuilder("qa", max_tokens=300, reserve_tokens=100)
    with pytest.raises(ConfigError, match=r"template 'qa' .* needs \d+ tokens, over the budget of 200"):
        builder.build(sentences(40), [])


def test_priority_min_passages_then_examples_then_history_then_passages() -> None:
    examples = ExampleSet([Example(sentences(3, seed=1), sentences(3, seed=2))])
    hits = [hit(i, sentences(6, seed=i)) for i in range(1, 8)]
    history = [{"role": "user", "content": sentences(4, seed=9)}, {"role": "assistant", "content": "Sure."}]
    builder = PromptBuilder(
        "qa", examples=examples, example_strategy="fixed", max_tokens=700, reserve_tokens=100, min_passages=2
    )
    prompt = builder.build("Why?", hits, history=history)
    assert [h.chunk_id for h in prompt.passages][:2] == ["c1", "c2"]
    assert prompt.examples == list(examples)
    assert [m["content"] for m in prompt.messages[1:3]] == [history[0]["content"], "Sure."]
    assert len(prompt.passages) < len(hits)  # the rest of the passages come last, as room allows


def test_examples_that_do_not_fit_are_reported_by_index() -> None:
    examples = ExampleSet(
        [Example("Short?", "Yes."), Example(sentences(80), sentences(80)), Example("Hi?", "Ho.")]
    )
    builder = PromptBuilder(
        "qa", examples=examples, example_strategy="fixed", max_tokens=800, reserve_tokens=0
    )
    prompt = builder.build("Q?", [])
    assert [e.input for e in prompt.examples] == ["Short?", "Hi?"]
    (omission,) = prompt.dropped
    assert (omission.kind, omission.key) == (
        "example",
        "examples[1]",
    ) and "over the token budget" in omission.reason


def test_history_newest_turns_are_kept() -> None:
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}. " + sentences(5, seed=i)}
        for i in range(12)
    ]
    prompt = PromptBuilder("chat", max_tokens=500, reserve_tokens=0, max_history_tokens=200).build(
        "Go on?", [], history
    )
    kept = [m["content"] for m in prompt.messages[1:-1]]
    assert kept and kept == [m["content"] for m in history[-len(kept) :]]
    dropped = [o.key for o in prompt.dropped if o.kind == "history"]
    assert dropped == [f"history[{i}]" for i in range(11 - len(kept), -1, -1)]  # newest first


# -- insufficient context ---------------------------------------------------------------------------
def test_no_hits_tells_the_model_the_context_is_missing() -> None:
    prompt = PromptBuilder("qa").build("What is the queen's name?", [])
    assert prompt.context_sufficient is False
    assert prompt.passages == [] and prompt.citations == {}
    assert "No relevant context was found" in prompt.text and "does not contain" in prompt.text


def test_min_score_filters_hits() -> None:
    hits = [hit(1, "Varroa mites feed on fat bodies.", score=0.8), hit(2, "Swarms in May.", score=0.2)]
    builder = PromptBuilder("qa", min_score=0.5)
    prompt = builder.build("What do mites eat?", hits)
    assert prompt.context_sufficient and [h.chunk_id for h in prompt.passages] == ["c1"]
    assert prompt.dropped[0].key == "c2" and "below min_score 0.5" in prompt.dropped[0].reason
    none_clear = builder.build("What do mites eat?", [hits[1]])
    assert none_clear.context_sufficient is False and "No relevant context" in none_clear.text


# -- messages, examples, system ------------------------------------------------------------------------
def test_text_and_messages_are_the_same_prompt() -> None:
    prompt = PromptBuilder("qa").build("How?", [hit(1, "Use an alcohol wash.", title="Pests", page=4)])
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert (
        prompt.text == f"System:\n{prompt.messages[0]['content']}\n\nUser:\n{prompt.messages[1]['content']}"
    )
    assert "[1] Pests, page 4" in prompt.text
    citation = prompt.citations[1]
    assert (citation.chunk_id, citation.source, citation.page, citation.title) == (
        "c1",
        "doc1.md",
        4,
        "Pests",
    )


def test_examples_inline_or_as_turns() -> None:
    examples = ExampleSet([Example("Q one?", "A one [1]."), Example("Q two?", "A two.")])
    inline = PromptBuilder("qa", examples=examples, example_strategy="fixed").build("Q?", [hit(1, "Ctx.")])
    assert "Question: Q one?\nAnswer: A one [1]." in inline.messages[1]["content"]
    turns = PromptBuilder("qa", examples=examples, example_strategy="fixed", examples_as="turns").build(
        "Q?", [hit(1, "Ctx.")], history=[{"role": "user", "content": "Earlier."}]
    )
    assert [(m["role"], m["content"]) for m in turns.messages[1:6]] == [
        ("user", "Q one?"),
        ("assistant", "A one [1]."),
        ("user", "Q two?"),
        ("assistant", "A two."),
        ("user", "Earlier."),
    ]
    assert "Q one?" not in turns.messages[-1]["content"]
    assert turns.examples == list(examples)


def test_similar_strategy_is_wired_through() -> None:
    examples = ExampleSet(
        [Example("How do I paint a hive?", "p"), Example("How do I treat varroa mites?", "v")],
        embedder=HashEmbedder(),
    )
    prompt = PromptBuilder("qa", examples=examples, num_examples=1).build("When to treat varroa mites?", [])
    assert [e.output for e in prompt.examples] == ["v"]


def test_fewshot_template_ignores_passages_and_says_so() -> None:
    examples = ExampleSet([Example("2+2", "4")])
    prompt = PromptBuilder("fewshot", examples=examples, example_strategy="fixed").build(
        "3+3", [hit(1, "Ctx.")]
    )
    assert prompt.passages == [] and prompt.text.endswith("Input: 3+3\nOutput:")
    assert prompt.dropped[0].reason == "template 'fewshot' does not show passages"


def test_system_text_and_templates_without_a_system_variable() -> None:
    prompt = PromptBuilder("qa", system="You are Beatrix.").build("Q?", [])
    assert prompt.messages[0]["content"].startswith("You are Beatrix.")
    assert "Cite" in prompt.messages[0]["content"] or "cite" in prompt.messages[0]["content"]
    plain = PromptBuilder("Q: {{ question }}", system="Be brief.").build("Why?", [])
    assert plain.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: Why?"},
    ]


def test_template_variables_and_extra_vars() -> None:
    builder = PromptBuilder(
        "{{ greeting }}, {{ audience }}: {{ question }}", greeting="Hello", audience="beekeepers"
    )
    assert builder.build("Why?").text == "Hello, beekeepers: Why?"
    assert builder.build("Why?", audience="inspectors").text == "Hello, inspectors: Why?"


def test_hf_tokenizer_budget_is_respected() -> None:
    from ragkit.text.embedding import DEFAULT_MODEL, load_tokenizer

    builder = PromptBuilder("qa", max_tokens=600, reserve_tokens=100, token_counter=DEFAULT_MODEL)
    prompt = builder.build("Why?", [hit(i, sentences(20, seed=i)) for i in range(1, 6)])
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    assert len(tokenizer.encode(prompt.text, add_special_tokens=False)) <= 500
    assert prompt.token_count <= 500 and prompt.passages


def test_prompt_is_frozen() -> None:
    prompt = PromptBuilder("qa").build("Q?", [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        prompt.text = "changed"  # type: ignore[misc]
    assert isinstance(prompt, Prompt) and prompt.budget.limit == 4096 - 512
    assert prompt.remaining_tokens == prompt.budget.limit - prompt.token_count


# -- clear errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"overflow": "squeeze"}, "unknown overflow 'squeeze'; valid: drop, truncate"),
        ({"example_strategy": "nearest"}, "valid: fixed, random, similar, mmr"),
        ({"examples_as": "html"}, "valid: inline, turns"),
        ({"num_examples": -1}, "num_examples must be >= 0"),
        ({"max_tokens": 100, "reserve_tokens": 200}, "max_tokens > reserve_tokens"),
        ({"question": "x"}, "reserved names: context_sufficient, examples, passages, question, system"),
        ({"max_passages_tokens": 10}, "does not use variable\\(s\\) max_passages_tokens"),
        ({"examples": [Example("a", "b")]}, "examples must be an ExampleSet"),
    ],
)
def test_bad_options_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PromptBuilder("qa", **kwargs)


def test_inline_examples_need_a_template_that_shows_them() -> None:
    with pytest.raises(ConfigError, match="does not show examples; pass examples_as='turns'"):
        PromptBuilder("Q: {{ question }}", examples=ExampleSet([Example("a", "b")]))


def test_bad_build_arguments() -> None:
    builder = PromptBuilder("qa")
    with pytest.raises(ConfigError, match=r"history\[1\] must be a \{'role', 'content'\} message"):
        builder.build("Q?", [], history=[{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}])
    with pytest.raises(ConfigError, match=r"hits\[0\] must be a ragkit Hit"):
        builder.build("Q?", [{"text": "not a hit"}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="reserved names"):
        builder.build("Q?", [], passages=[])


def test_missing_template_variable_at_build_names_it() -> None:
    builder = PromptBuilder("{{ question }} for {{ audience }}")
    with pytest.raises(
        TemplateError, match=r"'<string>'.*'audience' is undefined.*variables given: .*question"
    ):
        builder.build("Why?")


def test_tiktoken_counter_without_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    with pytest.raises(ConfigError, match="pip install tiktoken"):
        PromptBuilder("qa", token_counter="tiktoken:cl100k_base")


def test_duplicate_hits_are_dropped_once() -> None:
    prompt = PromptBuilder("qa").build("Q?", [hit(1, "A."), hit(1, "A.")])
    assert len(prompt.passages) == 1 and prompt.dropped[0].reason == "duplicate chunk_id"


# -- issue 14: budget problems are not "nothing relevant"; templates may index passages -----------
def test_a_template_indexing_passages_renders() -> None:
    hits = [hit(1, "Set the cookie with Set-Cookie.", source="a.md"), hit(2, "Cookies expire.")]
    for template, shown in (("Q={{ question }} {{ passages[0].source }}", "a.md"),
                            ("Q={{ question }} {{ passages[-1].source }}", "doc2.md")):
        prompt = PromptBuilder(template, max_tokens=1024).build("set a cookie", hits)
        assert prompt.text == f"Q=set a cookie {shown}"
        assert [h.chunk_id for h in prompt.passages] == ["c1", "c2"]


def test_too_little_room_cuts_the_top_passage_instead_of_claiming_no_context() -> None:
    hits = [hit(i, sentences(40, seed=i)) for i in range(1, 4)]
    prompt = PromptBuilder("qa", max_tokens=300).build("Why?", hits)
    assert prompt.context_sufficient and [h.chunk_id for h in prompt.passages] == ["c1"]
    assert "No relevant context" not in prompt.text
    shown = prompt.citations[1].text
    assert hits[0].text.startswith(shown) and shown.endswith(".") and len(shown) < len(hits[0].text)
    assert prompt.dropped[0].key == "c1" and prompt.dropped[0].reason.startswith("truncated from")
    assert prompt.token_count <= prompt.budget.limit


def test_no_room_for_even_one_sentence_is_a_budget_error() -> None:
    one_long_sentence = hit(1, " ".join(["word"] * 400))
    with pytest.raises(ConfigError, match=r"no passage fits the token budget: the top passage 'c1'"):
        PromptBuilder("qa", max_tokens=300).build("Why?", [one_long_sentence])
    with pytest.raises(ConfigError, match="no passage fits the token budget"):
        PromptBuilder("qa", max_passage_tokens=0).build("Why?", [hit(1, "Short.")])


def test_context_sufficient_is_relevance_not_room() -> None:
    below = PromptBuilder("qa", min_score=0.5).build("Why?", [hit(1, "Because.", score=0.1)])
    assert below.context_sufficient is False and "No relevant context" in below.text


def test_reserve_tokens_default_is_one_rule_that_fits_any_max_tokens() -> None:
    from ragkit.prompting.budget import default_reserve_tokens

    assert PromptBuilder("qa", max_tokens=4096).budget.reserve_tokens == 512
    small = PromptBuilder("Q: {{ question }}", max_tokens=256)  # raised "need max_tokens > reserve_tokens"
    assert small.budget.reserve_tokens == default_reserve_tokens(256) == 64
    assert small.build("Why?").text == "Q: Why?"
    with pytest.raises(ConfigError, match="max_tokens > reserve_tokens"):
        PromptBuilder("qa", max_tokens=256, reserve_tokens=256)  # an explicit reserve is still checked
