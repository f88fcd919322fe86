"""Feedback: people's judgements of answers, stored in the index folder and fed back into prompts and ranking.

* :class:`FeedbackStore` (``feedback.sqlite``): ratings, corrections, comments, with the completion judged;
* :func:`examples`: approved answers as few-shot examples for a :class:`~ragkit.PromptBuilder`;
* :func:`tune_from_feedback`: approved questions and the documents they cite as query associations,
  through ``ragkit tune``'s cross-validated guard;
* :class:`FeedbackRefresher`: the same, periodically in a background thread while serving
  (``ragkit serve --refresh-feedback SECONDS``).
"""

from ragkit.feedback.associations import feedback_dataset, tune_from_feedback
from ragkit.feedback.examples import examples
from ragkit.feedback.record import CompletionRecord, RecentCompletions
from ragkit.feedback.refresh import FeedbackRefresher, learn_from_feedback
from ragkit.feedback.store import Feedback, FeedbackStore

__all__ = ["CompletionRecord", "Feedback", "FeedbackRefresher", "FeedbackStore", "RecentCompletions", "examples",
           "feedback_dataset", "learn_from_feedback", "tune_from_feedback"]
