"""The pooled p(z) of the network and the template fit on a run's grid (beyond E20): the network's
log p(z) from its mixture columns, the PIT calibration applied on the grid (identity: unchanged; a
fitted widening or narrowing: the known width), and the prediction columns of the pooled p(z)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special, stats

import deepz_core.hybrid.combine as combine
from deepz_core.hybrid.combine import (
    MIXTURE_COMPONENTS,
    calibrated_grid,
    chunked_loglik,
    network_log_pz,
    pooled_products,
    templatefit_log_pz,
)
from deepz_core.pz.calibration import (
    DEFAULT_LEVELS,
    PitCalibration,
    fit_pit_calibration,
)
from deepz_core.pz.pooling import candidate_loglik, default_candidates, pool
from deepz_core.pz.products import PzConfig
from deepz_core.templatefit.pz import cdf_grid

pytestmark = pytest.mark.usefixtures("one_thread")

PZ = PzConfig()  # 0 .. 1.5, step 0.001
GRID = PZ.grid()
POINT = ("zphot", "zmean", "zmedian", "z_lo68", "z_hi68", "odds")


def _gauss(mu, sigma) -> torch.Tensor:
    """(N, G) float64 Gaussian densities on GRID, normalised there."""
    p = stats.norm.pdf(GRID[None, :], np.asarray(mu)[:, None], np.asarray(sigma)[:, None])
    return torch.as_tensor(p / np.trapezoid(p, GRID, axis=1)[:, None])


def _std(p: torch.Tensor) -> np.ndarray:
    p = p.numpy()
    mean = np.trapezoid(p * GRID, GRID, axis=1)
    return np.sqrt(np.trapezoid(p * (GRID - mean[:, None]) ** 2, GRID, axis=1))


def _identity() -> PitCalibration:
    """g(u) = u: knots on the line h(x) = x."""
    y = special.ndtri(np.asarray(DEFAULT_LEVELS))
    return PitCalibration(np.array([22.0]), y[None, :].copy(), y, 10_000)


def test_network_log_pz_of_one_component_is_the_gaussian_log_density() -> None:
    means, stds = np.array([[0.3], [0.9], [1.4]]), np.array([[0.02], [0.1], [0.05]])
    got = network_log_pz(np.ones((3, 1)), means, stds, PZ).numpy()
    assert got.shape == (3, len(GRID)) and got.dtype == np.float64
    want = stats.norm.logpdf(GRID[None, :], means, stds)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # log p crosses 0


def test_network_log_pz_of_a_narrow_component_far_along_the_grid() -> None:
    """The quadratic form's cancellation (m / s ~ 1.4e3: terms of 1e6) stays below 1e-9 around the
    peak of a bright PAUS galaxy's p(z), and every grid point has a finite log density."""
    means, stds = np.array([[1.4], [0.05]]), np.array([[0.001], [0.0015]])
    got = network_log_pz(np.ones((2, 1)), means, stds, PZ).numpy()
    want = stats.norm.logpdf(GRID[None, :], means, stds)
    assert np.isfinite(got).all()
    near = np.abs(GRID[None, :] - means) < 10 * stds
    np.testing.assert_allclose(got[near], want[near], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-8)


def test_network_log_pz_of_a_mixture_and_of_a_row_without_a_pz() -> None:
    w = np.array([[0.2, 0.8, 0.0], [np.nan, np.nan, np.nan]])
    m = np.array([[0.4, 0.7, 1.0], [np.nan, np.nan, np.nan]])
    s = np.array([[0.05, 0.1, 0.2], [np.nan, np.nan, np.nan]])
    got = network_log_pz(w, m, s, PZ).numpy()
    want = np.log(sum(w[0, k] * stats.norm.pdf(GRID, m[0, k], s[0, k]) for k in range(3)))
    np.testing.assert_allclose(got[0], want, rtol=1e-10)
    assert np.isnan(got[1]).all()  # no p(z): NaN, never a density


def test_templatefit_log_pz_turns_zeros_into_minus_infinity() -> None:
    got = templatefit_log_pz(np.array([[0.0, 1.0, 2.0]], dtype=np.float32)).numpy()
    np.testing.assert_allclose(got, [[-np.inf, 0.0, np.log(2.0)]])


def test_an_identity_calibration_leaves_the_grid_unchanged() -> None:
    p = _gauss([0.5, 1.0], [0.03, 0.2])
    cal = _identity().transform(None, 2)
    got = calibrated_grid(p, cal, PZ.dz).numpy()
    np.testing.assert_allclose(got, p.numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_a_fitted_calibration_gives_the_known_width(s: float) -> None:
    """p(z) of width s x the truth's: PITs U-shaped (s = 0.5, too narrow) or piled up at 0.5
    (s = 2, too broad); the calibrated p(z) on the grid has the true width, w / s."""
    u = np.random.default_rng(5).standard_normal(20_000)
    cal = fit_pit_calibration(stats.norm.cdf(u / s))
    width = np.array([0.02, 0.05])
    p = _gauss([0.6, 0.75], width)
    q = calibrated_grid(p, cal.transform(None, 2), PZ.dz)
    np.testing.assert_allclose(np.trapezoid(q.numpy(), GRID, axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(_std(q), width / s, rtol=0.05)
    if s < 1:
        assert (_std(q) > 1.8 * _std(p)).all()  # broader
    else:
        assert (_std(q) < 0.6 * _std(p)).all()  # narrower


def test_the_calibrated_grid_has_the_cdf_g_of_f_when_p_reaches_the_grid_ends() -> None:
    """The calibrated CDF is g(F(z)). Regression: g' is infinite at F = 0 and 1 for a widening g;
    taken there, it put the mass of a p(z) that does not vanish at z = 0 or z = z_max onto the
    grid's end point (a median of 0.0005 for a galaxy at z = 0.04)."""
    u = np.random.default_rng(8).standard_normal(20_000)
    cal = fit_pit_calibration(stats.norm.cdf(2 * u))  # widens x 2
    p = _gauss([0.04, 1.46, 0.7], [0.05, 0.08, 0.1])
    transform = cal.transform(None, 3)
    q = calibrated_grid(p, transform, PZ.dz)
    cdf_p = cdf_grid(p, PZ.dz)
    want = transform.forward(cdf_p / cdf_p[:, -1:]).numpy()
    got = cdf_grid(q, PZ.dz).numpy()
    # the grid's first and last cells hold the mass a widened p(z) would put beyond them
    # (10% here): g(F) there is approximated by the cells' mean g'
    np.testing.assert_allclose(got, want, atol=0.025)
    np.testing.assert_allclose(got[:, 2:-2], want[:, 2:-2], atol=2e-3)
    for k in range(3):  # the medians agree (the old evaluation put them at z = 0.0005, 1.4995)
        assert np.interp(0.5, got[k], GRID) == pytest.approx(
            np.interp(0.5, want[k], GRID), abs=2e-3
        )
    assert torch.isfinite(q).all()


def _inputs(n: int, seed: int):
    """log p(z) of n network mixtures and n template fits (zeros in their far tails), exponents
    and spec-z (every third one unknown)."""
    rng = np.random.default_rng(seed)
    c = 3
    w = rng.dirichlet(np.ones(c), n)
    m = rng.uniform(0.2, 1.3, (n, c))
    s = rng.uniform(0.02, 0.15, (n, c))
    log_net = network_log_pz(w, m, s, PZ)
    p_tf = _gauss(rng.uniform(0.2, 1.3, n), rng.uniform(0.005, 0.05, n)).numpy()
    p_tf[p_tf < 1e-300] = 0.0
    log_tf = templatefit_log_pz(p_tf)
    a = rng.choice([0.0, 0.25, 1.0], n)
    b = rng.choice([0.0, 0.1, 1.0], n)
    zspec = rng.uniform(0.2, 1.3, n)
    zspec[::3] = np.nan
    return log_net, log_tf, a, b, zspec


def test_pooled_products_columns_shapes_and_mode() -> None:
    n = 12
    log_net, log_tf, a, b, zspec = _inputs(n, seed=1)
    out = pooled_products(log_net, log_tf, a, b, PZ, zspec)
    assert set(out) == {*POINT, "pit", "weights", "means", "stds"}
    for name in (*POINT, "pit"):
        assert out[name].shape == (n,), name
    for name in ("weights", "means", "stds"):
        assert out[name].shape == (n, MIXTURE_COMPONENTS), name
    p = pool(log_net, log_tf, torch.as_tensor(a), torch.as_tensor(b), PZ.dz)
    np.testing.assert_allclose(out["zphot"], GRID[p.argmax(1).numpy()])
    assert np.isnan(out["pit"][::3]).all()
    known = np.isfinite(zspec)
    assert np.all((out["pit"][known] >= 0) & (out["pit"][known] <= 1))
    assert np.all(out["z_lo68"] <= out["zmedian"]) and np.all(out["zmedian"] <= out["z_hi68"])
    np.testing.assert_allclose(out["weights"].sum(1), 1.0, rtol=1e-9)
    # the 8-component compression keeps the mean of the pooled p(z), to its approximation
    np.testing.assert_allclose((out["weights"] * out["means"]).sum(1), out["zmean"], atol=1e-3)


def test_pooling_one_gaussian_with_nothing_gives_its_known_products() -> None:
    """a = 1, b = 0 on a one-component network: mode, mean, median at its centre, 68% interval
    centre -+ sigma, PIT its CDF at the spec-z."""
    mu, sigma = np.array([0.5, 0.9]), np.array([0.05, 0.1])
    log_net = network_log_pz(np.ones((2, 1)), mu[:, None], sigma[:, None], PZ)
    log_tf = torch.full_like(log_net, float("nan"))  # no template fit at all
    zspec = np.array([0.55, 0.7])
    out = pooled_products(log_net, log_tf, np.ones(2), np.zeros(2), PZ, zspec)
    for name in ("zphot", "zmean", "zmedian"):
        np.testing.assert_allclose(out[name], mu, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(out["z_lo68"], mu - sigma, atol=2e-5)
    np.testing.assert_allclose(out["z_hi68"], mu + sigma, atol=2e-5)
    np.testing.assert_allclose(out["pit"], stats.norm.cdf(zspec, mu, sigma), atol=2e-5)


def test_calibrated_products_keep_the_raw_mode_and_pit() -> None:
    n = 9
    log_net, log_tf, a, b, zspec = _inputs(n, seed=2)
    u = np.random.default_rng(6).standard_normal(20_000)
    transform = fit_pit_calibration(stats.norm.cdf(2 * u)).transform(None, n)  # widens x 2
    raw = pooled_products(log_net, log_tf, a, b, PZ, zspec)
    cal = pooled_products(log_net, log_tf, a, b, PZ, zspec, transform)
    assert set(cal) == set(raw) | {"pit_raw"}
    np.testing.assert_array_equal(cal["zphot"], raw["zphot"])  # g does not move the mode
    np.testing.assert_array_equal(cal["pit_raw"], raw["pit"])
    assert np.isnan(cal["pit"][::3]).all() and np.isnan(cal["pit_raw"][::3]).all()
    wider = (cal["z_hi68"] - cal["z_lo68"]) > (raw["z_hi68"] - raw["z_lo68"])
    assert wider.all()


def test_calibrated_products_are_those_of_g_of_f() -> None:
    """The calibrated PIT is g(F(zs)), the quantiles solve g(F(z)) = q and the ODDS is
    g(F(mode + w/2)) - g(F(mode - w/2)), F the grid CDF, linear between grid points."""
    n = 9
    log_net, log_tf, a, b, zspec = _inputs(n, seed=4)
    u = np.random.default_rng(9).standard_normal(20_000)
    transform = fit_pit_calibration(stats.norm.cdf(0.6 * u)).transform(None, n)  # narrows
    out = pooled_products(log_net, log_tf, a, b, PZ, zspec, transform)
    p = pool(log_net, log_tf, torch.as_tensor(a), torch.as_tensor(b), PZ.dz)
    cdf = cdf_grid(p, PZ.dz)
    cdf = (cdf / cdf[:, -1:]).numpy()

    def g_of_f(z: np.ndarray) -> np.ndarray:
        f = np.array([np.interp(zk, GRID, ck) for zk, ck in zip(z, cdf, strict=True)])
        return transform.forward(torch.as_tensor(f)[:, None])[:, 0].numpy()

    known = np.isfinite(zspec)
    np.testing.assert_allclose(out["pit"][known], g_of_f(zspec)[known], atol=1e-12)
    for name, level in (("zmedian", 0.5), ("z_lo68", 0.158655), ("z_hi68", 0.841345)):
        np.testing.assert_allclose(g_of_f(out[name]), level, atol=1e-9, err_msg=name)
    half = 0.5 * PZ.odds_window
    odds = g_of_f(out["zphot"] + half) - g_of_f(out["zphot"] - half)
    np.testing.assert_allclose(out["odds"], odds, atol=1e-12)


def test_a_calibration_narrows_p_of_z_a_few_grid_steps_wide() -> None:
    """Regression: p(z) 1.5 grid steps wide (the template fit's at the bright end) twice as broad
    as its errors: the calibration fitted on the PITs of 3,000 galaxies must bring 68% of others'
    redshifts inside their 68% interval. Evaluated on the calibrated grid (g' averaged over a grid
    cell), it left 80% there; the products are now those of g(F) itself."""
    rng = np.random.default_rng(11)
    n = 6_000
    sigma = 1.5 * PZ.dz
    mu = 0.3 + rng.integers(0, 1000, n) * PZ.dz + rng.uniform(0, PZ.dz, n)  # off the grid too
    log_p = torch.as_tensor(stats.norm.logpdf(GRID[None, :], mu[:, None], sigma))
    zspec = mu + 0.5 * sigma * rng.standard_normal(n)  # errors half as large as p(z) says
    nothing = torch.full_like(log_p, float("nan"))
    ones, zeros = np.ones(n), np.zeros(n)
    fit, test = slice(0, 3_000), slice(3_000, None)
    raw = pooled_products(log_p[fit], nothing[fit], ones[fit], zeros[fit], PZ, zspec[fit])
    transform = fit_pit_calibration(raw["pit"]).transform(None, n - 3_000)
    before = pooled_products(log_p[test], nothing[test], ones[test], zeros[test], PZ, zspec[test])
    after = pooled_products(
        log_p[test], nothing[test], ones[test], zeros[test], PZ, zspec[test], transform
    )

    def inside(out: dict[str, np.ndarray]) -> float:
        return float(np.mean((zspec[test] >= out["z_lo68"]) & (zspec[test] <= out["z_hi68"])))

    assert inside(before) > 0.9
    assert inside(after) == pytest.approx(0.6827, abs=0.02)
    assert np.mean((after["pit"] > 0.158655) & (after["pit"] < 0.841345)) == pytest.approx(
        0.6827, abs=0.02
    )


def test_blocks_give_the_same_products_as_one_pass(monkeypatch) -> None:
    n = 11
    log_net, log_tf, a, b, zspec = _inputs(n, seed=3)
    u = np.random.default_rng(7).standard_normal(5_000)
    transform = fit_pit_calibration(stats.norm.cdf(1.5 * u)).transform(None, n)
    whole = pooled_products(log_net, log_tf, a, b, PZ, zspec, transform)
    rows = slice(1, 3)
    loglik = chunked_loglik(log_net[rows], log_tf[rows], zspec[rows], PZ, default_candidates())
    monkeypatch.setattr(combine, "CHUNK", 4)  # blocks of 4, 4 and 3 galaxies
    blocks = pooled_products(log_net, log_tf, a, b, PZ, zspec, transform)
    for name, value in whole.items():
        np.testing.assert_allclose(blocks[name], value, rtol=1e-12, err_msg=name)
    want = candidate_loglik(
        log_net[rows],
        log_tf[rows],
        torch.as_tensor(zspec[rows]),
        PZ.z_min,
        PZ.dz,
        default_candidates(),
    )
    np.testing.assert_allclose(loglik, want.numpy(), rtol=1e-12)
