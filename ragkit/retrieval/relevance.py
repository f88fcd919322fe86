"""``Hit.relevance``: how likely a passage answers the query, in [0, 1], on one scale for every collection.

Ranking only needs scores to be comparable within one query; deciding that *nothing* indexed answers
a question needs a scale that means the same on every collection, with no labels. Two pieces of
evidence are on such a scale already, and each is mapped through a logistic:

- **dense**: the cosine between query and passage. Sentence-embedding models trained with a
  contrastive loss (all-MiniLM-L6-v2, ragkit's default, and its family) put it on an absolute scale.
  Measured (``benchmarks/quality.py``): the best passage of an answerable question has a median
  cosine of 0.65 on every collection tried (SciFact, the bee-keeping samples, the httpx docs, a
  Russian tutorial), while questions from the other collections reach 0.12 to 0.42. The z-score
  against the query's own background (what adaptive fusion uses) separates far worse (AUROC 0.08 to
  0.81): an off-topic query's scores are low *and* flat, so its best one still stands out.
- **lexical**: the BM25 score as a share of the query's ideal score, where query words no document
  holds count at the IDF of an unseen word (see ``storage.bm25.bm25_unseen_weight``). Without that, an
  off-topic question matching one common word is measured against that word alone and looks perfect.
  On a large collection common words match everywhere (off-topic shares reach 1.2 on SciFact), so
  this leg alone is half-convinced only at the ideal itself (share 1: every query word, rare ones
  included, as in an average-length passage holding each once); it keeps passages the dense leg
  cannot judge (a language the model does not know, broken vectors) and tips a borderline cosine.

The two are combined as independent evidence (noisy-or): a passage counts as relevant when either
leg is convinced. ``min_score="auto"`` keeps passages with relevance >= :data:`AUTO_THRESHOLD`.
The constants were chosen on SciFact train questions and the samples; see README ("Knowing when the
context does not answer") for refusal rates on every collection.
"""

from __future__ import annotations

import numpy as np

# Chosen on SciFact train (answerable) against the other collections' questions (off-topic); README.
DENSE_CENTER = 0.45  # cosine at which the dense evidence alone is 0.5
DENSE_WIDTH = 0.04  # logistic scale: 0.37 -> 0.12, 0.53 -> 0.88
LEXICAL_CENTER = 1.0  # the ideal itself: a passage holding every query word (once, at average length)
LEXICAL_WIDTH = 0.1
AUTO_THRESHOLD = 0.5  # min_score="auto" keeps passages at least this relevant

AUTO = "auto"


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # 1 / (1 + e^-x), without overflow warnings


def dense_evidence(cosine: np.ndarray) -> np.ndarray:
    """How convinced the dense leg is, from the query-passage cosine."""
    return _logistic((np.asarray(cosine, np.float64) - DENSE_CENTER) / DENSE_WIDTH)


def lexical_evidence(share: np.ndarray) -> np.ndarray:
    """How convinced the BM25 leg is, from the score's share of the query's full ideal score."""
    return _logistic((np.asarray(share, np.float64) - LEXICAL_CENTER) / LEXICAL_WIDTH)


def relevance(bm25_share: np.ndarray | None, cosine: np.ndarray | None) -> np.ndarray:
    """Per passage, the chance that it answers the query: noisy-or of the legs that were searched.

    ``bm25_share``: BM25 scores divided by the query's full ideal score (None: BM25 not searched);
    ``cosine``: dense scores (None: dense not searched). Both None is an empty answer.
    """
    parts = []
    if bm25_share is not None:
        parts.append(lexical_evidence(bm25_share))
    if cosine is not None:
        parts.append(dense_evidence(cosine))
    if not parts:
        return np.zeros(0)
    doubt = np.ones_like(parts[0])
    for p in parts:
        doubt = doubt * (1.0 - p)
    return 1.0 - doubt


def is_auto(min_score: object) -> bool:
    """Whether ``min_score`` asks for the calibrated cut (the string ``"auto"``)."""
    return isinstance(min_score, str) and min_score == AUTO
