"""PIT recalibration of p(z) (beyond E20, which measures the PIT in Sec. 6.1 but does not correct it).

A calibrated p(z) has the CDF G(z) = g(F(z)): ``g`` maps [0, 1] monotonically onto [0, 1] and is
fitted so that the PITs of galaxies the networks never saw (out-of-fold training galaxies) become
uniform. g works in probit space: g(u) = Phi(h(Phi^-1(u))) with h a monotone cubic (Fritsch-Carlson)
through the points (x_k, y_k), where x_k is the q_k-quantile of the probit PITs Phi^-1(PIT) and
y_k = Phi^-1(q_k), so g(u) = q_k at the k-th quantile of the PITs; h is linear beyond the outer
knots. A Gaussian p(z) whose width is off by a factor s has a linear h(x) = x / s, and the
calibrated p(z) is the Gaussian with the right width. When the data need it, h depends on the
magnitude: one h per magnitude bin (quantile bins of the training magnitudes), interpolated
linearly in magnitude between the bins' median magnitudes (constant beyond them); a convex
combination of monotone functions stays monotone.

The calibrated density is p'(z) = g'(F(z)) p(z). Its products (``pz.products.calibrated_products``:
PIT g(F(zs)), quantiles F^-1(g^-1(q)), ODDS, and the mean, the ``zmean`` column:
``refit_with_mean``, the raw mean plus the integral of F - G over z, tails included) are exact
up to their numerical methods; the mode stays that of p (a better point estimate than the mode
of p'). For tools that read the mixture columns (qp's 'mixmod', the CDE loss), ``refit_mixture``
turns p' back into a Gaussian mixture with the same components, each matched in mass, mean and
variance to its share of p' over +-8 of its sigma; its shape is an approximation (measured on the
demo mock: PIT from the refit within 0.007 of the exact one for half the galaxies) and so is its
mean, which misses the mass a stretching g puts beyond 8 sigma (a quarter of sigma short on a
strongly skewing population; ``zmean`` is not taken from it).

Shapes: N galaxies, C mixture components, K knots, B magnitude bins, P points per galaxy.
Stored as JSON (``to_dict``/``from_dict``), never pickled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deepz_core.errors import ConfigError
from deepz_core.pz.metrics import data_mag_edges
from deepz_core.pz.mixture import GaussianMixture

# quantile levels q_k of the knots: denser in the tails, where outliers make the PIT least uniform
DEFAULT_LEVELS = (
    0.01,
    0.03,
    0.07,
    0.13,
    0.21,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.79,
    0.87,
    0.93,
    0.97,
    0.99,
)
MIN_PER_BIN = 1000  # fewest galaxies per magnitude bin (quantile noise of the knots ~ 1/sqrt(n))
MAX_BINS = 6
PROBIT_CLIP = 8.2  # |Phi^-1(u)| for u within float64 of 0 or 1 (1 - 1e-16)
_MIN_SLOPE = 0.05  # floor of h' at the ends (and so of its linear extrapolation)
_MIN_GAP = 1e-6  # knots closer than this in x (ties of the PIT quantiles) are spread apart
REFIT_SPAN = 8.0  # the refit integrates each component over mu +- REFIT_SPAN sigma ...
REFIT_POINTS = 41  # ... at this many points, 0.4 sigma apart (the trapezoid rule's error ~ step^2)
REFIT_BLOCK = 1 << 22  # galaxies x components^2 x points per refit block
REFIT_NEGLIGIBLE = 1e-14  # the refit leaves out components moving a calibrated CDF by less
_MIN_VARIANCE = 1e-4  # a refitted component keeps >= 1% of its width
_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
MEAN_CORE_POINTS = 64  # exact mean: evenly spaced points over [a, b] besides the refit's
MEAN_TAIL_POINTS = 12  # exact mean: points per tail beyond the components' mu +- REFIT_SPAN sigma
MEAN_TAIL_PROBIT = 8.5  # ... out to where the calibrated tail is Phi(-8.5) = 1e-17
MEAN_MAX_PROBIT = 37.0  # ... but no further than F or 1 - F of a component can be told from 0
VERSION = 1


@dataclass(frozen=True)
class PitCalibration:
    """A fitted g: knots (B, K) of h per magnitude bin, the bins' median magnitudes (B,) and the
    number of galaxies it was fitted on. B = 1: no magnitude dependence."""

    mag_centres: np.ndarray  # (B,) AB, increasing
    x: np.ndarray  # (B, K) probit-PIT quantiles, strictly increasing along K
    y: np.ndarray  # (K,) Phi^-1 of the quantile levels
    n_fit: int

    def __post_init__(self) -> None:
        b, k = np.shape(self.x)
        if np.shape(self.mag_centres) != (b,) or np.shape(self.y) != (k,) or k < 2 or b < 1:
            raise ConfigError(
                f"calibration: knots x {np.shape(self.x)}, y {np.shape(self.y)} and mag_centres "
                f"{np.shape(self.mag_centres)} do not fit together"
            )
        if not (np.all(np.diff(self.x, axis=1) > 0) and np.all(np.diff(self.y) > 0)):
            raise ConfigError("calibration: knots must increase strictly")
        if b > 1 and not np.all(np.diff(self.mag_centres) > 0):
            raise ConfigError(f"calibration: mag_centres must increase, got {self.mag_centres}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (``from_dict`` reads them back)."""
        return {
            "version": VERSION,
            "method": "pit-probit-monotone-cubic",
            "mag_centres": [float(v) for v in self.mag_centres],
            "x": [[float(v) for v in row] for row in self.x],
            "y": [float(v) for v in self.y],
            "n_fit": int(self.n_fit),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PitCalibration:
        """The calibration stored by ``to_dict``; a damaged document raises a ConfigError."""
        try:
            if int(doc["version"]) != VERSION:
                raise ConfigError(f"calibration: unknown version {doc['version']!r}")
            return cls(
                mag_centres=np.asarray(doc["mag_centres"], dtype=np.float64),
                x=np.asarray(doc["x"], dtype=np.float64),
                y=np.asarray(doc["y"], dtype=np.float64),
                n_fit=int(doc["n_fit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"calibration: not a stored PIT calibration ({exc!r})") from None

    def transform(self, mag: np.ndarray | Tensor | None, n: int | None = None) -> PitTransform:
        """The per-galaxy g of galaxies with magnitudes ``mag`` (N,) (NaN or None: the middle
        bin's), as a ``PitTransform``; ``n`` galaxies when ``mag`` is None."""
        if mag is None:
            if n is None:
                raise ConfigError("transform: give the magnitudes or the number of galaxies")
            mag = np.full(n, np.nan)
        m = torch.as_tensor(np.asarray(mag, dtype=np.float64))
        centres = torch.as_tensor(self.mag_centres)
        b = len(centres)
        m = torch.where(torch.isfinite(m), m, centres[b // 2])
        if b == 1:
            lo = torch.zeros(len(m), dtype=torch.long)
            return PitTransform.between(self, lo, lo, torch.zeros(len(m), dtype=torch.float64))
        hi = torch.searchsorted(centres, m.contiguous()).clamp(1, b - 1)
        lo = hi - 1
        t = ((m - centres[lo]) / (centres[hi] - centres[lo])).clamp(0.0, 1.0)
        return PitTransform.between(self, lo, hi, t)


def fit_pit_calibration(
    pit: np.ndarray,
    mag: np.ndarray | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    min_per_bin: int = MIN_PER_BIN,
    max_bins: int = MAX_BINS,
    breaks: Sequence[float] = (),
    smooth: float = 0.0,
) -> PitCalibration:
    """Fit g on PIT values (N,) in [0, 1] of galaxies with known redshift, in magnitude bins of
    ``mag`` (N,) (None: one bin). Bins are quantiles of ``mag`` holding >= ``min_per_bin``
    galaxies each, at most ``max_bins``; g is interpolated in magnitude between the bins' medians.

    ``smooth`` > 0 (magnitudes): each bin's knots are replaced by a local-linear fit across the
    bins within ``smooth`` of its median (``smooth_knots``), so that a bin of few galaxies borrows
    from its neighbours what changes slowly with magnitude (the out-of-fold calibration's bright
    end: a few hundred spec-z per half magnitude).

    ``breaks``: magnitudes where the p(z) change abruptly (the combination's exponent bins): no
    bin straddles one and g jumps there instead of being interpolated across it
    (``_split_at_breaks``); a break with fewer than ``min_per_bin`` galaxies on a side is dropped."""
    pit = np.asarray(pit, dtype=np.float64)
    ok = np.isfinite(pit)
    if mag is not None:
        mag = np.asarray(mag, dtype=np.float64)
        if mag.shape != pit.shape:
            raise ConfigError(f"mag: expected shape {pit.shape}, got {mag.shape}")
        ok &= np.isfinite(mag)
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or len(lv) < 2 or not (np.all(np.diff(lv) > 0) and 0 < lv[0] and lv[-1] < 1):
        raise ConfigError(f"levels: expected >= 2 increasing values in (0, 1), got {list(lv)}")
    n = int(ok.sum())
    if n < 2 * len(lv):
        raise ConfigError(
            f"pit: {n} finite values, too few to fit a calibration with {len(lv)} knots"
        )
    if np.any((pit[ok] < 0) | (pit[ok] > 1)):
        raise ConfigError("pit: values must lie in [0, 1]")
    x = probit(pit[ok])
    bins = 1 if mag is None else int(np.clip(n // max(1, min_per_bin), 1, max_bins))
    if bins == 1:
        centre = np.array([np.median(mag[ok]) if mag is not None else 0.0])
        return PitCalibration(centre, _knots(x, lv)[None], _probit_levels(lv), n)
    m = mag[ok]
    segments = _segments(m, np.asarray(breaks, dtype=np.float64), min_per_bin)
    parts = [
        _fit_segment(x[sel], m[sel], lv, _segment_bins(sel, bins, n), smooth) for sel in segments
    ]
    centres, knots = _split_at_breaks(parts)
    return PitCalibration(centres, knots, _probit_levels(lv), n)


def _segments(m: np.ndarray, breaks: np.ndarray, min_per_bin: int) -> list[np.ndarray]:
    """(N,) bool masks of the magnitude ranges between ``breaks`` (sorted), a range with fewer
    than ``min_per_bin`` galaxies merged into its smaller neighbour."""
    cuts = [float(b) for b in np.sort(breaks) if m.min() < b <= m.max()]
    while True:
        idx = np.searchsorted(np.asarray(cuts), m, side="right")
        counts = np.bincount(idx, minlength=len(cuts) + 1)
        small = np.flatnonzero(counts < min_per_bin)
        if not len(cuts) or not len(small):
            return [idx == s for s in range(len(cuts) + 1)]
        s = int(small[np.argmin(counts[small])])
        left = counts[s - 1] if s > 0 else np.inf
        right = counts[s + 1] if s < len(cuts) else np.inf
        del cuts[s - 1 if left <= right else s]


def _segment_bins(sel: np.ndarray, bins: int, n: int) -> int:
    """A magnitude range's share of ``bins`` (>= 1), by its share of the ``n`` galaxies."""
    return max(1, int(bins * sel.sum() // n))


def _fit_segment(
    x: np.ndarray, m: np.ndarray, lv: np.ndarray, bins: int, smooth: float = 0.0
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Medians (b,), knots (b, K) of ``bins`` quantile bins of one magnitude range (smoothed
    across it when ``smooth`` > 0), and its span."""
    edges = np.quantile(m, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, bins - 1)
    used = [i for i in range(bins) if np.any(idx == i)]
    centres = np.array([np.median(m[idx == i]) for i in used])
    knots = np.stack([_knots(x[idx == i], lv) for i in used])
    if smooth > 0 and len(used) > 1:
        counts = np.bincount(idx, minlength=bins)[used].astype(np.float64)
        knots = smooth_knots(centres, knots, counts, smooth)
    return centres, knots, (float(m.min()), float(m.max()))


def smooth_knots(
    centres: np.ndarray, knots: np.ndarray, counts: np.ndarray, span: float
) -> np.ndarray:
    """Knots (B, K) of bins at magnitudes ``centres`` (B,) holding ``counts`` (B,) galaxies,
    each replaced by the value at its own centre of a weighted least-squares line through the
    bins within ``span`` magnitudes (weights: counts x tricube(distance / span), as in LOESS).
    Exact for knots linear in magnitude; a bin alone within ``span`` keeps its knots. Knots are
    kept strictly increasing along K."""
    out = np.empty_like(knots)
    for b, c in enumerate(centres):
        w = counts * np.clip(1.0 - (np.abs(centres - c) / span) ** 3, 0.0, None) ** 3
        mean_c = np.sum(w * centres) / w.sum()
        dc = centres - mean_c
        var = np.sum(w * dc**2)
        mean_k = w @ knots / w.sum()
        slope = (w * dc) @ knots / var if var > 0 else np.zeros(knots.shape[1])
        out[b] = _increasing(mean_k + slope * (c - mean_c))
    return out


def _split_at_breaks(
    parts: list[tuple[np.ndarray, np.ndarray, tuple[float, float]]],
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (B,) and knots (B, K) of consecutive magnitude ranges, made to jump between two
    ranges: each range's outer bins repeated at its ends, so the interpolation in magnitude stays
    inside a range (ties of medians: the first kept)."""
    if len(parts) == 1:
        centres, knots, _ = parts[0]
    else:
        cs, ks = [], []
        for i, (c, k, (lo, hi)) in enumerate(parts):
            start = [lo] if i > 0 and lo < c[0] else []
            end = [hi] if i < len(parts) - 1 and hi > c[-1] else []
            cs.append(np.concatenate([start, c, end]))
            ks.append(np.concatenate([k[:1]] * len(start) + [k] + [k[-1:]] * len(end)))
        centres, knots = np.concatenate(cs), np.concatenate(ks)
    keep = np.concatenate([[True], np.diff(centres) > 0])
    return centres[keep], knots[keep]


def probit(u: np.ndarray) -> np.ndarray:
    """Phi^-1(u) (N,) clipped to +-PROBIT_CLIP (u = 0 or 1 included)."""
    from scipy.special import ndtri

    lim = PROBIT_CLIP
    return np.clip(ndtri(np.clip(u, 0.0, 1.0)), -lim, lim)


def _probit_levels(levels: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(levels)


def _knots(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(K,) strictly increasing quantiles of x at ``levels``."""
    return _increasing(np.quantile(x, levels))


def _increasing(q: np.ndarray) -> np.ndarray:
    """(K,) knots made strictly increasing: each at least _MIN_GAP above the one before."""
    q = np.array(q, dtype=np.float64)
    for i in range(1, len(q)):
        q[i] = max(q[i], q[i - 1] + _MIN_GAP)
    return q


def _slopes(x: Tensor, y: Tensor) -> Tensor:
    """(..., K) derivatives at the knots of the monotone (Fritsch-Carlson) cubic through x, y
    (..., K): weighted harmonic means of the neighbouring secants inside; at the ends the secant
    over two intervals, limited to (0, 3 x the end secant] so the cubic stays monotone."""
    h = x[..., 1:] - x[..., :-1]
    delta = (y[..., 1:] - y[..., :-1]) / h  # (..., K-1) > 0
    w1 = 2 * h[..., 1:] + h[..., :-1]
    w2 = h[..., 1:] + 2 * h[..., :-1]
    inner = (w1 + w2) / (w1 / delta[..., :-1] + w2 / delta[..., 1:])
    if x.shape[-1] > 2:
        first = (y[..., 2] - y[..., 0]) / (x[..., 2] - x[..., 0])
        last = (y[..., -1] - y[..., -3]) / (x[..., -1] - x[..., -3])
    else:
        first = last = delta[..., 0]
    first = torch.minimum(first, 3 * delta[..., 0]).clamp_min(_MIN_SLOPE)
    last = torch.minimum(last, 3 * delta[..., -1]).clamp_min(_MIN_SLOPE)
    return torch.cat([first[..., None], inner, last[..., None]], dim=-1)


def _cubic(xk: Tensor, yk: Tensor, dk: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """h(x) and h'(x) (n, P) of the Hermite cubic with knots xk, yk, slopes dk (n, K); linear
    with the end slopes beyond the outer knots."""
    k = xk.shape[-1]
    i = torch.searchsorted(xk.contiguous(), x.contiguous()).clamp(1, k - 1) - 1  # (n, P)
    x0, x1 = xk.gather(-1, i), xk.gather(-1, i + 1)
    y0, y1 = yk.gather(-1, i), yk.gather(-1, i + 1)
    d0, d1 = dk.gather(-1, i), dk.gather(-1, i + 1)
    w = x1 - x0
    t = ((x - x0) / w).clamp(0.0, 1.0)
    t2, t3 = t * t, t * t * t
    value = (
        (2 * t3 - 3 * t2 + 1) * y0
        + (t3 - 2 * t2 + t) * w * d0
        + (-2 * t3 + 3 * t2) * y1
        + (t3 - t2) * w * d1
    )
    slope = (6 * t2 - 6 * t) * (y0 - y1) / w + (3 * t2 - 4 * t + 1) * d0 + (3 * t2 - 2 * t) * d1
    below, above = x < xk[..., :1], x > xk[..., -1:]
    value = torch.where(below, yk[..., :1] + dk[..., :1] * (x - xk[..., :1]), value)
    value = torch.where(above, yk[..., -1:] + dk[..., -1:] * (x - xk[..., -1:]), value)
    slope = torch.where(below, dk[..., :1].expand_as(x), slope)
    slope = torch.where(above, dk[..., -1:].expand_as(x), slope)
    return value, slope


def clip_window(x: Tensor) -> Tensor | None:
    """(N, W) column indices of each row of ``x`` (N, P) covering its values other than exactly
    +-PROBIT_CLIP (one window width W for all rows, clamped at the last column), or None when
    W would exceed P / 2 (evaluating everything is then as cheap)."""
    n, p = x.shape
    inner = x.abs() != PROBIT_CLIP
    if p < 16 or n == 0:
        return None
    cols = torch.arange(p, device=x.device)
    first = torch.where(inner, cols, p).amin(-1).clamp_max(p - 1)  # (N,)
    last = torch.where(inner, cols, -1).amax(-1)
    width = int((last - first).amax()) + 1
    if width > p // 2:
        return None
    return (first[:, None] + torch.arange(max(width, 1), device=x.device)).clamp_max(p - 1)


class PitTransform:
    """g of each of N galaxies: the monotone cubic through knots interpolated in magnitude between
    two bins, x = (1 - t) x_lo + t x_hi, 0 <= t <= 1 (quantile averaging). Methods
    take (N, P) values (one row per galaxy; P may be 1) and return (N, P) float64 tensors."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x = x  # (N, K) per-galaxy knots, strictly increasing
        self.y = y.expand_as(x)  # (N, K)
        self.d = _slopes(self.x, self.y)  # (N, K)

    @classmethod
    def between(cls, cal: PitCalibration, lo: Tensor, hi: Tensor, t: Tensor) -> PitTransform:
        """Knots of bins ``lo``, ``hi`` (N,) mixed with weights 1 - t, t (N,), kept increasing."""
        xb = torch.as_tensor(cal.x, dtype=torch.float64)  # (B, K)
        tt = t.double()[:, None]
        x = (1 - tt) * xb[lo] + tt * xb[hi]  # (N, K)
        return cls(x, torch.as_tensor(cal.y, dtype=torch.float64))

    def __len__(self) -> int:
        return len(self.x)

    def take(self, rows: slice | Tensor) -> PitTransform:
        """The transform of galaxies ``rows`` only."""
        out = PitTransform.__new__(PitTransform)
        out.x, out.y, out.d = self.x[rows], self.y[rows], self.d[rows]
        return out

    def to(self, device: torch.device) -> PitTransform:
        out = PitTransform.__new__(PitTransform)
        out.x, out.y, out.d = self.x.to(device), self.y.to(device), self.d.to(device)
        return out

    def h(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """h(x) and h'(x) for probit values x (N, P). Where a row's values lie at +-PROBIT_CLIP
        outside a window of its points (a CDF on a grid within float64 of 0 or 1 away from its
        p(z): most of a narrow p(z)'s grid), the cubic is evaluated in the window and once at
        each clip value (the same numbers, a fraction of the time and memory)."""
        window = clip_window(x)
        if window is None:
            return _cubic(self.x, self.y, self.d, x)
        ends = torch.tensor([-PROBIT_CLIP, PROBIT_CLIP], dtype=x.dtype, device=x.device)
        ends = ends.expand(len(x), 2)
        side = (x > 0).long()
        value, slope = (e.gather(-1, side) for e in _cubic(self.x, self.y, self.d, ends))
        inner_value, inner_slope = _cubic(self.x, self.y, self.d, x.gather(-1, window))
        return value.scatter(-1, window, inner_value), slope.scatter(-1, window, inner_slope)

    def repeat_rows(self, k: int) -> PitTransform:
        """The transform with each galaxy's row repeated ``k`` times (row i -> rows ik..ik+k-1)."""
        out = PitTransform.__new__(PitTransform)
        out.x, out.y, out.d = (a.repeat_interleave(k, 0) for a in (self.x, self.y, self.d))
        return out

    def forward(self, u: Tensor) -> Tensor:
        """g(u): the calibrated CDF at points where the raw CDF is u (N, P); g(0) = 0, g(1) = 1."""
        u = u.double()
        x = torch.special.ndtri(u.clamp(0.0, 1.0)).clamp(-PROBIT_CLIP, PROBIT_CLIP)
        g = torch.special.ndtr(self.h(x)[0])
        return torch.where(u <= 0, 0.0, torch.where(u >= 1, 1.0, g))

    def log_slope(self, u: Tensor) -> Tensor:
        """log g'(u) (N, P): p'(z) = g'(F(z)) p(z)."""
        return self.probit_h(u)[0]

    def probit_h(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(log g'(u), h(x)) (N, P) each, x = Phi^-1(u) clipped to +-PROBIT_CLIP: the calibrated
        CDF is Phi(h(x))."""
        x = torch.special.ndtri(u.double().clamp(0.0, 1.0)).clamp(-PROBIT_CLIP, PROBIT_CLIP)
        hx, dh = self.h(x)
        return 0.5 * (x * x - hx * hx) + torch.log(dh), hx

    def inverse(self, q: Tensor) -> Tensor:
        """g^-1(q) (N, P) for q in (0, 1), by bisection in probit space (to 1e-13)."""
        return torch.special.ndtr(self.h_inverse(torch.special.ndtri(q.double())))

    def h_inverse(self, target: Tensor) -> Tensor:
        """The probit values x (N, P) with h(x) = ``target`` (N, P), by bisection (to 1e-13)."""
        target = target.double()
        lo = torch.full_like(target, -60.0)
        hi = torch.full_like(target, 60.0)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = self.h(mid)[0] < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return 0.5 * (lo + hi)


def compose_calibrations(
    first: PitCalibration, second: PitCalibration, scale: PoolScale | None = None
) -> PitCalibration:
    """One calibration doing ``first`` (its probit times ``scale`` lambda(mag), when given), then
    ``second``: h(x) = h2(lambda h1(x)), as knots at ``second``'s levels, x_j = h1^-1(x2_j /
    lambda), at the magnitudes of all three (between them the knots are interpolated, as for any
    calibration). Used to add a stage fitted on held-out galaxies to a run's calibration."""
    if np.shape(first.y) != np.shape(second.y) or not np.allclose(first.y, second.y):
        raise ConfigError("compose: both calibrations must use the same quantile levels")
    centres = [first.mag_centres, second.mag_centres]
    if scale is not None:
        centres.append(scale.mag_centres)
    mags = np.unique(np.concatenate(centres))
    lam = np.ones(len(mags)) if scale is None else scale.at(mags)
    x2 = second.transform(mags).x.numpy()  # (B, K) second stage's knots at those magnitudes
    x = first.transform(mags).h_inverse(torch.as_tensor(x2 / lam[:, None])).numpy()
    x = np.clip(x, -PROBIT_CLIP, PROBIT_CLIP)
    for j in range(1, x.shape[1]):  # ties at the clip: keep the knots strictly increasing
        x[:, j] = np.maximum(x[:, j], x[:, j - 1] + _MIN_GAP)
    return PitCalibration(mags, x, np.asarray(second.y, dtype=np.float64), second.n_fit)


def refit_mixture(mix: GaussianMixture, transform: PitTransform) -> GaussianMixture:
    """The calibrated p'(z) = g'(F(z)) p(z) of ``mix`` (batch (N,), C components) as a mixture
    with the same C components: component i's share of p'(z), w_i g'(F(z)) N(z; mu_i, sigma_i), is
    replaced by the Gaussian of the same mass, mean and variance (moments by the trapezoid rule
    over +-REFIT_SPAN sigma_i). The shape within a component is lost, and so is the mass a
    stretching g puts beyond +-REFIT_SPAN sigma (its mean falls short of the calibrated p(z)'s on
    a skewing calibration: ``refit_with_mean`` gives the exact one); zero-weight components stay
    zero; float64."""
    return refit_with_mean(mix, transform)[0]


def refit_with_mean(
    mix: GaussianMixture, transform: PitTransform
) -> tuple[GaussianMixture, Tensor]:
    """(``refit_mixture``, (N,) exact mean of the calibrated p(z) with CDF G(z) = g(F(z))).

    mean = sum_i w_i mu_i (the raw p(z)'s) + the integral of F - G over all z, [a, b] the
    components' mu +- REFIT_SPAN sigma. Inside, the trapezoid rule on the refit's own points
    (each component's REFIT_POINTS, all sorted together: every component's range is sampled at
    0.8 of its sigma or finer) and MEAN_CORE_POINTS evenly spaced ones, its ends corrected by
    the densities there (Euler-Maclaurin); beyond, MEAN_TAIL_POINTS per side out to where the
    calibrated tail falls below 1e-17 however far g stretches it (h^-1(+-8.5), up to 37 sigma),
    with F and 1 - F each summed from the components' own tails (``_tail_probit``). An identity
    g gives the raw mean exactly. Each galaxy is refitted on its own components that are not
    negligible under its g (``negligible_components``; zero weights, e.g. the networks an
    out-of-fold galaxy is not predicted by, and weights that cannot move G by 1e-14), galaxies
    with as many of them together (``alike_rows``): the cost is that of a galaxy's own
    components, and its numbers do not depend on which galaxies share its call
    (docs/benchmarks.md, thirteenth session)."""
    if len(mix.batch_shape) != 1 or mix.batch_shape[0] != len(transform):
        raise ConfigError(
            f"refit_mixture: mixture batch {tuple(mix.batch_shape)} does not match "
            f"{len(transform)} galaxies"
        )
    w = mix.weights.double()  # (N, C)
    loc, scale = mix.loc.double().expand_as(w), mix.scale.double().expand_as(w)
    w = torch.where(negligible_components(w, transform), 0.0, w)
    out_w, out_loc, out_scale = torch.zeros_like(w), loc.clone(), scale.clone()
    mean = (w * loc).sum(-1)  # the raw mean; + the integral of F - G below
    for rows, used in alike_rows(w > 0):
        order = torch.argsort(w[rows], dim=1, descending=True)[:, :used]  # (n, used)
        pick = (w[rows].gather(1, order), loc[rows].gather(1, order), scale[rows].gather(1, order))
        part = transform.take(rows)
        nw, nl, ns, core = _refit_block(*pick, part)
        out_w[rows] = torch.zeros_like(w[rows]).scatter(1, order, nw)
        out_loc[rows] = out_loc[rows].scatter(1, order, nl)
        out_scale[rows] = out_scale[rows].scatter(1, order, ns)
        mean[rows] += core[:, 2] + _tail_integrals(*pick, part, core[:, 0], core[:, 1])
    log_w = torch.where(out_w > 0, torch.log(out_w), -torch.inf)
    return GaussianMixture.from_params(log_w, out_loc, out_scale), mean


def negligible_components(w: Tensor, transform: PitTransform) -> Tensor:
    """(N, C) bool: components whose weight w (N, C) moves their galaxy's calibrated CDF g(F) by
    less than REFIT_NEGLIGIBLE anywhere, so the refit and the mean may leave them out. Removing
    mass w from F moves G by at most g(w) - g(0+) where F is near 0, 1 - g(1 - w) - (1 - g(1-))
    where it is near 1 (a broadening g amplifies the tails: with h(x) = x / 4 a component of weight
    1e-12 holds 4% of the calibrated mass, and is kept), and w max g' in between, g' taken at the
    knots (g' = h' phi(h) / phi(x))."""
    x = torch.special.ndtri(w.clamp(1e-300, 0.5)).clamp(-PROBIT_CLIP, PROBIT_CLIP)  # (N, C) <= 0
    edge = torch.full_like(w[:, :1], -PROBIT_CLIP)
    low = transform.h(torch.cat([x, edge], 1))[0]  # h near F = 0
    high = transform.h(-torch.cat([x, edge], 1))[0]  # h near F = 1
    lower = _upper_tail(-low[:, :-1]) - _upper_tail(-low[:, -1:])
    upper = _upper_tail(high[:, :-1]) - _upper_tail(high[:, -1:])
    knots = torch.exp(0.5 * (transform.x**2 - transform.y**2)) * transform.d  # (N, K) g'
    moved = torch.maximum(torch.maximum(lower, upper), w * knots.amax(1, keepdim=True))
    return moved < REFIT_NEGLIGIBLE


def alike_rows(used: Tensor) -> Iterator[tuple[Tensor, int]]:
    """Blocks of rows (n,) of ``used`` (N, C) bool with the same number of True, and that number
    (at least 1), blocks of at most REFIT_BLOCK / (number^2 REFIT_POINTS) rows: the refit of a
    galaxy then costs what its own components cost, not the most any galaxy has."""
    count = used.sum(1)
    for c in torch.unique(count).tolist():
        alike = torch.nonzero(count == c).squeeze(1)
        c = max(int(c), 1)
        step = max(1, REFIT_BLOCK // (c * c * REFIT_POINTS))
        for s in range(0, len(alike), step):
            yield alike[s : s + step], c


def _refit_block(
    w: Tensor, loc: Tensor, scale: Tensor, transform: PitTransform
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Moment-matched weights, means, sigmas (n, c) of the components (n, c) of one block, and
    (n, 3): a, b (the used components' mu +- REFIT_SPAN sigma) and the integral of F - G over
    [a, b] (``refit_with_mean``)."""
    n, c = w.shape
    t = torch.linspace(-REFIT_SPAN, REFIT_SPAN, REFIT_POINTS, dtype=w.dtype, device=w.device)
    base = torch.exp(-0.5 * t * t)  # (P,) the component's own density, up to a constant
    z = loc[..., None] + scale[..., None] * t  # (n, c, P)
    cdf = _mixture_cdf(w, loc, scale, z.reshape(n, -1))  # (n, c*P)
    log_slope, hx = transform.probit_h(cdf)
    dens = torch.exp(log_slope.reshape(n, c, -1)) * base  # (n, c, P)
    m0 = dens.sum(-1).clamp_min(1e-300)
    m1 = (dens * t).sum(-1) / m0
    var = ((dens * t * t).sum(-1) / m0 - m1 * m1).clamp_min(_MIN_VARIANCE)
    mass = w * m0 / base.sum()
    core = _core_integral(w, loc, scale, z.reshape(n, -1), cdf, hx, transform)
    return mass, loc + scale * m1, scale * torch.sqrt(var), core


def _core_integral(
    w: Tensor,
    loc: Tensor,
    scale: Tensor,
    z: Tensor,
    cdf: Tensor,
    hx: Tensor,
    transform: PitTransform,
) -> Tensor:
    """(n, 3): a, b and the integral of F - G = (1 - G) - (1 - F) over [a, b] from the refit's
    points z (n, M) (``cdf`` = F and ``hx`` = h(x) there) and MEAN_CORE_POINTS evenly spaced
    ones: the trapezoid rule on the points sorted and clamped into [a, b] (points of zero-weight
    components outside add nothing), corrected at both ends by step^2 / 12 times the difference
    of the densities (Euler-Maclaurin: the rule's leading error where the integrand does not
    flatten out, at a stretched tail's edge). F - G is 0 for an identity g, whatever the grid."""
    used = w > 0
    a = torch.where(used, loc - REFIT_SPAN * scale, torch.inf).amin(-1)  # (n,)
    b = torch.where(used, loc + REFIT_SPAN * scale, -torch.inf).amax(-1)
    v = torch.linspace(0.0, 1.0, MEAN_CORE_POINTS, dtype=w.dtype, device=w.device)
    even = a[:, None] + (b - a)[:, None] * v  # (n, MEAN_CORE_POINTS): a few components' points
    even_cdf = _mixture_cdf(w, loc, scale, even)  # are far apart (0.8 sigma): these make the
    hx = torch.cat([hx, transform.probit_h(even_cdf)[1]], 1)  # step (b - a) / 63 or less
    cdf, z = torch.cat([cdf, even_cdf], 1), torch.cat([z, even], 1)
    zs, order = torch.sort(torch.maximum(torch.minimum(z, b[:, None]), a[:, None]), dim=1)
    f = (_upper_tail(hx) - (1.0 - cdf)).gather(1, order)  # F - G at the sorted points
    width = zs[:, 1:] - zs[:, :-1]
    integral = (0.5 * (f[:, 1:] + f[:, :-1]) * width).sum(-1)
    nonzero = (width > 0).to(torch.uint8)
    first = width.gather(1, nonzero.argmax(1, keepdim=True)).squeeze(1)
    last_at = width.shape[1] - 1 - nonzero.flip(1).argmax(1, keepdim=True)
    last = width.gather(1, last_at).squeeze(1)
    dens = _density_excess(w, loc, scale, torch.stack([a, b], 1), transform)  # (n, 2)
    integral = integral + (last**2 * dens[:, 1] - first**2 * dens[:, 0]) / 12.0
    return torch.stack([a, b, integral], 1)


def _density_excess(
    w: Tensor, loc: Tensor, scale: Tensor, z: Tensor, transform: PitTransform
) -> Tensor:
    """(n, K) p'(z) - p(z) = (g'(F(z)) - 1) p(z) at points z (n, K): minus the derivative of
    F - G."""
    u = (z[:, :, None] - loc[:, None, :]) / scale[:, None, :]  # (n, K, C)
    pdf = (w[:, None, :] * torch.exp(-0.5 * u * u) / scale[:, None, :]).sum(-1) / _SQRT_2PI
    return torch.expm1(transform.log_slope(_mixture_cdf(w, loc, scale, z))) * pdf


def _upper_tail(x: Tensor) -> Tensor:
    """1 - Phi(x) by erfc, exact to the last digits far out (torch.special.ndtr(-x) is 2% off at
    x = 8 and 0 beyond 11)."""
    return 0.5 * torch.erfc(x / _SQRT2)


def _tail_integrals(
    w: Tensor, loc: Tensor, scale: Tensor, transform: PitTransform, a: Tensor, b: Tensor
) -> Tensor:
    """(N,) integral of F - G over z < a and z > b, on MEAN_TAIL_POINTS per side spaced as
    edge + (far - edge) v^3 for uniform v (no end correction at the edge, where dz/dv = 0; ~no
    mass at the far end), in blocks of galaxies."""
    out = torch.zeros_like(a)
    step = max(1, (1 << 20) // (2 * MEAN_TAIL_POINTS * w.shape[1]))
    for s in range(0, len(w), step):
        sl = slice(s, s + step)
        out[sl] = _tail_block(w[sl], loc[sl], scale[sl], transform.take(sl), a[sl], b[sl])
    return out


def _tail_block(
    w: Tensor, loc: Tensor, scale: Tensor, transform: PitTransform, a: Tensor, b: Tensor
) -> Tensor:
    """``_tail_integrals`` of one block."""
    reach = torch.tensor([-MEAN_TAIL_PROBIT, MEAN_TAIL_PROBIT], dtype=w.dtype, device=w.device)
    ends = transform.h_inverse(reach.expand(len(w), -1))  # (n, 2): probit of F at the ends
    x_lo = ends[:, :1].clamp(-MEAN_MAX_PROBIT, -REFIT_SPAN)
    x_hi = ends[:, 1:].clamp(REFIT_SPAN, MEAN_MAX_PROBIT)
    used = w > 0
    far_lo = torch.minimum(torch.where(used, loc + x_lo * scale, torch.inf).amin(-1), a)
    far_hi = torch.maximum(torch.where(used, loc + x_hi * scale, -torch.inf).amax(-1), b)
    v = torch.linspace(0.0, 1.0, MEAN_TAIL_POINTS, dtype=w.dtype, device=w.device) ** 3
    left = a[:, None] + (far_lo - a)[:, None] * v  # (n, T) from a down
    right = b[:, None] + (far_hi - b)[:, None] * v  # from b up
    x, cdf, sf = _tail_probit(w, loc, scale, torch.cat([left, right], 1))
    y, k = transform.h(x)[0], MEAN_TAIL_POINTS
    below = _trapezoid(_upper_tail(-y[:, :k]) - cdf[:, :k], left)  # G - F: left decreases
    return _trapezoid(_upper_tail(y[:, k:]) - sf[:, k:], right) + below


def _trapezoid(f: Tensor, z: Tensor) -> Tensor:
    """(n,) trapezoid sums of f (n, P) along z (n, P), in the order given."""
    return (0.5 * (f[:, 1:] + f[:, :-1]) * (z[:, 1:] - z[:, :-1])).sum(-1)


def _tail_probit(w: Tensor, loc: Tensor, scale: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x, F, 1 - F) (n, P) each at points z (n, P): x = Phi^-1(F(z)) from F below the median
    and from 1 - F above it, each summed from the components' own tails (1 - F never rounded to
    0): exact out to ~37 sigma. With e_i twice component i's smaller tail and s_i = +1 below its
    mean, -1 above: F = H + sum s w e / 2 and 1 - F = L - sum s w e / 2, H and L the weights of
    the components below and above z."""
    u = (z[:, :, None] - loc[:, None, :]) / (scale[:, None, :] * _SQRT2)  # (n, P, C)
    below = u < 0  # z below component i's mean
    e = torch.erfc(u.abs())
    wc = w.unsqueeze(-1)  # (n, C, 1)
    signed = torch.bmm(torch.where(below, e, -e), 0.5 * wc).squeeze(-1)
    low = torch.bmm(below.to(w.dtype), wc).squeeze(-1)  # weight of the components above z
    high = torch.bmm((~below).to(w.dtype), wc).squeeze(-1)  # ... and below it
    cdf, sf = high + signed, low - signed  # exact 0 sums in the far tails
    x_low = torch.special.ndtri(cdf.clamp(0.0, 1.0))
    return torch.where(cdf <= sf, x_low, -torch.special.ndtri(sf.clamp(0.0, 1.0))), cdf, sf


def _mixture_cdf(w: Tensor, loc: Tensor, scale: Tensor, z: Tensor) -> Tensor:
    """(N, P) CDF of mixtures (N, C) at points z (N, P), in blocks of galaxies."""
    out = torch.empty_like(z)
    inv, half = 1.0 / (scale * _SQRT2), 0.5 * w
    step = max(1, (1 << 22) // max(1, z.shape[1] * w.shape[1]))
    for s in range(0, len(z), step):
        sl = slice(s, s + step)
        u = (loc[sl, None, :] - z[sl, :, None]) * inv[
            sl, None, :
        ]  # (n, P, C): -(z - mu) / s / sqrt2
        out[sl] = torch.bmm(torch.erfc_(u), half[sl, :, None]).squeeze(-1)
    return out


def half_mag_edges(mag: np.ndarray) -> np.ndarray:
    """Half-magnitude bin edges that follow the finite ``mag`` (N,) (``metrics.data_mag_edges``):
    a PAUS-like catalogue gets E20's 17.5-22.5, an SDSS one 12.5-19, a deep one up to 25; no finite
    magnitude gives E20's."""
    return data_mag_edges(mag, 0.5)


def pit_coverage(pit: np.ndarray, level: float = 0.6827) -> float:
    """Fraction of PIT values (N,) inside the central ``level`` interval: the share of spec-z inside
    the central interval of that probability (0.6827 for the 68% interval); NaN when empty."""
    pit = np.asarray(pit, dtype=np.float64)
    pit = pit[np.isfinite(pit)]
    if not len(pit):
        return float("nan")
    lo, hi = 0.5 - level / 2, 0.5 + level / 2
    return float(np.mean((pit >= lo) & (pit <= hi)))


def coverage_noise(n: int, level: float = 0.6827) -> float:
    """Binomial standard deviation sqrt(level (1 - level) / n) of the share of ``n`` redshifts
    inside the central ``level`` interval when the p(z) are calibrated: how far a bin's coverage
    strays from ``level`` by chance alone (1.5 points at n = 1000, 3.3 at n = 200); NaN for n = 0."""
    return float(np.sqrt(level * (1.0 - level) / n)) if n > 0 else float("nan")


POOL_MIN_PER_BIN = 300  # fewest galaxies per magnitude bin of the pool scale
POOL_MAX_GALAXIES = 4000  # the pool scale is fitted on at most this many galaxies (a fixed subset)
POOL_DZ = 0.0005  # redshift step of the pool-scale integrals (see pool_grid)
POOL_SCALE_RANGE = (0.5, 3.0)  # bisection bracket of lambda
_POOL_BLOCK = 1 << 24  # galaxies x grid points x components per block of member CDFs


@dataclass(frozen=True)
class PoolScale:
    """lambda(mag) (B,) at the bins' median magnitudes (B,): the calibrated CDF of a p(z) pooled
    over all E networks is Phi(lambda h(Phi^-1(F(z)))) (``fit_pool_scale``); B = 1: one value."""

    mag_centres: np.ndarray
    scale: np.ndarray
    n_fit: int

    def at(self, mag: np.ndarray) -> np.ndarray:
        """(N,) lambda at magnitudes ``mag`` (N,), linear between the bin centres, constant beyond;
        NaN magnitudes get the middle bin's."""
        mag = np.asarray(mag, dtype=np.float64)
        mid = self.mag_centres[len(self.mag_centres) // 2]
        return np.interp(np.where(np.isfinite(mag), mag, mid), self.mag_centres, self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mag_centres": [float(v) for v in self.mag_centres],
            "scale": [float(v) for v in self.scale],
            "n_fit": int(self.n_fit),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PoolScale:
        try:
            out = cls(
                np.asarray(doc["mag_centres"], dtype=np.float64),
                np.asarray(doc["scale"], dtype=np.float64),
                int(doc["n_fit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"calibration: not a stored pool scale ({exc!r})") from None
        if out.scale.shape != out.mag_centres.shape or not np.all(out.scale > 0):
            raise ConfigError(f"calibration: bad pool scale {doc!r}")
        return out


def fit_pool_scale(
    weights: np.ndarray,
    means: np.ndarray,
    stds: np.ndarray,
    folds: tuple[int, int],
    mag: np.ndarray,
    cal: PitCalibration,
    grid: np.ndarray,
    min_per_bin: int = POOL_MIN_PER_BIN,
) -> PoolScale:
    """lambda per magnitude bin for p(z) pooled over all E = R x K networks (``folds`` = (R, K)),
    fitted without any redshift: on galaxies no network trained on (N,), each with the mixture
    (N, E*M) of all E members (member-major components r*K + k, each member's weights 1/E).

    A training galaxy's p(z) pools the R networks of its fold, one per repetition, and ``cal`` is
    fitted on those. A new galaxy is out of fold for every network, so each of its K fold pools
    (the R networks of fold k) calibrated by ``cal`` is calibrated; its p(z) pools all K of them,
    which is broader than each (they disagree), while the truth lies closer to their consensus
    than to any one of them. lambda is chosen so that, if the redshifts were distributed as the
    pooled calibrated p(z) narrowed by lambda, each fold pool's calibrated PIT would put 68.27% of
    them in its central 68.27% interval (for Gaussian fold pools of width s offset by tau around
    their mean: the width^2 s^2 - tau^2 (1 - 1/K), the error of the pooled mean). Integrals on
    ``grid`` (G,)."""
    mag = np.asarray(mag, dtype=np.float64)

    def scale_of(rows: np.ndarray) -> float:
        curves = _pool_curves(weights[rows], means[rows], stds[rows], folds, mag[rows], cal, grid)
        return bisect_pool_scale(*curves)

    return scale_per_bin(mag, scale_of, min_per_bin)


def pool_grid(z_min: float, z_max: float) -> np.ndarray:
    """(G,) redshifts of the pool-scale integrals, POOL_DZ apart whatever the output grid: a PAUS
    galaxy's p(z) can be 0.003 wide at iAB < 19, and lambda comes out within 1% of its converged
    value for p(z) >= 0.003 wide at this step (cells judged at their midpoints; 6% low at a step of
    0.002, 18% high at 0.002 judged at the cells' ends, as before)."""
    return np.arange(z_min, z_max + POOL_DZ / 2, POOL_DZ)


def pool_subset(rows: np.ndarray) -> np.ndarray:
    """At most POOL_MAX_GALAXIES of ``rows`` (N,): a fixed, sorted subset to fit a pool scale on."""
    if len(rows) <= POOL_MAX_GALAXIES:
        return rows
    return np.sort(np.random.default_rng(0).choice(rows, POOL_MAX_GALAXIES, replace=False))


def scale_per_bin(
    mag: np.ndarray, scale_of: Callable[[np.ndarray], float], min_per_bin: int = POOL_MIN_PER_BIN
) -> PoolScale:
    """A PoolScale with ``scale_of(rows)`` for the galaxies ``rows`` of each quantile bin of
    ``mag`` (N,) (>= ``min_per_bin`` galaxies each, at most MAX_BINS), at the bins' median
    magnitudes; an empty bin (repeated quantile edges when many galaxies share a magnitude) and
    ties of bin medians are skipped."""
    bins = int(np.clip(len(mag) // max(1, min_per_bin), 1, MAX_BINS))
    edges = np.quantile(mag, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, mag, side="right") - 1, 0, bins - 1)
    centres, scales = [], []
    for b in range(bins):
        rows = np.flatnonzero(idx == b)
        if len(rows):
            scales.append(scale_of(rows))
            centres.append(float(np.median(mag[rows])))
    keep = np.concatenate([[True], np.diff(centres) > 0])  # ties of bin medians: keep the first
    return PoolScale(np.asarray(centres)[keep], np.asarray(scales)[keep], len(mag))


def _pool_curves(
    w: np.ndarray,
    mu: np.ndarray,
    sd: np.ndarray,
    folds: tuple[int, int],
    mag: np.ndarray,
    cal: PitCalibration,
    grid: np.ndarray,
) -> tuple[Tensor, Tensor]:
    """h(Phi^-1(F_pool)) (n, G) and, per fold pool, whether its calibrated CDF lies inside the
    central 68.27% (n, K, G) bool, on ``grid`` (G,)."""
    n, c = w.shape
    reps, k = folds
    members = reps * k
    m = c // members
    z = torch.as_tensor(grid, dtype=torch.float64)
    tr = cal.transform(mag)
    hp = torch.empty(n, len(grid), dtype=torch.float64)
    inside = torch.empty(n, k, len(grid), dtype=torch.bool)
    step = max(1, _POOL_BLOCK // (len(grid) * c))
    lo, hi = 0.5 - 0.6827 / 2, 0.5 + 0.6827 / 2
    for s in range(0, n, step):
        sl = slice(s, s + step)
        wt, loc, scale = (torch.as_tensor(a[sl], dtype=torch.float64) for a in (w, mu, sd))
        comp = torch.special.ndtr((z[None, :, None] - loc[:, None, :]) / scale[:, None, :])  # n,G,C
        wb = wt.reshape(-1, members, m)
        fe = torch.einsum("ngem,nem->neg", comp.reshape(-1, len(grid), members, m), wb)
        fe = fe / wb.sum(-1, keepdim=True).clamp_min(1e-300)  # (n, E, G) member CDFs
        fe = fe.reshape(len(wb), reps, k, len(grid)).mean(1)  # (n, K, G) fold pools
        pool = fe.mean(1)  # (n, G)
        part = tr.take(sl)
        x = torch.special.ndtri(pool.clamp(0.0, 1.0)).clamp(-PROBIT_CLIP, PROBIT_CLIP)
        hp[sl] = part.h(x)[0]
        each = part.repeat_rows(k).forward(fe.reshape(-1, len(grid)))  # one CDF per row
        ge = cell_midpoints(each.reshape(fe.shape))
        inside[sl] = (ge > lo) & (ge < hi)
    return hp, inside


def cell_midpoints(cdf: Tensor) -> Tensor:
    """CDF values (..., G) on a grid moved to the midpoints of its cells [z_(j-1), z_j] (the first
    point kept): ``bisect_pool_scale`` weighs point j with the mass of that cell, so a cell judged
    at its midpoint is right to second order in the grid step, at its end point only to first (a
    p(z) ten cells wide comes out ~5% off)."""
    return torch.cat([cdf[..., :1], 0.5 * (cdf[..., 1:] + cdf[..., :-1])], dim=-1)


def bisect_pool_scale(hp: Tensor, inside: Tensor, iterations: int = 30) -> float:
    """lambda at which the members' expected 68% coverage under Phi(lambda hp) is 0.6827, from
    hp (n, G) = h(Phi^-1(F_pool)) on a grid and ``inside`` (n, K, G): where each member's (or
    fold's) calibrated CDF lies inside its central 68.27%."""
    n, k, _ = inside.shape
    count = inside.sum(1, dtype=torch.float64)  # (n, G) members inside at each point
    rows, cols = torch.nonzero(count, as_tuple=True)  # only these points' mass counts
    here, before = hp[rows, cols], hp[rows, (cols - 1).clamp_min(0)]
    weight = count[rows, cols] / (n * k)
    first = cols == 0  # the mass of a row's first point is its CDF there
    lo, hi = POOL_SCALE_RANGE
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        prev = torch.where(first, 0.0, torch.special.ndtr(mid * before))
        cov = float((weight * (torch.special.ndtr(mid * here) - prev)).sum())
        lo, hi = (lo, mid) if cov > 0.6827 else (mid, hi)
    return 0.5 * (lo + hi)
