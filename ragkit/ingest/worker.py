"""Parse a file in a separate process, under the time and memory limits of :class:`ParseLimits`.

A parser stuck in a pathological input (pypdf on a page of a million operators) cannot be
interrupted from another thread, and one that allocates without bound would take the syncing
process with it; a process can be killed, and its address space capped (``RLIMIT_AS``). Each
such file gets a fresh ``python -m ragkit.ingest.worker`` (not multiprocessing, whose spawn and
forkserver methods re-run the caller's main script, and whose fork copies its threads and model),
so nothing leaks from one file to the next. That costs a start-up (~0.2 s) per file, so only files
whose loader is ``isolated`` in the registry (PDF, Office, OCR, plug-ins) and large files go there;
see :attr:`ParseLimits.in_process_bytes`. Loaders registered in this process are named in the job, so
the worker reads each file with the same loader.
"""

from __future__ import annotations

import logging
import os
import pickle
import resource
import subprocess
import sys
from typing import Any

from ragkit.errors import LoadError
from ragkit.ingest.limits import ParseLimits
from ragkit.ingest.loading import load_bytes
from ragkit.ingest.registry import apply_overrides, loader_for, shipped_overrides
from ragkit.types import Document

__all__ = ["load_bounded", "load_limited", "needs_worker"]

logger = logging.getLogger(__name__)


def needs_worker(name: str, size: int, limits: ParseLimits) -> bool:
    """Whether a file of this name and size is parsed in a worker process: its loader is isolated and
    can be imported there, or the file is large."""
    if not limits.isolated:
        return False
    spec = loader_for(name)
    if spec is not None and spec.importable is None:
        return False  # a lambda or a __main__ function: only this process has it
    return size >= limits.in_process_bytes or (spec is not None and spec.isolated)


def _serve() -> None:
    """The worker: read one job from stdin, cap its memory, parse, write ("ok", documents) or
    ("error", reason) to stdout."""
    data, rel, name, options, limits, loaders = pickle.load(sys.stdin.buffer)
    apply_overrides(loaders)
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
    job = pickle.dumps((data, rel, name, options, limits, shipped_overrides()))
    # The parent's import path, so that a loader registered from any module it imported imports there too.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-m", "ragkit.ingest.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
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
