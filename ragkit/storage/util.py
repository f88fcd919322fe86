"""Small helpers every backend uses: batching, a bounded LRU map, and the cache key of a filter."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


def batches(items: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size`` (SQLite's and Milvus's limits on one statement)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LRU(Generic[K, V]):
    """A bounded map that forgets the least recently used entry; safe to share between threads.

    (``functools.lru_cache`` caches a function for the process; these caches belong to one object,
    such as a snapshot, and go with it.)
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"LRU maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, or ``make()`` stored under ``key`` (computed outside the lock)."""
        value = self.get(key)
        return self.put(key, make()) if value is None else value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


def filter_key(filters: Mapping[str, Any]) -> str:
    """A stable cache key for a filter dict (key order does not matter)."""
    return json.dumps(filters, sort_keys=True, default=str)
