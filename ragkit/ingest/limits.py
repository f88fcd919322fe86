"""The cost one file may have when a sync parses it: characters, seconds and memory.

A file's size says little about what it costs: 31 KB of compressed PDF operators took pypdf 46 s
of CPU to extract, and an 8 MB text of one-character tokens once took gigabytes to chunk. So every
file is bounded on its own: :class:`ParseLimits` holds the limits, :mod:`ragkit.ingest.worker`
enforces the time and memory ones by parsing in a separate process, and a file over a limit is a
:class:`~ragkit.errors.LoadError` whose reason starts ``"too complex:"`` (or ``"text too long:"``),
so the sync reports it and goes on.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ragkit.errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "ParseLimits", "TimeLimitExceeded", "time_limit"]


@dataclass(frozen=True)
class ParseLimits:
    """Limits on parsing one file.

    ``max_chars``: decoded (or extracted) characters per file; ``seconds``: wall-clock time to parse
    one file; ``page_seconds``: time to read one PDF page (text layer or OCR) or image; ``memory_bytes``:
    address space of the parsing process (and of the OCR program it runs); ``in_process_bytes``: files
    smaller than this whose loader is not ``isolated`` in the registry (:mod:`ragkit.ingest.registry`:
    plain text, Markdown, HTML, JSON, CSV) are parsed in the syncing process (they parse in linear
    time, and a worker process per small file would cost more than the parse); PDF, Office, OCR and
    plug-in loaders always parse in a worker. ``None`` disables a time or memory limit.
    """

    max_chars: int = 10_000_000
    seconds: float | None = 60.0
    page_seconds: float | None = 15.0
    memory_bytes: int | None = 2_000_000_000
    in_process_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("max_chars", "in_process_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("seconds", "page_seconds", "memory_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ConfigError(f"{name} must be a positive number or None, got {value!r}")

    @property
    def isolated(self) -> bool:
        """Whether any limit needs a worker process to be enforced."""
        return self.seconds is not None or self.memory_bytes is not None


DEFAULT_LIMITS = ParseLimits()


class TimeLimitExceeded(BaseException):
    """Raised inside a :func:`time_limit` block that ran out of time; a BaseException, so that the
    parsers' own ``except Exception`` (pypdf has many) cannot swallow it."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` in the block after ``seconds`` (by SIGALRM, so only in the main
    thread of a process; elsewhere, or with ``None``, the block runs unbounded and the worker's
    per-file limit still applies)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise TimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
