"""ragkit's own cache folder (``RAGKIT_CACHE_DIR``, else ``~/.cache/ragkit``): exported ONNX graphs.

Entries are written to a temporary file beside their final name and renamed into place, so a
crash or a second process exporting the same model never leaves a half-written graph that a
later run would load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "RAGKIT_CACHE_DIR"


def cache_dir() -> Path:
    """``$RAGKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/ragkit``, else ``~/.cache/ragkit``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ragkit"


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def memo_digest(stats: tuple[tuple[str, int, int], ...], compute: Callable[[], str]) -> str:
    """The content digest of files known by ``(path, size, mtime_ns)``, computed once per change.

    The memo is a small JSON file named by a hash of the stats; an edited or replaced file has
    another size or mtime, so it gets a fresh digest.
    """
    key = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:24]
    memo = cache_dir() / "digests" / f"{key}.json"
    try:
        return str(json.loads(memo.read_text())["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = compute()
    try:
        atomic_write(memo, lambda tmp: tmp.write_text(json.dumps({"digest": digest, "files": stats})))
    except OSError:  # a read-only home must not stop a search; the digest is just recomputed
        pass
    return digest
