"""Feedback: people's judgements of answers, stored in the index folder and fed back into prompts and ranking.

* :class:`FeedbackStore` (``feedback.sqlite``): ratings, corrections, comments, with the completion judged;
* :func:`examples`: approved answers as few-shot examples for a :class:`~ragkit.PromptBuilder`;
* :func:`tune_from_feedback`: approved questions and the documents they cite as query associations,
  through ``ragkit tune``'s cross-validated guard.
"""

from ragkit.feedback.associations import feedback_dataset, tune_from_feedback
from ragkit.feedback.examples import examples
from ragkit.feedback.record import CompletionRecord, RecentCompletions
from ragkit.feedback.store import Feedback, FeedbackStore

__all__ = ["CompletionRecord", "Feedback", "FeedbackStore", "RecentCompletions", "examples", "feedback_dataset",
           "tune_from_feedback"]
