"""Tests for ragkit.examples: loading and validating example files, and the selection strategies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ragkit.text.embedding import Embedder
from ragkit.errors import ConfigError, ExampleFormatError, LoadError
from ragkit.prompting.examples import Example, ExampleSet

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "examples.jsonl"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real default model, loaded once for every test of this session that needs it."""
    return Embedder()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- loading ----------------------------------------------------------------------------------
def test_sample_file_loads() -> None:
    examples = ExampleSet.load(SAMPLE)
    assert len(examples) == 19
    assert examples[0].input.startswith("How many bees should I sample")
    assert examples[0].metadata == {"topic": "pests"}
    assert examples.source == str(SAMPLE)


def test_json_and_csv_load_the_same_examples(tmp_path: Path) -> None:
    records = [
        {"input": "What is a nuc?", "output": "A small colony.", "metadata": {"topic": "equipment"}},
        {"input": 'Why, "exactly", do bees swarm?', "output": "To reproduce,\nas a colony."},
    ]
    as_json = ExampleSet.load(write(tmp_path / "ex.json", json.dumps(records, indent=2)))
    wrapped = ExampleSet.load(write(tmp_path / "wrapped.json", json.dumps({"examples": records})))
    csv_text = (
        "input,output,metadata\n"
        'What is a nuc?,A small colony.,"{""topic"": ""equipment""}"\n'
        '"Why, ""exactly"", do bees swarm?","To reproduce,\nas a colony.",\n'
    )
    as_csv = ExampleSet.load(write(tmp_path / "ex.csv", csv_text))
    assert list(as_json) == list(wrapped) == list(as_csv)
    assert as_json[1] == Example('Why, "exactly", do bees swarm?', "To reproduce,\nas a colony.")


def test_extra_keys_and_csv_columns_become_metadata(tmp_path: Path) -> None:
    jsonl = write(tmp_path / "ex.jsonl", '{"input": "a", "output": "b", "id": 7}\n')
    assert ExampleSet.load(jsonl)[0].metadata == {"id": 7}
    csv_path = write(tmp_path / "ex.csv", "topic,input,output\nswarming,a,b\n")
    assert ExampleSet.load(csv_path)[0].metadata == {"topic": "swarming"}


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    jsonl = write(tmp_path / "ex.jsonl", '\n{"input": "a", "output": "b"}\n\n{"input": "c", "output": "d"}\n')
    assert [e.input for e in ExampleSet.load(jsonl)] == ["a", "c"]


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "bad.jsonl",
            '{"input": "a", "output": "b"}\n\n{"input": "a", "output": }\n',
            r"bad\.jsonl, line 3: not valid JSON",
        ),
        (
            "bad.jsonl",
            '{"input": "a", "output": "b"}\n{"input": "a"}\n',
            r"bad\.jsonl, line 2: 'output' missing",
        ),
        ("bad.jsonl", '{"input": "", "output": "b"}\n', r"line 1: 'input' must be a non-empty string"),
        ("bad.jsonl", '["a", "b"]\n', r"line 1: expected an object with input and output, got list"),
        (
            "bad.jsonl",
            '{"input": "a", "output": "b", "metadata": [1]}\n',
            r"line 1: 'metadata' must be an object",
        ),
        (
            "bad.json",
            '[\n  {"input": "a", "output": "b"},\n  {"input": "a",\n   "output": 3}\n]',
            r"bad\.json, line 3: 'output'",
        ),
        (
            "bad.json",
            '[\n  {"input": "a", "output": "b"},\n  {"input": "a" "output": 3}\n]',
            r"bad\.json, line 3: not valid JSON",
        ),
        ("bad.json", '{"items": []}', r"bad\.json, line 1: expected an array of examples"),
        (
            "bad.csv",
            "question,output\na,b\n",
            r"bad\.csv, line 1: missing column\(s\) input; found: question, output",
        ),
        ("bad.csv", "input,output\na,b\nc\n", r"bad\.csv, line 3: expected 2 fields, found 1"),
        (
            "bad.csv",
            "input,output,metadata\na,b,\nc,d,{oops}\n",
            r"bad\.csv, line 3: metadata is not valid JSON",
        ),
        ("bad.csv", "input,output\na,\n", r"bad\.csv, line 2: 'output' must be a non-empty string"),
    ],
)
def test_malformed_records_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ExampleFormatError, match=message) as info:
        ExampleSet.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"valid suffixes: \.jsonl, \.ndjson, \.json, \.csv"):
        ExampleSet.load(tmp_path / "ex.yaml")
    with pytest.raises(LoadError, match="missing.jsonl"):
        ExampleSet.from_jsonl(tmp_path / "missing.jsonl")


def test_examples_from_python_objects_are_validated() -> None:
    examples = ExampleSet([Example("a", "b"), {"input": "c", "output": "d"}])
    assert [e.input for e in examples] == ["a", "c"]
    with pytest.raises(ExampleFormatError, match=r"<examples>, item 2: 'output' missing"):
        ExampleSet([{"input": "a", "output": "b"}, {"input": "c"}])


# -- selection without a model --------------------------------------------------------------------
def test_fixed_is_file_order() -> None:
    examples = ExampleSet.load(SAMPLE)
    assert examples.select("anything", 3, strategy="fixed") == list(examples)[:3]
    assert examples.select("anything", 0, strategy="fixed") == []
    assert ExampleSet([]).select("anything", 3) == []


def test_random_is_seeded() -> None:
    examples = ExampleSet.load(SAMPLE)
    first = examples.select("q", 5, strategy="random", seed=1)
    assert first == examples.select("q", 5, strategy="random", seed=1)
    assert len(set(first)) == 5
    others = {tuple(e.input for e in examples.select("q", 5, strategy="random", seed=s)) for s in range(2, 8)}
    assert len(others) > 1


def test_token_cap_skips_examples_that_do_not_fit() -> None:
    examples = ExampleSet([Example("one two", "three"), Example("a " * 50, "b"), Example("four", "five six")])
    words = lambda text: len(text.split())  # noqa: E731
    picked = examples.select("q", 3, strategy="fixed", max_tokens=10, token_counter=words)
    assert [e.input for e in picked] == ["one two", "four"]


def test_examples_are_hashable_values() -> None:
    assert len({Example("a", "b", {"x": 1}), Example("a", "b", {"x": 1})}) == 1
    assert Example("a", "b", {"x": 1}) != Example("a", "b", {"x": 2})


def test_bad_weights_are_named() -> None:
    with pytest.raises(ConfigError, match=r"weights must be two non-negative numbers \(bm25, dense\)"):
        ExampleSet([], weights=(1.0, -1.0))


def test_bad_strategy_and_k() -> None:
    examples = ExampleSet.load(SAMPLE)
    with pytest.raises(ConfigError, match="valid: fixed, random, similar, mmr"):
        examples.select("q", 2, strategy="nearest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be >= 0"):
        examples.select("q", -1)


# -- similarity with the real model ------------------------------------------------------------------
# Three topics, three examples each, plus distractors that share the questions' frequent words
# ("the hive is", "bees", "hive") but are about something else (siting, painting, moving hives).
LABELLED = [
    ("varroa", "How do I count the varroa mites on my bees with an alcohol wash?"),
    ("varroa", "When is the right time to treat a colony for varroa with oxalic acid?"),
    ("varroa", "What does a high mite drop on the sticky board under the hive mean?"),
    ("swarming", "What are the signs that the bees in a hive are getting ready to swarm?"),
    ("swarming", "How do I catch a swarm of bees that has settled on a tree branch?"),
    ("swarming", "Does splitting the hive stop the colony from swarming?"),
    ("harvest", "How can I tell when the honey in the hive is ready to extract?"),
    ("harvest", "What is the best way to spin the honey out of the frames?"),
    ("harvest", "How do I clear the bees out of the honey supers before the harvest?"),
    ("distractor", "The hive is right next to the fence; is it too close to my neighbour's garden?"),
    ("distractor", "My hive is made of old wood; what paint is safe for the outside of it?"),
    ("distractor", "The hive is heavy; how do I move it to a new stand at the end of the garden?"),
    ("distractor", "The hive is on a windy roof and the bees are gentle; do I still need a veil?"),
]
QUESTIONS = [
    (
        "varroa",
        "The hive is full of bees with deformed wings and tiny red mites; how do I deal with the mites?",
    ),
    ("swarming", "The hive is crowded and the bees are building queen cells; are they about to leave?"),
    ("harvest", "The hive is full of capped honey; when can I take it off?"),
]


def labelled_set(embedder: Embedder) -> ExampleSet:
    return ExampleSet(
        [Example(text, f"An answer about {topic}.", {"topic": topic}) for topic, text in LABELLED],
        embedder=embedder,
    )


def word_overlap(a: str, b: str) -> int:
    tokenize = lambda s: set(re.findall(r"\w+", s.lower()))  # noqa: E731
    return len(tokenize(a) & tokenize(b))


@pytest.mark.slow  # the real embedding model
@pytest.mark.parametrize("topic, question", QUESTIONS)
def test_similar_picks_the_topic_not_the_shared_words(embedder: Embedder, topic: str, question: str) -> None:
    # The distractors really are lexical traps: by raw word overlap one of them is a top-2 match.
    by_overlap = sorted(LABELLED, key=lambda item: -word_overlap(question, item[1]))
    assert "distractor" in {t for t, _ in by_overlap[:2]}
    picked = labelled_set(embedder).select(question, 2, strategy="similar")
    assert [e.metadata["topic"] for e in picked] == [topic, topic]


@pytest.mark.slow  # the real embedding model
def test_similarity_scores_are_normalized(embedder: Embedder) -> None:
    scores = labelled_set(embedder).similarity(QUESTIONS[0][1])
    assert scores.shape == (len(LABELLED),)
    assert scores.min() >= 0.0 and scores.max() <= 1.0


@pytest.mark.slow  # the real embedding model
def test_mmr_trades_relevance_for_variety(embedder: Embedder) -> None:
    near_duplicates = [
        "How do I count varroa mites with an alcohol wash?",
        "How do I count varroa mites using an alcohol wash?",
        "How can I count varroa mites with an alcohol wash?",
        "Which treatments against varroa work while there is capped brood?",
        "How do I paint a beehive?",
    ]
    examples = ExampleSet([Example(text, "x") for text in near_duplicates], embedder=embedder)
    question = "How do I count and treat varroa mites?"
    similar = [e.input for e in examples.select(question, 2, strategy="similar")]
    mmr = [e.input for e in examples.select(question, 2, strategy="mmr", lambda_=0.5)]
    assert set(similar) <= set(near_duplicates[:3])  # relevance alone picks two near-copies
    assert mmr[0] == similar[0]
    assert mmr[1] not in near_duplicates[:3]  # MMR picks a different kind of example second


def test_examples_are_matched_with_the_query_side_of_an_embedder() -> None:
    import numpy as np

    class Sided:
        """Passage vectors point one way, query vectors another: only query-to-query matching works."""

        calls: list[str] = []

        def _vectors(self, texts: list[str], flip: bool) -> np.ndarray:
            out = np.array([[1.0, 0.0] if ("mite" in t) != flip else [0.0, 1.0] for t in texts], dtype=np.float32)
            return out

        def encode(self, texts: list[str]) -> np.ndarray:
            self.calls.append("passages")
            return self._vectors(texts, flip=True)

        def encode_queries(self, texts: list[str]) -> np.ndarray:
            self.calls.append("queries")
            return self._vectors(texts, flip=False)

    embedder = Sided()
    examples = ExampleSet([Example("How many mites per hundred bees?", "Count them."),
                           Example("When do swarms leave the hive?", "In spring.")],
                          embedder=embedder, weights=(0.0, 1.0))
    picked = examples.select("a mite question", k=1, strategy="similar")
    assert picked[0].input.startswith("How many mites") and set(embedder.calls) == {"queries"}
