"""Pooled p(z) of the network and the template fit, and their products (beyond E20).

Both p(z) are put on the run's grid (``PzConfig``): the network's mixture columns (weights, means,
stds) evaluated there, the template fit's ``pz`` column as it is. ``pooled_products`` multiplies
them with per-galaxy exponents (``pz.pooling``), applies a PIT calibration g (the calibrated CDF
is g(F(z)), F the pooled p(z)'s, linear between grid points) and returns deepz's prediction
columns: zphot is the mode of the pooled p(z) before calibration (g only redistributes probability
along the CDF, it does not move the best redshift); PIT, median, 68% interval and ODDS are those of
g(F(z)) exactly; zmean and the mixture columns come from the calibrated density on the grid
(p'(z) = g'(F(z)) p(z), g' averaged over each grid step, renormalised), which cannot follow g
within a step where p(z) is only a few steps wide; ``pit_raw`` is the PIT before calibration.

Shapes: N galaxies, G grid points, C mixture components.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from deepz_core.pz.calibration import PitTransform
from deepz_core.pz.pooling import CHUNK, candidate_loglik, pool
from deepz_core.pz.products import PzConfig
from deepz_core.templatefit.pz import (
    cdf_at,
    cdf_grid,
    compress_mixture,
    grid_products,
    quantile,
    trapezoid,
)

MIXTURE_COMPONENTS = 8  # mixture columns of a pooled p(z) (qp 'mixmod', the explorer)
_GRID_PAIRS = 1 << 23  # galaxies x grid points x components per block of the network's log p(z)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def network_log_pz(
    weights: np.ndarray, means: np.ndarray, stds: np.ndarray, pz: PzConfig
) -> Tensor:
    """log p(z) (N, G) float64 on ``pz.grid()`` of the mixtures with columns (N, C) each; a row
    with NaN parameters (no p(z)) is NaN. Each component's log density is a quadratic in z,
    log w - log s - log sqrt(2 pi) - (z - m)^2 / 2 s^2 = A + B z + C z^2, so the (N, G, C) terms
    are one batched product of the grid's powers (G, 3) with the coefficients (N, 3, C): 3x faster
    than forming (z - m) / s, and within 1e-10 of it (the cancellation of A + B z + C z^2 for
    m / s ~ 1e3: 1e6 x 1e-16)."""
    grid = torch.as_tensor(pz.grid(), dtype=torch.float64)
    w, m, s = (torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (weights, means, stds))
    n, c = w.shape
    powers = torch.stack([torch.ones_like(grid), grid, grid * grid], dim=1)  # (G, 3)
    inv_var = 1.0 / (s * s)
    log_w = torch.where(w > 0, torch.log(w), torch.full_like(w, -torch.inf))
    a0 = log_w - torch.log(s) - _LOG_SQRT_2PI - 0.5 * m * m * inv_var
    coef = torch.stack([a0, m * inv_var, -0.5 * inv_var], dim=1)  # (N, 3, C)
    out = torch.empty(n, len(grid), dtype=torch.float64)
    step = max(1, _GRID_PAIRS // (len(grid) * max(c, 1)))
    for a in range(0, n, step):
        out[a : a + step] = torch.logsumexp(powers @ coef[a : a + step], dim=-1)
    return out


def templatefit_log_pz(pz_column: np.ndarray) -> Tensor:
    """log p(z) (N, G) float64 of the template fit's ``pz`` column (N, G) (zeros: -inf)."""
    p = torch.as_tensor(np.asarray(pz_column, dtype=np.float64))
    return torch.log(p.clamp_min(0.0))


def calibrated_grid(p: Tensor, transform: PitTransform, dz: float) -> Tensor:
    """g'(F(z)) p(z), renormalised (N, G), of normalised p (N, G) with calibration ``transform``
    of the same N galaxies. g' is its mean over each grid cell, (g(F_k+1) - g(F_k)) /
    (F_k+1 - F_k), averaged over the two cells around a grid point: g' itself is infinite at
    F = 0 and 1 for a widening g, and p need not vanish at the grid's ends (F = 0 and 1 there)."""
    cdf = cdf_grid(p, dz)
    cdf = cdf / cdf[:, -1:].clamp_min(1e-300)
    g = transform.forward(cdf)
    d_f, d_g = cdf[:, 1:] - cdf[:, :-1], g[:, 1:] - g[:, :-1]
    cell = torch.where(d_f > 0, d_g / d_f.clamp_min(1e-300), torch.ones_like(d_f))  # (N, G - 1)
    slope = torch.cat([cell[:, :1], 0.5 * (cell[:, 1:] + cell[:, :-1]), cell[:, -1:]], dim=1)
    q = p * slope
    return q / trapezoid(q, dz)[:, None].clamp_min(1e-300)


CALIBRATED_LEVELS = (0.5, 0.158655, 0.841345)  # zmedian, z_lo68, z_hi68


def calibrated_products(
    p: Tensor, final: Tensor, transform: PitTransform, pz: PzConfig, zspec: Tensor
) -> dict[str, Tensor]:
    """``grid_products`` (N,) of the calibrated CDF G(z) = g(F(z)) of normalised p (N, G), F its
    trapezoid CDF, linear between grid points: PIT g(F(zs)), quantiles F^-1(g^-1(q)), ODDS
    G(mode + w/2) - G(mode - w/2), exact for this G even where p is a few grid steps wide (the
    bright end, where the template fit's p(z) is: there the calibrated density on the grid,
    ``final`` (N, G), cannot follow g within a step); zmean from ``final``; zphot the mode of p."""
    grid = torch.as_tensor(pz.grid(), dtype=p.dtype, device=p.device)
    cdf = cdf_grid(p, pz.dz)
    cdf = cdf / cdf[:, -1:]
    mode = grid[p.argmax(1)]
    levels = torch.tensor(CALIBRATED_LEVELS, dtype=p.dtype).expand(len(p), -1)
    raw_levels = transform.inverse(levels)  # (N, 3) levels of F
    half = 0.5 * pz.odds_window
    edges = torch.stack([cdf_at(cdf, grid, mode - half), cdf_at(cdf, grid, mode + half)], 1)
    g = transform.forward(edges)  # (N, 2)
    out = {
        "zphot": mode,
        "zmean": trapezoid(final * grid, pz.dz),
        **{
            name: quantile(cdf, grid, raw_levels[:, i])
            for i, name in enumerate(("zmedian", "z_lo68", "z_hi68"))
        },
        "odds": g[:, 1] - g[:, 0],
    }
    pit = transform.forward(cdf_at(cdf, grid, torch.nan_to_num(zspec))[:, None])[:, 0]
    out["pit"] = torch.where(torch.isfinite(zspec), pit, torch.full_like(pit, torch.nan))
    return out


def pooled_products(
    log_net: Tensor,
    log_tf: Tensor,
    a: np.ndarray,
    b: np.ndarray,
    pz: PzConfig,
    zspec: np.ndarray,
    transform: PitTransform | None = None,
) -> dict[str, np.ndarray]:
    """Prediction columns (N,) / (N, C) of the pooled p(z) of ``log_net``, ``log_tf`` (N, G) with
    exponents ``a``, ``b`` (N,), calibrated by ``transform`` (None: raw), given ``zspec`` (N,)
    (NaN: unknown; its PIT is NaN)."""
    parts = []
    for s in range(0, len(a), CHUNK) or range(1):  # no galaxy: one empty block
        rows = slice(s, s + CHUNK)
        parts.append(
            _block(
                log_net[rows],
                log_tf[rows],
                torch.as_tensor(np.asarray(a[rows], dtype=np.float64)),
                torch.as_tensor(np.asarray(b[rows], dtype=np.float64)),
                pz,
                torch.as_tensor(np.asarray(zspec[rows], dtype=np.float64)),
                None if transform is None else transform.take(rows),
            )
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _block(
    log_net: Tensor,
    log_tf: Tensor,
    a: Tensor,
    b: Tensor,
    pz: PzConfig,
    zspec: Tensor,
    transform: PitTransform | None,
) -> dict[str, np.ndarray]:
    p = pool(log_net, log_tf, a, b, pz.dz)
    raw = grid_products(p, pz, zspec)
    if transform is None:
        out, final = raw, p
    else:
        final = calibrated_grid(p, transform, pz.dz)
        out = {**calibrated_products(p, final, transform, pz, zspec), "pit_raw": raw["pit"]}
    out.update(compress_mixture(final, pz, MIXTURE_COMPONENTS))
    return {k: v.numpy() for k, v in out.items()}


def chunked_loglik(
    log_net: Tensor,
    log_tf: Tensor,
    zspec: np.ndarray,
    pz: PzConfig,
    candidates: list[tuple[float, float]],
) -> np.ndarray:
    """(C, N) log pooled density at ``zspec`` (N,) of every candidate (a, b), in blocks."""
    z = torch.as_tensor(np.asarray(zspec, dtype=np.float64))
    parts = [
        candidate_loglik(
            log_net[s : s + CHUNK],
            log_tf[s : s + CHUNK],
            z[s : s + CHUNK],
            pz.z_min,
            pz.dz,
            candidates,
        ).numpy()
        for s in range(0, len(z), CHUNK)
    ]
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(candidates), 0))
