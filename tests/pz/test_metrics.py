"""Tests for deepz_core.pz.metrics: statistics against known answers, with tolerances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from deepz_core.errors import ConfigError
from deepz_core.pz import metrics as m

# ---------------------------------------------------------------- point statistics


def test_dz_definition() -> None:
    out = m.dz([1.1, 0.5], [1.0, 0.5])
    np.testing.assert_allclose(out, [0.05, 0.0])


def test_sigma68_and_nmad_of_normal_match_sigma(rng: np.random.Generator) -> None:
    s = 0.01
    x = rng.normal(0.3, s, 20_000)
    assert m.sigma68(x) == pytest.approx(s, rel=0.04)
    assert m.nmad(x) == pytest.approx(s, rel=0.04)
    assert m.bias(x) == pytest.approx(0.3, abs=4 * s / math.sqrt(x.size))


def test_sigma68_ignores_a_few_outliers_unlike_std(rng: np.random.Generator) -> None:
    x = np.concatenate([rng.normal(0, 0.01, 9_800), rng.uniform(-1, 1, 200)])
    assert m.sigma68(x) == pytest.approx(0.01, rel=0.08)
    assert np.std(x) > 5 * m.sigma68(x)


def test_outlier_fraction_is_strict() -> None:
    d = np.array([0.0, 0.02, -0.02, 0.0201, -0.05, 0.01])
    assert m.outlier_fraction(d) == pytest.approx(2 / 6)
    assert m.outlier_fraction(d, threshold=0.015) == pytest.approx(4 / 6)


def test_bias_and_nmad_hand_computed() -> None:
    d = np.array([-0.01, 0.0, 0.01, 0.02, 0.10])
    assert m.bias(d) == pytest.approx(0.01)
    # |d - 0.01| = 0.02, 0.01, 0, 0.01, 0.09 -> median 0.01
    assert m.nmad(d) == pytest.approx(1.4826 * 0.01)


def test_point_metrics_keys_and_values(rng: np.random.Generator) -> None:
    zs = rng.uniform(0.1, 1.0, 10_000)
    zp = zs + 0.005 * (1 + zs) * rng.standard_normal(zs.size)
    out = m.point_metrics(zp, zs)
    assert set(out) == {"n", "sigma68", "outlier_fraction", "catastrophic_fraction", "bias", "nmad"}
    assert out["n"] == zs.size
    assert out["sigma68"] == pytest.approx(0.005, rel=0.05)
    # P(|N(0, 0.005)| > 0.02) = P(|Z| > 4) ~ 6e-5
    assert out["outlier_fraction"] < 1e-3


def test_empty_inputs_give_nan() -> None:
    for f in (m.sigma68, m.outlier_fraction, m.bias, m.nmad):
        assert math.isnan(f([]))
    out = m.point_metrics([], [])
    assert out["n"] == 0 and math.isnan(out["sigma68"])
    assert all(math.isnan(v) for v in m.pit_ks([]))
    assert all(math.isnan(v) for v in m.pit_cvm([0.5]))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=50),
    st.floats(-5, 5),
    st.floats(0.1, 10),
)
def test_sigma68_shift_and_scale(values: list[float], shift: float, scale: float) -> None:
    x = np.array(values)
    assert m.sigma68(scale * x + shift) == pytest.approx(scale * m.sigma68(x), abs=1e-9)
    assert m.sigma68(x) >= 0


# ---------------------------------------------------------------- binned metrics


def test_binned_metrics_hand_computed() -> None:
    by = np.array([18.0, 18.2, 18.7, 19.9, 22.0, np.nan, 25.0])
    zp = np.array([0.01, 0.03, -0.01, 0.005, 0.0, 0.5, 0.5])
    zs = np.zeros_like(zp)  # dz = zp
    res = m.binned_metrics(zp, zs, by, edges=[18, 18.5, 19, 20, 21, 22])
    np.testing.assert_array_equal(res.counts, [2, 1, 1, 0, 1])  # 22.0 is in the closed last bin
    # bin 0: dz = [0.01, 0.03]; linear percentiles -> 0.5 * 0.02 * (0.84135 - 0.15865)
    assert res.sigma68[0] == pytest.approx(0.5 * 0.02 * (0.84135 - 0.15865))
    assert res.bias[0] == pytest.approx(0.02)
    assert res.outlier_fraction[0] == pytest.approx(0.5)
    assert res.nmad[0] == pytest.approx(1.4826 * 0.01)
    assert res.bias[1] == pytest.approx(-0.01) and res.sigma68[1] == 0.0
    assert np.isnan(res.sigma68[3]) and np.isnan(res.bias[3])
    np.testing.assert_allclose(res.centers, [18.25, 18.75, 19.5, 20.5, 21.5])
    rows = res.rows()
    assert len(rows) == 5 and rows[0]["lo"] == 18 and rows[0]["n"] == 2


def test_binned_metrics_default_magnitude_edges(rng: np.random.Generator) -> None:
    mag = rng.uniform(17.5, 22.5, 8_000)
    zs = rng.uniform(0.1, 1.0, mag.size)
    scatter = 0.002 * 2 ** (mag - 17.5)  # fainter -> noisier, x1.4 per 0.5 mag
    zp = zs + scatter * (1 + zs) * rng.standard_normal(mag.size)
    res = m.binned_metrics(zp, zs, mag)
    assert res.edges[0] == 17.5 and res.edges[-1] == pytest.approx(22.5)
    assert res.counts.sum() == mag.size
    assert np.all(np.diff(res.sigma68) > 0)


# ---------------------------------------------------------------- completeness curves


def _sample_with_outliers(rng: np.random.Generator, n: int = 5_000):
    zs = rng.uniform(0.1, 1.0, n)
    width = rng.uniform(0.002, 0.02, n)  # per-galaxy scatter
    d = width * rng.standard_normal(n)
    out = rng.random(n) < 0.05
    d[out] = rng.uniform(-0.3, 0.3, out.sum())
    return zs + d * (1 + zs), zs, width


def test_completeness_one_equals_overall(rng: np.random.Generator) -> None:
    zp, zs, width = _sample_with_outliers(rng)
    overall = m.point_metrics(zp, zs)
    for curve in (m.optimal_curve(zp, zs), m.odds_curve(zp, zs, -width)):
        assert curve["completeness"][-1] == 1.0 and curve["n"][-1] == zs.size
        assert curve["sigma68"][-1] == pytest.approx(overall["sigma68"])
        assert curve["outlier_fraction"][-1] == pytest.approx(overall["outlier_fraction"])


def test_optimal_curve_monotone_and_beats_random(rng: np.random.Generator) -> None:
    zp, zs, _ = _sample_with_outliers(rng)
    opt = m.optimal_curve(zp, zs)
    assert np.all(np.diff(opt["sigma68"]) >= 0)
    assert np.all(np.diff(opt["outlier_fraction"]) >= 0)
    assert np.all(np.diff(opt["threshold"]) >= 0)  # |dz| of the last galaxy kept grows
    rand = m.completeness_curve(zp, zs, rng.random(zs.size))
    assert np.all(opt["sigma68"][:-1] < rand["sigma68"][:-1])
    assert np.all(opt["outlier_fraction"] <= rand["outlier_fraction"])


def test_odds_cut_with_informative_score_improves_scatter(rng: np.random.Generator) -> None:
    zp, zs, width = _sample_with_outliers(rng)
    odds = 1.0 / width  # narrow p(z) -> high ODDS
    curve = m.odds_curve(zp, zs, odds, completeness=[0.25, 0.5, 1.0])
    assert curve["sigma68"][0] < curve["sigma68"][1] < curve["sigma68"][2]
    np.testing.assert_array_equal(curve["n"], [1250, 2500, 5000])
    assert m.best_fraction_sigma68(zp, zs, odds) == pytest.approx(curve["sigma68"][1])
    low = m.completeness_curve(zp, zs, width, [0.5], higher_is_better=False)
    assert low["sigma68"][0] == pytest.approx(curve["sigma68"][1])


def test_completeness_too_small_for_sample_gives_nan() -> None:
    curve = m.completeness_curve([0.1, 0.2], [0.1, 0.2], [1.0, 2.0], completeness=[0.1, 1.0])
    assert curve["n"][0] == 0 and np.isnan(curve["sigma68"][0]) and np.isnan(curve["threshold"][0])


# ---------------------------------------------------------------- PIT


def _gaussian_pit(rng: np.random.Generator, width_factor: float, n: int = 5_000) -> np.ndarray:
    mu = rng.uniform(0.2, 1.0, n)
    s = rng.uniform(0.005, 0.02, n)
    zs = rng.normal(mu, s)
    return stats.norm.cdf((zs - mu) / (width_factor * s))


def test_pit_of_calibrated_predictions_is_uniform(rng: np.random.Generator) -> None:
    pit = _gaussian_pit(rng, width_factor=1.0)
    assert m.pit_ks(pit).pvalue > 1e-3
    assert m.pit_cvm(pit).pvalue > 1e-3
    density, edges = m.pit_histogram(pit, bins=10)
    assert edges[0] == 0 and edges[-1] == 1 and density.shape == (10,)
    assert np.mean(density) == pytest.approx(1.0)
    np.testing.assert_allclose(density, 1.0, atol=0.2)  # ~5 sigma per bin at 500 per bin


def test_pit_of_too_narrow_predictions_is_rejected(rng: np.random.Generator) -> None:
    pit = _gaussian_pit(rng, width_factor=0.5)
    ks, cvm = m.pit_ks(pit), m.pit_cvm(pit)
    assert ks.pvalue < 1e-6 and cvm.pvalue < 1e-6
    assert ks.statistic > 0.1
    density, _ = m.pit_histogram(pit, bins=10)
    assert density[0] > 1.5 and density[-1] > 1.5  # U-shaped


# ---------------------------------------------------------------- CDE loss


def _gauss_rows(z: np.ndarray, mu: np.ndarray, s: float) -> np.ndarray:
    u = (z[None, :] - mu[:, None]) / s  # (N, G)
    return np.exp(-0.5 * u**2) / (math.sqrt(2 * math.pi) * s)


def test_cde_loss_at_the_mean_matches_analytic(rng: np.random.Generator) -> None:
    z, s = np.linspace(-1.0, 3.0, 4001), 0.05
    mu = rng.uniform(0.2, 1.5, 50)
    expected = 1 / (2 * math.sqrt(math.pi) * s) - 2 / (math.sqrt(2 * math.pi) * s)
    assert m.cde_loss(_gauss_rows(z, mu, s), z, mu) == pytest.approx(expected, rel=1e-3)


def test_cde_loss_calibrated_gaussian_and_proper_scoring(rng: np.random.Generator) -> None:
    z, s = np.linspace(-0.5, 2.5, 1501), 0.05
    mu = rng.uniform(0.2, 1.5, 5_000)
    zs = rng.normal(mu, s)
    # E[p(zs)] = int N^2 dz = 1 / (2 sqrt(pi) s)  ->  loss = -1 / (2 sqrt(pi) s)
    calibrated = m.cde_loss(_gauss_rows(z, mu, s), z, zs)
    assert calibrated == pytest.approx(-1 / (2 * math.sqrt(math.pi) * s), rel=0.05)  # ~4 sigma
    assert m.cde_loss(_gauss_rows(z, mu, 2 * s), z, zs) > calibrated
    assert m.cde_loss(_gauss_rows(z, mu, 0.5 * s), z, zs) > calibrated


def test_cde_loss_zs_outside_grid_counts_zero_density() -> None:
    z = np.linspace(0.0, 1.0, 11)
    pdf = np.ones((1, 11))  # uniform on [0, 1]: int p^2 = 1
    assert m.cde_loss(pdf, z, [0.55]) == pytest.approx(1 - 2)
    assert m.cde_loss(pdf, z, [1.5]) == pytest.approx(1.0)


# ---------------------------------------------------------------- Fig. 3 spec-z density


def test_spec_density_counts_training_galaxies_per_bin() -> None:
    train = np.array([0.1001, 0.1002, 0.1005, 0.1009, 0.1009, 0.2003, 0.3, 0.301])
    test = np.array([0.1000, 0.2008, 0.3004, 0.4, 0.1011])
    np.testing.assert_array_equal(m.spec_density(test, train), [5, 1, 1, 0, 0])
    np.testing.assert_array_equal(m.spec_density(test, train, bin_width=0.01), [5, 1, 2, 0, 5])
    np.testing.assert_array_equal(m.spec_density(test, []), [0, 0, 0, 0, 0])


def test_sigma68_vs_spec_density_constructed(rng: np.random.Generator) -> None:
    train = np.concatenate([np.full(5, 0.1005), [0.2005]])
    n = 3_000
    zs_test = np.concatenate([np.full(n, 0.1003), np.full(n, 0.2002), np.full(n, 0.3001)])
    scale = np.repeat([0.002, 0.01, 0.03], n)  # sparser training bins -> larger scatter
    zp = zs_test + scale * (1 + zs_test) * rng.standard_normal(3 * n)
    res = m.sigma68_vs_spec_density(zp, zs_test, train)
    np.testing.assert_allclose(res.edges, np.arange(7) - 0.5)  # one bin per count 0..5
    np.testing.assert_array_equal(res.counts, [n, n, 0, 0, 0, n])
    np.testing.assert_allclose(res.sigma68[[0, 1, 5]], [0.03, 0.01, 0.002], rtol=0.07)
    assert np.all(np.isnan(res.sigma68[2:5]))
    custom = m.sigma68_vs_spec_density(zp, zs_test, train, density_edges=[0, 1, 10])
    np.testing.assert_array_equal(custom.counts, [n, 2 * n])


# ---------------------------------------------------------------- input validation


def test_shape_mismatch_names_arguments_and_shapes() -> None:
    with pytest.raises(ConfigError, match=r"zp and zs .*zp \(3,\).*zs \(2,\)"):
        m.point_metrics([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ConfigError, match=r"zp and by"):
        m.binned_metrics([0.1, 0.2], [0.1, 0.2], [18.0])
    with pytest.raises(ConfigError, match=r"zp and score"):
        m.completeness_curve([0.1, 0.2], [0.1, 0.2], [1.0])
    with pytest.raises(ConfigError, match=r"zp and zs_test"):
        m.sigma68_vs_spec_density([0.1], [0.1, 0.2], [0.1])
    with pytest.raises(ConfigError, match=r"pdf_grid must have shape .*\(2, 3\).*\(2, 4\)"):
        m.cde_loss(np.ones((2, 4)), [0.0, 0.5, 1.0], [0.1, 0.2])
    with pytest.raises(ConfigError, match=r"x must be 1-dimensional, got shape \(2, 2\)"):
        m.sigma68(np.zeros((2, 2)))


def test_non_finite_and_out_of_range_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"zs must be finite.*index 1: nan"):
        m.point_metrics([0.1, 0.2], [0.1, np.nan])
    with pytest.raises(ConfigError, match=r"zs_train must be finite.*inf"):
        m.spec_density([0.1], [np.inf])
    with pytest.raises(ConfigError, match=r"zs must be > -1"):
        m.dz([0.1], [-1.0])
    with pytest.raises(ConfigError, match=r"edges must be .*increasing.*\[19.0, 18.0\]"):
        m.binned_metrics([0.1], [0.1], [18.5], edges=[19.0, 18.0])
    with pytest.raises(ConfigError, match=r"completeness must lie in \(0, 1\]"):
        m.optimal_curve([0.1], [0.1], completeness=[0.0, 0.5])
    with pytest.raises(ConfigError, match=r"pit must lie in \[0, 1\].*1.5"):
        m.pit_ks([0.2, 1.5])
    with pytest.raises(ConfigError, match=r"bins must be a positive integer, got 0"):
        m.pit_histogram([0.5], bins=0)
    with pytest.raises(ConfigError, match=r"bin_width must be > 0, got 0"):
        m.spec_density([0.1], [0.1], bin_width=0)
    with pytest.raises(ConfigError, match=r"threshold must be > 0, got -0.1"):
        m.outlier_fraction([0.1], threshold=-0.1)


def test_point_metrics_give_the_strict_and_the_catastrophic_rate() -> None:
    """outlier_fraction is E20's strict |dz| > 0.02; catastrophic_fraction the usual |dz| > 0.15."""
    zs = np.zeros(10)
    zp = np.array([0.0, 0.01, 0.03, 0.05, 0.1, 0.14, 0.16, 0.2, 0.5, 0.0])
    out = m.point_metrics(zp, zs)
    assert out["outlier_fraction"] == pytest.approx(0.7)
    assert out["catastrophic_fraction"] == pytest.approx(0.3)
    assert m.CATASTROPHIC_THRESHOLD == 0.15 and m.OUTLIER_THRESHOLD == 0.02


def test_magnitude_bins_follow_the_data(rng: np.random.Generator) -> None:
    sdss = rng.uniform(12.9, 18.8, 2000)  # SDSS: E20's 17.5-22.5 bins would hold ~1/5 of them
    edges = m.data_mag_edges(sdss)
    assert edges[0] == 12.5 and edges[-1] == 19.0 and np.allclose(np.diff(edges), 0.5)
    binned = m.binned_metrics(sdss * 0, sdss * 0, sdss, edges)
    assert binned.counts.sum() == 2000
    junk = np.r_[sdss, [99.0, -99.0, np.nan]]  # placeholders stay out of the range
    assert m.data_mag_edges(junk)[-1] <= 20 and m.data_mag_edges(junk)[0] >= 11.5
    wide = m.data_mag_edges(rng.uniform(10, 30, 500), max_bins=10)
    assert len(wide) - 1 <= 10 and np.allclose(np.diff(wide), 2.0)
    np.testing.assert_array_equal(m.data_mag_edges([]), m.DEFAULT_MAG_EDGES)
    assert m.data_mag_edges([], 0.25, 20, 21).tolist() == [20.0, 20.25, 20.5, 20.75, 21.0]
    with pytest.raises(ConfigError, match="width"):
        m.data_mag_edges(sdss, width=0)


def test_outlier_thresholds_reach_every_metric(rng: np.random.Generator) -> None:
    zs = rng.uniform(0.1, 1.0, 1000)
    zp = zs + rng.normal(0, 0.05, 1000) * (1 + zs)
    d = m.dz(zp, zs)
    assert m.point_metrics(zp, zs, 0.15)["outlier_fraction"] == pytest.approx(
        np.mean(abs(d) > 0.15)
    )
    binned = m.binned_metrics(zp, zs, zs, [0, 0.5, 1.0], outlier=0.15)
    assert np.nansum(binned.outlier_fraction * binned.counts) == pytest.approx(
        np.sum(abs(d) > 0.15)
    )
    curve = m.odds_curve(zp, zs, -abs(d), [1.0], outlier=0.1)
    assert curve["outlier_fraction"][0] == pytest.approx(np.mean(abs(d) > 0.1))
