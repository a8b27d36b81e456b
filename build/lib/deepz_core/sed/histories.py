"""Star-formation histories on the bagpipes age bins, and dust attenuation laws.

Each history returns the fraction of stellar mass formed in each lookback-age bin, (N, A), summing
to one per galaxy; ages are lookback times from the epoch of observation [yr].
"""

from __future__ import annotations

import numpy as np

GYR = 1e9


def _bin_overlap(edges: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, ...]:
    """Clip each age bin (A,) to [start, stop] (N,): returns lower and upper clipped edges (N, A)."""
    lo = np.clip(edges[None, :-1], start[:, None], stop[:, None])
    hi = np.clip(edges[None, 1:], start[:, None], stop[:, None])
    return lo, hi


def _normalise(mass: np.ndarray) -> np.ndarray:
    total = mass.sum(axis=1, keepdims=True)
    return mass / np.where(total > 0, total, 1.0)


def constant_sfh(edges: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """Constant star formation over lookback ages [0, duration] (N,) [yr] -> mass fractions (N, A)."""
    lo, hi = _bin_overlap(edges, np.zeros_like(duration), duration)
    return _normalise(hi - lo)


def exponential_sfh(edges: np.ndarray, duration: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """SFR ~ exp(-t / tau), t = time since star formation began ``duration`` ago (N,) [yr].

    E20 Table 1 (FSPS sfh=4 without the delay): at lookback age a, t = duration - a, so the mass in
    [a1, a2] is tau (exp(-(duration - a2) / tau) - exp(-(duration - a1) / tau)).
    """
    lo, hi = _bin_overlap(edges, np.zeros_like(duration), duration)
    d, t = duration[:, None], tau[:, None]
    return _normalise(t * (np.exp(-(d - hi) / t) - np.exp(-(d - lo) / t)))


def delayed_sfh(edges: np.ndarray, duration: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """SFR ~ t exp(-t / tau) with t = time since formation (a different family from E20's)."""
    lo, hi = _bin_overlap(edges, np.zeros_like(duration), duration)
    d, t = duration[:, None], tau[:, None]

    def cumulative(age: np.ndarray) -> np.ndarray:
        # integral of s exp(-s / tau) ds from 0 to s = d - age, written as a function of age
        s = d - age
        return t * t - t * np.exp(-s / t) * (s + t)

    return _normalise(cumulative(lo) - cumulative(hi))


def burst_sfh(edges: np.ndarray, age: np.ndarray, width: np.ndarray) -> np.ndarray:
    """A recent burst: constant star formation between lookback ages age and age + width [yr]."""
    lo, hi = _bin_overlap(edges, age, age + width)
    return _normalise(hi - lo)


def calzetti_k(wavelength: np.ndarray) -> np.ndarray:
    """Calzetti et al. (2000) starburst curve k(lambda) = A(lambda) / E(B-V), R_V = 4.05.

    Below 1200 A the UV branch is extrapolated linearly in 1/lambda; beyond 2.2 micron it is clipped.
    """
    x = 1e4 / np.asarray(wavelength, dtype=np.float64)  # inverse micron
    uv = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + 4.05
    ir = 2.659 * (-1.857 + 1.040 * x) + 4.05
    k = np.where(x >= 1.0 / 0.63, uv, ir)
    x12 = 1e4 / 1200.0
    slope = 2.659 * (1.509 - 2 * 0.198 * x12 + 3 * 0.011 * x12**2)
    k_uv_edge = 2.659 * (-2.156 + 1.509 * x12 - 0.198 * x12**2 + 0.011 * x12**3) + 4.05
    k = np.where(x > x12, k_uv_edge + slope * (x - x12), k)
    return np.clip(k, 0.0, None)


def calzetti_transmission(wavelength: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """Dust transmission (N, L) = 10^(-0.4 E(B-V) k(lambda)) for colour excesses ebv (N,)."""
    k = calzetti_k(wavelength).astype(np.float32)
    return np.power(10.0, -0.4 * ebv[:, None].astype(np.float32) * k[None, :])


def power_law_transmission(wavelength: np.ndarray, tau_v: np.ndarray, slope: float) -> np.ndarray:
    """Charlot & Fall (2000) style transmission exp(-tau_V (lambda / 5500 A)^-slope), (N, L)."""
    shape = (np.asarray(wavelength, dtype=np.float32) / 5500.0) ** (-slope)
    return np.exp(-tau_v[:, None].astype(np.float32) * shape[None, :])
