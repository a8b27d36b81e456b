"""The photometric screen: flags per row, usable bands, robust population statistics (issue 23)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from deepz_core.catalog.screen import (
    COLOUR_SIGMA,
    FLAG_MEANINGS,
    MAG_SIGMA,
    InputStats,
    PzFlag,
    TrainingMagnitudes,
    UnitCheck,
    describe_flags,
    fit_input_stats,
    fit_training_magnitudes,
    judge_unit_shift,
    screen_line,
    screen_magnitude,
    screen_outside_magnitudes,
    screen_photometry,
    screen_population,
    screen_template_fit,
    screened_rows,
    unit_shift,
    unit_shift_message,
)
from deepz_core.errors import CatalogError, ConfigError

REF = 2  # the reference band's column


def _photometry(rng: np.random.Generator, n: int = 200, b: int = 5) -> tuple[np.ndarray, ...]:
    flux = rng.uniform(5.0, 50.0, (n, b))  # microJansky
    return flux, np.full((n, b), 0.5)


def test_clean_photometry_has_no_flags(rng) -> None:
    flux, err = _photometry(rng)
    screen = screen_photometry(flux, err, REF, 23.9)
    assert not screen.flags.any() and screen.usable.all() and screen.trainable.all()


@pytest.mark.parametrize(
    ("band", "flux", "error", "expected"),
    [
        (REF, -1.0, 0.5, PzFlag.REF_UNUSABLE | PzFlag.NO_PZ),
        (REF, 0.0, 0.5, PzFlag.REF_UNUSABLE | PzFlag.NO_PZ),
        (REF, np.nan, 0.5, PzFlag.REF_UNUSABLE | PzFlag.NO_PZ),
        (REF, 1e300, 0.5, PzFlag.REF_UNUSABLE | PzFlag.NO_PZ),  # brighter than AB 0
        (REF, 5e-4, 0.5, PzFlag.REF_LOW_SNR),  # 1e-3 x its error: junk, but it has ratios
        (0, np.nan, 0.5, PzFlag.BAND_MISSING),
        (0, -99.0, 0.5, PzFlag.BAND_MISSING),
        (0, 10.0, 0.0, PzFlag.BAND_MISSING),
        (0, 10.0, np.inf, PzFlag.BAND_MISSING),
        (0, 1e30, 0.5, PzFlag.BAND_IMPLAUSIBLE),
        (0, 10.0, 1e30, PzFlag.BAND_IMPLAUSIBLE),
    ],
)
def test_one_bad_value_flags_only_its_galaxy(rng, band, flux, error, expected) -> None:
    f, e = _photometry(rng)
    f[7, band], e[7, band] = flux, error
    screen = screen_photometry(f, e, REF, 23.9)
    assert screen.flags[7] == expected, describe_flags(int(screen.flags[7]))
    assert not np.delete(screen.flags, 7).any()
    if band != REF:  # a band with a bad value is not used (imputed at prediction time)
        assert not screen.usable[7, band]


def test_implausible_means_brighter_than_ab_zero_in_the_catalogues_units(rng) -> None:
    f, e = _photometry(rng)
    f[3, 0] = 1e9  # 1e9 uJy = AB 1.4: bright but possible in uJy; in maggies (zp 22.5) absurd
    assert not screen_photometry(f, e, REF, 23.9).flags[3]
    assert screen_photometry(f, e, REF, 0.0).flags[3] & PzFlag.BAND_IMPLAUSIBLE


def test_too_few_usable_bands_gives_no_pz(rng) -> None:
    f, e = _photometry(rng, b=5)
    f[0, [0, 1, 3]] = np.nan  # 1 of 4 non-reference bands left
    f[1, [0, 1]] = np.nan  # 2 of 4 left: still half
    flags = screen_photometry(f, e, REF, 23.9).flags
    assert flags[0] == PzFlag.BAND_MISSING | PzFlag.TOO_FEW_BANDS | PzFlag.NO_PZ
    assert flags[1] == PzFlag.BAND_MISSING


def test_template_fit_screen_needs_half_of_all_bands_and_not_the_reference(rng) -> None:
    """The template fit reads fluxes: a missing reference band is reported (REF_UNUSABLE) but costs
    no p(z); fewer than half of all bands usable (or fewer than 2) does."""
    f, e = _photometry(rng, n=5, b=6)
    f[0] = np.nan  # nothing to fit
    f[1, REF] = np.nan  # reference missing, 5 of 6 bands left
    f[2, [0, 1, 3, 4]] = np.nan  # 2 of 6 left: below half
    f[3, [0, 1, 3]] = np.nan  # 3 of 6 left: half
    flags = screen_template_fit(f, e, REF, 23.9).flags
    no_pz = PzFlag.TOO_FEW_BANDS | PzFlag.NO_PZ
    assert flags[0] == PzFlag.BAND_MISSING | PzFlag.REF_UNUSABLE | no_pz
    assert flags[1] == PzFlag.REF_UNUSABLE
    assert flags[2] == PzFlag.BAND_MISSING | no_pz
    assert flags[3] == PzFlag.BAND_MISSING and flags[4] == 0
    f2, e2 = _photometry(rng, n=2, b=3)
    f2[0, [0, 1]] = np.nan  # one band: an amplitude, no colour
    assert screen_template_fit(f2, e2, 2, 23.9).flags[0] & PzFlag.NO_PZ


def test_a_galaxy_the_networks_predict_always_has_enough_bands_for_the_fit(rng) -> None:
    """The combination relies on it: the networks' p(z) rule implies the template fit's."""
    for b in range(2, 12):
        f, e = _photometry(rng, n=400, b=b)
        f[rng.uniform(size=f.shape) < 0.45] = np.nan
        ref = b - 1
        net = screen_photometry(f, e, ref, 23.9).predictable
        fit = screen_template_fit(f, e, ref, 23.9).predictable
        assert np.all(fit[net]), b


def test_robust_statistics_ignore_a_few_extreme_galaxies(rng) -> None:
    ratio = rng.normal(1.0, 0.2, (1000, 3))
    clean = fit_input_stats(ratio, np.ones(1000, bool))
    ratio[:10] = 1e6  # 1% junk
    junk = fit_input_stats(ratio, np.ones(1000, bool))
    np.testing.assert_allclose(junk.loc, clean.loc, atol=0.01)
    np.testing.assert_allclose(junk.scale, clean.scale, rtol=0.05)
    np.testing.assert_allclose(clean.scale, 0.2, rtol=0.1)  # IQR / 1.349 is a Gaussian's sigma


def test_constant_ratio_gets_unit_scale() -> None:
    stats = fit_input_stats(np.ones((10, 2)), np.ones(10, bool))
    np.testing.assert_array_equal(stats.scale, [1.0, 1.0])


def test_population_screen_flags_and_imputes_far_ratios(rng) -> None:
    f, e = _photometry(rng)
    screen = screen_photometry(f, e, REF, 23.9)
    ratio = f / f[:, REF : REF + 1]
    stats = fit_input_stats(ratio, screen.trainable)
    ratio[4, 1] = stats.loc[1] + 2 * COLOUR_SIGMA * stats.scale[1]
    out = screen_population(screen, ratio, stats, REF)
    assert out.flags[4] == PzFlag.OUTSIDE_TRAINING and not out.usable[4, 1]
    assert not np.delete(out.flags, 4).any()


def test_magnitudes_far_outside_the_training_population_are_flagged() -> None:
    screen = screen_photometry(np.ones((4, 3)), np.full((4, 3), 0.1), 1, 23.9)
    mag = np.array([21.5, 21.5 - 0.9 * (MAG_SIGMA - 0.1), 21.5 - 0.9 * (MAG_SIGMA + 0.1), np.nan])
    out = screen_magnitude(screen, mag, 21.5, 0.9)
    assert list(out.flags) == [0, 0, PzFlag.OUTSIDE_TRAINING, 0]
    np.testing.assert_array_equal(out.usable, screen.usable)  # nothing imputed


def test_screened_rows_and_counts_name_the_galaxies() -> None:
    flags = np.array([0, PzFlag.REF_LOW_SNR, PzFlag.NO_PZ | PzFlag.REF_UNUSABLE], np.int32)
    rows = screened_rows(np.array([10, 11, 12]), flags)
    assert rows == {"NO_PZ": [12], "REF_UNUSABLE": [12], "REF_LOW_SNR": [11]}


def test_screened_rows_are_bounded_per_flag() -> None:
    flags = np.full(5, PzFlag.BAND_MISSING, np.int32)
    assert screened_rows(np.arange(5), flags, limit=2) == {"BAND_MISSING": [0, 1]}


def test_screen_line_counts_in_bit_order() -> None:
    counts = {"TOO_FEW_BANDS": 1, "NO_PZ": 2, "REF_UNUSABLE": 1, "left_out_of_loss": 3}
    assert screen_line(counts, 100, "run/screen.json") == (
        "screen: 3 of 100 galaxies left out of the loss (NO_PZ 2, REF_UNUSABLE 1, "
        "TOO_FEW_BANDS 1); their ref_ids are in run/screen.json"
    )
    assert screen_line({"left_out_of_loss": 0}, 100, "x") == (
        "screen: none of the 100 galaxies flagged"
    )


def test_every_flag_is_documented() -> None:
    assert {f.name for f in PzFlag} == set(FLAG_MEANINGS)
    assert [int(f) for f in PzFlag] == [1 << k for k in range(len(PzFlag))]


def test_sigmas_are_nan_safe() -> None:
    stats = InputStats(np.zeros(2), np.ones(2))
    out = stats.sigmas(np.array([[np.nan, 3.0]]))
    assert np.isnan(out[0, 0]) and out[0, 1] == 3.0


def test_a_catalogue_magnitudes_away_from_the_training_one_is_named_as_a_unit_mistake() -> None:
    """Review, tenth session: nJy read as uJy (7.5 mag) flagged only 17% of a deep LSST
    catalogue (MAG_SIGMA of a wide population) and predict said nothing of a unit. Fourteenth
    session: the shift is measured for every run and refused in one line naming the column,
    the shift, the likely unit and the fixes."""
    mag = np.random.default_rng(0).normal(23.0, 1.5, 200)
    training = TrainingMagnitudes(23.4, 1.2, 19.0, 26.5, 1000)
    assert unit_shift(mag, training) is None
    assert unit_shift(mag + 3.0, training) is None  # a fainter sample of the same survey
    assert unit_shift(mag[:10] - 7.5, training) is None  # too few to say
    shift = unit_shift(mag - 7.5, training)
    assert shift is not None and -8.2 < shift < -7.6
    line = unit_shift_message(shift, training, "flux_lsst_i", 23.9, "dp0.parquet")
    assert "\n" not in line and line.startswith("dp0.parquet: column 'flux_lsst_i' (declared uJy)")
    assert re.search(r"a median 7\.\d mag brighter than the run's training population", line)
    assert re.search(r"fluxes ~x1\d00 too large: nJy values read as uJy\?", line), line
    assert "--flux-unit nJy" in line and "--rename" in line and "TUNIT" in line
    assert "--allow-magnitude-shift" in line and "allow_magnitude_shift=True" in line
    fainter = unit_shift_message(7.5, training, "flux_i", 31.4, "c.fits")  # uJy read as nJy
    assert "fainter" in fainter and "too small: uJy values read as nJy?" in fainter
    odd = unit_shift_message(-6.0, training, "flux_i", 25.0, "c.fits")  # no usual unit fits
    assert "(FLUXZP 25)" in odd and "~x250 too large?" in odd


def test_training_magnitudes_are_summarised_stored_and_read_back() -> None:
    mag = np.random.default_rng(1).normal(21.7, 0.9, 5000)
    use = np.ones(5000, bool)
    use[:100] = False
    mag[:100] = 40.0  # not seen by the loss: not in the summary
    mag[100] = np.nan
    got = fit_training_magnitudes(mag, use)
    assert got is not None and got.n == 4899 and got.source == "training population"
    assert abs(got.median - 21.7) < 0.05 and abs(got.sigma - 0.9) < 0.05
    assert got.lo < 21.7 - 2.5 and 21.7 + 2.5 < got.hi < 21.7 + 4.5
    assert TrainingMagnitudes.from_dict(json.loads(json.dumps(got.to_dict()))) == got
    assert fit_training_magnitudes(mag, np.zeros(5000, bool)) is None
    for bad in ({"median": "x"}, [], {"median": 1.0, "sigma": 1, "lo": 0, "hi": 2, "n": -1}):
        with pytest.raises(ConfigError, match="reference_magnitudes"):
            TrainingMagnitudes.from_dict(bad)


def test_rows_outside_the_training_magnitudes_are_flagged_whatever_is_known() -> None:
    ranged = TrainingMagnitudes(21.5, 0.9, 18.0, 24.0)
    mag = np.array([21.5, 17.1, 16.9, 24.9, 25.1, np.nan])
    assert list(ranged.outside(mag)) == [False, False, True, False, True, False]
    sigma_only = TrainingMagnitudes(21.5, 0.9)  # an old run's magnitude input statistics
    edge = 0.9 * MAG_SIGMA
    far = sigma_only.outside(np.array([21.5 + edge - 0.1, 21.5 + edge + 0.1, 21.5 - edge - 0.1]))
    assert list(far) == [False, True, True]
    assert not TrainingMagnitudes(21.5).outside(mag).any()  # nothing known beyond the median
    screen = screen_photometry(np.ones((6, 3)), np.full((6, 3), 0.1), 1, 23.9)
    out = screen_outside_magnitudes(screen, mag, ranged)
    assert list(out.flags) == [0, 0, 32, 0, 32, 0]
    np.testing.assert_array_equal(out.usable, screen.usable)  # nothing imputed


def test_the_unit_check_refuses_allows_or_carries_a_verdict(caplog) -> None:
    training = TrainingMagnitudes(21.7, 0.9, 18.5, 24.5)
    off = np.random.default_rng(2).normal(21.7, 0.9, 100) - 7.5
    with pytest.raises(CatalogError, match=r"^c\.fits: column 'flux_i' .*7\.\d mag brighter"):
        judge_unit_shift(off, training, UnitCheck(), "flux_i", 23.9, "c.fits")
    with caplog.at_level("WARNING", logger="deepz"):
        assert judge_unit_shift(off, training, UnitCheck(allow=True), "flux_i", 23.9, "c.fits")
    assert "100 of 100 galaxies outside the training magnitudes flagged" in caplog.text
    assert not judge_unit_shift(off + 7.5, training, UnitCheck(), "flux_i", 23.9)
    assert not judge_unit_shift(off, None, UnitCheck(), "flux_i", 23.9)  # nothing to compare
    judged = UnitCheck(allow=True).judged(True)  # a chunk of a stream: the preflight's verdict
    assert judge_unit_shift(off[:3], training, judged, "flux_i", 23.9)
    assert not judge_unit_shift(off, training, UnitCheck().judged(False), "flux_i", 23.9)
