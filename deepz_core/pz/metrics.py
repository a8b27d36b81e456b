"""Photo-z quality metrics on plain arrays (E20 Sec. 3.3 and Sec. 6): point, binned, quality-cut,
PIT and CDE-loss statistics, and the spec-z density curve of E20 Fig. 3.

All functions take numpy arrays; N galaxies, G grid points. Empty selections give NaN, not errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from deepz_core.errors import ConfigError

Q_LO, Q_HI = 15.865, 84.135  # percentiles of +-1 sigma for a Gaussian (E20 eq. 4)
OUTLIER_THRESHOLD = 0.02  # strict outlier |dz| > 0.02 (E20 eq. 5)
CATASTROPHIC_THRESHOLD = 0.15  # the conventional catastrophic outlier |dz| > 0.15
NMAD_SCALE = 1.4826
DEFAULT_MAG_EDGES = np.arange(17.5, 22.51, 0.5)  # iAB bins to the E20 limit 22.5
DEFAULT_COMPLETENESS = np.linspace(0.05, 1.0, 20)


# ---------------------------------------------------------------- validation helpers
def _array(name: str, x: ArrayLike, ndim: int | None = 1, finite: bool = True) -> NDArray:
    arr = np.asarray(x, dtype=float)
    if ndim is not None and arr.ndim != ndim:
        raise ConfigError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.ravel()))
        raise ConfigError(
            f"{name} must be finite, got {bad.size} non-finite value(s) "
            f"(first at flat index {bad[0]}: {arr.ravel()[bad[0]]})"
        )
    return arr


def _same_shape(**arrays: NDArray) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ConfigError(f"{' and '.join(shapes)} must have the same shape, got {listed}")


def _edges(name: str, edges: ArrayLike) -> NDArray:
    arr = np.asarray(edges, dtype=float)
    if arr.ndim != 1 or arr.size < 2 or np.any(np.isnan(arr)) or np.any(np.diff(arr) <= 0):
        raise ConfigError(f"{name} must be >= 2 strictly increasing values, got {arr.tolist()}")
    return arr


def _fractions(name: str, values: ArrayLike) -> NDArray:
    arr = _array(name, np.atleast_1d(values))
    if np.any((arr <= 0) | (arr > 1)):
        raise ConfigError(f"{name} must lie in (0, 1], got {arr.tolist()}")
    return arr


# ---------------------------------------------------------------- point statistics
def dz(zp: ArrayLike, zs: ArrayLike) -> NDArray:
    """Scaled error (zp - zs) / (1 + zs), any matching shape (E20 eq. 5); zs finite and > -1."""
    zp_a, zs_a = _array("zp", zp, ndim=None), _array("zs", zs, ndim=None)
    _same_shape(zp=zp_a, zs=zs_a)
    if np.any(zs_a <= -1):
        raise ConfigError(f"zs must be > -1, got minimum {zs_a.min()}")
    return (zp_a - zs_a) / (1.0 + zs_a)


def sigma68(x: ArrayLike) -> float:
    """Half the 15.865-84.135 percentile range of x (N,) (E20 eq. 4); NaN when empty."""
    arr = _array("x", x)
    if arr.size == 0:
        return float("nan")
    lo, hi = np.percentile(arr, [Q_LO, Q_HI])
    return float(0.5 * (hi - lo))


def is_outlier(dz: ArrayLike, threshold: float = OUTLIER_THRESHOLD) -> NDArray:
    """(N,) bool: strict outliers |dz| > threshold, dz (N,) (E20 eq. 5)."""
    if not threshold > 0:
        raise ConfigError(f"threshold must be > 0, got {threshold}")
    return np.abs(_array("dz", dz)) > threshold


def outlier_fraction(dz: ArrayLike, threshold: float = OUTLIER_THRESHOLD) -> float:
    """Fraction of strict outliers |dz| > threshold, dz (N,) (E20 eq. 5); NaN when empty."""
    flags = is_outlier(dz, threshold)
    return float(np.mean(flags)) if flags.size else float("nan")


def bias(dz: ArrayLike) -> float:
    """Bias = median of dz (N,), a community metric beside E20 Sec. 3.3; NaN when empty."""
    arr = _array("dz", dz)
    return float(np.median(arr)) if arr.size else float("nan")


def nmad(dz: ArrayLike) -> float:
    """NMAD = 1.4826 median|dz - median dz| of dz (N,); NaN when empty."""
    arr = _array("dz", dz)
    return float(NMAD_SCALE * np.median(np.abs(arr - np.median(arr)))) if arr.size else float("nan")


def no_pz_failures(zspec: ArrayLike, zphot: ArrayLike) -> NDArray:
    """(N,) bool: galaxies with a spec-z but no p(z) (NaN ``zphot``, flag NO_PZ), failures to be
    counted, never averaged in. Out of fold or not: the screen keeps a galaxy without a p(z) out
    of training, so no network trained on it, yet it is never marked out of fold (no network
    predicted it either), and a count limited to out-of-fold galaxies would miss every one."""
    zs = np.asarray(zspec, dtype=np.float64)
    return np.isfinite(zs) & ~np.isfinite(np.asarray(zphot, dtype=np.float64))


def _1d_dz(zp: ArrayLike, zs: ArrayLike) -> NDArray:
    zp_a, zs_a = _array("zp", zp), _array("zs", zs)
    return dz(zp_a, zs_a)


def _summary(d: NDArray, outlier: float = OUTLIER_THRESHOLD) -> dict[str, float]:
    return {
        "n": int(d.size),
        "sigma68": sigma68(d),
        "outlier_fraction": outlier_fraction(d, outlier),
        "bias": bias(d),
        "nmad": nmad(d),
    }


def point_metrics(
    zp: ArrayLike, zs: ArrayLike, outlier: float = OUTLIER_THRESHOLD
) -> dict[str, float]:
    """n, sigma68, outlier_fraction (|dz| > ``outlier``; E20's strict outliers: 0.02), bias and
    nmad of dz for zp, zs (N,) (E20 Sec. 3.3), and catastrophic_fraction, the conventional
    |dz| > 0.15 rate (not RAIL's point_outlier_rate, |dz| > max(0.06, 3 sigma_IQR))."""
    d = _1d_dz(zp, zs)
    return {
        **_summary(d, outlier),
        "catastrophic_fraction": outlier_fraction(d, CATASTROPHIC_THRESHOLD),
    }


# ---------------------------------------------------------------- binned statistics
@dataclass(frozen=True)
class BinnedMetrics:
    """Metrics per bin of a variable (magnitude, redshift, ...): arrays (K,), edges (K+1,)."""

    edges: NDArray
    counts: NDArray
    sigma68: NDArray
    outlier_fraction: NDArray
    bias: NDArray
    nmad: NDArray

    @property
    def centers(self) -> NDArray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    def rows(self) -> list[dict[str, float]]:
        """One dict per bin (lo, hi, n and each metric), for tables."""
        keys = ("sigma68", "outlier_fraction", "bias", "nmad")
        return [
            {"lo": float(self.edges[i]), "hi": float(self.edges[i + 1]), "n": int(self.counts[i])}
            | {k: float(getattr(self, k)[i]) for k in keys}
            for i in range(self.counts.size)
        ]


def _bin_index(by: NDArray, edges: NDArray) -> NDArray:
    """Bin of each value in [edges[i], edges[i+1]), the last bin closed; -1 outside or NaN."""
    idx = np.searchsorted(edges, by, side="right") - 1
    idx[by == edges[-1]] = edges.size - 2
    idx[(idx < 0) | (idx >= edges.size - 1) | np.isnan(by)] = -1
    return idx


def binned_metrics(
    zp: ArrayLike,
    zs: ArrayLike,
    by: ArrayLike,
    edges: ArrayLike = DEFAULT_MAG_EDGES,
    outlier: float = OUTLIER_THRESHOLD,
) -> BinnedMetrics:
    """Point metrics of dz per bin of ``by`` (N,), e.g. iAB (E20 Fig. 2) or zs; outliers are
    |dz| > ``outlier``. NaN in ``by`` and values outside ``edges`` are left out; empty bins give
    count 0 and NaN metrics."""
    d = _1d_dz(zp, zs)
    by_a = _array("by", by, finite=False)
    _same_shape(zp=d, by=by_a)
    edges_a = _edges("edges", edges)
    idx = _bin_index(by_a, edges_a)
    per_bin = [_summary(d[idx == k], outlier) for k in range(edges_a.size - 1)]
    cols = {k: np.array([row[k] for row in per_bin]) for k in per_bin[0] if k != "n"}
    counts = np.array([row["n"] for row in per_bin], dtype=np.int64)
    return BinnedMetrics(edges=edges_a, counts=counts, **cols)


def data_mag_range(mag: ArrayLike, step: float = 0.1) -> tuple[float, float] | None:
    """(lo, hi) of a magnitude slider that follows the data as ``data_mag_edges`` does: the 0.5th
    and 99.5th percentiles of the finite ``mag`` (N,), widened to the extreme values when those
    lie within 1 mag of them, rounded outwards to ``step``; hi > lo. A galaxy with a near-zero
    reference flux (m = 46) no longer stretches the slider over 30 empty magnitudes; a slider at
    an end means no limit there. None without a finite magnitude."""
    m = np.asarray(mag, dtype=float)
    m = m[np.isfinite(m)]
    if m.size == 0:
        return None
    p_lo, p_hi = np.percentile(m, [0.5, 99.5])
    p_lo, p_hi = max(m.min(), p_lo - 1.0), min(m.max(), p_hi + 1.0)
    lo = float(np.round(np.floor(p_lo / step + 1e-9) * step, 6))
    hi = float(np.round(np.ceil(p_hi / step - 1e-9) * step, 6))
    return lo, max(hi, round(lo + step, 6))


def data_mag_edges(
    mag: ArrayLike,
    width: float = 0.5,
    lo: float | None = None,
    hi: float | None = None,
    max_bins: int = 40,
) -> NDArray:
    """Magnitude bin edges that follow the data: ``width``-wide bins on multiples of ``width``
    from ``lo`` to ``hi`` (default: the 0.5th and 99.5th percentiles of the finite ``mag`` (N,),
    widened to the extreme values when those lie within 1 mag of them, rounded outwards); at most
    ``max_bins`` bins (the width grows if needed). A catalogue at m = 12.9-18.8 (SDSS) gets bins
    there, not E20's 17.5-22.5 (``DEFAULT_MAG_EDGES``); no finite magnitude gives those."""
    if not width > 0:
        raise ConfigError(f"width: expected a bin width > 0 mag, got {width}")
    m = np.asarray(mag, dtype=float)
    m = m[np.isfinite(m)]
    if m.size == 0 and (lo is None or hi is None):
        return DEFAULT_MAG_EDGES.copy()
    p_lo, p_hi = np.percentile(m, [0.5, 99.5]) if m.size else (lo, hi)
    if m.size:  # the extremes too, unless they are far out (junk, placeholders)
        p_lo, p_hi = max(m.min(), p_lo - 1.0), min(m.max(), p_hi + 1.0)
    lo = float(np.floor(p_lo / width) * width) if lo is None else float(lo)
    hi = float(np.ceil(p_hi / width) * width) if hi is None else float(hi)
    if not hi > lo:
        hi = lo + width
    n = int(np.ceil((hi - lo) / width - 1e-9))
    while n > max_bins:
        width *= 2
        n = int(np.ceil((hi - lo) / width - 1e-9))
    return np.round(lo + width * np.arange(n + 1), 6)


# ---------------------------------------------------------------- quality cuts (E20 Fig. 9)
def completeness_curve(
    zp: ArrayLike,
    zs: ArrayLike,
    score: ArrayLike,
    completeness: ArrayLike = DEFAULT_COMPLETENESS,
    higher_is_better: bool = True,
    outlier: float = OUTLIER_THRESHOLD,
) -> dict[str, NDArray]:
    """For each completeness c (K,) keep the round(c N) galaxies with the best score (N,).

    Returns arrays (K,) under completeness, n, threshold (score of the last galaxy kept), sigma68
    and outlier_fraction (|dz| > ``outlier``) (E20 Sec. 6.2, Fig. 9). Ties in score keep input
    order.
    """
    d = _1d_dz(zp, zs)
    score_a = _array("score", score)
    _same_shape(zp=d, score=score_a)
    comp = _fractions("completeness", completeness)
    order = np.argsort(-score_a if higher_is_better else score_a, kind="stable")
    n_keep = np.round(comp * d.size).astype(np.int64)
    out: dict[str, list[float]] = {"n": [], "threshold": [], "sigma68": [], "outlier_fraction": []}
    for n in n_keep:
        kept = d[order[:n]]
        out["n"].append(n)
        out["threshold"].append(float(score_a[order[n - 1]]) if n else float("nan"))
        out["sigma68"].append(sigma68(kept))
        out["outlier_fraction"].append(outlier_fraction(kept, outlier))
    return {"completeness": comp} | {k: np.asarray(v) for k, v in out.items()}


def odds_curve(
    zp: ArrayLike,
    zs: ArrayLike,
    odds: ArrayLike,
    completeness: ArrayLike = DEFAULT_COMPLETENESS,
    outlier: float = OUTLIER_THRESHOLD,
) -> dict[str, NDArray]:
    """Quality cut on ODDS (N,), higher is better (E20 eq. 7, Fig. 9 solid lines)."""
    return completeness_curve(zp, zs, odds, completeness, True, outlier)


def optimal_curve(
    zp: ArrayLike,
    zs: ArrayLike,
    completeness: ArrayLike = DEFAULT_COMPLETENESS,
    outlier: float = OUTLIER_THRESHOLD,
) -> dict[str, NDArray]:
    """Idealised cut keeping the smallest |dz| = |zp - zs|/(1 + zs) first (E20 Fig. 9 'optimal')."""
    return completeness_curve(zp, zs, np.abs(_1d_dz(zp, zs)), completeness, False, outlier)


def best_fraction_sigma68(
    zp: ArrayLike, zs: ArrayLike, odds: ArrayLike, fraction: float = 0.5
) -> float:
    """sigma68 of the ``fraction`` of galaxies with the highest ODDS (E20 Sec. 6.2: PAUS target
    sigma68 <= 0.0035 for the best 50%)."""
    return float(odds_curve(zp, zs, odds, completeness=[fraction])["sigma68"][0])


# ---------------------------------------------------------------- PIT (E20 Sec. 6.1)
class GofResult(NamedTuple):
    """Goodness-of-fit test result: statistic and p-value."""

    statistic: float
    pvalue: float


def _pit(pit: ArrayLike, tol: float = 1e-6) -> NDArray:
    arr = _array("pit", pit)
    if arr.size and (arr.min() < -tol or arr.max() > 1 + tol):
        raise ConfigError(f"pit must lie in [0, 1], got range [{arr.min()}, {arr.max()}]")
    return np.clip(arr, 0.0, 1.0)


def pit_histogram(pit: ArrayLike, bins: int = 20) -> tuple[NDArray, NDArray]:
    """Density (bins,) of PIT values (N,) on [0, 1] and the edges (bins+1,); 1 everywhere when
    calibrated (E20 eq. 6, Fig. 8). Empty input gives NaN densities."""
    if not isinstance(bins, int | np.integer) or bins < 1:
        raise ConfigError(f"bins must be a positive integer, got {bins!r}")
    arr = _pit(pit)
    counts, edges = np.histogram(arr, bins=bins, range=(0.0, 1.0))
    density = counts * bins / arr.size if arr.size else np.full(bins, np.nan)
    return density, edges


def pit_ks(pit: ArrayLike) -> GofResult:
    """Kolmogorov-Smirnov test of PIT values (N,) against Uniform(0, 1); NaN when empty."""
    arr = _pit(pit)
    if arr.size == 0:
        return GofResult(float("nan"), float("nan"))
    from scipy import stats  # here, not at import: scipy.stats takes seconds to import

    res = stats.kstest(arr, "uniform")
    return GofResult(float(res.statistic), float(res.pvalue))


def pit_cvm(pit: ArrayLike) -> GofResult:
    """Cramer-von Mises test of PIT values (N,) against Uniform(0, 1); NaN for N < 2."""
    arr = _pit(pit)
    if arr.size < 2:
        return GofResult(float("nan"), float("nan"))
    from scipy import stats

    res = stats.cramervonmises(arr, "uniform")
    return GofResult(float(res.statistic), float(res.pvalue))


# ---------------------------------------------------------------- CDE loss
def cde_loss(pdf_grid: ArrayLike, z_grid: ArrayLike, zs: ArrayLike) -> float:
    """CDE loss E[int p(z)^2 dz] - 2 E[p(zs)] (lower is better; a community p(z) metric).

    pdf_grid (N, G) densities on z_grid (G,), strictly increasing; zs (N,). The integral is a
    trapezoid, p(zs) a linear interpolation (0 outside the grid). NaN when N = 0.
    """
    pdf = _array("pdf_grid", pdf_grid, ndim=2)
    grid = _edges("z_grid", _array("z_grid", z_grid))
    zs_a = _array("zs", zs)
    if pdf.shape != (zs_a.size, grid.size):
        raise ConfigError(
            f"pdf_grid must have shape (len(zs), len(z_grid)) = {(zs_a.size, grid.size)}, "
            f"got {pdf.shape}"
        )
    if zs_a.size == 0:
        return float("nan")
    term1 = np.trapezoid(pdf**2, grid, axis=1)  # (N,)
    i = np.clip(np.searchsorted(grid, zs_a, side="right") - 1, 0, grid.size - 2)  # (N,)
    t = (zs_a - grid[i]) / (grid[i + 1] - grid[i])
    rows = np.arange(zs_a.size)
    p_zs = (1 - t) * pdf[rows, i] + t * pdf[rows, i + 1]  # (N,)
    p_zs[(zs_a < grid[0]) | (zs_a > grid[-1])] = 0.0
    return float(np.mean(term1) - 2.0 * np.mean(p_zs))


# ---------------------------------------------------------------- spec-z density (E20 Fig. 3)
def spec_density(zs_test: ArrayLike, zs_train: ArrayLike, bin_width: float = 0.001) -> NDArray:
    """Number of training spec-z (M,) in the bin of width ``bin_width`` (bins anchored at 0) that
    holds each zs_test (N,); returns (N,) int64 (E20 Sec. 3.4)."""
    if not bin_width > 0:
        raise ConfigError(f"bin_width must be > 0, got {bin_width}")
    z_a, train = _array("zs_test", zs_test), _array("zs_train", zs_train)

    def cell(x: NDArray) -> NDArray:  # offset: values on a bin edge are not lost to rounding
        return np.floor(x / bin_width + 1e-6).astype(np.int64)

    cells, counts = np.unique(cell(train), return_counts=True)
    query = cell(z_a)
    if cells.size == 0:
        return np.zeros(z_a.shape, dtype=np.int64)
    pos = np.clip(np.searchsorted(cells, query), 0, cells.size - 1)
    return np.where(cells[pos] == query, counts[pos], 0).astype(np.int64)


def sigma68_vs_spec_density(
    zp: ArrayLike,
    zs_test: ArrayLike,
    zs_train: ArrayLike,
    bin_width: float = 0.001,
    density_edges: ArrayLike | None = None,
) -> BinnedMetrics:
    """Metrics of the test galaxies (N,) binned by how many training spec-z (M,) share their
    dz = bin_width redshift bin (E20 Sec. 3.4, Fig. 3).

    Default density_edges: one bin per integer count k, edges k - 0.5 and k + 0.5.
    """
    zp_a, zs_a = _array("zp", zp), _array("zs_test", zs_test)
    _same_shape(zp=zp_a, zs_test=zs_a)
    density = spec_density(zs_a, zs_train, bin_width)
    if density_edges is None:
        top = int(density.max()) if density.size else 0
        density_edges = np.arange(top + 2) - 0.5
    return binned_metrics(zp_a, zs_a, density.astype(float), density_edges)
