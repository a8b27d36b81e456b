"""Frozen, typed configuration dataclasses: the field validators every config shares (model,
training, p(z) grid, template fit, simulations, runs), and mapping I/O that rejects unknown fields.

A config is a ``@dataclass(frozen=True)`` that inherits :class:`Config` and checks its fields in
``__post_init__`` with the ``check_*`` functions below; each raises a ConfigError naming the field
and echoing the value. Values read from JSON come back as plain Python (numpy scalars -> int/float,
lists -> tuples where the field holds a tuple), so ``from_dict(to_dict())`` round-trips.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, Self

import numpy as np

from deepz_core.errors import ConfigError


def is_real(value: object) -> bool:
    """A real number (int, float, numpy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high]; ConfigError naming ``name`` otherwise."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    bounds = _bounds(low, high, False, False)
    raise ConfigError(f"{name}: expected an integer{bounds}, got {value!r}")


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (open where asked); ConfigError otherwise."""
    if is_real(value) and math.isfinite(value):
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        if above and below:
            return float(value)
    bounds = _bounds(low, high, low_open, high_open)
    raise ConfigError(f"{name}: expected a finite number{bounds}, got {value!r}")


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def check_probability(name: str, value: Any) -> float:
    """A probability in [0, 1)."""
    return check_real(name, value, 0.0, 1.0, high_open=True)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool (numpy's too); ConfigError naming ``name`` otherwise."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ConfigError(f"{name}: expected true/false, got {value!r}")


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` when it is one of ``choices``; ConfigError naming ``name`` and the choices
    otherwise."""
    if isinstance(value, str | int | float | None) and value in choices:
        return value
    raise ConfigError(f"{name}: expected one of {tuple(choices)}, got {value!r}")


def check_range(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A (low, high) pair of finite numbers within [low, high], low first."""
    try:
        lo, hi = (float(v) for v in value if is_real(v))
    except (TypeError, ValueError):
        lo, hi = math.nan, math.nan
    if not low <= lo <= hi <= high:
        raise ConfigError(f"{name} must be a range (low, high) within [{low}, {high}], got {value}")
    return lo, hi


class Config:
    """Mixin of the frozen config dataclasses: mapping I/O and setting checked values.

    ``CONFIG_NAME`` names the config in messages ("training", "model", ...); ``NESTED`` maps a
    field to the Config class of its value, so a nested mapping becomes that config.
    """

    CONFIG_NAME: ClassVar[str] = "config"
    NESTED: ClassVar[dict[str, type[Config]]] = {}

    @classmethod
    def field_names(cls) -> set[str]:
        """The names of the config's fields.

        >>> import deepz_core as dz
        >>> sorted(dz.SurveyProfile.field_names())[:3]
        ['catastrophic', 'name', 'odds_window']
        """
        return {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """The config from a mapping (e.g. JSON); unknown or missing fields or a non-mapping
        raise a ConfigError naming them.

        >>> import deepz_core as dz
        >>> dz.SurveyProfile.from_dict({"name": "custom", "outlier": 0.05}).outlier
        0.05
        >>> dz.SurveyProfile.from_dict({"outlyer": 0.05})
        Traceback (most recent call last):
        ...
        deepz_core.errors.ConfigError: unknown survey profile config fields ['outlyer']; ...
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"{cls.CONFIG_NAME} config: expected a mapping, got {values!r}")
        known = cls.field_names()
        unknown = sorted(set(values) - known, key=str)
        if unknown:
            raise ConfigError(
                f"unknown {cls.CONFIG_NAME} config fields {unknown}; known: {sorted(known)}"
            )
        required = {
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(values))
        if missing:
            raise ConfigError(f"{cls.CONFIG_NAME} config: missing fields {missing}")
        plain = {k: _from_json(cls, k, v) for k, v in values.items()}
        return cls(**plain)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; ``from_dict(to_dict())`` round-trips.

        >>> import deepz_core as dz
        >>> profile = dz.SurveyProfile(name="custom", outlier=0.05, target=None)
        >>> profile.to_dict()["outlier"], dz.SurveyProfile.from_dict(profile.to_dict()) == profile
        (0.05, True)
        """
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def _set(self, name: str, value: Any) -> None:
        """Store a checked (normalised) value in a frozen field (from ``__post_init__``)."""
        object.__setattr__(self, name, value)


def _from_json(cls: type[Config], name: str, value: Any) -> Any:
    """A JSON value as the field wants it: nested configs from mappings, tuples from lists."""
    nested = cls.NESTED.get(name)
    if nested is not None and isinstance(value, Mapping):
        return nested.from_dict(value)
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value
