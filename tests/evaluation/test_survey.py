"""Survey products against known answers: stacked n(z), tomographic bins, equal-count edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from deepz_core.errors import ConfigError
from deepz_core.evaluation.survey import equal_count_edges, stacked_nz, tomographic_bins


def _gaussians(mu: np.ndarray, sigma: float = 0.02) -> dict[str, np.ndarray]:
    n = len(mu)
    return {
        "zphot": np.asarray(mu, float),
        "weights": np.stack([np.full(n, 0.7), np.full(n, 0.3)], axis=1),
        "means": np.stack([mu, mu], axis=1),  # two components at the same place: one Gaussian
        "stds": np.full((n, 2), sigma),
    }


def test_stacked_nz_is_the_mean_p_z(rng) -> None:
    mu = rng.uniform(0.3, 1.1, 400)
    nz = stacked_nz(_gaussians(mu))
    expected = stats.norm.pdf(nz.grid[:, None], mu[None, :], 0.02).mean(axis=1)
    np.testing.assert_allclose(nz.nz, expected, atol=1e-4 * expected.max())
    assert nz.n == 400 and nz.n_no_pz == 0
    assert np.trapezoid(nz.nz, nz.grid) == pytest.approx(1.0, abs=1e-6)
    assert nz.mean_z == pytest.approx(mu.mean(), abs=1e-4)


def test_stacked_nz_selection_and_missing_p_z() -> None:
    pz = _gaussians(np.array([0.2, 0.6, 1.0]))
    pz["weights"][1] = np.nan  # a galaxy without a p(z) (flag NO_PZ)
    nz = stacked_nz(pz)
    assert (nz.n, nz.n_no_pz) == (2, 1) and nz.mean_z == pytest.approx(0.6, abs=1e-4)
    only = stacked_nz(pz, np.array([False, False, True]))
    assert only.n == 1 and only.mean_z == pytest.approx(1.0, abs=1e-4)
    assert stacked_nz(pz, np.array([], int)).n == 0


def test_tomographic_bins_split_by_photo_z(rng) -> None:
    mu = rng.uniform(0.1, 1.3, 1000)
    tomo = tomographic_bins(_gaussians(mu, 0.01), [0.1, 0.5, 0.9, 1.3])
    counts = np.histogram(mu, [0.1, 0.5, 0.9, 1.3])[0]
    assert tomo.counts.tolist() == counts.tolist() and tomo.nz.shape == (3, len(tomo.grid))
    for k, (lo, hi) in enumerate([(0.1, 0.5), (0.5, 0.9), (0.9, 1.3)]):
        inside = (mu >= lo) & (mu < hi)
        assert tomo.mean_z[k] == pytest.approx(mu[inside].mean(), abs=1e-3)
        assert np.all(tomo.index[inside] == k)
    out = tomographic_bins(_gaussians(np.array([0.05, 0.3])), [0.1, 0.5])
    assert out.counts.tolist() == [1] and out.index.tolist() == [-1, 0]
    with pytest.raises(ConfigError, match="edges"):
        tomographic_bins(_gaussians(mu), [0.5, 0.5, 0.9])


def test_equal_count_edges(rng) -> None:
    edges = equal_count_edges(rng.uniform(0, 1, 100_000), 4)
    np.testing.assert_allclose(edges, [0, 0.25, 0.5, 0.75, 1.0], atol=0.01)
    tied = equal_count_edges(np.r_[np.zeros(90), np.linspace(0.1, 1, 10)], 4)
    assert np.all(np.diff(tied) > 0) and len(tied) < 5  # coinciding edges merged
    assert equal_count_edges(np.linspace(0, 2, 11), 2, 0.5, 1.5).tolist() == [0.5, 1.0, 1.5]


def test_fast_mixture_sum_matches_the_dense_sum(rng) -> None:
    """Narrow and wide components, means inside and beyond the grid: within 1e-4 of the peak;
    a non-uniform grid takes the dense sum."""
    from deepz_core.evaluation.survey import mixture_sum

    k = 3000
    w = rng.dirichlet(np.ones(k)) * 10
    mu = rng.uniform(-0.3, 1.8, k)
    sd = np.exp(rng.uniform(np.log(2e-4), np.log(0.5), k))
    grid = np.round(np.arange(0, 1.5005, 0.001), 6)
    dense = (w[:, None] * stats.norm.pdf(grid[None, :], mu[:, None], sd[:, None])).sum(0)
    fast = mixture_sum(w, mu, sd, grid)
    assert np.abs(fast - dense).max() < 1e-4 * dense.max()
    uneven = np.sort(rng.uniform(0, 1.5, 300))
    expected = (w[:, None] * stats.norm.pdf(uneven[None, :], mu[:, None], sd[:, None])).sum(0)
    np.testing.assert_allclose(mixture_sum(w, mu, sd, uneven), expected, rtol=1e-9, atol=1e-12)
