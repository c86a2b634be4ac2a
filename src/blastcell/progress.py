"""Progress bars for long work, drawn only on a terminal.

A bar (tqdm, on standard error) disappears when the work ends, so a stage's log keeps just its
one summary line; where standard error is not a terminal (a log file, `dvc queue logs`), nothing
is drawn at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(total: int | None, desc: str, unit: str = "image") -> tqdm:
    """A progress bar for `total` units of work, or a disabled one off a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None, dynamic_ncols=True)


def counted(items: Iterable[T], progress: tqdm) -> Iterator[T]:
    """Yield `items`, advancing `progress` by one as each is done with."""
    for item in items:
        yield item
        progress.update(1)


def track(items: Iterable[T], total: int | None, desc: str, unit: str = "image") -> Iterator[T]:
    """Yield `items`, advancing a bar of their own by one for each."""
    with bar(total, desc, unit) as progress:
        yield from counted(items, progress)
