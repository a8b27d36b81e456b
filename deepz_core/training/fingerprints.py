"""Content fingerprints of arrays for the pretraining cache and the shipped weights.

The keys of ``training.pretrained`` and ``training.finetuned`` name what a trained state depends
on: the catalogue, the features built from it, the input statistics. Those hold floating-point
numbers whose last bits depend on the machine that computed them: the simulated demo catalogue's
fluxes come from float32 matrix products, and OpenBLAS picks its kernels by CPU (an AVX2 and an
AVX-512 machine differ by ~1e-9 relative in a flux sum). A digest of their bytes would miss the
shipped weights on every machine but the builder's kind. A fingerprint therefore has two parts:

- ``digest``: exact, over every name, dtype and shape, the bytes of every non-float array and
  where each float array is finite;
- ``sums``: per float array, (count, sum, sum of squares, a fixed pseudo-random projection) of its
  finite values in float64, matched with a tolerance (``sums_agree``) instead of hashed.

A change of one value by more than ~1e-7 of the array's scale (sqrt(n sum x^2)) is seen; the
rounding of another CPU's kernels is not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SUMS_RTOL = 1e-7  # tolerance of sums_agree, relative to an array's scale sqrt(n sum x^2)
PROJECTION_SEED = 20201  # the pseudo-random weights of the projection (fixed: part of the format)

Sums = dict[str, list[float]]  # per float array: [count, sum, sum of squares, projection]


@dataclass(frozen=True)
class Fingerprint:
    """What an array collection's content is: an exact digest and tolerant float sums."""

    digest: str
    sums: Sums = field(default_factory=dict)


def fingerprint(named: Mapping[str, Any]) -> Fingerprint:
    """Fingerprint of named arrays (None counts): see the module docstring."""
    digest, sums = hashlib.sha256(), {}
    for name, value in named.items():
        digest.update(name.encode())
        if value is None:
            digest.update(b"<none>")
            continue
        arr = np.ascontiguousarray(value)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        if arr.dtype.kind == "f":
            finite = np.isfinite(arr)
            digest.update(np.packbits(finite).tobytes())
            sums[name] = float_sums(arr[finite])
        else:
            digest.update(arr.tobytes())
    return Fingerprint(digest.hexdigest()[:24], sums)


def float_sums(values: np.ndarray) -> list[float]:
    """[count, sum, sum of squares, sum of values x fixed pseudo-random weights in [-1, 1)] of
    ``values`` (any shape, finite), in float64."""
    v = np.asarray(values, dtype=np.float64).ravel()
    weights = np.random.default_rng(PROJECTION_SEED).uniform(-1.0, 1.0, v.size)
    return [float(v.size), float(v.sum()), float((v * v).sum()), float((v * weights).sum())]


def sums_agree(a: Sums, b: Sums, rtol: float = SUMS_RTOL) -> bool:
    """Whether two fingerprints' float sums (of arrays with equal digests: the same names, shapes
    and finite values) agree within ``rtol`` of each array's scale sqrt(n sum x^2)."""
    if a.keys() != b.keys():
        return False
    return all(_close(a[name], b[name], rtol) for name in a)


def _close(a: list[float], b: list[float], rtol: float) -> bool:
    """Two [count, sum, sum of squares, projection] within ``rtol`` of their scale sqrt(n sum x^2)
    (|sum| and |projection| are at most that; the sum of squares is compared relative to itself)."""
    if len(a) != 4 or len(b) != 4 or a[0] != b[0]:
        return False
    squares = max(abs(a[2]), abs(b[2]))
    scale = float(np.sqrt(a[0] * squares))
    bounds = (rtol * scale, 2.0 * rtol * squares, rtol * scale)
    return all(abs(x - y) <= bound for x, y, bound in zip(a[1:], b[1:], bounds, strict=True))


def agree(a: Mapping[str, Sums], b: Mapping[str, Any] | None) -> bool:
    """Whether a key's named fingerprint sums ``a`` ({"catalog": sums, ...}) agree with those an
    entry stored (``b``; None or damaged: no)."""
    if not isinstance(b, Mapping) or a.keys() != b.keys():
        return False
    try:
        return all(sums_agree(a[k], b[k]) for k in a)
    except (TypeError, ValueError, AttributeError):
        return False
