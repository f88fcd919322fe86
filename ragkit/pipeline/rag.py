"""``RAG``: retrieve, build the prompt, generate, and read back the citations, in one call.

A :class:`RAG` ties an :class:`~ragkit.index.Index`, a :class:`~ragkit.prompting.PromptBuilder`
and a generator (:mod:`ragkit.generators`: a backend or a plain callable) together::

    rag = RAG(index, PromptBuilder("qa"), OpenAICompatible("http://localhost:8000/v1", model="qwen"))
    answer = rag.answer("How do I count varroa mites?")
    print(answer.text)
    for c in answer.citations:                      # the passages the answer actually cites
        print(c.label, c.source, c.page)

    answer = rag.chat([{"role": "user", "content": "Tell me about varroa mites and American foulbrood"},
                       {"role": "assistant", "content": "..."},
                       {"role": "user", "content": "and what about the second one?"}])
    answer.query                                    # 'american foulbrood': what was searched

For a conversation the retrieval query is the last user turn, made standalone by ``condense``:
``"rule"`` (default, see :func:`condense_query`), ``"generator"`` (the generator rewrites it;
the rule is the fallback) or ``None`` (the last turn as it is). Earlier turns go to the prompt
builder as history, inside its token budget.

:func:`augment` is for apps that call their own model: it returns their messages with the
retrieved passages as a system message after the conversation's own system messages: system
messages stay first (many chat templates reject one between turns).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragkit.text.analysis import ENGLISH_STOPWORDS
from ragkit.prompting.citations import Citation
from ragkit.errors import ConfigError
from ragkit.retrieval.settings import SEARCH_MODES
from ragkit.generators.base import agenerate, as_generator, astream, generate, stream
from ragkit.prompting.builder import Prompt, PromptBuilder
from ragkit.tracing import span
from ragkit.types import Hit

__all__ = [
    "CONDENSE_MODES", "RAG", "Answer", "AsyncStreamedAnswer", "AugmentedMessages", "Retrieved",
    "StreamedAnswer", "augment", "condense_query", "normalize_messages",
]

Condense = Literal["rule", "generator"] | None
CONDENSE_MODES = ("rule", "generator", None)
Message = dict[str, str]

AUGMENT_TEMPLATE = """\
{% message "system" %}
{% if context_sufficient %}
Context for the user's latest message. Ground your reply in these numbered passages and cite the ones you \
use with their markers, e.g. [1] or [1][2]. If they do not cover what the user asks, say that the context \
does not contain this instead of guessing.

{% for p in passages %}
[{{ p.marker }}] {{ p.title or p.source or p.doc_id }}{% if p.page %}, page {{ p.page }}{% endif %}

{{ p.text }}

{% endfor %}
{% else %}
No context passages were found for the user's latest message. If it asks for facts, say that the context \
does not contain this rather than answering from memory.
{% endif %}
{% endmessage %}
{% message "user" %}{{ question }}{% endmessage %}
"""

CONDENSE_SYSTEM = (
    "You rewrite the last user message of a conversation as one standalone search query. Resolve "
    "pronouns and references (it, that, the second one, what about ...) using the earlier turns. "
    "Reply with the query only: no explanation, no quotes."
)


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A generated answer with its evidence.

    ``citations`` are the passages the answer cites, in order of first mention; ``hits`` are all
    retrieved hits; ``prompt`` is the exact prompt sent; ``query`` is what was searched.
    """

    text: str
    citations: list[Citation]
    hits: list[Hit]
    prompt: Prompt
    query: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Retrieved:
    """What :meth:`RAG.prepare` found and built before any generation."""

    query: str
    hits: list[Hit]
    prompt: Prompt

    def answer(self, text: str) -> Answer:
        """The :class:`Answer` made of ``text`` and this retrieval."""
        return Answer(text, self.prompt.cited(text), list(self.hits), self.prompt, self.query)


class AugmentedMessages(list):  # type: ignore[type-arg]
    """The messages :func:`augment` returns: a plain list, plus ``.prompt``, ``.hits`` and ``.query``.

    ``augmented.prompt.cited(reply)`` gives the citations in your model's reply.
    """

    def __init__(self, messages: Sequence[Message], retrieved: Retrieved) -> None:
        super().__init__(messages)
        self.prompt, self.hits, self.query = retrieved.prompt, retrieved.hits, retrieved.query


class _StreamState:
    """What both streamed answers keep: the pieces so far, the retrieval, the final answer."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.retrieved: Retrieved | None = None
        self.answer: Answer | None = None

    @property
    def text(self) -> str:
        """The answer so far."""
        return "".join(self._parts)


class StreamedAnswer(_StreamState, Iterator[str]):
    """The pieces of an answer as they are generated; ``.answer`` is set once they run out.

    Nothing is retrieved or generated until the first piece is asked for.

    >>> streamed = rag.stream("How do I count varroa mites?")    # doctest: +SKIP
    >>> for piece in streamed: print(piece, end="")             # doctest: +SKIP
    >>> streamed.answer.citations                                # doctest: +SKIP
    """

    def __init__(self, start: Callable[[], tuple[Retrieved, Iterator[str]]]) -> None:
        self._start = start
        self._pieces: Iterator[str] | None = None
        _StreamState.__init__(self)

    def __next__(self) -> str:
        if self.answer is not None:
            raise StopIteration
        if self._pieces is None:
            self.retrieved, self._pieces = self._start()
        try:
            piece = next(self._pieces)
        except StopIteration:
            self.answer = self.retrieved.answer(self.text)  # type: ignore[union-attr]
            raise
        self._parts.append(piece)
        return piece

    def close(self) -> None:
        """Stop early, closing the generator's stream."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()


class AsyncStreamedAnswer(_StreamState, AsyncIterator[str]):
    """Async :class:`StreamedAnswer`: ``async for piece in rag.astream(q)``, then ``.answer``."""

    def __init__(self, start: Callable[[], Awaitable[tuple[Retrieved, AsyncIterator[str]]]]) -> None:
        self._start = start
        self._pieces: AsyncIterator[str] | None = None
        _StreamState.__init__(self)

    async def __anext__(self) -> str:
        if self.answer is not None:
            raise StopAsyncIteration
        if self._pieces is None:
            self.retrieved, self._pieces = await self._start()
        try:
            piece = await self._pieces.__anext__()
        except StopAsyncIteration:
            self.answer = self.retrieved.answer(self.text)  # type: ignore[union-attr]
            raise
        self._parts.append(piece)
        return piece

    async def aclose(self) -> None:
        close = getattr(self._pieces, "aclose", None)
        if close is not None:
            await close()


# -- the pipeline -------------------------------------------------------------------------------


class RAG:
    """Retrieval-augmented generation over an index.

    ``builder`` defaults to ``PromptBuilder("qa")`` (a template name is accepted too);
    ``generator`` is a :class:`~ragkit.generators.Generator` or a callable
    ``fn(messages, **options) -> str``; without one, only :meth:`prepare`, :meth:`retrieve`
    and :meth:`augment` work. ``k``, ``mode``, ``filters`` and ``retriever_settings`` (fusion
    options, see :meth:`ragkit.Index.search`) apply to every search.

    >>> rag = RAG(index, generator=lambda messages, **o: "Burn the colony [1].")  # doctest: +SKIP
    >>> rag.answer("What do I do about American foulbrood?").citations[0].source  # doctest: +SKIP
    'diseases/afb.md'
    """

    def __init__(
        self,
        index: Any,
        builder: PromptBuilder | str | None = None,
        generator: Any = None,
        *,
        k: int = 5,
        mode: str = "hybrid",
        filters: Mapping[str, Any] | None = None,
        condense: Condense = "rule",
        retriever_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be an int >= 1, got {k!r}")
        if mode not in SEARCH_MODES:
            raise ConfigError(f"unknown search mode {mode!r}; valid: {', '.join(SEARCH_MODES)}")
        if condense not in CONDENSE_MODES:
            raise ConfigError(f"unknown condense {condense!r}; valid: 'rule', 'generator', None")
        if condense == "generator" and generator is None:
            raise ConfigError("condense='generator' needs a generator; pass generator= or use "
                              "condense='rule'")
        if builder is not None and not isinstance(builder, (PromptBuilder, str)):
            raise ConfigError(
                f"builder must be a PromptBuilder or a template name, got {type(builder).__name__}"
            )
        self.index = index
        self.builder = builder if isinstance(builder, PromptBuilder) else PromptBuilder(builder or "qa")
        self.generator = as_generator(generator) if generator is not None else None
        self.k, self.mode, self.condense = k, mode, condense
        self.filters = dict(filters) if filters else None
        self.retriever_settings = dict(retriever_settings or {})
        self._augment_builder: PromptBuilder | None = None

    def __repr__(self) -> str:
        return f"RAG({self.index!r}, k={self.k}, mode={self.mode!r}, generator={self.generator!r})"

    # -- retrieval and prompts -------------------------------------------------------------------
    def retrieve(
        self, query: str, *, k: int | None = None, mode: str | None = None,
        filters: Mapping[str, Any] | None = None, **settings: Any,
    ) -> list[Hit]:
        """Search the index with this pipeline's settings, overridden by the arguments."""
        merged = {**self.retriever_settings, **settings}
        filters = filters if filters is not None else self.filters
        with span("ragkit.retrieve", **{"ragkit.k": k or self.k, "ragkit.mode": mode or self.mode,
                                        "ragkit.filtered": bool(filters)}) as current:
            hits = self.index.search(query, k or self.k, mode=mode or self.mode, filters=filters, **merged)
            current.set_attribute("ragkit.hits", len(hits))
        return hits

    def prepare(self, question: str) -> Retrieved:
        """Retrieve for ``question`` and build its prompt, without generating."""
        return self._build(question, [], question)

    def prepare_chat(self, messages: Sequence[Mapping[str, Any]]) -> Retrieved:
        """Retrieve for the conversation's last user turn and build the prompt with the history."""
        turns = normalize_messages(messages)
        return self._build(turns[-1]["content"], turns[:-1], self.condense_query(turns))

    async def aprepare_chat(self, messages: Sequence[Mapping[str, Any]]) -> Retrieved:
        """Async :meth:`prepare_chat`; retrieval runs in a worker thread."""
        turns = normalize_messages(messages)
        query = await self.acondense_query(turns)
        return await asyncio.to_thread(self._build, turns[-1]["content"], turns[:-1], query)

    def _build(self, question: str, history: list[Message], query: str) -> Retrieved:
        hits = self.retrieve(query)
        with span("ragkit.prompt", **{"ragkit.passages": len(hits)}) as current:
            prompt = self.builder.build(question, hits, history=history or None)
            current.set_attribute("ragkit.prompt_tokens", prompt.token_count)
        return Retrieved(query, hits, prompt)

    def condense_query(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The retrieval query for a conversation, by this pipeline's ``condense`` setting."""
        turns = normalize_messages(messages)
        if self.condense == "generator" and _has_earlier_user_turn(turns):
            rewritten = _clean_rewrite(self._generate(_condense_messages(turns)))
            if rewritten:
                return rewritten
        return condense_query(turns) if self.condense else turns[-1]["content"]

    async def acondense_query(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """Async :meth:`condense_query`."""
        turns = normalize_messages(messages)
        if self.condense == "generator" and _has_earlier_user_turn(turns):
            rewritten = _clean_rewrite(await agenerate(self._require_generator(), _condense_messages(turns)))
            if rewritten:
                return rewritten
        return condense_query(turns) if self.condense else turns[-1]["content"]

    def augment(self, messages: Sequence[Mapping[str, Any]], **search: Any) -> AugmentedMessages:
        """``messages`` with the retrieved context as a system message after their own system messages.

        System messages stay first, as many chat templates require; the other turns follow in order.
        The query is condensed as in :meth:`chat`; ``search`` overrides ``k``, ``mode``,
        ``filters`` and fusion settings. Earlier turns that do not fit the builder's budget are
        left out, oldest first (see ``.prompt.dropped``).
        """
        turns = normalize_messages(messages)
        query = self.condense_query(turns)
        hits = self.retrieve(query, **search)
        prompt = self._context_builder().build(turns[-1]["content"], hits, history=turns[:-1] or None)
        context, *kept, last = prompt.messages
        system = [m for m in kept if m["role"] == "system"]
        turns = [m for m in kept if m["role"] != "system"]
        return AugmentedMessages([*system, context, *turns, last], Retrieved(query, hits, prompt))

    def _context_builder(self) -> PromptBuilder:
        """A builder for :meth:`augment`: its template, the main builder's budget and counter."""
        if self._augment_builder is None:
            b, budget = self.builder, self.builder.budget
            self._augment_builder = PromptBuilder(
                AUGMENT_TEMPLATE, max_tokens=budget.max_tokens, reserve_tokens=budget.reserve_tokens,
                token_counter=b.count, min_score=b.min_score, overflow=b.overflow,
                min_passages=budget.min_passages, max_passage_tokens=budget.max_passage_tokens,
                max_history_tokens=budget.max_history_tokens,
            )
        return self._augment_builder

    # -- generation ------------------------------------------------------------------------------
    def answer(self, question: str, **gen_options: Any) -> Answer:
        """Retrieve, prompt, generate; ``gen_options`` (temperature, max_tokens, ...) go to the generator."""
        retrieved = self.prepare(question)
        return retrieved.answer(self._generate(retrieved.prompt.messages, **gen_options))

    def chat(self, messages: Sequence[Mapping[str, Any]], **gen_options: Any) -> Answer:
        """Answer the last user turn of an OpenAI-style conversation."""
        retrieved = self.prepare_chat(messages)
        return retrieved.answer(self._generate(retrieved.prompt.messages, **gen_options))

    def stream(self, question: str, **gen_options: Any) -> StreamedAnswer:
        """Like :meth:`answer`, piece by piece; the :class:`Answer` is ``.answer`` at the end."""
        return self._stream(lambda: self.prepare(question), gen_options)

    def chat_stream(self, messages: Sequence[Mapping[str, Any]], **gen_options: Any) -> StreamedAnswer:
        """Like :meth:`chat`, piece by piece."""
        return self._stream(lambda: self.prepare_chat(messages), gen_options)

    async def aanswer(self, question: str, **gen_options: Any) -> Answer:
        """Async :meth:`answer`: retrieval in a worker thread, the generator's async API if it has one."""
        retrieved = await asyncio.to_thread(self.prepare, question)
        return await self._agenerate(retrieved, gen_options)

    async def achat(self, messages: Sequence[Mapping[str, Any]], **gen_options: Any) -> Answer:
        """Async :meth:`chat`."""
        retrieved = await self.aprepare_chat(messages)
        return await self._agenerate(retrieved, gen_options)

    def astream(self, question: str, **gen_options: Any) -> AsyncStreamedAnswer:
        """Async :meth:`stream`: ``async for piece in rag.astream(q)``."""
        return self._astream(lambda: asyncio.to_thread(self.prepare, question), gen_options)

    def achat_stream(self, messages: Sequence[Mapping[str, Any]], **gen_options: Any) -> AsyncStreamedAnswer:
        """Async :meth:`chat_stream`."""
        return self._astream(lambda: self.aprepare_chat(messages), gen_options)

    def _stream(self, prepare: Callable[[], Retrieved], options: dict[str, Any]) -> StreamedAnswer:
        generator = self._require_generator()

        def start() -> tuple[Retrieved, Iterator[str]]:
            retrieved = prepare()
            return retrieved, stream(generator, retrieved.prompt.messages, **options)

        return StreamedAnswer(start)

    def _astream(
        self, prepare: Callable[[], Awaitable[Retrieved]], options: dict[str, Any]
    ) -> AsyncStreamedAnswer:
        generator = self._require_generator()

        async def start() -> tuple[Retrieved, AsyncIterator[str]]:
            retrieved = await prepare()
            return retrieved, astream(generator, retrieved.prompt.messages, **options)

        return AsyncStreamedAnswer(start)

    def _generate(self, messages: list[Message], **options: Any) -> str:
        return generate(self._require_generator(), messages, **options)

    async def _agenerate(self, retrieved: Retrieved, options: dict[str, Any]) -> Answer:
        text = await agenerate(self._require_generator(), retrieved.prompt.messages, **options)
        return retrieved.answer(text)

    def _require_generator(self) -> Any:
        if self.generator is None:
            raise ConfigError("this RAG has no generator; pass generator= (or use prepare()/augment() "
                              "and call your own model)")
        return self.generator


def augment(
    messages: Sequence[Mapping[str, Any]], index: Any, builder: PromptBuilder | None = None, **search: Any
) -> AugmentedMessages:
    """``messages`` with passages retrieved from ``index`` as a system message after their own.

    For apps that call their own model. ``builder`` supplies the token budget and counter;
    ``search`` takes ``k``, ``mode``, ``filters`` and fusion settings.

    >>> msgs = augment([{"role": "user", "content": "When do bees swarm?"}], index)  # doctest: +SKIP
    >>> reply = my_llm(msgs); msgs.prompt.cited(reply)                              # doctest: +SKIP
    """
    return RAG(index, builder).augment(messages, **search)


# -- messages -----------------------------------------------------------------------------------


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """OpenAI-style messages as ``{"role", "content"}`` strings; the last must be the user's.

    Content-part lists keep their text parts; ``developer`` becomes ``system``; tool and
    function turns, and turns with no text, are dropped.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ConfigError(
            f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
        )
    turns: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise ConfigError(f"messages[{i}] must be a dict with 'role' and 'content', got {message!r:.80}")
        role = {"developer": "system"}.get(message["role"], message["role"])
        if role in ("tool", "function"):
            continue
        if role not in ("system", "user", "assistant"):
            raise ConfigError(
                f"messages[{i}] has unknown role {role!r}; valid: system, developer, user, assistant"
            )
        content = _text_of(message.get("content"), i)
        if content:
            turns.append({"role": role, "content": content})
    if not turns or turns[-1]["role"] != "user":
        last = turns[-1]["role"] if turns else "nothing"
        raise ConfigError(f"the last message must be a user turn with text, got {last}")
    return turns


def _text_of(content: Any, i: int) -> str:
    if content is None or isinstance(content, str):
        return (content or "").strip()
    if isinstance(content, Sequence):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
        return "\n".join(p for p in parts if isinstance(p, str)).strip()
    raise ConfigError(
        f"messages[{i}] content must be a string or a list of parts, got {type(content).__name__}"
    )


# -- condensing a follow-up into a standalone query ----------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_SPLIT_ITEMS = re.compile(r",|;|\s(?:and|or|vs\.?|versus|&)\s", re.IGNORECASE)
_REFERENCES = frozenset(
    "it its itself this that these those they them their theirs he she him her his one ones former latter "
    "previous above same".split()
)
_ORDINALS = {"first": 0, "1st": 0, "former": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3,
             "4th": 3, "fifth": 4, "5th": 4, "last": -1, "latter": -1}
_OPENERS = ("and ", "but ", "also ", "so ", "what about", "how about", "what of", "same for", "why is that")
_CHAT_WORDS = ENGLISH_STOPWORDS | _REFERENCES | _ORDINALS.keys() | frozenset(
    "tell explain describe know please thanks thank ok okay yes no also else again anything something thing "
    "things say said mean like give show us can could would should get got more much many well really".split()
)
FOLLOW_UP_MAX_WORDS = 2  # a turn with this many content words or fewer is taken as a follow-up
_EARLIER_TURNS = 2  # how many earlier user turns a follow-up borrows words from


def content_words(text: str) -> list[str]:
    """The words of ``text`` that say what it is about, lowercased, in order, each once."""
    words = [w.lower() for w in _WORD.findall(text)]
    return list(dict.fromkeys(w for w in words if w not in _CHAT_WORDS and not w.isdigit()))


def is_follow_up(text: str) -> bool:
    """Whether a user turn leans on earlier turns: few content words, a reference or an opener."""
    words = {w.lower() for w in _WORD.findall(text)}
    opens = text.strip().lower().startswith(_OPENERS)
    refers = bool(words & (_REFERENCES | _ORDINALS.keys()))
    return opens or refers or len(content_words(text)) <= FOLLOW_UP_MAX_WORDS


def condense_query(messages: Sequence[Mapping[str, Any]], *, include_assistant: bool = False) -> str:
    """A standalone retrieval query for the last user turn, by rule.

    A self-contained last turn is the query as it is. A follow-up (see :func:`is_follow_up`)
    becomes its own content words plus those of the earlier user turns; an ordinal ("the second
    one", "the latter") picks that item of an earlier "X and Y" / "X, Y, Z" list instead.
    ``include_assistant`` adds the last assistant turn's words as well.

    >>> condense_query([{"role": "user", "content": "Tell me about varroa mites and American foulbrood"},
    ...                 {"role": "assistant", "content": "Both harm colonies."},
    ...                 {"role": "user", "content": "and what about the second one?"}])
    'american foulbrood'
    """
    turns = normalize_messages(messages)
    question = turns[-1]["content"]
    earlier = [t["content"] for t in reversed(turns[:-1]) if t["role"] == "user"]
    if not earlier or not is_follow_up(question):
        return question
    own = content_words(question)
    item = _ordinal_item(question, earlier)
    if item is not None:
        return " ".join(dict.fromkeys(own + item))
    borrowed = [w for text in earlier[:_EARLIER_TURNS] for w in content_words(text)]
    if include_assistant:
        last_assistant = next((t["content"] for t in reversed(turns) if t["role"] == "assistant"), "")
        borrowed += content_words(last_assistant)
    return " ".join(dict.fromkeys(own + borrowed)) or question


def _ordinal_item(question: str, earlier: list[str]) -> list[str] | None:
    """The content words of the item an ordinal in ``question`` points at, in the latest list."""
    words = [w.lower() for w in _WORD.findall(question)]
    position = next((_ORDINALS[w] for w in words if w in _ORDINALS), None)
    if position is None:
        return None
    for text in earlier:
        items = [ws for ws in (content_words(part) for part in _SPLIT_ITEMS.split(text)) if ws]
        if len(items) >= 2 and -len(items) <= position < len(items):
            return items[position]
    return None


def _has_earlier_user_turn(turns: list[Message]) -> bool:
    return any(t["role"] == "user" for t in turns[:-1])


def _condense_messages(turns: list[Message], max_turns: int = 6, max_chars: int = 600) -> list[Message]:
    """A small prompt asking the generator for a standalone query."""
    earlier = [t for t in turns[:-1] if t["role"] != "system"]
    lines = [f"{t['role'].capitalize()}: {t['content'][:max_chars]}" for t in earlier]
    conversation = "\n".join(lines[-max_turns:])
    user = f"Conversation:\n{conversation}\n\nLast user message: {turns[-1]['content']}\n\nStandalone query:"
    return [{"role": "system", "content": CONDENSE_SYSTEM}, {"role": "user", "content": user}]


def _clean_rewrite(text: str) -> str:
    """The query line of a rewrite; empty if the generator said nothing usable."""
    line = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
    line = re.sub(r"^(standalone )?query:\s*", "", line, flags=re.IGNORECASE).strip().strip("\"'`")
    return line if 0 < len(line) <= 500 else ""

