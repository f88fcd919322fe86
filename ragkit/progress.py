"""Progress bars for long work: tqdm when asked for, silent otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], description: str, show: bool, total: int | None = None) -> Iterator[T]:
    """Iterate ``items``, drawing a tqdm bar on stderr when ``show`` is true."""
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=description, total=total, leave=False)


@contextmanager
def counter(total: int, description: str, show: bool, unit: str = "it") -> Iterator[Callable[[int], None]]:
    """A bar counting ``total`` units (``unit``/s and an ETA): yields ``advance(n)`` to call as work is done."""
    if not show:
        yield lambda n: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit=unit, leave=False) as bar:
        yield bar.update
