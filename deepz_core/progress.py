"""Progress bars for long steps (tqdm on stderr; silenced with DEEPZ_QUIET=1), and listeners: a job
that wants its steps' progress elsewhere (the training run's status file, which the Train page
reads) registers one with ``reporting``; every bar then reports (description, done, total) to it,
quiet or not."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
Listener = Callable[[str, int, int], None]  # (description, done, total)
_LISTENERS: list[Listener] = []


def bar_class() -> type:
    """tqdm's notebook bar where ipywidgets can draw it, else its text bar on stderr: tqdm.auto
    imported in a Jupyter kernel without ipywidgets warns 'IProgress not found' (deepz did so at
    ``import deepz_core``, in every notebook)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def quiet() -> bool:
    return os.environ.get("DEEPZ_QUIET", "") not in ("", "0")


@contextmanager
def reporting(listener: Listener) -> Iterator[None]:
    """Within the block, every progress bar also calls ``listener(desc, done, total)``."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def _notify(desc: str, done: int, total: int) -> None:
    for listener in list(_LISTENERS):
        listener(desc, done, total)


class Bar:
    """A manually advanced bar (``update(k)``) that also notifies the listeners."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = int(total), desc, 0
        self._bar = bar_class()(
            total=total, desc=desc, disable=quiet(), leave=False, dynamic_ncols=True
        )

    def update(self, k: int = 1) -> None:
        self.done += int(k)
        self._bar.update(k)
        _notify(self.desc, self.done, self.total)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Bar:
        _notify(self.desc, 0, self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar labelled ``desc``."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Bar(total or 0, desc) as bar:
        for item in iterable:
            yield item
            bar.update(1)


def progress_bar(total: int, desc: str) -> Bar:
    """A manually advanced bar (``bar.update(k)``); use as a context manager."""
    return Bar(total, desc)
