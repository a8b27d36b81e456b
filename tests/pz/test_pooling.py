"""Log-linear pooling p_net^a p_tf^b (beyond E20): known answers on Gaussians (the product of two
Gaussians tempered by a, b is the Gaussian of precision a/s1^2 + b/s2^2 and the precision-weighted
mean), the floors that keep zeros and NaN from vetoing or poisoning a product, and the choice of the
exponents per magnitude bin on galaxies whose truth follows one density or the other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from deepz_core.errors import ConfigError
from deepz_core.pz.pooling import (
    LOG_FLOOR,
    PoolingWeights,
    candidate_loglik,
    default_candidates,
    fit_pooling,
    floored,
    normalised,
    pool,
    value_at,
)

pytestmark = pytest.mark.usefixtures("one_thread")

Z_MIN, DZ = 0.0, 0.001
GRID = np.round(Z_MIN + DZ * np.arange(2001), 12)  # 0 .. 2


def _log_gauss(mu, sigma) -> torch.Tensor:
    """(N, G) float64 log N(z; mu, sigma) on GRID of centres and widths (N,)."""
    mu, sigma = np.atleast_1d(mu)[:, None], np.atleast_1d(sigma)[:, None]
    return torch.as_tensor(stats.norm.logpdf(GRID[None, :], mu, sigma))


def _moments(p: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (N,) of densities p (N, G) on GRID (trapezoid rule)."""
    p = p.numpy()
    mean = np.trapezoid(p * GRID, GRID, axis=1)
    var = np.trapezoid(p * (GRID - mean[:, None]) ** 2, GRID, axis=1)
    return mean, np.sqrt(var)


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (0.5, 0.2), (0.25, 1.0), (1.0, 0.05)])
def test_pooled_gaussians_are_the_precision_weighted_gaussian(a: float, b: float) -> None:
    m1, s1, m2, s2 = 0.8, 0.05, 0.9, 0.08
    p = pool(_log_gauss(m1, s1), _log_gauss(m2, s2), torch.tensor([a]), torch.tensor([b]), DZ)
    precision = a / s1**2 + b / s2**2
    mean, std = _moments(p)
    assert mean[0] == pytest.approx((a * m1 / s1**2 + b * m2 / s2**2) / precision, abs=1e-5)
    assert std[0] == pytest.approx(precision**-0.5, rel=1e-3)


def test_one_exponent_zero_returns_the_other_density() -> None:
    log_p, log_q = _log_gauss([0.5, 1.2], [0.03, 0.2]), _log_gauss([0.7, 0.4], [0.1, 0.05])
    one, zero = torch.ones(2), torch.zeros(2)
    for a, b, want in ((one, zero, log_p), (zero, one, log_q)):
        got = pool(log_p, log_q, a, b, DZ).numpy()
        density = np.exp(want.numpy())  # normalised on the grid: N(1.2, 0.2) is cut at z = 2
        density /= np.trapezoid(density, GRID, axis=1)[:, None]
        np.testing.assert_allclose(got, density, rtol=1e-9, atol=1e-20)


def test_pooled_densities_integrate_to_one(rng: np.random.Generator) -> None:
    n = 50
    log_p = _log_gauss(rng.uniform(0.2, 1.8, n), rng.uniform(0.01, 0.3, n))
    log_q = _log_gauss(rng.uniform(0.2, 1.8, n), rng.uniform(0.01, 0.3, n))
    a, b = (torch.as_tensor(rng.choice([0.0, 0.25, 0.5, 1.0], n)) for _ in range(2))
    p = pool(log_p, log_q, a, b, DZ)
    assert torch.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(np.trapezoid(p.numpy(), GRID, axis=1), 1.0, rtol=1e-12)
    flat = normalised(torch.zeros(1, len(GRID), dtype=torch.float64), DZ)
    np.testing.assert_allclose(flat.numpy(), 1.0 / (GRID[-1] - GRID[0]), rtol=1e-12)


def test_floored_makes_every_value_finite_and_an_empty_row_flat() -> None:
    nan, inf = float("nan"), float("inf")
    log_p = torch.tensor(
        [
            [0.0, -inf, nan, -100.0, -5.0],
            [-inf, -inf, -inf, -inf, -inf],
            [nan, nan, nan, nan, nan],
            [3.0, 2.0, 1.0, 0.0, -1.0],
        ],
        dtype=torch.float64,
    )
    out = floored(log_p)
    assert torch.isfinite(out).all()
    np.testing.assert_array_equal(out[0].numpy(), [0.0, -LOG_FLOOR, -LOG_FLOOR, -LOG_FLOOR, -5.0])
    for row in out[1:3]:  # nothing finite: flat
        assert torch.all(row == row[0])
    np.testing.assert_array_equal(out[3].numpy(), log_p[3].numpy())  # within the floor: untouched


def test_a_zero_exponent_never_meets_0_times_inf() -> None:
    """A template fit with zeros (log -inf) or no p(z) at all (NaN) and b = 0: the network alone."""
    log_p = _log_gauss([0.6, 0.6], [0.05, 0.05])
    log_q = torch.log(torch.zeros(2, len(GRID), dtype=torch.float64))
    log_q[1] = float("nan")
    got = pool(log_p, log_q, torch.ones(2), torch.zeros(2), DZ)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), np.exp(log_p.numpy()), rtol=1e-6, atol=1e-12)
    # b > 0 with a zero: the floor vetoes no redshift outright, the product stays a density
    got = pool(log_p, log_q, torch.ones(2), torch.full((2,), 0.5), DZ)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(np.trapezoid(got.numpy(), GRID, axis=1), 1.0, rtol=1e-12)


def test_value_at_interpolates_linearly_and_clamps_to_the_grid() -> None:
    g = 11
    p = torch.stack([torch.arange(g, dtype=torch.float64), 3.0 - torch.arange(g) * 0.5])
    z = torch.tensor([0.35, 0.72], dtype=torch.float64)
    # rows are linear in z = 0.1 k: exact at any z on the grid's span
    np.testing.assert_allclose(value_at(p, 0.0, 0.1, z).numpy(), [3.5, 3.0 - 3.6], atol=1e-12)
    z = torch.tensor([-5.0, 9.0], dtype=torch.float64)  # beyond the grid: its end values
    np.testing.assert_allclose(value_at(p, 0.0, 0.1, z).numpy(), [0.0, 3.0 - 5.0])
    z = torch.tensor([1.0, 0.0], dtype=torch.float64)  # the last and first grid points
    np.testing.assert_allclose(value_at(p, 0.0, 0.1, z).numpy(), [10.0, 3.0])


def test_candidate_loglik_is_the_log_pooled_density_at_z() -> None:
    log_p, log_q = _log_gauss([0.5, 1.0], [0.05, 0.1]), _log_gauss([0.6, 1.1], [0.1, 0.05])
    z = torch.tensor([0.55, 1.07], dtype=torch.float64)
    cands = [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)]
    got = candidate_loglik(log_p, log_q, z, Z_MIN, DZ, cands).numpy()
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got[0], stats.norm.logpdf(z, [0.5, 1.0], [0.05, 0.1]), atol=1e-5)
    np.testing.assert_allclose(got[1], stats.norm.logpdf(z, [0.6, 1.1], [0.1, 0.05]), atol=1e-5)
    pooled = pool(log_p, log_q, torch.full((2,), 0.5), torch.full((2,), 0.5), DZ)
    want = np.log(value_at(pooled, Z_MIN, DZ, z).numpy())
    np.testing.assert_allclose(got[2], want, atol=1e-12)


@pytest.fixture(scope="module")
def populations() -> tuple[np.ndarray, np.ndarray]:
    return _two_populations(seed=11)


def _two_populations(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, N) candidate log densities and magnitudes (N,) of galaxies with two Gaussian p(z) 0.3
    apart (6 sigma): the bright ones' (mag 20-21) spec-z are drawn from q (the template fit), the
    faint ones' (22-23) from p (the network); 30 galaxies at 21-21.5 (a bin below MIN_PER_BIN)
    follow p, none lie at 21.5-22."""
    rng = np.random.default_rng(seed)
    n_bright, n_small, n_faint = 800, 30, 800
    n = n_bright + n_small + n_faint
    mu_p = rng.uniform(0.4, 1.2, n)
    mu_q = mu_p + rng.choice([-0.3, 0.3], n)
    sigma = 0.05
    follows_q = np.arange(n) < n_bright
    z = np.where(follows_q, mu_q, mu_p) + sigma * rng.standard_normal(n)
    mag = np.concatenate(
        [
            rng.uniform(20.0, 21.0, n_bright),
            rng.uniform(21.0, 21.5, n_small),
            rng.uniform(22.0, 23.0, n_faint),
        ]
    )
    loglik = candidate_loglik(
        _log_gauss(mu_p, np.full(n, sigma)),
        _log_gauss(mu_q, np.full(n, sigma)),
        torch.as_tensor(z),
        Z_MIN,
        DZ,
        default_candidates(),
    )
    return loglik.numpy(), mag


def test_fit_pooling_follows_the_estimator_the_truth_follows_per_magnitude(populations) -> None:
    loglik, mag = populations
    edges = np.arange(20.0, 23.01, 0.5)
    w = fit_pooling(loglik, mag, default_candidates(), edges)
    assert w.n_fit == len(mag)
    np.testing.assert_array_equal(w.a[:2], 0.0)  # bright: the template fit alone
    np.testing.assert_array_equal(w.b[:2], 1.0)
    np.testing.assert_array_equal(w.a[4:], 1.0)  # faint: the network alone
    np.testing.assert_array_equal(w.b[4:], 0.0)
    # the all-galaxy choice: the best mean clipped log density over everyone
    cands = np.asarray(default_candidates())
    best = cands[np.argmax(np.maximum(loglik, -20.0).mean(1))]
    assert (w.a_all, w.b_all) == tuple(best)
    # 30 galaxies at 21-21.5 and none at 21.5-22: merged with the faint bin after them
    np.testing.assert_array_equal(w.edges, [20.0, 20.5, 21.0, 22.5, 23.0])
    assert (w.a[2], w.b[2]) == (1.0, 0.0)
    # with a lower threshold the 30 galaxies decide their own bin
    w30 = fit_pooling(loglik, mag, default_candidates(), edges, min_per_bin=30)
    np.testing.assert_array_equal(w30.edges, [20.0, 20.5, 21.0, 21.5, 22.5, 23.0])
    assert (w30.a[2], w30.b[2]) == (1.0, 0.0)
    # fewer galaxies than min_per_bin in all: one bin, the all-galaxy choice
    w_one = fit_pooling(loglik, mag, default_candidates(), edges, min_per_bin=10_000)
    np.testing.assert_array_equal(w_one.edges, [20.0, 23.0])
    assert (w_one.a[0], w_one.b[0]) == (w_one.a_all, w_one.b_all)


@pytest.mark.parametrize(
    ("counts", "minimum", "expected"),
    [
        ([400, 400, 30, 0, 400, 400], 300, [0, 1, 2, 5, 6]),  # small bins join the next
        ([400, 400, 400, 100], 300, [0, 1, 2, 4]),  # a short faint end joins the one before
        ([10, 10, 10], 300, [0, 3]),  # too few in all: one bin
        ([300, 300], 300, [0, 1, 2]),  # exactly enough: kept
    ],
)
def test_merged_edges_leave_every_bin_enough_galaxies(counts, minimum, expected) -> None:
    from deepz_core.pz.pooling import merged_edges

    edges = np.arange(len(counts) + 1, dtype=float)
    mag = np.concatenate([np.full(c, i + 0.5) for i, c in enumerate(counts)] + [[np.nan]])
    np.testing.assert_array_equal(merged_edges(edges, mag, minimum), expected)


def test_fit_pooling_uses_galaxies_without_a_magnitude_only_for_the_all_galaxy_choice(
    populations,
) -> None:
    loglik, mag = populations[0], populations[1].copy()
    mag[-800:] = np.nan  # the faint ones lose their magnitudes
    w = fit_pooling(loglik, mag, default_candidates(), np.arange(20.0, 23.01, 0.5))
    np.testing.assert_array_equal(w.a[:2], 0.0)
    np.testing.assert_array_equal(w.a[4:], w.a_all)  # no galaxy left in the faint bins
    with pytest.raises(ConfigError, match="does not match 44 candidates"):
        fit_pooling(loglik[:, :10], mag, default_candidates(), np.array([20.0, 21.0]))
    with pytest.raises(ConfigError, match="0 galaxies"):
        fit_pooling(np.zeros((44, 0)), np.zeros(0), default_candidates(), np.array([20.0, 21.0]))


def test_default_candidates_hold_each_estimator_alone() -> None:
    cands = default_candidates()
    assert len(cands) == len(set(cands)) == 44
    assert (0.0, 0.0) not in cands  # the flat p(z): its mode would be z_min
    assert (1.0, 0.0) in cands and (0.0, 1.0) in cands and (1.0, 1.0) in cands
    assert all(a >= 0 and b >= 0 for a, b in cands)


WEIGHTS = PoolingWeights(
    edges=np.array([20.0, 20.5, 21.0, 21.5]),
    a=np.array([0.0, 0.5, 1.0]),
    b=np.array([1.0, 0.35, 0.0]),
    a_all=0.75,
    b_all=0.2,
    n_fit=1234,
)


def test_weights_at_magnitudes_inside_outside_and_missing() -> None:
    mag = np.array([20.2, 20.5, 21.4999, 15.0, 30.0, np.nan, np.inf, -np.inf, 21.5])
    a, b = WEIGHTS.at(mag)
    np.testing.assert_array_equal(a, [0.0, 0.5, 1.0, 0.0, 1.0, 0.75, 0.75, 0.75, 1.0])
    np.testing.assert_array_equal(b, [1.0, 0.35, 0.0, 1.0, 0.0, 0.2, 0.2, 0.2, 0.0])
    a, b = WEIGHTS.at(np.zeros(0))
    assert a.shape == b.shape == (0,)


def test_weights_survive_a_json_round_trip() -> None:
    doc = json.loads(json.dumps(WEIGHTS.to_dict()))
    back = PoolingWeights.from_dict(doc)
    for name in ("edges", "a", "b"):
        np.testing.assert_array_equal(getattr(back, name), getattr(WEIGHTS, name))
    assert (back.a_all, back.b_all, back.n_fit) == (0.75, 0.2, 1234)
    assert back.to_dict() == WEIGHTS.to_dict()


def _damaged(**change) -> dict:
    doc = WEIGHTS.to_dict()
    for key, value in change.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize(
    "doc, needle",
    [
        (_damaged(version=2), "unknown version 2"),
        (_damaged(a=None), "not stored pooling weights.*'a'"),
        (_damaged(a="x"), "not stored pooling weights"),
        (_damaged(a=[0.0, 1.0]), "do not fit together"),
        (_damaged(b=[0.0, -1.0, 1.0]), "finite and >= 0"),
        (_damaged(a_all="nan"), "finite and >= 0"),
        (_damaged(edges=[20.0, 22.0, 21.0, 23.0]), "edges must increase"),
        (_damaged(edges=[20.0]), "do not fit together"),
        ([], "not stored pooling weights"),
        (None, "not stored pooling weights"),
        ("weights", "not stored pooling weights"),
    ],
)
def test_damaged_weights_raise_a_config_error_naming_the_problem(doc, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        PoolingWeights.from_dict(doc)


def test_breaks_are_the_edges_where_the_exponents_change() -> None:
    """Known answer: (a, b) change at 18.5 and 20.0, not at 19.5 (same exponents either side)."""
    w = PoolingWeights(
        np.array([17.0, 18.5, 19.5, 20.0, 23.0]),
        np.array([0.5, 0.0, 0.0, 0.5]),
        np.array([0.1, 0.2, 0.2, 0.2]),
        0.5,
        0.5,
        1000,
    )
    np.testing.assert_array_equal(w.breaks(), [18.5, 20.0])
