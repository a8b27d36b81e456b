"""Network inputs: fluxes over the reference band (E20 Sec. 2.2), exclusions counted, ref band choice."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.features import (
    build_features,
    default_ref_band,
    remeasured,
    resolve_ref_band,
    same_photometry,
)
from deepz_core.errors import ConfigError

BANDS = ("NB455", "NB465", "cfht_u", "subaru_i")


def _catalog(rng: np.random.Generator, n: int = 30, with_exposures: bool = True) -> Catalog:
    flux = rng.uniform(1.0, 20.0, (n, len(BANDS)))
    flux[3, 3] = 0.0  # non-positive reference (subaru_i) fluxes: excluded, counted
    flux[7, 3] = -2.5
    error = 0.1 * np.abs(flux) + 0.05
    exposures = None
    if with_exposures:
        rows = [
            (i + 100, band, x, flux[i, j] * (1 + 0.01 * x), 0.2 + 0.1 * x)
            for i in range(n)
            for j, band in enumerate(BANDS[:2])
            for x in range(1 + i % 3)
        ]
        ref, band, num, f, e = map(np.array, zip(*rows, strict=True))
        exposures = Exposures(ref, band, num, f, e)
    zspec = rng.uniform(0, 1.2, n)
    zspec[::5] = np.nan
    return Catalog(
        ref_id=np.arange(n) + 100,
        bands=BANDS,
        flux=flux,
        flux_error=error,
        zspec=zspec,
        mag=rng.uniform(18, 22.5, n),
        exposures=exposures,
    )


def test_ratios_are_fluxes_over_the_reference_band(rng) -> None:
    cat = _catalog(rng)
    f = build_features(cat)
    assert f.ref_band == "subaru_i" and f.bands == BANDS
    keep = np.setdiff1d(np.arange(cat.n_galaxies), [3, 7])
    np.testing.assert_array_equal(f.rows, keep)
    np.testing.assert_array_equal(f.ref_id, cat.ref_id[keep])
    ref = cat.flux[keep, 3]
    assert f.ratio.dtype == np.float32 and f.ratio.shape == (len(keep), len(BANDS))
    np.testing.assert_allclose(f.ratio, cat.flux[keep] / ref[:, None], rtol=1e-6)
    np.testing.assert_allclose(f.ratio_error, cat.flux_error[keep] / ref[:, None], rtol=1e-6)
    np.testing.assert_array_equal(f.ratio[:, 3], 1.0)
    np.testing.assert_array_equal(f.zspec, cat.zspec[keep])
    np.testing.assert_array_equal(f.mag, cat.mag[keep])
    assert f.n == len(keep)


def test_non_positive_reference_fluxes_are_excluded_with_a_count(rng) -> None:
    f = build_features(_catalog(rng))
    assert f.n_excluded == 2
    note = f.exclusion_note()
    assert "2 galaxies without a p(z)" in note and "subaru_i" in note
    clean = _catalog(rng)
    clean.flux[[3, 7], 3] = 5.0
    g = build_features(clean)
    assert g.n_excluded == 0 and g.exclusion_note() == "" and g.n == clean.n_galaxies


def test_exposures_are_divided_by_the_reference_coadd(rng) -> None:
    cat = _catalog(rng)
    f = build_features(cat)
    assert f.has_exposures
    assert f.exp_ratio.shape == (f.n, len(BANDS), 3) and f.exp_mask.dtype == bool
    assert f.exp_ratio.dtype == np.float32 and f.exp_error.dtype == np.float32
    for k, row in enumerate(f.rows):
        count = 1 + row % 3
        np.testing.assert_array_equal(f.exp_mask[k, :2].sum(axis=1), count)
        assert not f.exp_mask[k, 2:].any()  # broad bands: coadds only
        for x in range(count):
            expected = cat.flux[row, 0] * (1 + 0.01 * x) / cat.flux[row, 3]
            assert f.exp_ratio[k, 0, x] == pytest.approx(expected, rel=1e-6)
            assert f.exp_error[k, 0, x] == pytest.approx(
                (0.2 + 0.1 * x) / cat.flux[row, 3], rel=1e-6
            )


def test_without_exposures(rng) -> None:
    f = build_features(_catalog(rng, with_exposures=False))
    assert f.exp_ratio is None and f.exp_error is None and f.exp_mask is None
    assert not f.has_exposures
    g = build_features(_catalog(rng), use_exposures=False)
    assert g.exp_mask is None and not g.has_exposures


def test_explicit_reference_band(rng) -> None:
    cat = _catalog(rng)
    f = build_features(cat, ref_band="cfht_u")
    assert f.ref_band == "cfht_u" and f.n_excluded == 0
    np.testing.assert_allclose(f.ratio[:, 2], 1.0)
    np.testing.assert_allclose(f.ratio[:, 3], cat.flux[:, 3] / cat.flux[:, 2], rtol=1e-6)


def test_resolve_ref_band_order_of_preference() -> None:
    assert resolve_ref_band(["sdss_g", "sdss_i", "subaru_i"]) == "subaru_i"
    assert resolve_ref_band(["sdss_g", "sdss_r", "sdss_i", "sdss_z"]) == "sdss_i"
    assert resolve_ref_band(["lsst_i", "sdss_i"]) == "lsst_i"  # first *_i in band order
    assert resolve_ref_band(["sdss_g", "sdss_i"], "sdss_g") == "sdss_g"


def test_resolve_ref_band_takes_a_band_named_i() -> None:
    # mag_u ... mag_y of an SDSS/LSST catalogue become the bands u ... y: i is the i band
    assert resolve_ref_band(["u", "g", "r", "i", "z", "y"]) == "i"
    assert resolve_ref_band(["G", "R", "I", "Z"]) == "I"
    assert resolve_ref_band(["hsc_g", "hsc_I"]) == "hsc_I"


def test_unknown_or_missing_reference_band_names_it() -> None:
    with pytest.raises(ConfigError, match="'subaru_z'") as err:
        resolve_ref_band(["sdss_g", "sdss_i"], "subaru_z")
    assert "sdss_i" in str(err.value)  # lists the catalogue's bands
    with pytest.raises(ConfigError, match="no i band") as err:
        resolve_ref_band(["sdss_g", "sdss_r"])
    assert "sdss_r" in str(err.value) and "--ref-band" in str(err.value)


def test_same_photometry_survives_a_text_round_trip_not_a_change(rng) -> None:
    f = build_features(_catalog(rng, with_exposures=False))
    stored, err = f.ratio, f.ratio_error
    assert same_photometry(stored, err, stored, err).all()

    def as_text(a: np.ndarray) -> np.ndarray:  # float32 written as shortest text, read as float64
        return np.array([[float(f"{v:.7g}") for v in row] for row in a.astype(np.float32)])

    assert same_photometry(as_text(stored), as_text(err), stored, err).all()
    other = stored.copy()
    other[0, 1] *= 1.001  # a different measurement of one band
    other[1] = stored[2]  # another galaxy altogether
    np.testing.assert_array_equal(
        same_photometry(other, err, stored, err)[:3], [False, False, True]
    )
    assert not same_photometry(stored, 1.01 * err, stored, err).any()  # same ratios, other errors


def test_same_photometry_counts_a_band_unusable_in_both_as_the_same(rng) -> None:
    # a training galaxy with a NaN band (stored NaN) predicted again is still that galaxy
    f = build_features(_catalog(rng, with_exposures=False))
    stored, err = f.ratio.copy(), f.ratio_error.copy()
    stored[0, 1] = err[0, 1] = np.nan
    ratio, ratio_err = stored.copy(), err.copy()
    assert same_photometry(ratio, ratio_err, stored, err).all()
    ratio[1, 1] = ratio_err[1, 1] = np.nan  # unusable now, measured in training: another galaxy
    assert same_photometry(ratio, ratio_err, stored, err)[:2].tolist() == [True, False]


def test_default_ref_band_proposes_an_i_band_whatever_its_case() -> None:
    assert default_ref_band(("NB455", "subaru_i", "cfht_i")) == "subaru_i"
    assert default_ref_band(("G", "R", "I", "Z")) == "I"
    assert default_ref_band(("hsc_g", "hsc_I")) == "hsc_I"
    assert default_ref_band(("G", "R")) == "R"


def test_remeasured_tells_galaxies_measured_again_from_other_galaxies() -> None:
    """Review: a fresh mock numbered 1..N warned as if it held the training galaxies."""
    rng = np.random.default_rng(3)
    stored = rng.uniform(0.5, 2.0, (200, 10))
    error = np.full_like(stored, 0.05)
    again = stored + error * rng.normal(size=stored.shape)  # the same galaxies, new noise
    again[:, 0] = np.nan  # a band unusable now
    other = rng.uniform(0.5, 2.0, (200, 10))  # other galaxies, the same ids
    assert remeasured(again, error, stored, error)
    assert not remeasured(other, error, stored, error)
    assert not remeasured(np.full_like(stored, np.nan), error, stored, error)
