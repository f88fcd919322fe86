"""Feedback learned while serving: ``ragkit serve --refresh-feedback SECONDS``.

A :class:`FeedbackRefresher` wakes every ``every`` seconds in a background thread (never on the
server's event loop: a tune run searches the index hundreds of times). When ratings or corrections
arrived since its last run (:meth:`FeedbackStore.version` changed) it runs
:func:`~ragkit.feedback.associations.tune_from_feedback`, the same cross-validated guard as ``ragkit
tune --from-feedback``, and saves what the guard keeps through the index's writer lock like any
write. Every tick it also calls :meth:`Index.reload_learned`, so what another process saved (a
``ragkit tune`` run by hand) is searched with too, without a restart.

A run that fails (the writer lock is busy, the store cannot be read, too few approved answers) is
logged and changes nothing: search keeps the associations it had. A failed save is retried on the
next tick; a run the guard rejects is not repeated until new feedback arrives.

>>> refresher = FeedbackRefresher(index, every=300).start()   # doctest: +SKIP
>>> refresher.stop()                                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError
from ragkit.feedback.associations import saved_settings, tune_from_feedback
from ragkit.feedback.store import FeedbackStore

if TYPE_CHECKING:
    from ragkit.evaluation.tuning import TuningResult
    from ragkit.index import Index

__all__ = ["FeedbackRefresher", "learn_from_feedback"]

logger = logging.getLogger(__name__)


def learn_from_feedback(index: Index, store: FeedbackStore | None = None, **options: Any) -> TuningResult:
    """Run the guard on the feedback and save what it keeps (settings, then associations); returns the
    result. Nothing is saved when the guard rejects the associations."""
    result = tune_from_feedback(index, store, **options)
    if result.associations is not None and result.accepted:
        index.save_retrieval_settings(saved_settings(index, result))
        index.save_query_associations(result.associations)
    return result


class FeedbackRefresher:
    """Re-learns query associations from feedback every ``every`` seconds while something serves ``index``.

    ``options`` go to :func:`tune_from_feedback` (``holdout``, ``metric``, ``seed``). ``runs`` counts
    the guard runs made, ``saved`` those whose associations were saved; ``last_error`` is the last
    failure's exception (None after a run that worked).
    """

    def __init__(self, index: Index, store: FeedbackStore | None = None, *, every: float, **options: Any) -> None:
        if not (isinstance(every, (int, float)) and math.isfinite(every) and every > 0):
            raise ConfigError(f"feedback refresh interval must be a positive number of seconds, got {every!r}")
        self.index, self.every, self.options = index, float(every), options
        self.store = store or FeedbackStore.for_index(index)
        self.runs = self.saved = 0
        self.last_error: BaseException | None = None
        self._learned_from: tuple[int, float, int] | None = None  # the store's version at the last run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one run at a time (the thread's, or a caller's refresh())

    def start(self) -> FeedbackRefresher:
        """Start the background thread (a daemon: it never keeps a stopping process alive)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ragkit-feedback-refresh", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread; a run under way finishes first (up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.refresh()

    def refresh(self) -> bool:
        """One tick: reload what is stored, and re-learn if feedback changed. True when associations
        were saved. Never raises: a failure is logged and kept in ``last_error``."""
        with self._lock:
            try:
                self.index.reload_learned()
                version = self.store.version()
                if version == self._learned_from or version[0] == 0:
                    return False
                return self._learn(version)
            except Exception as exc:  # noqa: BLE001 -- any failure keeps the old associations; the server goes on
                self.last_error = exc
                logger.warning("feedback refresh failed, search keeps its associations: %s", exc)
                return False

    def _learn(self, version: tuple[int, float, int]) -> bool:
        self.runs += 1
        try:
            result = learn_from_feedback(self.index, self.store, **self.options)
        except ConfigError as exc:  # e.g. too few approved answers yet: wait for more feedback
            self._learned_from, self.last_error = version, None
            logger.info("feedback refresh: %s", exc)
            return False
        self._learned_from, self.last_error = version, None
        kept = result.associations is not None and result.accepted
        if kept:
            self.saved += 1
            logger.info("feedback refresh: %d approved answers saved as associations (%s %.4f, without %.4f)",
                        len(result.associations), result.metric, result.train_score,  # type: ignore[arg-type]
                        result.default_train_score)
        else:
            logger.info("feedback refresh: the guard kept the current associations (%s)", result.reason)
        return kept
