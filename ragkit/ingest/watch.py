"""Keep an index in sync with a folder as its files change (``ragkit index FOLDER --watch``,
:meth:`ragkit.Index.watch`), with watchfiles (``ragkit[watch]``: the Rust ``notify`` watcher that
uvicorn and others reload with; inotify on Linux, FSEvents on macOS, polling where neither works).

Changes are debounced: a burst of saves (an editor writing a temp file, renaming it, touching it; a
``git checkout``) is one batch, and one batch is one :meth:`~ragkit.Index.sync`, which re-reads
only what changed. A change during a sync starts another when it ends. Each sync is crash-safe like
any other (written atomically, or not at all), so Ctrl-C or a kill at any moment leaves the index as
it was before or after a sync, never half-written.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ragkit.errors import ConfigError

__all__ = ["DEBOUNCE_MS", "watch_folder"]

logger = logging.getLogger(__name__)

DEBOUNCE_MS = 400  # the quiet time that ends a batch: an editor's save storm is over well within it
MAX_WAIT_S = 2.0  # the longest a change waits for its sync while changes keep coming
T = TypeVar("T")


def watch_folder(
    folder: str | os.PathLike[str],
    sync: Callable[[], T],
    *,
    on_sync: Callable[[T], None] | None = None,
    ignore: tuple[str | os.PathLike[str], ...] = (),
    debounce_ms: int = DEBOUNCE_MS,
    stop: threading.Event | None = None,
    first_sync: bool = True,
) -> int:
    """Call ``sync()`` once now (``first_sync``) and once after each batch of changes under ``folder``,
    passing each result to ``on_sync``, until ``stop`` is set or Ctrl-C; returns how many syncs ran.
    Changes under ``ignore`` (the index itself, if it lies inside the folder) do not count."""
    try:
        import watchfiles
    except ImportError:
        raise ConfigError("watching a folder needs ragkit[watch]: pip install 'ragkit[watch]'") from None
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"watch: {root} is not a folder")
    skip = tuple(os.path.realpath(p) for p in ignore)
    default = watchfiles.DefaultFilter()

    def relevant(change: Any, path: str) -> bool:
        real = os.path.realpath(path)
        return default(change, path) and not any(real == s or real.startswith(s + os.sep) for s in skip)

    runs = 0

    def run() -> None:
        nonlocal runs
        result = sync()
        runs += 1
        if on_sync is not None:
            on_sync(result)

    # The watcher runs in a thread and hands batches over a queue, so that quiet is timed here: the
    # watcher yields nothing for changes its filter drops (a server reading an index inside the folder
    # touches it all the time), which would otherwise hold a pending sync back.
    halt = stop or threading.Event()
    batches: queue.Queue[set[Any]] = queue.Queue()

    def pump() -> None:
        for changes in watchfiles.watch(root, watch_filter=relevant, debounce=debounce_ms, step=50,
                                        stop_event=halt, raise_interrupt=False):
            batches.put(changes)

    watcher = threading.Thread(target=pump, name="ragkit-watch", daemon=True)
    watcher.start()
    first = last = 0.0
    count = 0
    try:
        time.sleep(0.2)  # the watcher is set up first, so that no change during the first sync is missed
        if first_sync:
            run()
        while not halt.is_set():
            try:
                count += len(batches.get(timeout=0.05))
                last = time.monotonic()
                first = first or last
            except queue.Empty:
                pass
            now = time.monotonic()
            if count and (now - last >= debounce_ms / 1000 or now - first >= MAX_WAIT_S):
                logger.info("watch %s: %d changes, syncing", root, count)
                first, count = 0.0, 0
                run()
    finally:
        halt.set()
        watcher.join(5)
    return runs
