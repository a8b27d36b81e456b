"""Progress bars for long steps (tqdm on stderr; silenced with DEEPZ_QUIET=1)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("DEEPZ_QUIET", "") not in ("", "0")


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar labelled ``desc``."""
    yield from tqdm(
        iterable, desc=desc, total=total, disable=quiet(), leave=False, dynamic_ncols=True
    )


def progress_bar(total: int, desc: str) -> tqdm:
    """A manually advanced bar (``bar.update(k)``); use as a context manager."""
    return tqdm(total=total, desc=desc, disable=quiet(), leave=False, dynamic_ncols=True)
