"""The public Python API (deepz_core/__init__.py): every public name documented, every public
function and method with an example in its docstring, and every example runs (doctest)."""

from __future__ import annotations

import doctest
import inspect
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

import deepz_core as dz

# Public functions/methods that need no ``>>>`` example, each with why. Empty: every one has one.
NO_EXAMPLE_NEEDED: tuple[str, ...] = ()


def public_routines() -> Iterator[tuple[str, Any]]:
    """(qualified name, function) of each function in ``__all__`` and each public method of the
    classes in it, inherited ones included when deepz defines them (``Config.from_dict``...);
    not dunders (the dataclass-made ones), properties, enum members or Python's own methods
    (an exception's ``with_traceback``, an IntFlag's ``bit_length``)."""
    for name in dz.__all__:
        obj = getattr(dz, name)
        if not inspect.isclass(obj):
            if callable(obj):
                yield name, obj
            continue
        for attr in sorted(dir(obj)):
            raw = inspect.getattr_static(obj, attr)
            func = raw.__func__ if isinstance(raw, classmethod | staticmethod) else raw
            if attr.startswith("_") or not inspect.isfunction(func):
                continue
            if func.__module__.startswith("deepz_core"):
                yield f"{name}.{attr}", func


def docstring_owners() -> dict[str, Any]:
    """Every object whose docstring examples must run: the exported names (classes too) and the
    public routines, each once (an inherited method under its first exporting class)."""
    owners: dict[str, Any] = {n: getattr(dz, n) for n in dz.__all__ if callable(getattr(dz, n))}
    seen = {id(o) for o in owners.values()}
    for qualname, func in public_routines():
        if id(func) not in seen:
            seen.add(id(func))
            owners[qualname] = func
    return owners


OWNERS = docstring_owners()


def test_every_public_name_is_documented() -> None:
    for name in dz.__all__:
        obj = getattr(dz, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), name


@pytest.mark.parametrize("name", list(OWNERS))
def test_docstring_examples_run(name: str, tmp_path, monkeypatch) -> None:
    """As a user runs them from help(): nothing defined beforehand (review, tenth session: they
    used a ``tmp`` folder they never made); their scratch folders land in ``tmp_path``. Only the
    object's own docstring (``recurse=False``): its methods are owners of their own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    obj = OWNERS[name]
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(obj, name, module=inspect.getmodule(obj), globs={})
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{name}: {runner.failures} failing example(s)"
    assert runner.tries or ">>>" not in (obj.__doc__ or ""), f"{name}: its examples never ran"


def test_every_public_function_and_method_has_an_example() -> None:
    routines = dict(public_routines())
    assert "Run.predict" in routines and "read_catalog" in routines  # the walk finds them
    assert not set(NO_EXAMPLE_NEEDED) - set(routines), "stale exemptions"
    without = [
        name
        for name, func in routines.items()
        if name not in NO_EXAMPLE_NEEDED and ">>>" not in (func.__doc__ or "")
    ]
    assert not without, f"public functions/methods without a >>> example: {without}"


def test_examples_exist_for_the_main_entry_points() -> None:
    for obj in (dz.train, dz.simulate_catalog, dz.evaluate, dz.Catalog.from_table, dz.Run):
        assert ">>>" in (obj.__doc__ or ""), obj.__qualname__
