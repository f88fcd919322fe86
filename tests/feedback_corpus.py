"""A made-up corpus where people's approved answers can help ranking, for the feedback tests.

Each topic has a *target* document that answers "who looks after the <thing> of <place>?" in other
words than the question, and two *distractors* that repeat the question's words without answering
it, so plain search ranks the target below them. Two people ask each topic's question in different
words and approve (by a correction citing it) the target: a question labelled by one lifts the
target for the other, which is what ``tune --from-feedback`` must find.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ragkit.types import Document

SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "vas", "pel", "dor", "ix", "qua", "zem", "bri", "fon", "gal", "hut", "yor", "neb", "sil", "wam"]


@dataclass(frozen=True)
class Topic:
    thing: str
    place: str
    person: str

    @property
    def target(self) -> str:
        return f"target-{self.thing}"

    def questions(self) -> tuple[str, str]:
        return f"Who tends the {self.thing} in {self.place}?", f"{self.place} {self.thing}: who tends it now?"


def place_possessive(place: str) -> str:
    return place + "'s"


def _word(rng: random.Random, parts: int = 3) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts))


def topics(n: int = 16, seed: int = 7) -> list[Topic]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        thing, place, person = _word(rng), _word(rng).capitalize(), _word(rng, 2).capitalize()
        if {thing, place, person} & seen:
            continue
        seen |= {thing, place, person}
        out.append(Topic(thing, place, person))
    return out


def documents(found: list[Topic]) -> list[Document]:
    docs = []
    for t in found:
        docs.append(Document(t.target, f"{t.person} repairs and tends it every spring; ask {t.person} about the "
                             f"{t.thing}.", {"source": f"care/{t.thing}.md", "kind": "care"}))
        docs.append(Document(f"history-{t.thing}", f"The {t.thing} of {t.place}: the {t.thing} of {t.place} was "
                             f"built long ago. Who looks after old things in {t.place}? The {t.thing} is famous.",
                             {"source": f"history/{t.thing}.md", "kind": "history"}))
        docs.append(Document(f"colour-{t.thing}", f"Which colour is the {t.thing} of {t.place}? The {place_possessive(t.place)} "
                             f"{t.thing} is painted blue, and the person who maintains a {t.thing} picks the paint.",
                             {"source": f"colour/{t.thing}.md", "kind": "colour"}))
    return docs


def record_for(index, question: str, completion_id: str, answer: str = "I do not know [1]."):  # type: ignore[no-untyped-def]
    """A completion record as the server would keep it: the question's top hits as the prompt's passages."""
    from ragkit.feedback.record import CompletionRecord

    hits = index.search(question, 5)
    passages = [{"marker": h.rank, "chunk_id": h.chunk_id, "doc_id": h.doc_id, "source": h.source, "page": None,
                 "title": None, "score": h.score} for h in hits]
    return CompletionRecord(completion_id, question, question, answer, "prompt", [{"role": "user", "content": question}],
                            passages, [dict(p) for p in passages])


def approve_targets(index, store, found: list[Topic]) -> int:  # type: ignore[no-untyped-def]
    """Every topic's two questions, each corrected to cite its target (as a person would); returns how many."""
    n = 0
    for t in found:
        for question in t.questions():
            record = record_for(index, question, f"chatcmpl-{n}")
            marker = next(p["marker"] for p in record.passages if p["doc_id"] == t.target)
            store.add(record, rating="down", correction=f"{t.person} looks after it [{marker}].")
            n += 1
    return n
