"""The pool scale of the combination: its calibration for galaxies the run never trained on (beyond
E20; the networks' own version is ``pz.calibration.fit_pool_scale``).

The exponents and the calibration of the combination are fitted on out-of-fold training galaxies,
whose network p(z) pools the R networks of one fold. A new galaxy's network p(z) pools all K folds'
networks, broader than each fold's (they disagree), so its combined p(z) comes out too broad (on
the demo mock 75-80% of the spec-z inside the 68% interval at iAB < 19.5). As for the networks
alone, a factor lambda(mag) narrows the calibrated probit of the pooled combination,
G(z) = Phi(lambda h(Phi^-1(F(z)))), fitted without any redshift on the training catalogue's galaxies
without a spec-z: lambda is the value at which each fold's own combination, p_k^a p_tf^b calibrated,
would find 68.27% of redshifts drawn from the narrowed pooled combination inside its central 68.27%.

Shapes: N galaxies, K folds, R repetitions, G grid points, C = R K M mixture components.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from deepz_core.hybrid.combine import network_log_pz
from deepz_core.pz.calibration import (
    POOL_MIN_PER_BIN,
    PROBIT_CLIP,
    PitCalibration,
    PoolScale,
    bisect_pool_scale,
    cell_midpoints,
    pool_subset,
    scale_per_bin,
)
from deepz_core.pz.pooling import PoolingWeights, pool
from deepz_core.pz.products import PzConfig
from deepz_core.templatefit.pz import cdf_grid

CENTRAL = 0.6827
BLOCK = 256  # galaxies per block (N x K x G float64 temporaries)


def fold_log_pz(
    weights: np.ndarray, means: np.ndarray, stds: np.ndarray, folds: tuple[int, int], pz: PzConfig
) -> Tensor:
    """log p(z) (N, K, G) of each fold's pool of R networks, from the mixtures (N, C) of all
    R x K members of galaxies every member may predict (member-major components r K + k)."""
    n, c = weights.shape
    reps, k = folds
    m = c // (reps * k)
    shape = (n, reps, k, m)
    out = []
    for f in range(k):
        w, mu, sd = (
            np.asarray(a).reshape(shape)[:, :, f].reshape(n, reps * m)
            for a in (weights, means, stds)
        )
        out.append(network_log_pz(w / w.sum(1, keepdims=True), mu, sd, pz))
    return torch.stack(out, dim=1)


def _curves(
    log_folds: Tensor,
    log_all: Tensor,
    log_tf: Tensor,
    a: Tensor,
    b: Tensor,
    cal: PitCalibration,
    mag: np.ndarray,
    pz: PzConfig,
) -> tuple[Tensor, Tensor]:
    """h(Phi^-1(F)) (n, G) of the pooled combination and, per fold's combination, whether its
    calibrated CDF lies inside the central 68.27% (n, K, G)."""
    n, k, g = log_folds.shape
    tr = cal.transform(mag)
    full = pool(log_all, log_tf, a, b, pz.dz)
    cdf = cdf_grid(full, pz.dz)
    x = torch.special.ndtri((cdf / cdf[:, -1:]).clamp(0.0, 1.0)).clamp(-PROBIT_CLIP, PROBIT_CLIP)
    hp = tr.h(x)[0]
    each = pool(
        log_folds.reshape(n * k, g),
        log_tf.repeat_interleave(k, 0),
        a.repeat_interleave(k),
        b.repeat_interleave(k),
        pz.dz,
    )
    ce = cdf_grid(each, pz.dz)
    ge = cell_midpoints(tr.repeat_rows(k).forward(ce / ce[:, -1:]).reshape(n, k, g))
    lo, hi = 0.5 - CENTRAL / 2, 0.5 + CENTRAL / 2
    return hp, (ge > lo) & (ge < hi)


def fit_combination_pool_scale(
    net: dict[str, np.ndarray],
    log_tf: Tensor,
    weights: PoolingWeights,
    cal: PitCalibration,
    folds: tuple[int, int],
    mag: np.ndarray,
    pz: PzConfig,
    min_per_bin: int = POOL_MIN_PER_BIN,
) -> PoolScale:
    """lambda per magnitude bin (module doc) from the network mixtures ``net`` (weights, means,
    stds: (N, C)) and the template fit's log p(z) ``log_tf`` (N, G) of N galaxies no network
    trained on, with the combination's exponents ``weights`` (fitted on all) and calibration
    ``cal``; at most POOL_MAX_GALAXIES galaxies (a fixed subset)."""
    mag = np.asarray(mag, dtype=np.float64)
    rows = pool_subset(np.arange(len(mag)))

    def scale_of(sel: np.ndarray) -> float:
        return bisect_pool_scale(*_bin_curves(net, log_tf, mag, weights, cal, folds, rows[sel], pz))

    return scale_per_bin(mag[rows], scale_of, min_per_bin)


def _bin_curves(
    net: dict[str, np.ndarray],
    log_tf: Tensor,
    mag: np.ndarray,
    weights: PoolingWeights,
    cal: PitCalibration,
    folds: tuple[int, int],
    sel: np.ndarray,
    pz: PzConfig,
) -> tuple[Tensor, Tensor]:
    """``_curves`` of the galaxies ``sel``, in blocks of BLOCK."""
    hps, insides = [], []
    for s in range(0, len(sel), BLOCK):
        r = sel[s : s + BLOCK]
        w, mu, sd = (net[key][r] for key in ("weights", "means", "stds"))
        a, b = (torch.as_tensor(v) for v in weights.at(mag[r]))
        hp, inside = _curves(
            fold_log_pz(w, mu, sd, folds, pz),
            network_log_pz(w, mu, sd, pz),
            log_tf[r],
            a,
            b,
            cal,
            mag[r],
            pz,
        )
        hps.append(hp)
        insides.append(inside)
    return torch.cat(hps), torch.cat(insides)
