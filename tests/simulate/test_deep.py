"""The LSST-like deep broad-band mock (simulate --kind lsst-deep)."""

import dataclasses

import numpy as np
import pytest

from deepz_core.catalog.io import read_catalog
from deepz_core.cli.main import main
from deepz_core.errors import ConfigError
from deepz_core.sed.bands import band_set
from deepz_core.sed.ssp import load_library
from deepz_core.simulate import KINDS, simulate
from deepz_core.simulate.deep import (
    KIND,
    DeepMockConfig,
    igm_transmission,
    observe,
    simulate_deep,
    sky_sigma,
    spec_completeness,
)

BANDS = band_set("lsst")


@pytest.fixture(scope="module")
def deep():
    return simulate_deep(3000, BANDS, seed=7)


def _snr(cat, band: str) -> np.ndarray:
    b = cat.bands.index(band)
    return cat.flux[:, b] / cat.flux_error[:, b]


def test_cli_accepts_the_kind_and_defaults_to_lsst_bands(tmp_path, capsys) -> None:
    assert KIND in KINDS
    out = tmp_path / "deep.fits"
    assert main(["simulate", "--kind", KIND, "--n", "150", "--seed", "3", "--out", str(out)]) == 0
    cat = read_catalog(out)
    assert cat.bands == BANDS == ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y")
    assert cat.n_galaxies == 150 and cat.fluxzp == 23.9 and cat.exposures is None
    assert {"ztrue", "mag_true", "log_mass", "quiescent"} <= set(cat.extra)
    assert cat.meta["SIMKIND"] == KIND


def test_deterministic_per_seed() -> None:
    a = simulate(KIND, 200, BANDS, 4)
    b = simulate_deep(200, BANDS, seed=4)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.zspec, b.zspec)


def test_depth_and_redshift_range(deep) -> None:
    assert deep.mag.max() < 25.0 and np.percentile(deep.mag, 99) > 24.8  # observed iAB < 25
    assert deep.extra["mag_true"].max() > 25.0  # Eddington scatter across the cut
    z = deep.extra["ztrue"]
    assert 0.75 < np.median(z) < 1.05  # LSST gold-like n(z) for i < 25
    assert z.max() > 2.7 and 0.04 < np.mean(z > 2.0) < 0.13


def test_igm_absorbs_blueward_of_lyman_alpha() -> None:
    wav = load_library().wavelength
    trans, k = igm_transmission(np.array([0.3, 3.0]))
    assert wav[k - 1] > 1215.67 > wav[k - 2]  # the table covers the rest UV up to Lyman alpha
    forest = (wav[:k] > 1050) & (wav[:k] < 1170)
    assert trans[0, forest].mean() > 0.95  # z = 0.3: hardly any forest
    assert 0.6 < trans[1, forest].mean() < 0.85  # z = 3: Inoue et al. (2014) forest depression


def test_faint_sources_scatter_around_zero_with_the_limiting_error() -> None:
    sky = np.array([0.04, 0.01])
    flux, error = observe(np.zeros((20000, 2)), sky, 0.01, np.random.default_rng(0))
    np.testing.assert_allclose(error, np.broadcast_to(sky, error.shape))
    assert np.all(np.abs(flux.mean(0)) < 4 * sky / np.sqrt(20000))
    np.testing.assert_allclose(flux.std(0), sky, rtol=0.03)
    assert 0.47 < np.mean(flux < 0) < 0.53  # non-detections: negative fluxes are kept


def test_u_band_non_detections_at_high_redshift(deep) -> None:
    z, snr = deep.extra["ztrue"], _snr(deep, "lsst_u")
    high, mid = z > 2.5, (z > 1.0) & (z < 2.0)
    assert high.sum() > 30
    assert np.mean(snr[high] < 3) > 0.2 and np.mean(snr[high] < 3) > 4 * np.mean(snr[mid] < 3)
    assert np.sum(snr < 1) > 20 and np.any(deep.flux[:, 0] < 0)  # S/N < 1 and negative fluxes


def test_errors_match_the_stated_depths(deep) -> None:
    cfg = DeepMockConfig()
    sky = sky_sigma(BANDS, cfg)
    # the smallest error of each band is its 1 sigma depth, up to the ~1% zero-point offsets
    np.testing.assert_allclose(deep.flux_error.min(0) / sky, 1.0, atol=0.04)
    for band in ("lsst_u", "lsst_y"):  # bands with galaxies at their 5 sigma depth
        b = BANDS.index(band)
        mag = 23.9 - 2.5 * np.log10(np.clip(deep.flux[:, b], 1e-9, None))
        near = np.abs(mag - cfg.depths[band]) < 0.1
        assert near.sum() > 20
        assert abs(np.median(_snr(deep, band)[near]) - 5.0) < 0.5
    bright = deep.mag < 20.5
    frac = deep.flux_error[bright, 2] / deep.flux[bright, 2]
    assert 0.0095 < np.median(frac) < 0.0125  # r-band errors of bright galaxies: the 1% floor


def test_spectroscopic_subsample_is_bright_incomplete_and_slightly_wrong(deep) -> None:
    has = np.isfinite(deep.zspec)
    assert 0.1 < has.mean() < 0.45
    assert deep.mag[has].mean() < deep.mag.mean() - 0.8
    assert has[deep.mag < 22].mean() > 0.6 and has[deep.mag > 24.5].mean() < 0.1
    z = deep.extra["ztrue"][has]
    wrong = np.abs(deep.zspec[has] - z) / (1 + z) > 0.01
    assert 0.002 < wrong.mean() < 0.06


def test_spectroscopic_desert_and_config_errors() -> None:
    cfg = DeepMockConfig()
    c = spec_completeness(np.array([1.0, 2.0]), np.array([22.0, 22.0]), cfg)
    assert c[1] == pytest.approx(cfg.spec_desert_factor * c[0])
    with pytest.raises(ConfigError, match="mag_limit"):
        DeepMockConfig(mag_limit=26.0)
    with pytest.raises(ConfigError, match="z_max"):
        DeepMockConfig(population=dataclasses.replace(cfg.population, z_max=4.0))
    with pytest.raises(ConfigError, match="NB455"):
        simulate_deep(10, ("NB455", "lsst_i"), seed=0)


def test_catalogue_style_non_detections() -> None:
    cat = simulate_deep(400, BANDS, seed=5, config=DeepMockConfig(zeroed_nondetections=1.0))
    u = cat.flux[:, 0]
    assert np.any(u == 0.0)
    assert not np.any((u > 0) & (u < cat.flux_error[:, 0]))  # every S/N < 1 flux became 0
    assert not np.any(u < 0)
