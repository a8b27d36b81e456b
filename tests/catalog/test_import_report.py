"""Validation report: every problem listed with its fix; summary numbers."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.import_report import Source, prepare_catalog, summarize
from deepz_core.catalog.mapping import EXPOSURE_ALIASES, guess_columns, guess_galaxy_mapping


def _catalog(n: int = 20) -> Catalog:
    """n galaxies in NB455 (3 exposures each, consistent coadds) and subaru_i (no exposures)."""
    rng = np.random.default_rng(3)
    ids = np.arange(1, n + 1)
    e_flux = rng.uniform(5, 10, (n, 3))
    e_err = np.full((n, 3), 1.0)
    coadd = e_flux.mean(axis=1)  # equal errors: the inverse-variance mean is the mean
    exposures = Exposures(
        np.repeat(ids, 3),
        np.full(3 * n, "NB455"),
        np.tile([0, 1, 2], n),
        e_flux.reshape(-1),
        e_err.reshape(-1),
    )
    flux = np.stack([coadd, rng.uniform(10, 20, n)], axis=1)
    error = np.stack([np.full(n, 3**-0.5), np.full(n, 0.5)], axis=1)
    z = np.where(ids % 2 == 0, rng.uniform(0.1, 1.0, n), np.nan)
    return Catalog(ids, ("NB455", "subaru_i"), flux, error, z, None, exposures=exposures)


def _sources(cat: Catalog, cols: dict | None = None, exp: dict | None = None):
    cols = cols if cols is not None else cat.columns()
    exp = exp if exp is not None else {k: getattr(cat.exposures, k) for k in EXPOSURE_ALIASES}
    gal = Source(cols, guess_galaxy_mapping(list(cols)), "gal.fits")
    return gal, Source(exp, guess_columns(list(exp), EXPOSURE_ALIASES), "exp.fits")


def test_clean_catalogue_passes() -> None:
    cat = _catalog()
    report = prepare_catalog(*_sources(cat))
    assert report.ok and report.problems == ()
    assert report.catalog.n_galaxies == 20 and len(report.catalog.exposures) == 60


def test_all_problems_are_collected() -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_subaru_i"][0] = np.inf
    cols["flux_subaru_i"][9] = -99.0  # a "not measured" code
    cols["flux_error_subaru_i"][[1, 2]] = 0.0
    cols["ref_id"][5] = cols["ref_id"][6]
    cols["zspec"][3] = -99.0
    exp = {k: np.array(getattr(cat.exposures, k), copy=True) for k in EXPOSURE_ALIASES}
    exp["band"][0] = "NB999"
    exp["ref_id"][3] = 999
    exp["exp_num"][7] = exp["exp_num"][8]
    report = prepare_catalog(*_sources(cat, cols, exp))
    assert report.catalog is None and report.fixable
    text = "\n".join(p.text() for p in report.problems)
    for needle in (
        "column 'ref_id': duplicate ids: 7",
        "'flux_subaru_i': 1 NaN/inf",
        "'flux_subaru_i': 1 placeholder (-99",
        "'flux_error_subaru_i': 2 zero or negative",
        "'zspec': 1 inf, negative or >= 10",
        "exp.fits: column 'band'",
        "NB999",
        "galaxies not in the catalogue: 6, 999",
        "duplicate (ref_id, band, exp_num)",
    ):
        assert needle in text, needle
    fixed = prepare_catalog(*_sources(cat, cols, exp), fix=True)
    assert fixed.ok, [p.text() for p in fixed.problems]
    assert fixed.dropped_galaxies == 6  # 2 duplicates, 1 inf flux, 1 placeholder, 2 zero errors
    assert np.isnan(fixed.catalog.zspec[fixed.catalog.ref_id == 4]).all()


def test_a_band_empty_for_every_galaxy_is_not_fixed_by_dropping_them_all() -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_subaru_i"][:] = np.nan
    report = prepare_catalog(*_sources(cat, cols))
    (problem,) = report.problems
    assert "NaN/inf for every galaxy: remove band 'subaru_i'" in problem.text()
    assert not problem.fixable and not report.fixable


def test_inconsistent_coadds_are_found_per_band() -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_NB455"][[0, 4]] *= 1.5
    report = prepare_catalog(*_sources(cat, cols))
    assert len(report.problems) == 1
    assert (
        "coadd differs" in report.problems[0].text() and "ref_id 1, 5" in report.problems[0].text()
    )
    assert prepare_catalog(*_sources(cat, cols), fix=True).catalog.n_galaxies == 18


def test_unmapped_and_non_numeric_columns_give_a_message() -> None:
    cat = _catalog()
    cols = dict(cat.columns())
    cols["flux_NB455"] = np.array(["x"] * 20)
    report = prepare_catalog(*_sources(cat, cols))
    assert report.catalog is None and "'flux_NB455' is not numeric" in report.problems[0].text()
    gal = Source({"a": np.ones(3)}, guess_galaxy_mapping(["a"]), "odd.csv")
    texts = [p.text() for p in prepare_catalog(gal).problems]
    assert any("choose the column for 'ref_id'" in t for t in texts)
    assert any("no bands mapped" in t for t in texts)


def test_summary_counts() -> None:
    s = summarize(_catalog())
    assert (s.n_galaxies, s.n_zspec, s.n_exposures) == (20, 10, 60)
    assert s.bands.has_curve.tolist() == [True, True]
    assert s.bands.exposures.tolist() == [3.0, 0.0]
    assert s.bands.snr[0, 1] == pytest.approx(np.median(_catalog().flux[:, 0]) * 3**0.5)
    assert "subaru_i" in s.mag_label and s.zspec_fraction == 0.5
