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


def test_exposures_without_information_are_left_out_as_by_the_cli() -> None:
    """A NaN exposure flux or a zero error is no problem to fix: the row is left out with a note,
    as read_catalog does, and the catalogue is ready (the coadd is the mean of the others)."""
    cat = _catalog()
    exp = {k: np.array(getattr(cat.exposures, k), copy=True) for k in EXPOSURE_ALIASES}
    exp["flux"][4], exp["flux_error"][7] = np.nan, 0.0
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    # galaxies 2 and 3: their coadds the mean of the two exposures left (equal errors)
    cols["flux_NB455"][1] = (exp["flux"][3] + exp["flux"][5]) / 2
    cols["flux_error_NB455"][1] = 2**-0.5
    cols["flux_NB455"][2] = (exp["flux"][6] + exp["flux"][8]) / 2
    cols["flux_error_NB455"][2] = 2**-0.5
    report = prepare_catalog(*_sources(cat, cols, exp))
    assert report.ok, [p.text() for p in report.problems]
    assert len(report.catalog.exposures) == 58
    assert any(n.startswith("exp.fits: 2 of 60 single exposures left out") for n in report.notes)


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
        "'zspec': 1 inf, negative or >= 10",
        "exp.fits: column 'band'",
        "NB999",
        "galaxies not in the catalogue: 6, 999",
        "duplicate (ref_id, band, exp_num)",
        # the exposures' fixes move coadds off their mean: listed before anything is applied
        "coadd differs from the inverse-variance mean of its exposures for 3 galaxies",
        "once the fixes above are applied: coadd differs",
    ):
        assert needle in text, needle
    flagged = "\n".join(p.text() for p in report.flagged)  # the screen's business: kept
    for needle in (
        "'flux_subaru_i': 1 NaN/inf value,",
        "'flux_subaru_i': 1 placeholder (-99",
        "'flux_error_subaru_i': 2 zero or negative values",
    ):
        assert needle in flagged, needle
    assert report.n_flagged == 4
    fixed = prepare_catalog(*_sources(cat, cols, exp), fix=True)
    assert fixed.ok, [p.text() for p in fixed.problems]
    assert fixed.dropped_galaxies == 5  # 2 duplicates, 4 coadds (one duplicated); flagged kept
    assert np.isnan(fixed.catalog.zspec[fixed.catalog.ref_id == 4]).all()
    dropped = prepare_catalog(*_sources(cat, cols, exp), fix=True, drop_flagged=True)
    assert (
        dropped.ok
        and dropped.dropped_galaxies > 5
        and not np.isin([1, 2, 3, 10], dropped.catalog.ref_id).any()
    )


def test_values_the_screen_flags_are_kept_as_by_the_cli() -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_subaru_i"][[0, 1]] = np.nan
    cols["flux_subaru_i"][2] = -99.0
    cols["flux_error_subaru_i"][3] = -1.0
    cols["flux_subaru_i"][4] = 1e30  # no exposures in subaru_i: only the screen sees it
    report = prepare_catalog(*_sources(cat, cols))
    assert report.ok and report.catalog.n_galaxies == 20 and report.n_flagged == 5
    assert any("1 implausible" in p.text() and "ref_id 5" in p.text() for p in report.flagged)
    assert np.isnan(report.catalog.flux[:2, 1]).all()  # kept as they are, for the screen
    only_clean = prepare_catalog(*_sources(cat, cols), drop_flagged=True)
    assert only_clean.ok and only_clean.catalog.n_galaxies == 15
    assert only_clean.dropped_galaxies == 5


def test_the_fixes_listed_are_the_fixes_applied() -> None:
    """A fix may reveal a problem (dropping a duplicate exposure moves a coadd off its mean): it
    is listed before anything is applied, and nothing else is dropped."""
    cat = _catalog()
    exp = {k: np.array(getattr(cat.exposures, k), copy=True) for k in EXPOSURE_ALIASES}
    exp = {k: np.append(v, v[0]) for k, v in exp.items()}  # galaxy 1's exposure 0 twice...
    exp["flux"][-1] += 30.0  # ... the second one different
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_NB455"][0] = np.average(exp["flux"][exp["ref_id"] == 1])  # equal errors
    report = prepare_catalog(*_sources(cat, cols, exp))
    texts = [p.text() for p in report.problems]
    assert len(texts) == 2 and "duplicate (ref_id, band, exp_num)" in texts[0], texts
    assert "once the fixes above are applied: coadd differs" in texts[1] and "ref_id 1" in texts[1]
    assert report.problems[1].fix == "drop 1 galaxy"
    fixed = prepare_catalog(*_sources(cat, cols, exp), fix=True)
    assert fixed.ok and fixed.dropped_galaxies == 1 and 1 not in fixed.catalog.ref_id


def test_no_fix_drops_every_galaxy() -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_NB455"] *= np.random.default_rng(1).uniform(2.0, 5.0, 20)  # no common factor
    report = prepare_catalog(*_sources(cat, cols))
    assert not report.fixable and report.problems[0].fix == ""
    assert "the fixes would drop every galaxy (20)" in report.problems[-1].text()


@pytest.mark.parametrize(
    ("factor", "units"),
    [(1e-3, "coadds in mJy and exposures in µJy"), (1e6, "coadds in nJy and exposures in mJy")],
)
def test_coadds_and_exposures_in_different_units_are_named(factor: float, units: str) -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_NB455"] *= factor
    cols["flux_error_NB455"] *= factor
    (problem,) = prepare_catalog(*_sources(cat, cols)).problems
    assert units in problem.text() and f"{max(factor, 1 / factor):,.0f} times" in problem.text()
    assert not problem.fixable


def test_a_band_empty_for_every_galaxy_is_not_fixed_by_dropping_them_all() -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_subaru_i"][:] = np.nan
    report = prepare_catalog(*_sources(cat, cols))
    (problem,) = report.problems
    assert "NaN/inf for every galaxy: remove band 'subaru_i'" in problem.text()
    assert not problem.fixable and not report.fixable


def test_a_catalogue_to_predict_keeps_a_band_without_values(tmp_path) -> None:
    """Fourteenth session: the Predict page's import refused a band NaN in every row, which a
    trained run imputes (`deepz predict`); ``measured_bands=False`` keeps it (and so does
    writing it), while the import of a catalogue to train on still refuses it."""
    from deepz_core.catalog.io import read_catalog, write_catalog
    from deepz_core.errors import CatalogError

    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_subaru_i"][:] = np.nan
    report = prepare_catalog(*_sources(cat, cols), measured_bands=False)
    assert report.ok and report.catalog.n_galaxies == 20
    assert np.isnan(report.catalog.flux[:, report.catalog.bands.index("subaru_i")]).all()
    with pytest.raises(CatalogError, match="'flux_subaru_i' has NaN/inf values for every galaxy"):
        write_catalog(report.catalog, tmp_path / "c.fits")
    path = write_catalog(report.catalog, tmp_path / "c.fits", measured_bands=False)
    assert read_catalog(path, measured_bands=False).n_galaxies == 20


def test_inconsistent_coadds_are_found_per_band() -> None:
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_NB455"][[0, 4]] *= 1.5
    report = prepare_catalog(*_sources(cat, cols))
    assert len(report.problems) == 1
    assert (
        "coadd differs" in report.problems[0].text() and "ref_id 1, 5" in report.problems[0].text()
    )
    assert "for 2 galaxies, e.g." in report.problems[0].text()
    assert prepare_catalog(*_sources(cat, cols), fix=True).catalog.n_galaxies == 18


def test_flagged_galaxies_a_fix_drops_are_not_counted_as_kept() -> None:
    """A 1e30 coadd beside its exposures is the screen's (flagged, kept: no problem); a galaxy
    flagged for a NaN band whose other coadd differs from its exposures is dropped by the fix,
    and the galaxies kept flagged no longer count it."""
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_NB455"][0] = 1e30
    cols["flux_subaru_i"][1] = np.nan
    cols["flux_NB455"][1] *= 1.5
    report = prepare_catalog(*_sources(cat, cols))
    assert report.n_flagged == 2 and len(report.problems) == 1
    assert "ref_id 2" in report.problems[0].text() and "ref_id 1" not in report.problems[0].text()
    fixed = prepare_catalog(*_sources(cat, cols), fix=True)
    assert fixed.ok and fixed.dropped_galaxies == 1 and fixed.n_flagged == 1


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


def test_an_empty_table_is_named_once() -> None:
    cat = _catalog()
    cols = {k: np.asarray(v)[:0] for k, v in cat.columns().items()}
    (problem,) = prepare_catalog(_sources(cat, cols)[0]).problems
    assert problem.text() == "gal.fits: no galaxies (empty table)"


def test_problems_name_the_file_s_own_columns() -> None:
    """Eleventh session: a DP0 file's report said "column 'flux_lsst_u'" and "column 'ref_id'"
    (deepz's names after mapping); the file has u_cModelFlux and objectId. The messages now
    name the file's columns and the band; the fixes still act on the right ones."""
    rng = np.random.default_rng(7)
    n = 30
    cols: dict[str, np.ndarray] = {"objectId": 1651589610221862935 + np.arange(n)}
    for b in "gri":
        cols[f"{b}_cModelFlux"] = rng.uniform(300.0, 3000.0, n)
        cols[f"{b}_cModelFluxErr"] = np.full(n, 30.0)
    cols["redshift"] = rng.uniform(0.1, 1.0, n)
    cols["objectId"][1] = cols["objectId"][0]  # a duplicate id
    cols["g_cModelFlux"][3] = 1e30
    cols["redshift"][4] = -99.0
    mapping = guess_galaxy_mapping(list(cols))
    mapping = mapping.__class__(
        mapping.ref_id,
        mapping.zspec,
        mapping.mag,
        tuple(("lsst_" + b[0], f, e) for b, f, e in mapping.bands),
    )
    report = prepare_catalog(Source(cols, mapping, "dp0.fits"))
    texts = " | ".join(p.text() for p in (*report.problems, *report.flagged))
    assert "column 'objectId' (ref_id): duplicate ids" in texts
    assert "column 'redshift' (zspec)" in texts
    assert "column 'g_cModelFlux' (band lsst_g): 1 implausible" in texts
    assert "flux_lsst_g" not in texts and "column 'ref_id'" not in texts
    fixed = prepare_catalog(Source(cols, mapping, "dp0.fits"), fix=True)
    assert fixed.ok and fixed.catalog.n_galaxies == n - 2
    assert np.isnan(fixed.catalog.zspec).sum() == 1


def test_the_dropped_counts_explain_themselves() -> None:
    """First-use review: 'Dropped: 3 galaxies and 650 exposures' beside a problem 'drop 442
    exposures'; the exposures dropped are split into those the fixes listed and those of the
    dropped galaxies, the problems fixed are kept, and a duplicate id drops every row with it."""
    cat = _catalog()
    exp = {k: np.array(getattr(cat.exposures, k), copy=True) for k in EXPOSURE_ALIASES}
    exp = {k: np.append(v, v[:2]) for k, v in exp.items()}
    exp["ref_id"][-2:] = 999  # two exposures of a galaxy not in the catalogue
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["ref_id"][5] = 7  # rows 5 and 6 share id 7: both go (galaxy 6's 3 exposures: orphans)
    report = prepare_catalog(*_sources(cat, cols, exp))
    dup = next(p for p in report.problems if p.column == "ref_id")
    assert "the fix drops every row sharing such an id" in dup.message
    fixed = prepare_catalog(*_sources(cat, cols, exp), fix=True)
    assert fixed.ok and fixed.dropped_galaxies == 2
    assert fixed.dropped_exposures == 2 + 3 + 3 and fixed.dropped_with_galaxies == 3
    assert fixed.dropped_text() == (
        "Dropped 2 galaxies and 8 exposures (5 by the fixes above and 3 of the dropped galaxies)."
    )
    assert [p.column for p in fixed.fixed] == [p.column for p in report.problems]
    assert prepare_catalog(*_sources(cat)).dropped_text() == ""


def test_reference_fluxes_the_screen_refuses_are_listed() -> None:
    """First-use review (thirteenth session): 20 rows with a reference flux of 1e-12 passed the
    Data page unlisted, and training then gave them no p(z). The default reference band's
    zero or negative fluxes and fluxes below their 1-sigma error are listed as flagged (kept,
    as the CLI keeps them), naming the rows."""
    cat = _catalog()
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items()}
    cols["flux_subaru_i"][[0, 1]] = 1e-12  # below the error 0.5
    cols["flux_subaru_i"][2] = -0.3
    report = prepare_catalog(*_sources(cat, cols))
    assert report.ok and report.n_flagged == 3
    texts = [p.text() for p in report.flagged]
    assert any(
        "below its 1-sigma error in the reference band" in t and "ref_id 1" in t for t in texts
    )
    assert any(
        "zero or negative in the reference band: no p(z)" in t and "ref_id 3" in t for t in texts
    )
