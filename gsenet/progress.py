"""Progress bars for work that takes more than a few seconds (simulate, enhance, evaluate, ...).

tqdm on stderr, so stdout stays clean for results; silent when stderr is not a terminal (CI logs,
Ray workers, `2> file`), where a bar would only add noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_bar(total: int, desc: str, *, enabled: bool = True, unit: str = "it"):
    """A tqdm bar with `update(n)` and `close()` (also a context manager)."""
    from tqdm import tqdm

    # disable=None: tqdm's own check that stderr is a terminal.
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, dynamic_ncols=True)


def tracked(
    items: Iterable[T], desc: str, *, total: int | None = None, enabled: bool = True, unit: str = "it"
) -> Iterator[T]:
    """Iterate over `items`, showing a bar (total from len(items) when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, desc, enabled=enabled, unit=unit) as bar:
        for item in items:
            yield item
            bar.update(1)
