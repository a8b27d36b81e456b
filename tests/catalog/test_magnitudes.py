"""AB magnitudes as input (issue 20, part 3): fluxes and errors from m +- dm, non-detections from
limiting magnitudes (per row or configured), -99 = not observed, RAIL's column names."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.conventions import InputConventions
from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.magnitudes import (
    band_name,
    convert_magnitudes,
    fluxes_from_magnitudes,
    magnitude_columns,
)
from deepz_core.inference.stream import repeats_held_back


def test_detections_give_fluxes_and_first_order_errors() -> None:
    mag, err = np.array([23.9, 21.4, 26.4]), np.array([0.1, 0.01, 0.3])
    flux, error = fluxes_from_magnitudes(mag, err, 23.9)
    np.testing.assert_allclose(flux, [1.0, 10.0, 0.1])
    np.testing.assert_allclose(error, 0.4 * np.log(10) * flux * err)
    flux_njy, _ = fluxes_from_magnitudes(mag, err, 31.4)  # other units: same magnitudes
    np.testing.assert_allclose(flux_njy, 1000 * flux)


def test_the_error_matches_the_scatter_of_magnitudes() -> None:
    """A flux error sigma_f gives magnitude scatter 2.5/ln10 sigma_f/f; back again (first order)."""
    rng = np.random.default_rng(0)
    f, sigma = 100.0, 2.0
    mags = 23.9 - 2.5 * np.log10(f + sigma * rng.normal(size=200_000))
    _, error = fluxes_from_magnitudes(np.array([np.median(mags)]), np.array([mags.std()]), 23.9)
    assert error[0] == pytest.approx(sigma, rel=0.01)


def test_non_detections_and_unobserved_bands() -> None:
    mag = np.array([99.0, np.nan, -99.0, 99.0, 22.0])
    err = np.array([99.0, np.nan, -99.0, 0.5, -1.0])
    limit = np.array([25.4, 25.4, 25.4, np.nan, 25.4])
    flux, error = fluxes_from_magnitudes(mag, err, 23.9, limit, limit_nsigma=1.0)
    np.testing.assert_allclose(flux[:2], 0.0)
    np.testing.assert_allclose(error[:2], 10 ** (-0.4 * 1.5))  # the 1-sigma flux of m = 25.4
    assert np.isnan(flux[2]) and np.isnan(error[2])  # -99: not observed
    assert np.isnan(flux[3]) and np.isnan(error[3])  # no limit: unusable
    assert np.isfinite(flux[4]) and np.isnan(error[4])  # an error <= 0: the screen flags it
    _, five = fluxes_from_magnitudes(mag[:1], err[:1], 23.9, limit[:1], limit_nsigma=5.0)
    assert five[0] == pytest.approx(error[0] / 5)


def test_magnitude_columns_are_recognised() -> None:
    names = ["id", "mag_u", "magerr_u", "mag_g_lsst", "mag_err_g_lsst", "maglim_u", "mag_true"]
    found = magnitude_columns(names)
    assert [(m.band, m.mag, m.error, m.limit) for m in found] == [
        ("u", "mag_u", "magerr_u", "maglim_u"),
        ("lsst_g", "mag_g_lsst", "mag_err_g_lsst", None),
    ]
    assert band_name("u_lsst") == "lsst_u" and band_name("NB455") == "NB455"
    assert band_name("nb455") == "NB455" and band_name("x_y") == "x_y"


def test_a_magnitude_catalogue_reads_as_fluxes(tmp_path) -> None:
    t = Table(
        {
            "objectId": np.array([10, 11, 12]) + 10**17,
            "mag_g": [22.0, 99.0, 23.0],
            "magerr_g": [0.05, 99.0, 0.1],
            "maglim_g": [26.0, 26.0, 26.0],
            "mag_r": [21.5, 24.0, -99.0],
            "magerr_r": [0.04, 0.2, -99.0],
            "redshift": [0.3, 0.5, 0.7],
        }
    )
    t.write(tmp_path / "mags.fits")
    cat = read_catalog(tmp_path / "mags.fits")
    assert cat.bands == ("g", "r") and cat.fluxzp == 23.9
    assert cat.ref_id.tolist() == [10**17 + 10, 10**17 + 11, 10**17 + 12]
    np.testing.assert_allclose(cat.magnitudes("g")[[0, 2]], [22.0, 23.0])
    assert cat.flux[1, 0] == 0 and cat.flux_error[1, 0] == pytest.approx(10 ** (-0.4 * 2.1))
    assert np.isnan(cat.flux[2, 1])
    assert "maglim_g" not in cat.extra and "objectId" in cat.extra
    conv = InputConventions(mag_limits={"r": 25.0}, limit_nsigma=5.0, unobserved=-98.0)
    t["mag_r"][2] = 99.0
    cat = Catalog.from_table(t, conventions=conv)
    assert cat.flux[2, 1] == 0 and cat.flux_error[2, 1] == pytest.approx(10 ** (-0.4 * 1.1) / 5)


def test_bands_given_as_fluxes_keep_them() -> None:
    t = {"ref_id": [1, 2], "flux_g": [1.0, 2.0], "flux_error_g": [0.1, 0.1]}
    t |= {"mag_r": [22.0, 23.0], "magerr_r": [0.1, 0.1]}
    assert Catalog.from_table(t).bands == ("g",)  # fluxes present: magnitudes stay extras
    cat = Catalog.from_table(t, conventions=InputConventions(magnitudes=True))
    assert cat.bands == ("g", "r")


def _lsst(bands: tuple[str, ...] = ("u", "g")) -> dict[str, list[float]]:
    """Two galaxies in LSST bands given as magnitudes, the second not detected in any band."""
    t: dict[str, list[float]] = {"ref_id": [1, 2]}
    for b in bands:
        t |= {f"mag_lsst_{b}": [22.0, 99.0], f"magerr_lsst_{b}": [0.1, 99.0]}
    return t


@pytest.mark.parametrize("key", ["u", "U", "lsst_u", "LSST_U", "u_lsst", "mag_lsst_u"])
def test_a_limit_names_its_band_as_band_names_are_matched(key: str) -> None:
    """``--mag-limits u=26`` for band lsst_u: the short name resolves (it was silently ignored,
    leaving the non-detections without an error)."""
    cat = Catalog.from_table(_lsst(), conventions=InputConventions(mag_limits={key: 26.0}))
    assert cat.bands == ("lsst_u", "lsst_g") and cat.flux[1, 0] == 0
    assert cat.flux_error[1, 0] == pytest.approx(10 ** (-0.4 * (26.0 - 23.9)))
    assert np.isnan(cat.flux_error[1, 1])  # no limit for g


@pytest.mark.parametrize(
    "table, key, match",
    [
        (_lsst(), "z", r"--mag-limits: 'z' names no band .*; bands: lsst_u, lsst_g"),
        (
            _lsst() | {"mag_sdss_u": [22.0, 99.0], "magerr_sdss_u": [0.1, 99.0]},
            "u",
            r"--mag-limits: 'u' could be any of the bands lsst_u, sdss_u",
        ),
    ],
)
def test_a_limit_naming_no_band_or_several_is_refused(table: dict, key: str, match: str) -> None:
    from deepz_core.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        Catalog.from_table(table, conventions=InputConventions(mag_limits={key: 26.0}))


def _chunk(mags: list[float]) -> dict[str, np.ndarray]:
    """Three bands in magnitudes, ``mags`` in each (99: not detected); NB475 has limit columns."""
    cols = {}
    for band in ("NB455", "NB465", "NB475"):
        cols[f"mag_{band}"] = np.array(mags)
        cols[f"magerr_{band}"] = np.full(len(mags), 0.1)
    cols["maglim_NB475"] = np.full(len(mags), 25.0)
    return cols


def test_bands_without_limits_get_one_line_per_read(caplog) -> None:
    """Review: 34 warnings (one per band and chunk) and '14 more warnings held back' for a
    magnitude catalogue without limits; now one line per read names the bands and --mag-limits."""
    convert = partial(convert_magnitudes, fluxzp=23.9, limit_nsigma=1.0, nondetect=99.0)
    with caplog.at_level("WARNING", logger="deepz"), repeats_held_back():
        convert(_chunk([99.0, 22.0]), limits={"NB465": 25.0}, unobserved=-99.0, source="f[0:2]")
        convert(_chunk([22.0, 99.0]), limits={"NB465": 25.0}, unobserved=-99.0, source="f[2:4]")
        convert(_chunk([22.0, 21.0]), limits={}, unobserved=-99.0, source="f[4:6]")  # all detected
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert lines[0].startswith("f: non-detections (magnitude 99 or NaN) have no limiting")
    assert "1 band(s) without a limit (NB455)" in lines[0] and "--mag-limits" in lines[0]
