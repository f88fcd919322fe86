"""Token budgeting: which passages, examples and history turns fit a prompt, as pure functions.

One budget, ``max_tokens - reserve_tokens`` (the context window less room for the answer), is
shared by every part of a prompt. Without an explicit ``reserve_tokens`` the answer gets
:func:`default_reserve_tokens` (a quarter of ``max_tokens``, at most 512): the one rule the Python
API and the CLI share, so a small ``max_tokens`` alone is always a valid budget. :func:`allocate` fills what the fixed text leaves, in this
priority order (highest first):

0. the template's own text, the system text and the question: always (they are the ``room``
   the caller subtracts before calling; if they alone overflow, the prompt builder raises);
1. passages in rank order until ``min_passages`` of them are in;
2. few-shot examples, in selection order;
3. history turns, newest first; the first turn that does not fit ends the history, so what is
   kept is always the most recent stretch of the conversation;
4. the remaining passages, in rank order.

Each kind also has its own cap (``max_passage_tokens``, ``max_example_tokens``,
``max_history_tokens``) on the tokens of all its items together. A passage that does not fit
is skipped (``overflow="drop"``; a shorter, lower-ranked one may still fit) or cut after its
last whole sentence that fits (``overflow="truncate"``; skipped when not even its first
sentence fits). The top passage is always cut to fit rather than skipped while no passage is in
yet: too little room must not look like "nothing relevant" (the builder raises when even that fails). Everything left out is reported as an :class:`Omission` with the reason.

Costs are estimates (item text plus a framing overhead); the prompt builder measures the
rendered prompt and calls :func:`allocate` again with less room until the real count fits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ragkit.errors import ConfigError

__all__ = [
    "Allocation", "Budget", "Candidate", "Omission", "allocate", "default_reserve_tokens", "truncate_to_sentences",
]

PartKind = Literal["passage", "example", "history"]
Overflow = Literal["drop", "truncate"]
OVERFLOWS = ("drop", "truncate")

# A sentence ends at . ! ? … (with closing quotes/brackets) before whitespace, or at a CJK stop.
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]’”»]*(?=\s|$)|[。！？]+[」』）”’]*")
MAX_DEFAULT_RESERVE = 512  # room for the answer when nobody says; enough for a grounded paragraph


def default_reserve_tokens(max_tokens: int) -> int:
    """The answer's room when ``reserve_tokens`` is not given: a quarter of ``max_tokens``, at most 512.

    >>> default_reserve_tokens(4096), default_reserve_tokens(256)
    (512, 64)
    """
    return max(0, min(MAX_DEFAULT_RESERVE, max_tokens // 4))


@dataclass(frozen=True)
class Budget:
    """How many tokens a prompt may use, in all and per kind of part.

    >>> Budget(max_tokens=4096, reserve_tokens=512).limit
    3584
    """

    max_tokens: int = 4096
    reserve_tokens: int | None = None  # None: default_reserve_tokens(max_tokens)
    max_passage_tokens: int | None = None
    max_example_tokens: int | None = None
    max_history_tokens: int | None = None
    min_passages: int = 1

    def __post_init__(self) -> None:
        if self.reserve_tokens is None:
            object.__setattr__(self, "reserve_tokens", default_reserve_tokens(self.max_tokens))
        if self.reserve_tokens < 0 or self.max_tokens <= self.reserve_tokens:
            raise ConfigError(
                f"need max_tokens > reserve_tokens >= 0, got max_tokens={self.max_tokens}, "
                f"reserve_tokens={self.reserve_tokens}"
            )
        for name in ("max_passage_tokens", "max_example_tokens", "max_history_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must be None or >= 0, got {value}")
        if self.min_passages < 0:
            raise ConfigError(f"min_passages must be >= 0, got {self.min_passages}")

    @property
    def limit(self) -> int:
        """The tokens the prompt itself may use: ``max_tokens - reserve_tokens``."""
        return self.max_tokens - self.reserve_tokens  # type: ignore[operator]

    def cap(self, kind: PartKind) -> float:
        value = {"passage": self.max_passage_tokens, "example": self.max_example_tokens}.get(
            kind, self.max_history_tokens
        )
        return math.inf if value is None else value


@dataclass(frozen=True)
class Candidate:
    """One item that may go into a prompt: its id for reports, its text and its estimated cost."""

    key: str
    text: str
    tokens: int  # estimated cost in the prompt: the text plus its framing
    overhead: int = 0  # the framing part of ``tokens`` (marker, header, message wrapper)

    @classmethod
    def of(cls, key: str, text: str, counter: Callable[[str], int], overhead: int = 0) -> Candidate:
        return cls(key, text, counter(text) + overhead, overhead)


@dataclass(frozen=True)
class Omission:
    """Something left out of a prompt (or cut short), and why."""

    kind: PartKind
    key: str
    reason: str


@dataclass(frozen=True)
class Allocation:
    """What :func:`allocate` chose. Indices refer to the sequences passed in; history is chronological."""

    passages: tuple[int, ...] = ()
    passage_texts: tuple[str, ...] = ()
    examples: tuple[int, ...] = ()
    history: tuple[int, ...] = ()
    omitted: tuple[Omission, ...] = ()
    tokens: int = 0


@dataclass
class _Ledger:
    room: float
    budget: Budget
    used: dict[str, int] = field(default_factory=lambda: {"passage": 0, "example": 0, "history": 0})

    def space(self, kind: PartKind) -> float:
        return min(self.room, self.budget.cap(kind) - self.used[kind])

    def take(self, kind: PartKind, tokens: int) -> None:
        self.room -= tokens
        self.used[kind] += tokens

    def why_not(self, kind: PartKind, tokens: int) -> str:
        if self.budget.cap(kind) - self.used[kind] < tokens:
            return (
                f"over max_{kind}_tokens ({tokens} tokens, {self.budget.cap(kind) - self.used[kind]:g} left)"
            )
        return f"over the token budget ({tokens} tokens, {max(self.room, 0):g} left)"


def allocate(
    room: int,
    passages: Sequence[Candidate],
    examples: Sequence[Candidate],
    history: Sequence[Candidate],
    *,
    budget: Budget,
    counter: Callable[[str], int],
    overflow: Overflow = "drop",
) -> Allocation:
    """Choose what fits ``room`` tokens, in the module's priority order.

    ``passages`` are in rank order, ``examples`` in selection order, ``history`` oldest first.
    ``counter`` is only used to measure truncated passages.
    """
    if overflow not in OVERFLOWS:
        raise ConfigError(f"unknown overflow {overflow!r}; valid: {', '.join(OVERFLOWS)}")
    ledger = _Ledger(room, budget)
    chosen: dict[int, str] = {}
    omitted: list[Omission] = []
    next_passage = 0
    while next_passage < len(passages) and len(chosen) < budget.min_passages:
        _place_passage(next_passage, passages, ledger, chosen, omitted, counter, overflow)
        next_passage += 1
    kept_examples = _place_in_order(examples, "example", ledger, omitted)
    kept_history = _place_newest_first(history, ledger, omitted)
    for i in range(next_passage, len(passages)):
        _place_passage(i, passages, ledger, chosen, omitted, counter, overflow)
    order = sorted(chosen)
    return Allocation(
        passages=tuple(order),
        passage_texts=tuple(chosen[i] for i in order),
        examples=kept_examples,
        history=kept_history,
        omitted=tuple(omitted),
        tokens=sum(ledger.used.values()),
    )


def _place_passage(
    i: int,
    passages: Sequence[Candidate],
    ledger: _Ledger,
    chosen: dict[int, str],
    omitted: list[Omission],
    counter: Callable[[str], int],
    overflow: Overflow,
) -> None:
    item = passages[i]
    if item.tokens <= ledger.space("passage"):
        ledger.take("passage", item.tokens)
        chosen[i] = item.text
        return
    if overflow == "truncate" or not chosen:  # the first passage in is cut, not skipped (module docstring)
        space = ledger.space("passage") - item.overhead
        cut = truncate_to_sentences(item.text, int(max(space, 0)), counter)
        if cut:
            tokens = counter(cut) + item.overhead
            ledger.take("passage", tokens)
            chosen[i] = cut
            omitted.append(Omission("passage", item.key, f"truncated from {item.tokens} to {tokens} tokens"))
            return
    omitted.append(Omission("passage", item.key, ledger.why_not("passage", item.tokens)))


def _place_in_order(
    items: Sequence[Candidate], kind: PartKind, ledger: _Ledger, omitted: list[Omission]
) -> tuple[int, ...]:
    kept = []
    for i, item in enumerate(items):
        if item.tokens <= ledger.space(kind):
            ledger.take(kind, item.tokens)
            kept.append(i)
        else:
            omitted.append(Omission(kind, item.key, ledger.why_not(kind, item.tokens)))
    return tuple(kept)


def _place_newest_first(
    history: Sequence[Candidate], ledger: _Ledger, omitted: list[Omission]
) -> tuple[int, ...]:
    kept: list[int] = []
    stopped = False
    for i in reversed(range(len(history))):
        item = history[i]
        if stopped:
            omitted.append(Omission("history", item.key, "older than a history turn that did not fit"))
        elif item.tokens <= ledger.space("history"):
            ledger.take("history", item.tokens)
            kept.append(i)
        else:
            stopped = True
            omitted.append(Omission("history", item.key, ledger.why_not("history", item.tokens)))
    return tuple(reversed(kept))


def truncate_to_sentences(text: str, max_tokens: int, counter: Callable[[str], int]) -> str:
    """The longest run of ``text``'s leading whole sentences that ``counter`` puts at ``max_tokens`` or less.

    Returns ``""`` when not even the first sentence fits. Sentences end at ``. ! ? …`` followed by
    whitespace (or a CJK full stop); text with no such mark is one sentence.

    >>> truncate_to_sentences("Bees sting. Wasps sting more. Ants bite.", 7, lambda t: len(t.split()) * 2)
    'Bees sting.'
    """
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends or text[ends[-1] :].strip():
        ends.append(len(text))
    lo, hi, best = 0, len(ends) - 1, ""
    while lo <= hi:  # binary search on the number of sentences; only a measured fit is returned
        mid = (lo + hi) // 2
        prefix = text[: ends[mid]].strip()
        if counter(prefix) <= max_tokens:
            best, lo = prefix, mid + 1
        else:
            hi = mid - 1
    return best
