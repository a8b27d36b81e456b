"""The PAUS-COSMOS-like observed mock."""

import numpy as np
import pytest

from deepz_core.catalog.catalog import coadd_from_exposures, dense_exposures
from deepz_core.sed.bands import band_set
from deepz_core.simulate.mock import MockConfig, simulate_mock, zero_point_offsets

BANDS = band_set("paus_cosmos")


@pytest.fixture(scope="module")
def mock():
    return simulate_mock(600, BANDS, seed=11)


def test_deterministic_per_seed(mock) -> None:
    again = simulate_mock(600, BANDS, seed=11)
    np.testing.assert_array_equal(mock.flux, again.flux)
    np.testing.assert_array_equal(mock.exposures.flux, again.exposures.flux)


def test_coadds_are_inverse_variance_means_of_exposures(mock) -> None:
    coadd, error = coadd_from_exposures(dense_exposures(mock))
    nb = slice(0, 40)
    np.testing.assert_allclose(mock.flux[:, nb], coadd[:, nb], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mock.flux_error[:, nb], error[:, nb], rtol=1e-5)


def test_exposure_counts_are_paus_like(mock) -> None:
    dense = dense_exposures(mock)
    counts = dense.mask[:, :40].sum(axis=2).ravel()
    assert counts.min() >= 3 and counts.max() <= 10
    assert np.bincount(counts).argmax() == 5
    assert not dense.mask[:, 40:].any()  # broad bands: coadds only


def test_population_and_spectroscopic_sample() -> None:
    cat = simulate_mock(3000, BANDS, seed=5)
    z = cat.extra["ztrue"]
    hist, edges = np.histogram(z, bins=np.arange(0.0, 1.6, 0.1))
    assert 0.35 <= edges[hist.argmax()] <= 0.75  # n(z) for iAB < 22.5 peaks near 0.6
    assert cat.mag.max() < 22.8
    frac = np.isfinite(cat.zspec).mean()
    assert 0.78 < frac < 0.92  # paper: 8,566 of ~10,000
    faint = cat.mag > 22.0
    assert np.isfinite(cat.zspec[faint]).mean() < np.isfinite(cat.zspec[~faint]).mean()


@pytest.mark.parametrize("mag_max", [19.6, 20.0])
def test_a_bright_population_has_the_bright_spectroscopic_completeness(mag_max: float) -> None:
    """A population no fainter than iAB 20 (a bright spec-z sample) has the bright completeness
    (0.97) throughout; the completeness ramp to the faint one divided by mag_max - 20 before,
    which gave such galaxies the faint completeness (0.72) or none (0 / 0 at exactly 20)."""
    from deepz_core.simulate.galaxies import PopulationConfig

    cfg = MockConfig(population=PopulationConfig(mag_min=17.0, mag_max=mag_max))
    cat = simulate_mock(3000, BANDS, seed=8, config=cfg)
    assert np.isfinite(cat.zspec).mean() == pytest.approx(0.97, abs=0.015)


def test_outliers_are_injected_at_the_configured_rate() -> None:
    clean = simulate_mock(400, BANDS, seed=2, config=MockConfig(outlier_rate=0.0))
    dirty = simulate_mock(400, BANDS, seed=2, config=MockConfig(outlier_rate=0.05))
    pull = (dirty.exposures.flux - clean.exposures.flux) / dirty.exposures.flux_error
    assert abs(np.mean(np.abs(pull) > 2.5) - 0.05) < 0.01
    assert (pull > 2.5).sum() > (pull < -2.5).sum() > 0  # both signs, mostly positive


def test_zero_point_offsets_are_small_and_reproducible() -> None:
    zp = zero_point_offsets(BANDS, 42, 0.02)
    np.testing.assert_array_equal(zp, zero_point_offsets(BANDS, 42, 0.02))
    assert np.all(np.abs(zp - 1) < 0.1) and np.std(zp) > 0.005


def test_simulation_configs_round_trip_and_refuse_unknown_fields() -> None:
    """Eleventh session's review: the simulation configs checked their values but, not being
    ``Config``s, took a mapping with a misspelt field in silence."""
    from deepz_core.errors import ConfigError
    from deepz_core.simulate.deep import DeepMockConfig
    from deepz_core.simulate.galaxies import PopulationConfig
    from deepz_core.simulate.templates import TemplateSimConfig

    for cls in (MockConfig, DeepMockConfig, TemplateSimConfig, PopulationConfig):
        assert cls.from_dict(cls().to_dict()) == cls(), cls.__name__
    custom = MockConfig.from_dict({"population": {"mag_max": 21.0}, "outlier_rate": 0.1})
    assert custom.population.mag_max == 21.0 and custom.outlier_rate == 0.1
    with pytest.raises(ConfigError, match=r"unknown mock config fields \['outlier_rat'\]"):
        MockConfig.from_dict({"outlier_rat": 0.1})
    with pytest.raises(ConfigError, match=r"unknown population config fields \['mag_maxx'\]"):
        MockConfig.from_dict({"population": {"mag_maxx": 21.0}})
    with pytest.raises(ConfigError, match="mag_min must be below mag_max"):
        PopulationConfig(mag_min=22.0, mag_max=21.0)
    with pytest.raises(ConfigError, match="burst_fraction"):
        PopulationConfig(burst_fraction=1.5)
