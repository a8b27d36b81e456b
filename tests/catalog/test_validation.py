"""Flux columns that hold AB magnitudes: recognised by their values falling as the other bands
brighten, refused by read_catalog (one line naming the column) and fixed by the import report;
never a false positive on the project's mocks (their noisiest bands included) or other units."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.conventions import InputConventions
from deepz_core.catalog.features import resolve_ref_band
from deepz_core.catalog.import_report import Source, prepare_catalog
from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.mapping import guess_galaxy_mapping
from deepz_core.catalog.validation import (
    CORRELATION_ROWS,
    MAGNITUDE_RHO,
    brightness_ranks,
    judged_ranges,
    judged_rows,
    magnitude_bands,
    normalized_ranks,
    rank_correlation,
)
from deepz_core.errors import CatalogError
from deepz_core.sed.bands import band_set
from deepz_core.simulate.deep import simulate_deep
from deepz_core.simulate.mock import simulate_mock


@pytest.fixture(scope="module")
def paus() -> Catalog:
    """A PAUS-COSMOS-like mock: 40 noisy narrow bands and 6 broad bands [µJy]."""
    return simulate_mock(200, band_set("paus_cosmos"), seed=3)


@pytest.fixture(scope="module")
def deep() -> Catalog:
    """An LSST-like deep mock (i < 25.3, u and y noisy) [µJy]."""
    return simulate_deep(200, band_set("lsst"), seed=3)


def as_magnitudes(cat: Catalog, band: str) -> dict[str, np.ndarray]:
    """The columns of ``cat`` with ``band``'s flux and error replaced by AB magnitudes and their
    errors (99 for both where the flux is not positive), as a magnitude catalogue writes them."""
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    flux, error = cols[f"flux_{band}"], cols[f"flux_error_{band}"]
    with np.errstate(divide="ignore", invalid="ignore"):
        cols[f"flux_{band}"] = np.where(flux > 0, cat.fluxzp - 2.5 * np.log10(flux), 99.0)
        cols[f"flux_error_{band}"] = np.where(flux > 0, 1.0857 * error / flux, 99.0)
    return cols


def write_csv(cols: dict[str, np.ndarray], path) -> str:
    Table({k: v for k, v in cols.items() if np.asarray(v).ndim == 1}).write(path, format="csv")
    return str(path)


def rhos(flux: np.ndarray) -> np.ndarray:
    """(B,) each band's rank correlation with the median rank of the others (the statistic)."""
    ranks = brightness_ranks(flux)
    others = [np.median(np.delete(ranks, j, axis=1), axis=1) for j in range(flux.shape[1])]
    return np.array([rank_correlation(flux[:, j], o) for j, o in enumerate(others)])


def test_ranks_and_rank_correlation_known_answers() -> None:
    ranks = normalized_ranks(np.array([3.0, 1.0, np.nan, 2.0, 2.0]))
    np.testing.assert_allclose(ranks, [0.875, 0.125, np.nan, 0.5, 0.5])
    x = np.arange(40.0)
    assert rank_correlation(x, x**3) == pytest.approx(1.0)
    assert rank_correlation(x, -np.exp(x / 10)) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(x[:29], x[:29]))  # too few galaxies to judge


@pytest.mark.parametrize("mock", ["paus", "deep"])
def test_no_false_positive_on_the_mocks_in_any_unit(mock, request) -> None:
    """Real fluxes rise with the other bands, the noisiest ones too (rho well above 0), in µJy,
    nJy, mJy or Jy: no band of either mock is taken for magnitudes."""
    cat = request.getfixturevalue(mock)
    snr = np.median(cat.flux / cat.flux_error, axis=0)
    noisiest = np.argsort(snr)[:3]
    assert rhos(cat.flux)[noisiest].min() > 0.5  # paus NB455: 0.76, deep lsst_u: 0.83
    for scale in (1.0, 1e3, 1e-3, 1e-6):  # µJy, nJy, mJy, Jy
        assert magnitude_bands(cat.flux * scale, cat.bands) == []


@pytest.mark.parametrize("mock", ["paus", "deep"])
def test_a_band_and_the_reference_band_in_magnitudes_are_found(mock, request) -> None:
    cat = request.getfixturevalue(mock)
    for band in (cat.bands[0], resolve_ref_band(cat.bands)):  # the noisiest NB455 / lsst_u; i
        cols = as_magnitudes(cat, band)
        flux = np.stack([cols[f"flux_{b}"] for b in cat.bands], axis=1)
        (found,) = magnitude_bands(flux, cat.bands)
        assert found.band == band and found.rho < MAGNITUDE_RHO and 15 < found.low < found.high < 30


def test_the_import_report_names_the_column_and_converts_it(paus) -> None:
    cols = as_magnitudes(paus, "subaru_V")
    gal = Source(cols, guess_galaxy_mapping(list(cols)), "gal.csv")
    report = prepare_catalog(gal)
    (problem,) = report.problems
    assert problem.column == "flux_subaru_V" and report.fixable
    assert problem.text() == (
        "gal.csv: column 'flux_subaru_V': looks like AB magnitudes, not a flux: values 17.8-24.4 "
        "fall as the other bands brighten (rank correlation -0.93)"
    )
    assert problem.fix.startswith("convert flux_subaru_V and flux_error_subaru_V from AB mag")
    fixed = prepare_catalog(gal, fix=True)
    assert fixed.ok, [p.text() for p in fixed.problems]
    j = paus.bands.index("subaru_V")
    np.testing.assert_allclose(fixed.catalog.flux[:, j], paus.flux[:, j], rtol=1e-9)
    np.testing.assert_allclose(fixed.catalog.flux_error[:, j], paus.flux_error[:, j], rtol=1e-4)


def test_non_detections_are_echoed_and_become_unknown(deep) -> None:
    """lsst_u in magnitudes: its zero fluxes are 99, counted in the evidence; the fix makes them
    unknown (NaN), which the screen flags."""
    cols = as_magnitudes(deep, "lsst_u")
    n99 = int((cols["flux_lsst_u"] == 99).sum())
    assert n99 > 0
    gal = Source(cols, guess_galaxy_mapping(list(cols)), "deep.csv")
    (problem,) = prepare_catalog(gal).problems
    assert f"(and 99 in {n99} rows) fall as the other bands brighten" in problem.message
    fixed = prepare_catalog(gal, fix=True)
    assert fixed.ok and np.isnan(fixed.catalog.flux[:, 0]).sum() == n99
    assert fixed.n_flagged >= n99


def test_read_catalog_refuses_a_magnitude_column_in_one_line(paus, deep, tmp_path) -> None:
    path = write_csv(as_magnitudes(paus, "subaru_V"), tmp_path / "paus.csv")
    with pytest.raises(CatalogError) as err:
        read_catalog(path)
    assert str(err.value) == (
        f"{path}: column 'flux_subaru_V' looks like AB magnitudes, not a flux: values 17.8-24.4 "
        "fall as the other bands brighten (rank correlation -0.93); name its columns "
        "mag_subaru_V and magerr_subaru_V (--rename 'flux_subaru_V=mag_subaru_V,"
        "flux_error_subaru_V=magerr_subaru_V'), which deepz converts to fluxes (99: not "
        "detected), or convert them to fluxes yourself"
    )
    ref = write_csv(as_magnitudes(deep, "lsst_i"), tmp_path / "deep.csv")
    with pytest.raises(CatalogError, match=r"column 'flux_lsst_i' looks like AB magnitudes"):
        read_catalog(ref)


def test_the_advised_rename_reads_the_band_as_fluxes(paus, tmp_path) -> None:
    path = write_csv(as_magnitudes(paus, "subaru_V"), tmp_path / "paus.csv")
    rename = {"flux_subaru_V": "mag_subaru_V", "flux_error_subaru_V": "magerr_subaru_V"}
    cat = read_catalog(path, conventions=InputConventions(rename=rename))
    assert set(cat.bands) == set(paus.bands)
    j, k = cat.bands.index("subaru_V"), paus.bands.index("subaru_V")
    np.testing.assert_allclose(cat.flux[:, j], paus.flux[:, k], rtol=1e-6)


def test_clean_mocks_and_tiny_catalogues_are_read(paus, deep, tmp_path) -> None:
    for name, cat in (("paus", paus), ("deep", deep)):
        path = write_csv(cat.columns(), tmp_path / f"{name}.csv")
        assert read_catalog(path).bands == cat.bands
    tiny = {k: v[:29] for k, v in as_magnitudes(paus, "subaru_V").items()}
    assert read_catalog(write_csv(tiny, tmp_path / "tiny.csv")).n_galaxies == 29  # not judged


@pytest.mark.parametrize("n", [0, 1, 400, CORRELATION_ROWS, CORRELATION_ROWS + 1, 10**8])
def test_the_rows_judged_for_magnitudes_are_few_blocks_spanning_the_catalogue(n) -> None:
    """Fourteenth session: a streamed prediction judged its first 100 rows, the catalogue read
    whole every 1/10,000th row, so a band turning into magnitudes below the first rows passed one
    and not the other. Both now judge ``judged_ranges``: every row up to 10,000, else ten blocks
    of 1,000 rows from the first row to the last, which a stream reads alone."""
    ranges = judged_ranges(n)
    rows = judged_rows(n)
    assert len(rows) == min(n, CORRELATION_ROWS) and (np.diff(rows) > 0).all()
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert len(ranges) == (1 if n <= CORRELATION_ROWS else 10)
