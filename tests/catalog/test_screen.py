"""The photometric screen: flags per row, usable bands, robust population statistics (issue 23)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from deepz_core.catalog.screen import (
    COLOUR_SIGMA,
    FLAG_MEANINGS,
    MAG_SIGMA,
    InputStats,
    PzFlag,
    describe_flags,
    fit_input_stats,
    screen_line,
    screen_magnitude,
    screen_photometry,
    screen_population,
    screen_template_fit,
    screened_rows,
)

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
    catalogue (MAG_SIGMA of a wide population) and predict said nothing of a unit."""
    from deepz_core.catalog.screen import unit_shift_note

    mag = np.random.default_rng(0).normal(23.0, 1.5, 200)
    assert unit_shift_note(mag, 23.4) is None
    assert unit_shift_note(mag + 3.0, 23.4) is None  # a fainter sample of the same survey
    note = unit_shift_note(mag - 7.5, 23.4)
    assert note is not None and "--flux-unit" in note
    assert re.search(r"median 7\.\d mag brighter .* ~x1\d00 off", note), note
    assert unit_shift_note(mag[:10] - 7.5, 23.4) is None  # too few to say
