"""Tests for deepz_core.sed.bands: curves, effective wavelengths, band sets and errors."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_core.errors import ConfigError
from deepz_core.sed.bands import (
    BAND_SETS,
    PAUS_BANDS,
    Band,
    band_names,
    band_set,
    get_band,
    has_band,
    paus_band,
)

# COSMOS (Capak) effective wavelengths [A]
CAPAK_LAMBDA_EFF = {
    "cfht_u": 3823.0,
    "subaru_B": 4458.0,
    "subaru_V": 5478.0,
    "subaru_r": 6289.0,
    "subaru_i": 7684.0,
    "subaru_z": 9037.0,
}


@pytest.mark.parametrize(("name", "expected"), CAPAK_LAMBDA_EFF.items())
def test_capak_effective_wavelengths(name: str, expected: float) -> None:
    band = get_band(name)
    assert band.effective_wavelength == pytest.approx(expected, rel=0.01)
    assert not band.is_narrow
    assert band.transmission.max() == pytest.approx(1.0)


def test_paus_narrow_bands() -> None:
    assert len(PAUS_BANDS) == 40
    assert PAUS_BANDS[0] == "NB455" and PAUS_BANDS[-1] == "NB845"
    for i, name in enumerate(PAUS_BANDS):
        band = get_band(name)
        assert band.name == name
        assert band.effective_wavelength == pytest.approx(4550.0 + 100.0 * i, abs=5.0)
        assert band.fwhm == pytest.approx(130.0, abs=3.0)
        assert band.is_narrow
        assert band.transmission.max() == pytest.approx(0.85)
        assert band.transmission[0] == 0.0 and band.transmission[-1] == 0.0


def test_paus_band_sampling() -> None:
    band = paus_band(6050.0)
    assert band.name == "NB605"
    assert np.allclose(np.diff(band.wavelength), 1.0)
    nonzero = band.wavelength[band.transmission > 0]
    assert nonzero.max() - nonzero.min() == pytest.approx(
        145.0, abs=2.0
    )  # footprint FWHM + ramp [A]


def test_band_set_sizes_and_order() -> None:
    paus_cosmos = band_set("paus_cosmos")
    assert len(paus_cosmos) == 46
    assert paus_cosmos[:40] == band_set("paus") == PAUS_BANDS
    assert paus_cosmos[40:] == band_set("cosmos")
    assert band_set("cosmos") == tuple(CAPAK_LAMBDA_EFF)
    assert band_set("sdss") == ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z")
    assert band_set("lsst") == ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y")


@pytest.mark.parametrize(("set_name", "count"), [("sdss", 5), ("lsst", 6), ("paus", 40)])
def test_survey_sets_load_with_increasing_wavelength(set_name: str, count: int) -> None:
    bands = [get_band(n) for n in band_set(set_name)]
    assert len(bands) == count
    lam = np.array([b.effective_wavelength for b in bands])
    assert np.all(np.diff(lam) > 0)
    assert np.all((lam > 3000.0) & (lam < 11000.0))


def test_every_registered_band_loads() -> None:
    names = band_names()
    assert len(names) == len(set(names))
    for set_names in BAND_SETS.values():
        assert set(set_names) <= set(names)
    for name in names:
        band = get_band(name)
        assert band.name == name and has_band(name)
        assert band.effective_wavelength > 0 and band.fwhm > 0


def test_get_band_is_cached_and_read_only() -> None:
    band = get_band("subaru_r")
    assert get_band("subaru_r") is band
    with pytest.raises(ValueError):
        band.transmission[0] = 0.5


def test_unknown_band_raises() -> None:
    assert not has_band("NB999")
    with pytest.raises(ConfigError, match="NB999") as info:
        get_band("NB999")
    assert "NB455" in str(info.value)


def test_unknown_band_set_raises() -> None:
    with pytest.raises(ConfigError, match="no_such_survey") as info:
        band_set("no_such_survey")
    assert "paus_cosmos" in str(info.value)


def test_band_valid_input_is_copied_to_float() -> None:
    wave = [1000, 2000, 3000]
    band = Band("box", np.array(wave), np.array([0.0, 1.0, 0.0]))
    assert band.wavelength.dtype == np.float64
    assert band.effective_wavelength == pytest.approx(2000.0)
    assert band.fwhm == pytest.approx(1000.0)


@pytest.mark.parametrize(
    ("wave", "trans"),
    [
        ([1000.0, 2000.0, 3000.0], [0.0, 1.0]),  # length mismatch
        ([1000.0, 3000.0, 2000.0], [0.0, 1.0, 0.0]),  # not increasing
        ([1000.0, 1000.0, 2000.0], [0.0, 1.0, 0.0]),  # repeated wavelength
        ([1000.0, 2000.0, 3000.0], [0.0, -0.1, 0.5]),  # negative transmission
        ([1000.0, 2000.0, 3000.0], [0.0, 1.5, 0.0]),  # above 1
        ([1000.0, 2000.0, 3000.0], [0.0, 0.0, 0.0]),  # all zero
        ([1000.0, 2000.0, 3000.0], [0.0, np.nan, 0.0]),  # not finite
        ([-1000.0, 2000.0, 3000.0], [0.0, 1.0, 0.0]),  # negative wavelength
        ([1000.0], [1.0]),  # too short
    ],
)
def test_band_validation(wave: list[float], trans: list[float]) -> None:
    with pytest.raises(ConfigError, match="bad_band"):
        Band("bad_band", np.array(wave), np.array(trans))
