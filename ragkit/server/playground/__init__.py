"""The web playground served by ``ragkit serve`` and ``ragkit ui``: search, prompt, chat, compare, feedback.

:func:`mount_playground` adds it to the OpenAI-compatible app: the page at ``/`` (an empty shell, see
:mod:`~ragkit.server.playground.access`), its views under ``/ui/``, ``POST /v1/feedback``, and the
capture that remembers recent answers so they can be rated (:mod:`~ragkit.server.playground.capture`).
Approved answers become the pipeline builder's few-shot examples as soon as they are stored, so the
next similar question is prompted with them (``feedback_examples=False`` turns that off).

Technology: server-rendered Jinja2 (the toolkit's own template engine, autoescaping every value) and
one small vanilla script; no framework, no build step, no CDN, so the wheel carries all of it and it
works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragkit.feedback.record import RECENT_COMPLETIONS, RecentCompletions
from ragkit.feedback.store import FeedbackStore
from ragkit.server.playground.access import ShellMiddleware
from ragkit.server.playground.capture import CompletionCapture, RecordingGenerator
from ragkit.server.playground.routes import TEMPLATES, Playground, router

__all__ = ["mount_playground"]


def mount_playground(app: Any, rag: Any, *, store: FeedbackStore | None = None, feedback_examples: bool = True,
                     remember: int = RECENT_COMPLETIONS) -> Playground:
    """Serve the playground from ``app`` (a FastAPI app answering from ``rag``); returns its state.

    Call it after the app's middleware is added (so the shell is answered outside the token check, and
    all else inside), before any request (scoped pipelines copy ``rag`` and its wrapped generator).
    ``store`` defaults to ``feedback.sqlite`` in the index folder (none for a remote index: no feedback).
    ``remember``: how many recent answers can be rated.
    """
    if store is None and "://" not in str(rag.index.path):
        store = FeedbackStore.for_index(rag.index)
    completions = RecentCompletions(remember)
    playground = Playground(rag, store, completions, feedback_examples=feedback_examples)
    if rag.generator is not None and not isinstance(rag.generator, RecordingGenerator):
        rag.generator = RecordingGenerator(rag.generator)
    app.include_router(router(playground))
    app.add_middleware(CompletionCapture, completions=completions, rag=rag)
    app.add_middleware(ShellMiddleware, shell=(Path(TEMPLATES) / "shell.html").read_bytes())
    app.state.playground = playground
    return playground
