"""Approved answers as few-shot examples: what people said was right becomes what the model is shown.

>>> builder = PromptBuilder("qa", examples=ragkit.feedback.examples(index))   # doctest: +SKIP

Each :class:`~ragkit.prompting.examples.Example` is the question asked and the approved answer (the
correction when there is one). Its ``metadata`` says where it came from (``origin="feedback"``, the
feedback and completion ids, ``rating``, ``corrected``, ``time``), which the playground's prompt view
shows beside each chosen example, and carries what the cited documents' metadata has in common
(``source``, ``team``, ``acl``, ...), so a caller's scope admits the example where it admits the
documents the answer rests on. A thumbs-down answer without a correction is never an example.
Selection is the :class:`~ragkit.prompting.examples.ExampleSet`'s own (``similar`` by default), with
the index's embedder and analyzer, so no second model is loaded.
"""

from __future__ import annotations

from typing import Any

from ragkit.feedback.store import Feedback, FeedbackStore
from ragkit.prompting.examples import Example, ExampleSet

__all__ = ["as_example", "examples"]


def as_example(feedback: Feedback) -> Example:
    """One approved judgement as an example, its origin in ``metadata``."""
    return Example(feedback.record.question, feedback.output, {
        **feedback.record.cited_metadata, "origin": "feedback", "feedback_id": feedback.id, "completion_id": feedback.completion_id,
        "rating": feedback.rating, "corrected": bool(feedback.correction), "time": feedback.created,
        "principal": feedback.principal,
    })


def examples(index: Any, store: FeedbackStore | None = None, *, base: ExampleSet | None = None) -> ExampleSet:
    """The index's approved answers as an :class:`ExampleSet` (after the examples of ``base``, if given).

    ``store`` defaults to the feedback inside the index's folder. The newest judgement of a question
    wins, so a corrected answer replaces an earlier approval of the same question.
    """
    store = store or FeedbackStore.for_index(index)
    latest: dict[str, Feedback] = {}
    for item in store.approved():
        latest.pop(item.record.question, None)
        latest[item.record.question] = item
    own = list(base.examples) if base is not None else []
    return ExampleSet([*own, *(as_example(f) for f in latest.values())], source=f"feedback in {store.path}",
                      embedder=getattr(index, "embedder", None), analyzer=getattr(index, "analyzer", None))
