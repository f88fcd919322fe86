"""Build prompts from a question, retrieved passages, few-shot examples and chat history.

:class:`PromptBuilder` renders a template (:mod:`ragkit.templates`) with the passages numbered
``[1]``, ``[2]``, ... (:mod:`ragkit.citations`), few-shot examples picked from an
:class:`~ragkit.examples.ExampleSet`, and the recent chat history, within one token budget
(:mod:`ragkit.budget`, whose docstring gives the priority order). The result, a :class:`Prompt`,
holds the same prompt as plain text and as chat messages, and what was left out and why.

The budget is a hard limit: the rendered prompt (text and messages, template text included) is
measured with the same token counter, and parts are dropped until it fits. Too little room is never
passed off as "no relevant context": the top passage is cut to its leading sentences, and when not
even that fits, :meth:`PromptBuilder.build` raises a :class:`~ragkit.errors.ConfigError` saying so.

Example::

    builder = PromptBuilder("qa", examples=ExampleSet.load("examples.jsonl"), max_tokens=8192)
    prompt = builder.build("How do I count varroa mites?", index.search("varroa count"))
    answer = llm(prompt.messages)
    sources = prompt.cited(answer)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragkit.prompting.budget import OVERFLOWS, Allocation, Budget, Candidate, Omission, Overflow, allocate
from ragkit.prompting.citations import Citation, citations_for, extract_citations
from ragkit.errors import ConfigError, TemplateError
from ragkit.prompting.examples import STRATEGIES, Example, ExampleSet, Strategy
from ragkit.prompting.templates import load_template, messages_to_text
from ragkit.retrieval.relevance import AUTO_THRESHOLD, is_auto
from ragkit.retrieval.settings import check_min_score
from ragkit.text.tokens import MESSAGE_OVERHEAD, count_message_tokens, resolve_token_counter
from ragkit.types import Hit

__all__ = ["EXAMPLES_AS", "Prompt", "PromptBuilder"]

ExamplesAs = Literal["inline", "turns"]
EXAMPLES_AS = ("inline", "turns")
HISTORY_ROLES = ("system", "user", "assistant")
RESERVED = ("context_sufficient", "examples", "passages", "question", "system")
_PASSAGE_FRAMING = 4  # newlines and brackets around a passage's marker line and text
_EXAMPLE_FRAMING = 6  # "Question:" / "Answer:" labels, or two chat turns' framing (added per turn below)
_MAX_ROUNDS = 40  # each round at least doubles the cut, so 40 rounds cover any budget


@dataclass(frozen=True)
class Prompt:
    """A built prompt: the same content as ``text`` and as chat ``messages``.

    ``token_count`` is the larger of the text's and the messages' counts, never over
    ``budget.limit``. ``citations`` maps each marker to its passage; ``passages`` are the hits
    shown, in marker order. ``dropped`` lists what was left out or cut short, each an
    :class:`~ragkit.budget.Omission` whose ``key`` is a passage's ``chunk_id``, ``examples[i]``
    (index in the :class:`~ragkit.examples.ExampleSet`) or ``history[i]`` (index in ``history``).
    ``context_sufficient`` is about relevance, not room: False when no hit was given or all were
    below ``min_score`` (the budget never drops every passage; it raises instead).
    """

    text: str
    messages: list[dict[str, str]]
    citations: dict[int, Citation]
    token_count: int
    dropped: list[Omission]
    passages: list[Hit]
    examples: list[Example]
    context_sufficient: bool
    budget: Budget

    def cited(self, answer: str) -> list[Citation]:
        """The citations ``answer`` refers to (see :func:`ragkit.citations.extract_citations`)."""
        return extract_citations(answer, self)

    @property
    def remaining_tokens(self) -> int:
        """Tokens left under ``budget.limit`` (the answer's ``reserve_tokens`` come on top)."""
        return self.budget.limit - self.token_count


class PromptBuilder:
    """Builds :class:`Prompt` objects from one template and one set of options.

    ``template`` is a built-in name (``qa``, ``chat``, ``summarize``, ``fewshot``), a name in
    ``template_dir``, a file path or a template string. ``min_score="auto"`` (default) drops hits
    whose calibrated ``Hit.relevance`` is below 0.5 (likely not answering the question; a hit with no
    relevance, such as one made by hand, is kept); a number drops hits whose ``Hit.score`` is below
    it; None keeps every hit. With no passage left, templates get ``context_sufficient=False`` and
    tell the model the context does not contain the answer. ``reserve_tokens`` (room for the
    answer) defaults to :func:`~ragkit.prompting.budget.default_reserve_tokens` of ``max_tokens``,
    the rule the CLI uses too. ``examples_as="turns"`` puts
    examples in as user/assistant messages instead of into the template's ``examples``.
    Remaining keyword arguments are template variables.

    >>> template = "Q: {{ question }}{% for p in passages %} [{{ p.marker }}] {{ p.text }}{% endfor %}"
    >>> prompt = PromptBuilder(template, max_tokens=1024).build("Why?", [Hit("c1", "d1", "Because.", 1.0)])
    >>> prompt.text, prompt.citations[1].chunk_id
    ('Q: Why? [1] Because.', 'c1')
    """

    def __init__(
        self,
        template: str | os.PathLike[str] = "qa",
        *,
        template_dir: str | os.PathLike[str] | None = None,
        examples: ExampleSet | None = None,
        example_strategy: Strategy = "similar",
        num_examples: int = 3,
        max_tokens: int = 4096,
        reserve_tokens: int | None = None,
        token_counter: str | Callable[[str], int] | None = None,
        min_score: float | Literal["auto"] | None = "auto",
        overflow: Overflow = "drop",
        system: str | None = None,
        examples_as: ExamplesAs = "inline",
        min_passages: int = 1,
        max_passage_tokens: int | None = None,
        max_example_tokens: int | None = None,
        max_history_tokens: int | None = None,
        seed: int | None = 0,
        **template_vars: Any,
    ) -> None:
        _check_choice("example_strategy", example_strategy, STRATEGIES)
        _check_choice("overflow", overflow, OVERFLOWS)
        _check_choice("examples_as", examples_as, EXAMPLES_AS)
        if num_examples < 0:
            raise ConfigError(f"num_examples must be >= 0, got {num_examples}")
        if examples is not None and not isinstance(examples, ExampleSet):
            raise ConfigError(f"examples must be an ExampleSet, got {type(examples).__name__}")
        _check_reserved(template_vars)
        check_min_score(min_score)
        self.template = load_template(template, template_dir=template_dir)
        self.budget = Budget(
            max_tokens,
            reserve_tokens,
            max_passage_tokens,
            max_example_tokens,
            max_history_tokens,
            min_passages,
        )
        self.count = resolve_token_counter(token_counter)
        self.examples, self.example_strategy, self.num_examples = examples, example_strategy, num_examples
        self.min_score, self.overflow, self.system = min_score, overflow, system
        self.examples_as, self.seed, self.template_vars = examples_as, seed, template_vars
        self._check_template_fits()

    def build(
        self,
        question: str,
        hits: Sequence[Hit] = (),
        history: Sequence[Mapping[str, str]] | None = None,
        **extra_vars: Any,
    ) -> Prompt:
        """Render the prompt for ``question`` with ``hits`` (best first) and OpenAI-style ``history``."""
        if not isinstance(question, str):
            raise ConfigError(f"question must be a string, got {type(question).__name__}")
        _check_reserved(extra_vars)
        variables = {**self.template_vars, **extra_vars}
        dropped: list[Omission] = []
        hits = self._eligible(hits, dropped)
        examples = self._select_examples(question)
        turns = _checked_history(history)

        def render(alloc: Allocation) -> list[dict[str, str]]:
            chosen = [hits[i] for i in alloc.passages]
            return self._render(
                question,
                chosen,
                alloc.passage_texts,
                [examples[i] for i in alloc.examples],
                [turns[i] for i in alloc.history],
                {**variables, "context_sufficient": bool(hits)},
            )

        alloc, messages, used = self._fit(hits, examples, turns, render)
        chosen = [hits[i] for i in alloc.passages]
        return Prompt(
            text=messages_to_text(messages),
            messages=messages,
            citations=citations_for(chosen, alloc.passage_texts),
            token_count=used,
            dropped=dropped + list(alloc.omitted),
            passages=chosen,
            examples=[examples[i] for i in alloc.examples],
            context_sufficient=bool(hits),
            budget=self.budget,
        )

    def measure(self, messages: Sequence[Mapping[str, str]]) -> int:
        """Tokens of a prompt: the larger of its text form's and its messages' counts."""
        return max(self.count(messages_to_text(messages)), count_message_tokens(messages, self.count))

    # -- steps of build -----------------------------------------------------------------------
    def _eligible(self, hits: Sequence[Hit], dropped: list[Omission]) -> list[Hit]:
        """Hits that may become passages, in rank order; the rest are recorded in ``dropped``."""
        ranked = sorted(_checked_hits(hits), key=lambda h: h.rank if h.rank > 0 else float("inf"))
        kept: list[Hit] = []
        seen: set[str] = set()
        for hit in ranked:
            if not self.template.uses("passages"):
                reason = f"template {self.template.name!r} does not show passages"
            elif self._too_weak(hit):
                reason = self._weak_reason(hit)
            elif hit.chunk_id in seen:
                reason = "duplicate chunk_id"
            else:
                seen.add(hit.chunk_id)
                kept.append(hit)
                continue
            dropped.append(Omission("passage", hit.chunk_id, reason))
        return kept

    def _too_weak(self, hit: Hit) -> bool:
        if is_auto(self.min_score):
            return hit.relevance is not None and hit.relevance < AUTO_THRESHOLD
        return self.min_score is not None and hit.score < self.min_score  # type: ignore[operator]

    def _weak_reason(self, hit: Hit) -> str:
        if is_auto(self.min_score):
            return (f"relevance {hit.relevance:.2f} below min_score 'auto' ({AUTO_THRESHOLD:g}): "
                    "likely does not answer the question")
        return f"score {hit.score:.4g} below min_score {self.min_score:g}"

    def _select_examples(self, question: str) -> list[Example]:
        if self.examples is None or self.num_examples == 0:
            return []
        return self.examples.select(
            question,
            self.num_examples,
            self.example_strategy,
            self.seed,
            max_tokens=self.budget.max_example_tokens,
            token_counter=self.count,
        )

    def _position(self, example: Example) -> int:
        """The index of a selected example in the builder's ExampleSet."""
        assert self.examples is not None
        return next(i for i, e in enumerate(self.examples) if e is example)

    def _fit(
        self,
        hits: list[Hit],
        examples: list[Example],
        turns: list[dict[str, str]],
        render: Callable[[Allocation], list[dict[str, str]]],
    ) -> tuple[Allocation, list[dict[str, str]], int]:
        """Allocate, render, measure; with less room each round until the rendered prompt fits."""
        limit = self.budget.limit
        minimal, fixed = self._fixed_cost(hits, render)
        if fixed > limit:
            raise ConfigError(
                f"template {self.template.name!r} with the question and system text alone needs "
                f"{fixed} tokens, over the budget of {limit} (max_tokens {self.budget.max_tokens} - "
                f"reserve_tokens {self.budget.reserve_tokens}); raise max_tokens or shorten the question"
            )
        candidates = self._candidates(hits, examples, turns)
        cut = 0
        for round_ in range(_MAX_ROUNDS):
            alloc = allocate(
                limit - fixed - cut,
                *candidates,
                budget=self.budget,
                counter=self.count,
                overflow=self.overflow,
            )
            if hits and not alloc.passages:
                break  # the room only shrinks from here
            messages = render(alloc)
            used = self.measure(messages)
            if used <= limit:
                return alloc, messages, used
            cut += (used - limit) * 2**round_
        if hits:
            self._no_room(hits, alloc, limit, fixed)
        empty = allocate(0, *candidates, budget=self.budget, counter=self.count, overflow="drop")
        return Allocation(omitted=empty.omitted), minimal, fixed

    def _fixed_cost(
        self, hits: list[Hit], render: Callable[[Allocation], list[dict[str, str]]]
    ) -> tuple[list[dict[str, str]], int]:
        """The prompt without passages, examples or history, and its tokens.

        A template that indexes ``passages`` (``passages[0].source``) cannot render without any, so
        it is measured with every passage's header and no text, less the framing each passage's
        own cost already counts.
        """
        try:
            minimal = render(Allocation())
            return minimal, self.measure(minimal)
        except TemplateError:
            if not hits:
                raise
        skeleton = render(Allocation(passages=tuple(range(len(hits))), passage_texts=("",) * len(hits)))
        framing = sum(self.count(_header(h)) + _PASSAGE_FRAMING for h in hits)
        return skeleton, max(0, self.measure(skeleton) - framing)

    def _no_room(self, hits: list[Hit], alloc: Allocation, limit: int, fixed: int) -> None:
        """Raise: relevant passages exist but not even the top one's first sentence fits."""
        why = next((o.reason for o in alloc.omitted if o.key == hits[0].chunk_id), "over the token budget")
        raise ConfigError(
            f"no passage fits the token budget: the top passage {hits[0].chunk_id!r} is {why}, even cut to "
            f"its first sentence; the budget is {limit} tokens (max_tokens {self.budget.max_tokens} - "
            f"reserve_tokens {self.budget.reserve_tokens}), of which the template, question and system text "
            f"take {fixed}; raise max_tokens (or max_passage_tokens), lower reserve_tokens, or use fewer "
            "examples or history turns"
        )

    def _candidates(
        self, hits: list[Hit], examples: list[Example], turns: list[dict[str, str]]
    ) -> tuple[list[Candidate], list[Candidate], list[Candidate]]:
        count = self.count
        passages = [
            Candidate.of(h.chunk_id, shown_text(h), count, count(_header(h)) + _PASSAGE_FRAMING) for h in hits
        ]
        framing = _EXAMPLE_FRAMING + (2 * MESSAGE_OVERHEAD if self.examples_as == "turns" else 0)
        shots = [
            Candidate(
                f"examples[{self._position(e)}]", "", count(e.input) + count(e.output) + framing, framing
            )
            for e in examples
        ]
        history = [
            Candidate.of(f"history[{i}]", m["content"], count, MESSAGE_OVERHEAD + count(m["role"]))
            for i, m in enumerate(turns)
        ]
        return passages, shots, history

    def _render(
        self,
        question: str,
        hits: list[Hit],
        texts: Sequence[str],
        examples: list[Example],
        history: list[dict[str, str]],
        variables: dict[str, Any],
    ) -> list[dict[str, str]]:
        passages = [
            _passage_var(c, h) for c, h in zip(citations_for(hits, texts).values(), hits, strict=True)
        ]
        inline = self.examples_as == "inline"
        messages = self.template.render(
            **variables,
            question=question,
            passages=passages,
            examples=[e.to_dict() for e in examples] if inline else [],
            system=self.system,
        )
        if self.system and not self.template.uses("system"):
            messages.insert(0, {"role": "system", "content": self.system})
        lead = next((i for i, m in enumerate(messages) if m["role"] != "system"), len(messages))
        shots = (
            []
            if inline
            else [
                {"role": role, "content": text}
                for e in examples
                for role, text in (("user", e.input), ("assistant", e.output))
            ]
        )
        return messages[:lead] + shots + [dict(m) for m in history] + messages[lead:]

    def _check_template_fits(self) -> None:
        if self.examples is not None and self.examples_as == "inline" and not self.template.uses("examples"):
            raise ConfigError(
                f"template {self.template.name!r} does not show examples; pass examples_as='turns' "
                "or use a template that loops over `examples`"
            )
        unused = sorted(v for v in self.template_vars if not self.template.uses(v))
        if unused:
            raise ConfigError(
                f"template {self.template.name!r} does not use variable(s) {', '.join(unused)}; "
                f"it reads: {', '.join(sorted(self.template.variables)) or 'nothing'}"
            )


def _passage_var(citation: Citation, hit: Hit) -> dict[str, Any]:
    """What a template sees of one passage."""
    return {
        "marker": citation.marker,
        "label": citation.label,
        "text": citation.text,
        "source": citation.source,
        "title": citation.title,
        "page": citation.page,
        "headings": list(hit.metadata.get("headings") or []),
        "chunk_id": hit.chunk_id,
        "doc_id": hit.doc_id,
        "score": hit.score,
        "metadata": dict(hit.metadata),
    }


def shown_text(hit: Hit) -> str:
    """A passage's text as the model sees it: a chunk that starts inside a table gets the table's header
    rows in front (``table_header``, as it was embedded), so a row is never read without its columns."""
    header = hit.metadata.get("table_header")
    if isinstance(header, str) and header and not hit.text.startswith(header):
        return header + "\n" + hit.text
    return hit.text


def _header(hit: Hit) -> str:
    """An estimate of the marker line a template puts above a passage."""
    meta = hit.metadata
    return f"[00] {meta.get('title') or ''} {meta.get('source') or hit.doc_id} page {meta.get('page') or ''}"


def _check_choice(name: str, value: Any, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def _check_reserved(variables: Mapping[str, Any]) -> None:
    clash = sorted(set(variables) & set(RESERVED))
    if clash:
        raise ConfigError(
            f"template variable(s) {', '.join(clash)} are set by the builder; "
            f"reserved names: {', '.join(RESERVED)}"
        )


def _checked_hits(hits: Sequence[Hit]) -> list[Hit]:
    hits = list(hits)
    for i, hit in enumerate(hits):
        if not isinstance(hit, Hit):
            raise ConfigError(f"hits[{i}] must be a ragkit Hit, got {type(hit).__name__}")
    return hits


def _checked_history(history: Sequence[Mapping[str, str]] | None) -> list[dict[str, str]]:
    turns = []
    for i, message in enumerate(history or []):
        if not isinstance(message, Mapping) or message.get("role") not in HISTORY_ROLES:
            raise ConfigError(
                f"history[{i}] must be a {{'role', 'content'}} message with role one of "
                f"{', '.join(HISTORY_ROLES)}, got {message!r}"
            )
        if not isinstance(message.get("content"), str):
            raise ConfigError(f"history[{i}] content must be a string, got {message.get('content')!r}")
        turns.append({"role": message["role"], "content": message["content"]})
    return turns
