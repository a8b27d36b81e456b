"""p(z) products of Gaussian mixtures (E20 Sec. 2.3, 6): exact grid, mode, quantiles, ODDS, PIT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import optimize, special, stats

from deepz_core.errors import ConfigError
from deepz_core.pz.mixture import GaussianMixture
from deepz_core.pz.products import PzConfig, mixture_mode, mixture_quantile, point_products

pytestmark = pytest.mark.usefixtures("one_thread")


def _mixture(weights, means, stds) -> GaussianMixture:
    """Batch (N,) mixture from (N, M) lists (float64)."""
    w = torch.as_tensor(np.atleast_2d(weights), dtype=torch.float64)
    return GaussianMixture.from_params(
        w.log(),
        torch.as_tensor(np.atleast_2d(means), dtype=torch.float64),
        torch.as_tensor(np.atleast_2d(stds), dtype=torch.float64),
    )


def _np_pdf(z, w, mu, s):
    z = np.asarray(z, dtype=float)[..., None]
    return (np.asarray(w) * stats.norm.pdf(z, np.asarray(mu), np.asarray(s))).sum(-1)


def test_grid_is_exact_multiples_of_dz() -> None:
    cfg = PzConfig(z_min=0.0, z_max=1.5, dz=0.001)
    grid = cfg.grid()
    assert len(grid) == 1501 and grid[0] == 0.0 and grid[-1] == pytest.approx(1.5, abs=1e-12)
    k = np.arange(len(grid))
    np.testing.assert_allclose(grid, k * 0.001, rtol=0, atol=1e-12)
    # the authors' linspace(0, 2.1, 2100) had a step of 2.1/2099: 1e-3 more than that at the end
    assert abs(np.linspace(0, 2.1, 2100)[1000] - 1.0) > 4e-4


def test_grid_with_offset_start() -> None:
    grid = PzConfig(z_min=0.2, z_max=0.8, dz=0.005).grid()
    np.testing.assert_allclose(grid, 0.2 + 0.005 * np.arange(121), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"z_min": 1.0, "z_max": 1.0}, "z_max"),
        ({"dz": 0.0}, "dz"),
        ({"dz": -0.1}, "dz"),
        ({"dz": 1.0}, "dz"),
        ({"odds_window": 0.0}, "odds_window"),
    ],
)
def test_bad_pz_config_raises_naming_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        PzConfig(**kwargs)


def test_mode_of_a_two_gaussian_mixture_is_the_taller_peak() -> None:
    """The heavier component is NOT the mode: 0.7 N(0.4, 0.05) peaks at 5.6, 0.3 N(0.9, 0.02)
    at 6.0, so the mode is near 0.9."""
    w, mu, s = [0.7, 0.3], [0.4, 0.9], [0.05, 0.02]
    cfg = PzConfig(dz=0.001)
    mode = float(mixture_mode(_mixture(w, mu, s), cfg)[0])
    true = optimize.minimize_scalar(
        lambda z: -_np_pdf(z, w, mu, s),
        bounds=(0.85, 0.95),
        method="bounded",
        options={"xatol": 1e-9},
    ).x
    assert abs(mode - true) <= cfg.dz
    assert abs(mode / cfg.dz - round(mode / cfg.dz)) < 1e-6  # a grid point


@pytest.mark.parametrize("dz", [0.001, 0.0005, 0.002])
def test_mode_between_two_overlapping_components(dz) -> None:
    w, mu, s = [0.55, 0.45], [0.50, 0.56], [0.04, 0.03]
    cfg = PzConfig(dz=dz)
    mode = float(mixture_mode(_mixture(w, mu, s), cfg)[0])
    true = optimize.minimize_scalar(
        lambda z: -_np_pdf(z, w, mu, s),
        bounds=(0.4, 0.7),
        method="bounded",
        options={"xatol": 1e-10},
    ).x
    assert not np.isclose(true, mu).any()  # the mode is at neither component mean
    assert abs(mode - true) <= dz


def test_mode_of_a_narrow_spike_beside_a_broad_component() -> None:
    """A narrow peak between coarse-grid points is still found (component means are candidates)."""
    w, mu, s = [0.9, 0.1], [0.3, 1.0035], [0.2, 0.0015]
    mode = float(mixture_mode(_mixture(w, mu, s), PzConfig(dz=0.001))[0])
    assert abs(mode - 1.0035) <= 0.001


def test_mode_is_clamped_to_the_grid() -> None:
    cfg = PzConfig(z_min=0.0, z_max=1.5, dz=0.001)
    mode = mixture_mode(_mixture([[1.0], [1.0]], [[-0.3], [2.4]], [[0.05], [0.05]]), cfg)
    np.testing.assert_allclose(mode.numpy(), [0.0, 1.5], atol=1e-12)


def test_quantiles_median_and_68_interval_of_a_gaussian_match_scipy() -> None:
    mu, s = np.array([0.3, 0.75, 1.2]), np.array([0.02, 0.1, 0.05])
    mix = _mixture(np.ones((3, 1)), mu[:, None], s[:, None])
    for q in (0.05, 0.158655, 0.5, 0.841345, 0.97):
        np.testing.assert_allclose(
            mixture_quantile(mix, q).numpy(), stats.norm.ppf(q, mu, s), rtol=0, atol=1e-9
        )
    p = point_products(mix, PzConfig())
    np.testing.assert_allclose(p["zmedian"].numpy(), mu, atol=1e-9)
    np.testing.assert_allclose(p["zmean"].numpy(), mu, atol=1e-12)
    np.testing.assert_allclose(p["z_lo68"].numpy(), mu - s, rtol=0, atol=1e-5 * s.max())
    np.testing.assert_allclose(p["z_hi68"].numpy(), mu + s, rtol=0, atol=1e-5 * s.max())


def test_quantile_of_a_mixture_matches_root_finding() -> None:
    w, mu, s = [0.3, 0.5, 0.2], [0.2, 0.6, 1.1], [0.05, 0.1, 0.2]
    mix = _mixture(w, mu, s)

    def cdf(z: float) -> float:
        return float(np.sum(np.asarray(w) * stats.norm.cdf(z, mu, s)))

    for q in (0.1, 0.5, 0.9):
        ref = optimize.brentq(lambda z, q=q: cdf(z) - q, -1, 3, xtol=1e-13)
        assert float(mixture_quantile(mix, q)[0]) == pytest.approx(ref, abs=1e-9)
    assert float(mix.mean[0]) == pytest.approx(np.dot(w, mu), abs=1e-12)


@pytest.mark.parametrize("sigma", [0.0005, 0.001, 0.003])
def test_odds_of_a_narrow_gaussian_is_the_erf_of_the_half_window(sigma) -> None:
    cfg = PzConfig(dz=0.001, odds_window=0.003)
    mu = 0.642  # on the grid, so the mode is mu exactly
    p = point_products(_mixture([1.0], [mu], [sigma]), cfg)
    assert float(p["zphot"][0]) == pytest.approx(mu, abs=1e-12)
    expected = math.erf(0.0015 / (sigma * math.sqrt(2)))
    assert float(p["odds"][0]) == pytest.approx(expected, abs=1e-9)


def test_odds_is_small_for_a_broad_pz() -> None:
    p = point_products(_mixture([1.0], [0.5], [0.3]), PzConfig())
    assert float(p["odds"][0]) == pytest.approx(special.erf(0.0015 / (0.3 * np.sqrt(2))), abs=1e-6)
    assert float(p["odds"][0]) < 0.01


def test_pit_of_calibrated_draws_is_uniform(rng) -> None:
    n = 1500
    w = rng.dirichlet([2, 2], size=n)  # (N, 2)
    mu = np.stack([rng.uniform(0.1, 0.6, n), rng.uniform(0.7, 1.3, n)], axis=1)
    s = rng.uniform(0.01, 0.1, (n, 2))
    comp = (rng.random(n) < w[:, 1]).astype(int)  # draw z from the mixture itself
    z = rng.normal(mu[np.arange(n), comp], s[np.arange(n), comp])
    p = point_products(_mixture(w, mu, s), PzConfig(), torch.as_tensor(z))
    pit = p["pit"].numpy()
    assert ((pit >= 0) & (pit <= 1)).all()
    assert stats.kstest(pit, "uniform").pvalue > 1e-3
    # a miscalibrated (too narrow) p(z) is detected by the same test
    p_bad = point_products(_mixture(w, mu, s / 3), PzConfig(), torch.as_tensor(z))
    assert stats.kstest(p_bad["pit"].numpy(), "uniform").pvalue < 1e-6


def test_pit_is_nan_where_zspec_is_unknown_and_absent_without_zspec() -> None:
    mix = _mixture([[1.0], [1.0]], [[0.5], [0.5]], [[0.1], [0.1]])
    p = point_products(mix, PzConfig(), torch.tensor([0.5, float("nan")], dtype=torch.float64))
    assert float(p["pit"][0]) == pytest.approx(0.5, abs=1e-12) and torch.isnan(p["pit"][1])
    assert "pit" not in point_products(mix, PzConfig())


def test_point_products_shapes_and_ordering(rng) -> None:
    n = 50
    mix = _mixture(
        rng.dirichlet([1, 1, 1], n), rng.uniform(0.1, 1.2, (n, 3)), rng.uniform(0.02, 0.2, (n, 3))
    )
    p = point_products(mix, PzConfig())
    assert set(p) == {"zphot", "zmean", "zmedian", "z_lo68", "z_hi68", "odds"}
    assert all(v.shape == (n,) for v in p.values())
    assert (p["z_lo68"] < p["zmedian"]).all() and (p["zmedian"] < p["z_hi68"]).all()
    assert ((p["odds"] >= 0) & (p["odds"] <= 1)).all()


# ------------------------------------------------- the fast products keep the exact semantics


def _reference_mode(w, mu, s, cfg: PzConfig) -> np.ndarray:
    """The mode rule in plain NumPy/SciPy log space, one galaxy at a time: the best of the
    component means (clamped) and the 0.01 coarse grid, then the best exact grid point within
    +-0.012 of it (first on ties)."""
    out = []
    for wi, mi, si in zip(w, mu, s, strict=True):

        def logp(z, wi=wi, mi=mi, si=si):
            return special.logsumexp(stats.norm.logpdf(z[:, None], mi, si), b=wi, axis=1)

        cand = np.concatenate([np.clip(mi, cfg.z_min, cfg.z_max), np.arange(0, 151) * 0.01])
        k0 = round(cand[np.argmax(logp(cand))] / cfg.dz)
        k = np.clip(np.arange(k0 - 12, k0 + 13), 0, cfg.n_steps)
        out.append(k[np.argmax(logp(k * cfg.dz))] * cfg.dz)
    return np.array(out)


def _random_mixtures(rng, n: int, m: int):
    w = rng.dirichlet(np.full(m, 0.7), n)
    w[rng.random((n, m)) < 0.1] = 0.0  # masked ensemble members
    w[:, 0] += w.sum(1) == 0
    w /= w.sum(1, keepdims=True)
    mu = rng.uniform(-0.2, 1.8, (n, m))
    s = np.exp(rng.uniform(np.log(1e-3), np.log(0.3), (n, m)))
    return w, mu, s


def test_mode_matches_a_reference_implementation_of_the_rule(rng) -> None:
    cfg = PzConfig()
    w, mu, s = _random_mixtures(rng, 300, 6)
    got = mixture_mode(_mixture(w, mu, s), cfg).numpy()
    np.testing.assert_allclose(got, _reference_mode(w, mu, s, cfg), rtol=0, atol=1e-12)


def test_mode_is_the_grid_argmax_for_a_clear_single_peak(rng) -> None:
    cfg = PzConfig()
    mu = rng.uniform(0.1, 1.4, 200)
    w = np.array([0.8, 0.2])
    means = np.stack([mu, mu + 0.3 * rng.uniform(-1, 1, 200)], 1)
    stds = np.stack([rng.uniform(0.005, 0.05, 200), np.full(200, 0.5)], 1)
    grid = cfg.grid()
    dense = [grid[np.argmax(_np_pdf(grid, w, m, sd))] for m, sd in zip(means, stds, strict=True)]
    got = mixture_mode(_mixture(np.tile(w, (200, 1)), means, stds), cfg).numpy()
    np.testing.assert_allclose(got, dense, rtol=0, atol=1e-12)


def test_mode_far_outside_the_grid_does_not_underflow() -> None:
    """p(z) < 1e-308 everywhere on the grid: the search falls back to log space (no arbitrary
    first candidate) and the mode is the grid edge nearest the mixture."""
    mix = _mixture(
        [[0.5, 0.5], [1.0, 0.0]], [[3.0, 3.5], [-1.0, 0.5]], [[0.01, 0.02], [0.005, 0.1]]
    )
    np.testing.assert_allclose(mixture_mode(mix, PzConfig()).numpy(), [1.5, 0.0], atol=1e-12)


def test_quantiles_of_random_mixtures_match_root_finding(rng) -> None:
    w, mu, s = _random_mixtures(rng, 60, 5)
    mix = _mixture(w, mu, s)
    for q in (0.158655, 0.5, 0.841345, 0.999):
        got = mixture_quantile(mix, q).numpy()
        for i in range(len(w)):

            def f(z, i=i, q=q):
                return float(np.sum(w[i] * stats.norm.cdf(z, mu[i], s[i]))) - q

            ref = optimize.brentq(f, -1.0, 5.0, xtol=1e-13)
            assert got[i] == pytest.approx(ref, abs=1e-9), (i, q)


def test_quantile_is_clamped_to_its_range_like_a_bisection() -> None:
    mix = _mixture([[1.0], [1.0]], [[-3.0], [9.0]], [[0.1], [0.1]])
    np.testing.assert_allclose(mixture_quantile(mix, 0.5).numpy(), [-1.0, 5.0], atol=1e-12)


def test_products_do_not_depend_on_the_block_size(rng, monkeypatch) -> None:
    from deepz_core.pz import products as pz

    w, mu, s = _random_mixtures(rng, 150, 4)
    mix, z = _mixture(w, mu, s), torch.as_tensor(rng.uniform(0, 1.5, 150))
    whole = point_products(mix, PzConfig(), z)
    monkeypatch.setattr(pz, "_CPU_BLOCK_ELEMENTS", 64)  # blocks of one or a few galaxies
    small = point_products(mix, PzConfig(), z)
    for k in whole:
        np.testing.assert_allclose(small[k].numpy(), whole[k].numpy(), rtol=0, atol=1e-12)


def test_products_accept_float32_mixtures_and_no_galaxies() -> None:
    f32 = GaussianMixture.from_params(
        torch.zeros(2, 1), torch.tensor([[0.3], [0.9]]), torch.tensor([[0.05], [0.05]])
    )
    p = point_products(f32, PzConfig())
    np.testing.assert_allclose(p["zmedian"].numpy(), [0.3, 0.9], atol=1e-6)
    assert p["zphot"].dtype == torch.float64
    empty = GaussianMixture.from_params(torch.zeros(0, 3), torch.zeros(0, 3), torch.ones(0, 3))
    p = point_products(empty, PzConfig(), torch.zeros(0))
    assert set(p) == {"zphot", "zmean", "zmedian", "z_lo68", "z_hi68", "odds", "pit"}
    assert all(v.shape == (0,) for v in p.values())


def test_blocks_on_several_threads_give_the_same_products(rng, monkeypatch) -> None:
    from deepz_core.pz import products as pz

    w, mu, s = _random_mixtures(rng, 120, 4)
    mix, z = _mixture(w, mu, s), torch.as_tensor(rng.uniform(0, 1.5, 120))
    serial = point_products(mix, PzConfig(), z)
    monkeypatch.setattr(pz, "_CPU_BLOCK_ELEMENTS", 4096)  # many blocks
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threaded = point_products(mix, PzConfig(), z)
        assert torch.get_num_threads() == 2  # restored after the products
    finally:
        torch.set_num_threads(threads)
    for k in serial:
        np.testing.assert_allclose(threaded[k].numpy(), serial[k].numpy(), rtol=0, atol=1e-12)
