"""Rebuild a Milvus index into new collections and switch readers to them (``ragkit index --rebuild``).

The Milvus counterpart of ``storage/local/swap.py``, with the same guarantees: the rebuild takes the
index's writer lock first; builds the new index into collections of the next generation
(``NAME__gN``, see ``pointer.py``), starting from the old index's embedding cache (kept only if the
model is the same); and only when the build succeeded switches the index's pointer to them, one
upserted row, then drops the old collections. Any failure (an error, ``Ctrl-C``, another writer
holding the lock) drops what was half built and leaves the old collections untouched; a SIGKILL leaves
at worst half-built collections, or old ones not yet dropped, which the next rebuild removes. Readers
(an open :class:`ragkit.Index`, a running server) read the pointer on each search and follow it; a
search that was reading a collection just dropped retries on the new ones.

A Milvus server has no writer lock (see ``backend.py``): there, as for the final unsharded sync, a
rebuild must run alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import numpy as np

from ragkit.errors import ConfigError, IndexLockedError, RagkitError, RebuildError
from ragkit.storage.milvus import pointer
from ragkit.storage.milvus.backend import MilvusBackend
from ragkit.storage.milvus.collections import BATCH, MilvusCollections, key64

logger = logging.getLogger(__name__)

T = TypeVar("T")


def rebuild(uri: str, build: Callable[[str], T], *, token: str | None = None,
            lock_timeout: float | None = 0.0) -> T:
    """Build a new index with ``build(new_uri)`` and switch the index at ``uri`` to it.

    ``build`` creates and fills an index at the URI it is given (the same file or server, another
    collection name) and closes it. On any failure the index at ``uri`` is untouched, and the error (a
    :class:`RebuildError`, or :class:`IndexLockedError` when another writer holds the index) says so.
    """
    untouched = f"the index at {uri} is untouched"
    try:
        old = MilvusBackend.from_uri(uri, token=token, create=False)
    except ConfigError:
        return build(uri)  # no index there yet: nothing to protect, the first sync creates it
    except IndexLockedError as exc:  # Milvus Lite: another process has the file open
        raise IndexLockedError(f"--rebuild: {exc} ({untouched})") from None
    with ExitStack() as stack:
        stack.callback(old.close)
        try:
            stack.enter_context(old.writer_lock(lock_timeout))
        except IndexLockedError as exc:
            raise IndexLockedError(f"--rebuild: {exc} ({untouched})") from None
        remove_leftovers(old)
        prefix = pointer.generation_prefix(old.name, pointer.generation_number(old.name, old.cols.name) + 1)
        try:
            _seed_cache(old, prefix)
            result = build(with_collection(uri, prefix))
            pointer.point_to(old.client, old.cols.types, old.name, prefix)  # the commit point
        except BaseException as exc:
            _drop(old, prefix)
            if isinstance(exc, (RagkitError, OSError)):
                raise RebuildError(f"rebuild failed, {untouched}: {exc}") from exc
            logger.warning("rebuild interrupted (%s); %s", type(exc).__name__, untouched)
            raise
        logger.info("%s: rebuilt into collections %s; dropping those of %s", uri, prefix, old.cols.name)
        try:
            _drop(old, old.cols.name)
        except Exception as exc:  # noqa: BLE001 - the rebuild is in; the next one removes what is left
            logger.warning("%s: rebuilt, but the old collections %s were not all dropped (the next rebuild "
                           "removes them): %s", uri, old.cols.name, exc)
    return result


def with_collection(uri: str, collection: str) -> str:
    """``uri`` naming another collection (``?collection=``, which ``MilvusBackend.from_uri`` reads)."""
    base, _, query = uri.partition("?")
    params = {k: v for k, v in parse_qs(query).items() if k != "collection"}
    return f"{base}?{urlencode({**params, 'collection': collection}, doseq=True)}"


def remove_leftovers(backend: MilvusBackend) -> None:
    """Drop the collections of generations other than the active one (a rebuild killed before or after
    its switch). Run under the writer lock."""
    generations = pointer.generation_collections(backend.client.list_collections(), backend.name)
    for prefix in generations:
        if prefix != backend.cols.name:
            logger.warning("%s: removing collections %s left by an interrupted rebuild", backend.name, prefix)
            _drop(backend, prefix)


def _drop(backend: MilvusBackend, prefix: str) -> None:
    for name in pointer.generation_collections(backend.client.list_collections(), backend.name).get(prefix, []):
        backend.client.drop_collection(name)
    if backend.lite_path is not None:  # the build's own writer lock (a lock per index name, see backend.py)
        backend.lite_path.with_name(f"{backend.lite_path.name}.{prefix}.writer.lock").unlink(missing_ok=True)


def _seed_cache(old: MilvusBackend, prefix: str) -> int:
    """Start the new collections with the old index's vectors (its cache and its chunks'), and the model
    they belong to: rebuilding with the same model then embeds nothing; with another, the new index's
    first config drops them (``MilvusBackend.set_config``)."""
    new = MilvusCollections(old.client, old.cols.types, prefix, old.lite_path)
    new.create_small()
    config = old.get_config()
    if not config:
        return 0
    new.set_meta({"cache_model": config.get("model")})
    n, batch = 0, []
    for hash_, vector in _old_vectors(old.cols):
        if not batch:
            new.ensure_cache(len(vector))
        batch.append({"pk": key64(hash_), "hash": hash_, "vector": np.asarray(vector, np.float32).tolist()})
        if len(batch) >= BATCH:
            n += _flush(new, batch)
    n += _flush(new, batch)
    new.flush("cache")
    logger.info("%s: reusing %d vectors of %s", prefix, n, old.cols.name)
    return n


def _old_vectors(cols: MilvusCollections) -> Iterator[tuple[str, Any]]:
    if cols.has("cache"):
        for row in cols.scan("cache", "", ["hash", "vector"]):
            yield row["hash"], row["vector"]
    if cols.has():
        for row in cols.scan("", "pk >= 0", ["embed_hash", "dense"]):
            yield row["embed_hash"], row["dense"]


def _flush(cols: MilvusCollections, batch: list[dict[str, Any]]) -> int:
    if batch:
        cols.upsert("cache", batch)
    n = len(batch)
    batch.clear()
    return n
