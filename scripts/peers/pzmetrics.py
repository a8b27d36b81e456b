"""Photo-z point and PIT metrics shared by every method of the peer benchmark (issue 23, sec. 4).

Pure numpy/scipy, so the same code scores deepz, RAIL FlexZBoost and the gradient-boosting
baseline in either environment. The definitions are deepz's own (deepz_core/metrics.py, E20
Sec. 3.3 and 6.1), restated here because the peers' environment has no torch:

- dz = (zphot - zspec) / (1 + zspec)                          (E20 eq. 5)
- sigma68 = (P84.135(dz) - P15.865(dz)) / 2, numpy's linear percentiles   (E20 eq. 4)
- strict outlier rate = mean(|dz| > 0.02)                       (E20 eq. 5)
- catastrophic outlier rate = mean(|dz| > 0.15)                 (community convention)
- NMAD = 1.4826 median(|dz - median(dz)|); bias = median(dz)
- PIT KS = Kolmogorov-Smirnov statistic of the PIT values (CDF of p(z) at zspec), clipped to
  [0, 1], against Uniform(0, 1) (scipy.stats.kstest)                (E20 Sec. 6.1)

scripts/peers/test_peers.py checks that these give deepz_core.pz.metrics' numbers on fixed arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

Q_LO, Q_HI = 15.865, 84.135  # +-1 sigma percentiles of a Gaussian (E20 eq. 4)
STRICT = 0.02  # strict outlier |dz| > 0.02 (E20 eq. 5)
CATASTROPHIC = 0.15  # catastrophic outlier |dz| > 0.15
NMAD_SCALE = 1.4826


def dz(zphot: ArrayLike, zspec: ArrayLike) -> NDArray:
    """(N,) scaled error (zphot - zspec) / (1 + zspec); zphot, zspec (N,), finite."""
    zp, zs = np.asarray(zphot, dtype=float), np.asarray(zspec, dtype=float)
    if zp.shape != zs.shape:
        raise ValueError(f"zphot {zp.shape} and zspec {zs.shape} must have the same shape")
    return (zp - zs) / (1.0 + zs)


def sigma68(d: ArrayLike) -> float:
    """Half the 15.865-84.135 percentile range of dz (N,); NaN when empty (E20 eq. 4)."""
    arr = np.asarray(d, dtype=float)
    if arr.size == 0:
        return float("nan")
    lo, hi = np.percentile(arr, [Q_LO, Q_HI])
    return float(0.5 * (hi - lo))


def outlier_fraction(d: ArrayLike, threshold: float) -> float:
    """Fraction of |dz| > threshold over dz (N,); NaN when empty."""
    arr = np.asarray(d, dtype=float)
    return float(np.mean(np.abs(arr) > threshold)) if arr.size else float("nan")


def nmad(d: ArrayLike) -> float:
    """1.4826 median|dz - median dz| of dz (N,); NaN when empty."""
    arr = np.asarray(d, dtype=float)
    if arr.size == 0:
        return float("nan")
    return float(NMAD_SCALE * np.median(np.abs(arr - np.median(arr))))


def pit_ks(pit: ArrayLike) -> float:
    """KS statistic of PIT values (N,) in [0, 1] against Uniform(0, 1); NaN when empty."""
    arr = np.clip(np.asarray(pit, dtype=float), 0.0, 1.0)
    if arr.size == 0:
        return float("nan")
    return float(stats.kstest(arr, "uniform").statistic)


def summary(zphot: ArrayLike, zspec: ArrayLike, pit: ArrayLike | None = None) -> dict[str, Any]:
    """Metrics over the galaxies with finite zphot and zspec (N,).

    Returns n (scored), n_failed (finite zspec but non-finite zphot: counted, not scored),
    sigma68, nmad, bias, outlier_strict (|dz| > 0.02), outlier_catastrophic (|dz| > 0.15) and
    pit_ks (None when no PIT is given: the method has no p(z)).
    """
    zp, zs = np.asarray(zphot, dtype=float), np.asarray(zspec, dtype=float)
    has_z = np.isfinite(zs)
    ok = has_z & np.isfinite(zp)
    d = dz(zp[ok], zs[ok])
    out: dict[str, Any] = {
        "n": int(ok.sum()),
        "n_failed": int((has_z & ~ok).sum()),
        "sigma68": sigma68(d),
        "nmad": nmad(d),
        "bias": float(np.median(d)) if d.size else float("nan"),
        "outlier_strict": outlier_fraction(d, STRICT),
        "outlier_catastrophic": outlier_fraction(d, CATASTROPHIC),
        "pit_ks": None,
    }
    if pit is not None:
        p = np.asarray(pit, dtype=float)[ok]
        out["pit_ks"] = pit_ks(p[np.isfinite(p)])
    return out
