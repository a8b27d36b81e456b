"""SED families of the observed mock: the default (sps) and kcorrect's templates."""

import numpy as np
import pytest
from scipy.optimize import nnls
from scipy.stats import ks_2samp

from deepz_core.errors import ConfigError
from deepz_core.sed.bands import band_set
from deepz_core.sed.template_sets import compute_flux_table, load_template_set
from deepz_core.simulate import galaxies, simulate
from deepz_core.simulate.families import (
    KcorrectMix,
    check_family_for_kind,
    family_fluxes,
    kcorrect_weights,
)
from deepz_core.simulate.mock import simulate_mock

BANDS = band_set("paus_cosmos")
B_BAND, R_BAND, Z_BAND = (BANDS.index(b) for b in ("subaru_B", "subaru_r", "subaru_z"))


@pytest.fixture(scope="module")
def pair():
    """The same 600 galaxies (seed 11) with SPS and with kcorrect spectra."""
    return (
        simulate_mock(600, BANDS, seed=11),
        simulate_mock(600, BANDS, seed=11, sed_family="kcorrect"),
    )


def _colour(cat, a: int, b: int) -> np.ndarray:
    return -2.5 * np.log10(
        np.clip(cat.flux[:, a], 1e-3, None) / np.clip(cat.flux[:, b], 1e-3, None)
    )


def test_kcorrect_mock_is_a_complete_mock(pair) -> None:
    sps, kc = pair
    assert kc.bands == sps.bands and kc.n_galaxies == 600
    assert sorted(kc.extra) == sorted(sps.extra) == ["log_mass", "quiescent", "ztrue"]
    assert np.isfinite(kc.flux).all() and (kc.flux_error > 0).all()
    assert np.isfinite(kc.exposures.flux).all() and (kc.exposures.flux_error > 0).all()
    assert kc.meta["SEDFAM"] == "kcorrect" and "SEDFAM" not in sps.meta
    assert abs(kc.mag - sps.mag).max() < 0.5  # same drawn magnitudes, other noise on them


def test_same_survey_other_spectra(pair) -> None:
    """Redshifts, spec-z, exposures and magnitudes are drawn as for sps; the fluxes are not."""
    sps, kc = pair
    np.testing.assert_array_equal(kc.extra["ztrue"], sps.extra["ztrue"])
    np.testing.assert_array_equal(kc.zspec, sps.zspec)
    np.testing.assert_array_equal(kc.exposures.exp_num, sps.exposures.exp_num)
    np.testing.assert_array_equal(kc.exposures.band, sps.exposures.band)
    assert not np.allclose(kc.flux, sps.flux)


def test_colours_differ_from_the_sps_mock_at_the_same_redshift(pair) -> None:
    sps, kc = pair
    for a, b in ((B_BAND, R_BAND), (R_BAND, Z_BAND)):
        paired = np.median(np.abs(_colour(kc, a, b) - _colour(sps, a, b)))  # same galaxy, same z
        assert paired > 0.15
        assert ks_2samp(_colour(kc, a, b), _colour(sps, a, b)).pvalue < 0.01
    # yet a galaxy population: red quiescent, blue star-forming
    q = kc.extra["quiescent"]
    low_z = kc.extra["ztrue"] < 0.5
    b_r = _colour(kc, B_BAND, R_BAND)
    assert np.median(b_r[q & low_z]) > np.median(b_r[~q & low_z]) + 0.5


def test_kcorrect_spectra_span_the_kcorrect_templates_and_sps_ones_do_not() -> None:
    """Noiseless fluxes: a non-negative combination of the template fit's kcorrect model fluxes at
    the true redshift reproduces the kcorrect family exactly and misses the SPS one by per cents."""
    rng = np.random.default_rng(4)
    pcfg = galaxies.PopulationConfig()
    mag = galaxies.sample_magnitudes(120, pcfg, rng)
    z = galaxies.sample_redshifts(mag, pcfg, rng)
    props = galaxies.sample_properties(mag, z, pcfg, rng)
    table = compute_flux_table(load_template_set("kcorrect"), BANDS, z).astype(np.float64)
    misses = {}
    for family in ("sps", "kcorrect"):
        flux = family_fluxes(family, props, BANDS, 4, KcorrectMix())
        assert flux.shape == (120, len(BANDS)) and (flux > 0).all()
        misses[family] = [nnls(table[i], flux[i])[1] / np.linalg.norm(flux[i]) for i in range(120)]
    assert max(misses["kcorrect"]) < 1e-6
    assert np.median(misses["sps"]) > 0.01


def test_weights_are_dirichlet_light_fractions() -> None:
    mix = KcorrectMix()
    quiescent = np.arange(4000) % 2 == 0
    w = kcorrect_weights(quiescent, 7, mix)
    assert w.shape == (4000, 5) and (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0)
    for flag, alpha in ((True, mix.quiescent), (False, mix.star_forming)):
        mean = np.array(alpha) / sum(alpha)
        np.testing.assert_allclose(w[quiescent == flag].mean(0), mean, atol=0.02)
    np.testing.assert_array_equal(w, kcorrect_weights(quiescent, 7, mix))


def test_deterministic_per_seed(pair) -> None:
    _, kc = pair
    again = simulate("paus-mock", 600, BANDS, seed=11, sed_family="kcorrect")
    np.testing.assert_array_equal(kc.flux, again.flux)
    np.testing.assert_array_equal(kc.exposures.flux, again.exposures.flux)
    other = simulate("paus-mock", 600, BANDS, seed=12, sed_family="kcorrect")
    assert not np.array_equal(kc.extra["ztrue"], other.extra["ztrue"])


def test_default_family_is_the_mock_before_families() -> None:
    """Values of the sps mock pinned from the code before SED families existed (on an AVX-512
    machine: the spectra's float32 matrix products take OpenBLAS's kernels for the CPU, and an
    AVX2 machine's sums differ by ~1e-9; a change of the simulation moves them by far more)."""
    cat = simulate_mock(40, BANDS, seed=3)
    np.testing.assert_array_equal(cat.flux, simulate_mock(40, BANDS, 3, sed_family="sps").flux)
    expected = [3.0612706736800064, 29.89181386560499, 79.44273912503682, 0.45164806974801286]
    np.testing.assert_allclose(cat.flux[0, [0, 20, 39, 40]], expected, rtol=1e-7)
    np.testing.assert_allclose(cat.flux.sum(), 41085.76173584003, rtol=1e-7)
    np.testing.assert_allclose(cat.exposures.flux.sum(), 204416.4656272508, rtol=1e-7)
    assert len(cat.exposures.flux) == 8797 and np.nansum(cat.zspec) == pytest.approx(20.57195)
    assert cat.meta == {"SIMKIND": "paus-mock", "SEED": 3}


def test_bad_families_and_kinds_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"sed_family must be one of .*'bc03'"):
        simulate("paus-mock", 10, BANDS, seed=1, sed_family="bc03")
    with pytest.raises(
        ConfigError, match=r"sed_family 'kcorrect' .* paus-mock only, got kind 'sps'"
    ):
        simulate("sps", 10, BANDS, seed=1, sed_family="kcorrect")
    with pytest.raises(ConfigError, match="--sed-family"):
        check_family_for_kind("paus-mock", None, "--sed-family")
    assert check_family_for_kind("lsst-deep", "sps") == "sps"
    with pytest.raises(ConfigError, match=r"quiescent: expected 5 Dirichlet .*\(1.0, 2.0\)"):
        KcorrectMix(quiescent=(1.0, 2.0))
    with pytest.raises(ConfigError, match="star_forming: expected a finite number"):
        KcorrectMix(star_forming=(1.0, 1.0, 0.0, 1.0, 1.0))
