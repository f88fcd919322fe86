"""Parse a file in a separate process, under the time and memory limits of :class:`ParseLimits`.

A parser stuck in a pathological input (pypdf on a page of a million operators) cannot be
interrupted from another thread, and one that allocates without bound would take the syncing
process with it; a process can be killed, and its address space capped (``RLIMIT_AS``). Each
such file gets a fresh ``python -m ragkit.ingest.worker`` (not multiprocessing, whose spawn and
forkserver methods re-run the caller's main script, and whose fork copies its threads and model),
so nothing leaks from one file to the next. That costs a start-up (~0.2 s) per file, so only
PDFs and large files go there; see :attr:`ParseLimits.in_process_bytes`.
"""

from __future__ import annotations

import logging
import pickle
import resource
import subprocess
import sys
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.files import file_kind
from ragkit.ingest.limits import ParseLimits
from ragkit.ingest.loading import load_bytes
from ragkit.types import Document

__all__ = ["load_bounded", "load_limited", "needs_worker"]

logger = logging.getLogger(__name__)


def needs_worker(name: str, size: int, limits: ParseLimits) -> bool:
    """Whether a file of this name and size is parsed in a worker process."""
    return limits.isolated and (file_kind(name) == "pdf" or size >= limits.in_process_bytes)


def _serve() -> None:
    """The worker: read one job from stdin, cap its memory, parse, write ("ok", documents) or
    ("error", reason) to stdout."""
    data, rel, name, options, limits = pickle.load(sys.stdin.buffer)
    if limits.memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    try:
        result: tuple[str, Any] = ("ok", load_bytes(data, rel, name=name, page_seconds=limits.page_seconds,
                                                    max_chars=limits.max_chars, **options))
    except LoadError as exc:
        result = ("error", exc.reason)
    except MemoryError:
        result = ("error", f"too complex: parsing needs over {limits.memory_bytes} bytes of memory (parse_memory)")
    except Exception as exc:  # a parser bug is this file's failure, reported like any other
        result = ("error", f"{type(exc).__name__}: {exc}")
    del data
    pickle.dump(result, sys.stdout.buffer)


def load_limited(data: bytes, rel: str, name: str, limits: ParseLimits, **options: Any) -> list[Document]:
    """:func:`~ragkit.ingest.loading.load_bytes` in a worker process killed after ``limits.seconds``;
    a file over a limit is a LoadError whose reason starts "too complex:"."""
    job = pickle.dumps((data, rel, name, options, limits))
    proc = subprocess.Popen([sys.executable, "-m", "ragkit.ingest.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(job, timeout=limits.seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise LoadError(rel, f"too complex: parsing took over {limits.seconds:g} s (parse_seconds)") from None
    if proc.returncode != 0 or not out:  # killed for memory, or crashed in C code
        raise LoadError(rel, f"too complex: the parser died (exit code {proc.returncode})")
    kind, value = pickle.loads(out)  # our own child's answer
    if kind == "error":
        raise LoadError(rel, value)
    logger.debug("parsed %s in a worker process", rel)
    return value


def load_bounded(data: bytes, rel: str, name: str, limits: ParseLimits, **options: Any) -> list[Document]:
    """Parse a file within ``limits``: in a worker process where :func:`needs_worker` says so, else here."""
    if needs_worker(name, len(data), limits):
        return load_limited(data, rel, name, limits, **options)
    return load_bytes(data, rel, name=name, max_chars=limits.max_chars, **options)


if __name__ == "__main__":
    _serve()
