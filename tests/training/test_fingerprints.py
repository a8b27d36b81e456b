"""Content fingerprints: exact where bits are the machine's choice-free, tolerant for floats."""

from __future__ import annotations

import numpy as np

from deepz_core.training.fingerprints import (
    SUMS_RTOL,
    Fingerprint,
    agree,
    fingerprint,
    float_sums,
    sums_agree,
)


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    flux = rng.lognormal(2.0, 1.0, (400, 6)).astype(np.float32)
    return {"flux": flux, "zspec": rng.uniform(0, 1.2, 400), "ids": np.arange(400, dtype=np.int64)}


def test_known_sums() -> None:
    n, total, squares, projection = float_sums(np.array([1.0, 2.0, 3.0]))
    assert (n, total, squares) == (3.0, 6.0, 14.0)
    assert abs(projection) <= np.sqrt(3 * 14.0)  # |sum x w| <= sqrt(n sum x^2) for |w| <= 1


def test_a_cpus_rounding_agrees_a_real_change_does_not() -> None:
    base = fingerprint(_arrays())
    rounded = _arrays()
    rng = np.random.default_rng(1)
    rounded["zspec"] = rounded["zspec"] * (1 + 1e-9 * rng.standard_normal(400))
    other = fingerprint(rounded)
    assert other.digest == base.digest and sums_agree(base.sums, other.sums)
    for name, row, delta in (("flux", (5, 2), 0.05), ("zspec", 3, 1e-4)):
        changed = _arrays()
        changed[name][row] += delta
        moved = fingerprint(changed)
        assert moved.digest == base.digest and not sums_agree(base.sums, moved.sums), name


def test_exact_parts_change_the_digest() -> None:
    base = fingerprint(_arrays()).digest
    ids = _arrays()
    ids["ids"][0] = 10_000  # integers are exact
    nan = _arrays()
    nan["zspec"][4] = np.nan  # where floats are finite is exact
    dtype = _arrays()
    dtype["flux"] = dtype["flux"].astype(np.float64)
    renamed = {("f" if k == "flux" else k): v for k, v in _arrays().items()}
    none = {**_arrays(), "extra": None}
    digests = {fingerprint(d).digest for d in (ids, nan, dtype, renamed, none)}
    assert len(digests) == 5 and base not in digests


def test_the_tolerance_is_relative_to_the_arrays_scale() -> None:
    a = float_sums(np.full(100, 10.0))
    scale = np.sqrt(100 * 100 * 100.0)  # sqrt(n sum x^2) = 1000
    near = [a[0], a[1] + 0.5 * SUMS_RTOL * scale, a[2], a[3]]
    far = [a[0], a[1] + 2 * SUMS_RTOL * scale, a[2], a[3]]
    assert sums_agree({"x": a}, {"x": near}) and not sums_agree({"x": a}, {"x": far})
    assert not sums_agree({"x": a}, {"x": [99.0, *a[1:]]})  # another count


def test_agree_with_a_stored_entry_or_a_damaged_one() -> None:
    sums = {"catalog": fingerprint(_arrays()).sums}
    assert agree(sums, {"catalog": {k: list(v) for k, v in sums["catalog"].items()}})
    for stored in (None, {}, {"catalog": "x"}, {"catalog": {"flux": [1, 2]}}, [1, 2]):
        assert not agree(sums, stored)
    assert Fingerprint("d").sums == {}
