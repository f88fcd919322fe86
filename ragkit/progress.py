"""Progress bars for long work: tqdm when asked for, silent otherwise."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], description: str, show: bool, total: int | None = None) -> Iterator[T]:
    """Iterate ``items``, drawing a tqdm bar on stderr when ``show`` is true."""
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=description, total=total, leave=False)
