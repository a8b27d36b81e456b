"""p(z) products of a template fit (E20 Appendix A eq. A2, Sec. 6): p(z) ~ exp(-chi2_min(z) / 2).

chi2_min is interpolated linearly from the fit grid onto the deepz ``PzConfig`` grid (0..1.5, step
0.001) and p(z) is normalised there with the trapezoid rule, the density being piecewise linear
between grid points. Point products match ``pz.point_products``: mode, mean, median, 68% interval,
ODDS (integral over mode +- odds_window / 2) and PIT (CDF at zspec).

For tools that read deepz predictions (``evaluate``: CDE loss, PIT), p(z) is also stored as a small
Gaussian mixture in deepz's 'mixmod' columns: the grid is cut at the local minima around its highest
peaks and each of the M heaviest segments becomes one component with the segment's mass, mean and
standard deviation. The point columns always come from the exact grid. Shapes: N galaxies, G grid.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from deepz_core.pz.products import PzConfig


def chi2_pz_grid(chi2: Tensor, z_fit: np.ndarray, pz: PzConfig) -> Tensor:
    """(N, G) float64 p(z) on ``pz.grid()`` from chi2_min (N, Zfit) on the fit grid ``z_fit``."""
    grid = torch.as_tensor(pz.grid(), dtype=torch.float64, device=chi2.device)
    zf = torch.as_tensor(z_fit, dtype=torch.float64, device=chi2.device)
    pos = torch.searchsorted(zf, grid.contiguous()).clamp(1, len(zf) - 1)  # (G,)
    t = ((grid - zf[pos - 1]) / (zf[pos] - zf[pos - 1])).clamp(0, 1)
    c = (1 - t) * chi2[:, pos - 1] + t * chi2[:, pos]  # (N, G)
    p = torch.exp(-0.5 * (c - c.amin(1, keepdim=True)))
    return p / trapezoid(p, pz.dz)[:, None]


def trapezoid(p: Tensor, dz: float) -> Tensor:
    """(N,) integral of p (N, G) on a uniform grid of step dz."""
    return dz * (p.sum(1) - 0.5 * (p[:, 0] + p[:, -1]))


def cdf_grid(p: Tensor, dz: float) -> Tensor:
    """(N, G) cumulative trapezoid integral of p (N, G), starting at 0."""
    steps = 0.5 * dz * (p[:, 1:] + p[:, :-1])
    return torch.cat([torch.zeros_like(p[:, :1]), steps.cumsum(1)], dim=1)


def cdf_at(cdf: Tensor, grid: Tensor, z: Tensor) -> Tensor:
    """(N,) CDF (N, G) interpolated linearly at z (N,); 0 below and 1 above the grid."""
    dz = grid[1] - grid[0]
    u = ((z - grid[0]) / dz).clamp(0, len(grid) - 1)
    lo = u.floor().long().clamp(max=len(grid) - 2)
    t = u - lo
    rows = torch.arange(len(z), device=z.device)
    value = (1 - t) * cdf[rows, lo] + t * cdf[rows, lo + 1]
    value = torch.where(z < grid[0], torch.zeros_like(value), value)
    return torch.where(z > grid[-1], torch.ones_like(value), value)


def quantile(cdf: Tensor, grid: Tensor, q: float | Tensor) -> Tensor:
    """(N,) the q-quantile of each CDF (N, G), linear between grid points; ``q`` one level for
    every galaxy or one per galaxy (N,)."""
    level = torch.as_tensor(q, dtype=cdf.dtype, device=cdf.device).expand(cdf.shape[0])
    hi = torch.searchsorted(cdf, level.contiguous()[:, None]).clamp(1, cdf.shape[1] - 1)
    hi = hi.squeeze(1)
    rows = torch.arange(cdf.shape[0], device=cdf.device)
    c0, c1 = cdf[rows, hi - 1], cdf[rows, hi]
    t = ((level - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)
    return grid[hi - 1] + t * (grid[hi] - grid[hi - 1])


def grid_products(p: Tensor, pz: PzConfig, zspec: Tensor | None = None) -> dict[str, Tensor]:
    """Per-galaxy products (N,) of normalised p (N, G): zphot (mode), zmean, zmedian, z_lo68,
    z_hi68, odds and, with zspec (N,) (NaN = unknown), pit."""
    grid = torch.as_tensor(pz.grid(), dtype=p.dtype, device=p.device)
    cdf = cdf_grid(p, pz.dz)
    cdf = cdf / cdf[:, -1:]
    mode = grid[p.argmax(1)]
    half = 0.5 * pz.odds_window
    out = {
        "zphot": mode,
        "zmean": trapezoid(p * grid, pz.dz),
        "zmedian": quantile(cdf, grid, 0.5),
        "z_lo68": quantile(cdf, grid, 0.158655),
        "z_hi68": quantile(cdf, grid, 0.841345),
        "odds": cdf_at(cdf, grid, mode + half) - cdf_at(cdf, grid, mode - half),
    }
    if zspec is not None:
        known = torch.isfinite(zspec)
        pit = cdf_at(cdf, grid, torch.nan_to_num(zspec))
        out["pit"] = torch.where(known, pit, torch.full_like(pit, torch.nan))
    return out


def compress_mixture(p: Tensor, pz: PzConfig, components: int) -> dict[str, Tensor]:
    """'mixmod' columns weights, means, stds (N, M) of p (N, G): M peak segments (module doc)."""
    grid = torch.as_tensor(pz.grid(), dtype=p.dtype, device=p.device)
    n, g = p.shape
    j = torch.arange(g, device=p.device)[None, :]  # (1, G)
    down = torch.zeros_like(p, dtype=torch.bool)  # p[j] > p[j + 1]
    down[:, :-1] = p[:, :-1] > p[:, 1:]
    up = torch.zeros_like(p, dtype=torch.bool)  # p[j + 1] > p[j]
    up[:, :-1] = p[:, 1:] > p[:, :-1]
    mass = pz.dz * p  # (N, G) trapezoid weight of each grid point
    mass[:, [0, -1]] *= 0.5
    cums = [torch.cumsum(mass * grid**k, 1) for k in range(3)]
    taken = torch.zeros_like(p, dtype=torch.bool)
    rows = torch.arange(n, device=p.device)
    none_left = torch.full_like(p, -1, dtype=torch.long)
    none_right = torch.full_like(p, g, dtype=torch.long)
    weights, means, stds = [], [], []
    for _ in range(components):
        peak = torch.where(taken, torch.zeros_like(p), p).argmax(1)[:, None]  # (N, 1)
        left = (down & (j < peak)) | (taken & (j < peak))  # a minimum or a used segment
        right = (up & (j >= peak)) | (taken & (j > peak))
        lo = torch.where(left, j.expand(n, g), none_left).amax(1) + 1  # (N,)
        hi = torch.where(right & ~taken, j.expand(n, g), none_right).amin(1)
        hi = torch.minimum(hi, torch.where(taken & (j > peak), j - 1, none_right).amin(1))
        hi = hi.clamp(max=g - 1)
        w, m1, m2 = (_segment_sum(c, rows, lo, hi) for c in cums)
        w = torch.where(w > 1e-12, w, torch.zeros_like(w))  # empty: a zero-weight component
        safe = w.clamp_min(1e-12)
        mean = torch.where(w > 0, m1 / safe, grid[peak[:, 0]])
        var = torch.where(w > 0, (m2 / safe - mean**2).clamp_min(0), torch.zeros_like(w))
        var = var + pz.dz**2 / 12
        weights.append(w.clamp_min(0))
        means.append(mean)
        stds.append(var.sqrt())
        taken |= (j >= lo[:, None]) & (j <= hi[:, None])
    w = torch.stack(weights, 1)
    return {
        "weights": w / w.sum(1, keepdim=True).clamp_min(1e-300),
        "means": torch.stack(means, 1),
        "stds": torch.stack(stds, 1),
    }


def _segment_sum(cum: Tensor, rows: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """(N,) sum over [lo, hi] of the cell values whose cumulative sums are ``cum`` (N, G)."""
    before = torch.where(
        lo > 0, cum[rows, (lo - 1).clamp_min(0)], torch.zeros_like(lo, dtype=cum.dtype)
    )
    return torch.where(hi >= lo, cum[rows, hi.clamp_min(0)] - before, torch.zeros_like(before))
