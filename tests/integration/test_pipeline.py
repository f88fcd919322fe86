"""Tests for ragkit.pipeline: RAG.answer/stream/aanswer/astream/chat, condensing follow-ups, augment."""

from __future__ import annotations

import asyncio

import pytest

from ragkit import Document, Index, PromptBuilder
from ragkit.errors import ConfigError, GeneratorError
from ragkit.pipeline.rag import (
    CONDENSE_SYSTEM,
    RAG,
    Answer,
    StreamedAnswer,
    augment,
    condense_query,
    is_follow_up,
    normalize_messages,
)

DOCS = [
    Document("varroa", "Varroa mites are external parasites that feed on honey bees and spread deformed wing virus. "
             "Count them with an alcohol wash or a sugar roll, and treat with oxalic acid when the colony is "
             "broodless.", {"source": "health/varroa.md", "title": "Varroa mites"}),
    Document("afb", "American foulbrood is a bacterial disease of honey bee larvae caused by the spore-forming "
             "Paenibacillus larvae. Capped brood looks sunken and perforated, and a matchstick pulled from a cell "
             "draws a ropy thread. Infected colonies are usually burned, because the spores survive for decades.",
             {"source": "health/afb.md", "title": "American foulbrood"}),
    Document("swarm", "Swarming is how a colony reproduces: the old queen leaves with about half of the workers. "
             "Give the colony room before the spring nectar flow to prevent it.",
             {"source": "seasons/swarming.md", "title": "Swarming"}),
    Document("harvest", "Harvest honey when most cells of a frame are capped with wax. Uncap the frames and spin "
             "them in a centrifugal extractor, then strain the honey into jars.",
             {"source": "seasons/harvest.md", "title": "Harvesting honey"}),
    Document("queen", "To rear queens, graft day-old worker larvae into queen cups and give them to a strong, "
             "queenless cell-builder colony.", {"source": "breeding/queens.md", "title": "Queen rearing"}),
]

AFB_QUESTION = "What should I do about American foulbrood?"
CONVERSATION = [
    {"role": "user", "content": "Tell me about varroa mites and American foulbrood"},
    {"role": "assistant", "content": "Varroa are parasitic mites [1]; foulbrood is a brood disease [2]."},
    {"role": "user", "content": "and what about the second one?"},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    ix = Index(tmp_path_factory.mktemp("pipeline") / "kb.ragkit", show_progress=False)
    ix.add(DOCS)
    yield ix
    ix.close()


class Recorder:
    """A plain callable generator that answers with fixed text and remembers what it was sent."""

    def __init__(self, reply: str | list[str] = "Burn the infected colony [1]. See also [1][9].") -> None:
        self.reply = reply
        self.calls: list[tuple[list[dict[str, str]], dict]] = []

    def __call__(self, messages, **options):
        self.calls.append((messages, options))
        return iter(self.reply) if isinstance(self.reply, list) else self.reply


# -- answer / stream / async ------------------------------------------------------------------------


def test_answer_retrieves_prompts_generates_and_parses_citations(index: Index) -> None:
    llm = Recorder()
    answer = RAG(index, generator=llm, k=3).answer(AFB_QUESTION, temperature=0)
    assert isinstance(answer, Answer)
    assert answer.text == llm.reply
    assert answer.query == AFB_QUESTION
    assert answer.hits[0].doc_id == "afb"
    sent, options = llm.calls[0]
    assert options == {"temperature": 0}
    assert sent == answer.prompt.messages  # the exact prompt is kept
    assert "Paenibacillus larvae" in sent[-1]["content"]
    # [1] is cited (twice, reported once); [9] has no passage behind it and is ignored
    assert answer.citations == [answer.prompt.citations[1]]
    assert answer.citations[0].source == "health/afb.md"


def test_stream_yields_pieces_then_sets_the_answer(index: Index) -> None:
    llm = Recorder(["Burn ", "the colony ", "[1]."])
    streamed = RAG(index, generator=llm, k=2).stream(AFB_QUESTION)
    assert isinstance(streamed, StreamedAnswer)
    assert llm.calls == []  # nothing happens before the first piece is asked for
    assert list(streamed) == ["Burn ", "the colony ", "[1]."]
    assert streamed.answer is not None
    assert streamed.answer.text == "Burn the colony [1]."
    assert [c.doc_id for c in streamed.answer.citations] == ["afb"]


def test_aanswer_and_astream_with_a_sync_callable(index: Index) -> None:
    rag = RAG(index, generator=Recorder(["It is ", "a brood disease [1]."]), k=2)

    async def run():
        answer = await rag.aanswer(AFB_QUESTION)
        streamed = rag.astream(AFB_QUESTION)
        pieces = [piece async for piece in streamed]
        return answer, pieces, streamed.answer

    answer, pieces, streamed_answer = asyncio.run(run())
    assert answer.text == "It is a brood disease [1]."
    assert pieces == ["It is ", "a brood disease [1]."]
    assert streamed_answer.text == answer.text
    assert [c.doc_id for c in streamed_answer.citations] == ["afb"]


def test_async_callable_generator_is_awaited_natively(index: Index) -> None:
    seen = []

    async def llm(messages, **options):
        seen.append(asyncio.current_task() is not None)
        return "Use an alcohol wash [1]."

    answer = asyncio.run(RAG(index, generator=llm, k=2).aanswer("How do I count varroa mites?"))
    assert seen == [True]
    assert answer.citations[0].doc_id == "varroa"


def test_generator_errors_propagate(index: Index) -> None:
    def broken(messages, **options):
        raise GeneratorError("upstream down")

    with pytest.raises(GeneratorError, match="upstream down"):
        RAG(index, generator=broken).answer(AFB_QUESTION)


def test_options_are_checked(index: Index) -> None:
    with pytest.raises(ConfigError, match="hybrid, bm25, dense"):
        RAG(index, mode="semantic")
    with pytest.raises(ConfigError, match="k must be"):
        RAG(index, k=0)
    with pytest.raises(ConfigError, match="condense"):
        RAG(index, condense="llm")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a generator"):
        RAG(index, condense="generator")
    with pytest.raises(ConfigError, match="no generator"):
        RAG(index).answer(AFB_QUESTION)


def test_filters_and_prepare_without_a_generator(index: Index) -> None:
    rag = RAG(index, PromptBuilder("qa", min_score=None), k=5, filters={"source": {"glob": "seasons/*"}})  # all hits
    retrieved = rag.prepare("honey bees")
    assert {h.doc_id for h in retrieved.hits} == {"swarm", "harvest"}
    assert set(retrieved.prompt.citations) == {1, 2}


# -- conversations --------------------------------------------------------------------------------


def test_chat_follow_up_retrieves_the_earlier_topic(index: Index) -> None:
    llm = Recorder("It is caused by Paenibacillus larvae [1].")
    answer = RAG(index, generator=llm, k=2).chat(CONVERSATION)
    assert answer.query == "american foulbrood"
    assert answer.hits[0].doc_id == "afb"
    assert "foulbrood" in answer.hits[0].text
    sent = llm.calls[0][0]
    # the history went into the prompt, the question last
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == CONVERSATION[0]["content"]
    assert "and what about the second one?" in sent[-1]["content"]
    assert answer.citations[0].doc_id == "afb"


def test_chat_generator_condense_uses_the_rewrite(index: Index) -> None:
    def llm(messages, **options):
        if messages[0]["content"] == CONDENSE_SYSTEM:
            assert "varroa mites and American foulbrood" in messages[-1]["content"]
            return 'Query: "American foulbrood treatment"\n'
        return "Burn it [1]."

    answer = RAG(index, generator=llm, k=2, condense="generator").chat(CONVERSATION)
    assert answer.query == "American foulbrood treatment"
    assert answer.hits[0].doc_id == "afb"


def test_chat_without_condense_searches_the_last_turn(index: Index) -> None:
    rag = RAG(index, generator=Recorder(), condense=None)
    assert rag.condense_query(CONVERSATION) == "and what about the second one?"


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        (["Tell me about varroa mites and American foulbrood", "...", "what about the first one?"], "varroa mites"),
        (["Compare swarming, queen rearing and harvesting", "...", "Tell me more about the latter"], "harvesting"),
        (["How do I treat varroa mites?", "...", "When should I do it?"], "treat varroa mites"),
        (["How do I treat varroa mites?", "...", "What about nosema?"], "nosema treat varroa mites"),
        (["How do I treat varroa mites?", "...", "How do queens mate with drones in flight?"],
         "How do queens mate with drones in flight?"),
        (["When do bees swarm?"], "When do bees swarm?"),
    ],
)
def test_condense_query_rule(turns: list[str], expected: str) -> None:
    messages = [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns)]
    assert condense_query(messages) == expected


def test_condense_query_can_borrow_from_the_assistant() -> None:
    messages = [{"role": "user", "content": "What harms brood?"},
                {"role": "assistant", "content": "Chalkbrood and sacbrood."},
                {"role": "user", "content": "Is it treatable?"}]
    assert condense_query(messages) == "treatable harms brood"
    assert condense_query(messages, include_assistant=True) == "treatable harms brood chalkbrood sacbrood"
    assert is_follow_up("and that?") and not is_follow_up("How do queens mate with drones in flight?")


def test_normalize_messages() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "42"},
        {"role": "user", "content": " When do bees swarm? "},
    ]
    assert normalize_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "When do bees swarm?"},
    ]
    with pytest.raises(ConfigError, match="last message must be a user turn"):
        normalize_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    with pytest.raises(ConfigError, match="unknown role"):
        normalize_messages([{"role": "robot", "content": "Hi"}])
    with pytest.raises(ConfigError, match="list of"):
        normalize_messages("Hi")  # type: ignore[arg-type]


# -- augment --------------------------------------------------------------------------------------


def test_augment_injects_context_after_the_system_messages(index: Index) -> None:
    messages = [{"role": "system", "content": "You are a beekeeping assistant."}, *CONVERSATION]
    augmented = augment(messages, index, k=2)
    assert [m["role"] for m in augmented] == ["system", "system", "user", "assistant", "user"]
    assert augmented[0] == messages[0]
    assert augmented[2:] == CONVERSATION
    context = augmented[1]["content"]
    assert "[1] American foulbrood" in context and "Paenibacillus larvae" in context
    assert augmented.query == "american foulbrood"
    assert [c.doc_id for c in augmented.prompt.cited("Burn it [1].")] == ["afb"]
    assert messages[-1] == CONVERSATION[-1]  # the caller's list is not changed


def test_augment_respects_the_builders_budget(index: Index) -> None:
    from ragkit.prompting.builder import PromptBuilder

    long_history = [{"role": ("user", "assistant")[i % 2], "content": "bees " * 200} for i in range(6)]
    messages = [*long_history, {"role": "user", "content": AFB_QUESTION}]
    rag = RAG(index, PromptBuilder("qa", max_tokens=700, reserve_tokens=100))
    augmented = rag.augment(messages, k=1)
    assert len(augmented) < len(messages) + 1  # some old turns were left out
    assert augmented[-1]["content"] == AFB_QUESTION
    assert any(o.kind == "history" for o in augmented.prompt.dropped)
    assert augmented.prompt.token_count <= 600
