"""The combination's pool scale (deepz_core/hybrid/pool.py): known answers on Gaussian folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepz_core.hybrid.pool import fit_combination_pool_scale, fold_log_pz
from deepz_core.pz.calibration import PitCalibration
from deepz_core.pz.pooling import PoolingWeights
from deepz_core.pz.products import PzConfig

PZ = PzConfig(z_min=0.0, z_max=2.0, dz=0.002)
K = 5


def _identity() -> PitCalibration:
    y = np.linspace(-2.5, 2.5, 11)
    return PitCalibration(np.array([20.0]), y[None, :].copy(), y, 1000)


def _network_only() -> PoolingWeights:
    return PoolingWeights(np.array([15.0, 25.0]), np.array([1.0]), np.array([0.0]), 1.0, 0.0, 1)


def _folds(n: int, offset: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Mixtures (n, K) of K one-component fold networks (R = 1) around 0.8, each fold's mean
    offset by +-``offset`` at random, width 0.02, weights 1/K."""
    rng = np.random.default_rng(seed)
    means = 0.8 + offset * rng.standard_normal((n, K))
    return {
        "weights": np.full((n, K), 1.0 / K),
        "means": means,
        "stds": np.full((n, K), 0.02),
    }


def test_fold_log_pz_splits_the_members_by_fold() -> None:
    net = _folds(3, 0.05)
    logs = fold_log_pz(net["weights"], net["means"], net["stds"], (1, K), PZ)
    assert logs.shape == (3, K, len(PZ.grid()))
    peaks = PZ.grid()[logs.argmax(-1).numpy()]
    np.testing.assert_allclose(peaks, net["means"], atol=PZ.dz)


@pytest.mark.parametrize(("offset", "low", "high"), [(0.0, 0.97, 1.03), (0.02, 1.15, 3.0)])
def test_the_pool_scale_is_one_when_the_folds_agree_and_narrows_when_they_do_not(
    offset, low, high
) -> None:
    n = 400
    net = _folds(n, offset)
    log_tf = torch.zeros(n, len(PZ.grid()), dtype=torch.float64)  # flat: b = 0 anyway
    mag = np.full(n, 20.0)
    pool = fit_combination_pool_scale(
        net, log_tf, _network_only(), _identity(), (1, K), mag, PZ, min_per_bin=1000
    )
    assert pool.n_fit == n and len(pool.scale) == 1
    assert low <= pool.scale[0] <= high, pool.scale


def test_equal_magnitudes_leave_no_empty_bin() -> None:
    """Quantile edges repeat when many galaxies share a magnitude; the empty bin between them is
    skipped instead of failing (found in review: torch.cat of nothing)."""
    n = 700
    net = _folds(n, 0.01)
    log_tf = torch.zeros(n, len(PZ.grid()), dtype=torch.float64)
    pool = fit_combination_pool_scale(
        net, log_tf, _network_only(), _identity(), (1, K), np.full(n, 20.0), PZ, min_per_bin=300
    )
    assert len(pool.scale) == 1 and pool.scale[0] > 1.0
