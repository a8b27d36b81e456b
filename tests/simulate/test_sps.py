"""The E20 Table 1 SPS pretraining simulation."""

import numpy as np
import pytest

from deepz_core.errors import ConfigError
from deepz_core.sed.bands import band_set
from deepz_core.simulate.sps import SPSConfig, draw_noise, simulate_sps, snr_per_band

BANDS = band_set("paus_cosmos")


@pytest.fixture(scope="module")
def sim():
    return simulate_sps(300, BANDS, seed=3)


def test_deterministic_per_seed(sim) -> None:
    again = simulate_sps(300, BANDS, seed=3)
    np.testing.assert_array_equal(sim.flux, again.flux)
    np.testing.assert_array_equal(sim.zspec, again.zspec)
    other = simulate_sps(300, BANDS, seed=4)
    assert not np.allclose(sim.flux, other.flux)


def test_prior_ranges_and_labels(sim) -> None:
    assert sim.meta["NOISELESS"] is True
    assert sim.zspec.min() >= 0.0 and sim.zspec.max() <= 1.2
    np.testing.assert_allclose(sim.zspec, np.round(sim.zspec, 3))
    assert np.all(sim.flux > 0) and np.all(np.isfinite(sim.flux))
    mag_i = 23.9 - 2.5 * np.log10(sim.flux[:, BANDS.index("subaru_i")])
    np.testing.assert_allclose(mag_i, sim.mag, atol=1e-6)
    ratio = sim.flux / sim.flux[:, BANDS.index("subaru_i")][:, None]
    assert np.abs(ratio).max() <= SPSConfig().max_colour


def test_noise_matches_declared_snr(sim, rng) -> None:
    snr = snr_per_band(BANDS, SPSConfig())
    np.testing.assert_allclose(sim.flux / sim.flux_error, snr[None, :].repeat(len(sim.flux), 0))
    draws = np.stack([draw_noise(sim.flux, sim.flux_error, rng) for _ in range(20)])
    measured = np.std((draws - sim.flux) / sim.flux, axis=(0, 1))  # (B,) fractional scatter
    np.testing.assert_allclose(measured, 1.0 / snr, rtol=0.05)


def test_halpha_visible_in_its_narrow_band() -> None:
    cfg = SPSConfig(
        z=(7450.0 / 6562.8 - 1.0,) * 2,
        log_u=(-2.0, -2.0),
        ebv=(0.0, 0.0),
        const=(0.25, 0.25),
        tau_gyr=(10.0, 12.0),
    )
    flux = simulate_sps(50, BANDS, seed=1, config=cfg).flux
    i = BANDS.index("NB745")
    contrast = flux[:, i] / (0.5 * (flux[:, i - 1] + flux[:, i + 1]))
    assert np.median(contrast) > 1.3


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"z": (1.0, 0.5)}, "z"),
        ({"log_u": (-5.0, 0.0)}, "log_u"),
        ({"snr_narrow": 0}, "snr_narrow"),
    ],
)
def test_bad_config_names_the_field(kwargs, field) -> None:
    with pytest.raises(ConfigError, match=field):
        SPSConfig(**kwargs)


def test_unknown_config_field_rejected() -> None:
    with pytest.raises(ConfigError, match="zred"):
        SPSConfig.from_dict({"zred": (0, 1)})
