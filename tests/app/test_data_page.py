"""AppTest of the Overview and Data pages: uploads, column auto-detection, validation report, save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from astropy.io import fits
from streamlit.testing.v1 import AppTest

from deepz_core.catalog.io import read_catalog

TIMEOUT = 60


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_catalog: Path) -> Path:
    """An empty DEEPZ_HOME; the demo catalogue stands in as the small mock."""
    from app import state

    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(state, "demo_catalog_path", lambda: str(small_catalog))
    st.cache_resource.clear()
    return tmp_path


def data_page() -> AppTest:
    at = AppTest.from_file("../../pages/data.py", default_timeout=TIMEOUT)
    at.run()
    return at


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def upload(at: AppTest, key: str, name: str, data: bytes) -> None:
    at.file_uploader(key=key).upload(name, data)
    at.run()


def test_overview_shows_empty_state_and_demo(home: Path) -> None:
    at = AppTest.from_file("../../app/main.py", default_timeout=TIMEOUT)
    at.run()
    assert not at.exception and not at.error
    assert "No run yet: train one on the Train page" in texts(at.info)
    assert at.metric[0].value == "150"


def test_summary_of_the_selected_catalogue(home: Path) -> None:
    at = data_page()
    assert not at.exception and not at.error, texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Galaxies"] == "150" and metrics["Bands"] == "46"
    assert len(at.get("plotly_chart")) == 3  # magnitudes, spec-z, SNR per band
    n_zspec = metrics["With spec-z"]
    assert f"Only {n_zspec} galaxies with spec-z" in texts(at.info)  # a small training set


def test_upload_canonical_fits_and_save(home: Path, small_catalog: Path) -> None:
    at = data_page()
    upload(at, "up_galaxies", "small.fits", small_catalog.read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    assert "All checks passed: 150 galaxies in 46 bands" in texts(at.success)
    stored = list((home / "data" / "uploads").glob("*.fits"))
    assert len(stored) == 1 and len(stored[0].stem) == 64  # <sha256>.fits, written once
    next(b for b in at.button if b.label == "Save and use this catalogue").click()
    at.run()
    key = at.query_params["catalog"]
    saved = home / "data" / "uploads" / f"catalog-{key}.fits"
    assert saved.exists() and "it is now the selected catalogue" in texts(at.success)
    cat = read_catalog(saved)
    assert cat.n_galaxies == 150 and cat.exposures is not None
    assert json.loads(saved.with_suffix(".json").read_text())["name"] == "small"


def test_broken_file_gives_a_clear_message(home: Path) -> None:
    at = data_page()
    upload(at, "up_galaxies", "broken.fits", b"SIMPLE  = this is not a FITS file" * 3)
    assert not at.exception
    message = texts(at.error)
    assert "broken.fits" in message and "FITS" in message
    upload(at, "up_galaxies_1", "cat.parquet", b"ref_id,flux_a\n1,2\n")  # CSV text, wrong extension
    assert not at.exception
    assert "cat.parquet: not a PARQUET file" in texts(at.error)
    assert "broken.fits" not in texts(at.error)  # a new upload: the old message goes


def test_a_rejected_upload_leaves_the_uploader(home: Path, tmp_path: Path) -> None:
    """First-use review: an image-only FITS was 'not kept' but stayed in the uploader; the
    uploader is emptied (a new key) and the message says what the file holds."""
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path / "image.fits")
    at = data_page()
    upload(at, "up_galaxies", "image.fits", (tmp_path / "image.fits").read_bytes())
    assert not at.exception
    assert texts(at.error) == (
        "Upload rejected: image.fits holds no table (only an image in HDU 0): deepz needs a "
        "FITS binary table of galaxies (the upload was not kept)"
    )
    (uploader,) = [w for w in at.get("file_uploader") if w.label == "Galaxies (required)"]
    assert uploader.key == "up_galaxies_1" and not uploader.value
    assert "Upload a galaxies file" in texts(at.info)


def _raw_files(tmp: Path, small: Path) -> tuple[Path, Path, Path]:
    """The small mock in survey spellings: galaxies, exposures and spec-z as three CSV files."""
    cat = read_catalog(small)
    gal = {"ID": cat.ref_id, "i_mag": cat.mag}
    for j, b in enumerate(cat.bands):
        gal[f"FLUX_{b}"], gal[f"FLUXERR_{b}"] = cat.flux[:, j], cat.flux_error[:, j]
    pd.DataFrame(gal).to_csv(tmp / "gal.csv", index=False)
    e = cat.exposures
    pd.DataFrame(
        {
            "objid": e.ref_id,
            "filter": np.char.lower(e.band),
            "expnum": e.exp_num,
            "flux": e.flux,
            "flux_err": e.flux_error,
        }
    ).to_csv(tmp / "exp.csv", index=False)
    has = cat.has_zspec
    pd.DataFrame({"id": cat.ref_id[has], "z_spec": cat.zspec[has]}).to_csv(
        tmp / "z.csv", index=False
    )
    return tmp / "gal.csv", tmp / "exp.csv", tmp / "z.csv"


def test_survey_spellings_are_detected_and_joined(home: Path, small_catalog: Path) -> None:
    gal, exp, spz = _raw_files(home, small_catalog)
    at = data_page()
    upload(at, "up_galaxies", "gal.csv", gal.read_bytes())
    upload(at, "up_exposures", "exp.csv", exp.read_bytes())
    upload(at, "up_specz", "z.csv", spz.read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    picks = {s.label: s.value for s in at.selectbox}
    assert picks["Galaxy ID -> ref_id"] == "ID" and picks["Magnitude [AB] -> mag"] == "i_mag"
    keyed = {
        k: at.selectbox(key=k).value
        for k in (
            "exp_ref_id",
            "exp_band",
            "exp_exp_num",
            "exp_flux_error",
            "spz_ref_id",
            "spz_zspec",
        )
    }
    assert keyed == {
        "exp_ref_id": "objid",
        "exp_band": "filter",
        "exp_exp_num": "expnum",
        "exp_flux_error": "flux_err",
        "spz_ref_id": "id",
        "spz_zspec": "z_spec",
    }
    assert "spec-z joined for 122 galaxies" in texts(at.info)
    assert "All checks passed: 150 galaxies in 46 bands, 122 with spec-z" in texts(at.success)


def _bad_csv(home: Path, small_catalog: Path) -> Path:
    """The small mock (no exposures) with NaN fluxes in rows 0-1, a negative error in row 3, a
    duplicated id (rows 10-11) and -99 for unknown spec-z."""
    cat = read_catalog(small_catalog)
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items() if np.ndim(v) == 1}
    cols["flux_NB455"][:2] = np.nan
    cols["flux_error_NB465"][3] = -1.0
    cols["ref_id"][10] = cols["ref_id"][11]
    cols["zspec"] = np.where(np.isnan(cols["zspec"]), -99.0, cols["zspec"])
    pd.DataFrame(cols).to_csv(home / "bad.csv", index=False)
    return home / "bad.csv"


def test_every_problem_is_listed_and_can_be_fixed(home: Path, small_catalog: Path) -> None:
    at = data_page()
    upload(at, "up_galaxies", "bad.csv", _bad_csv(home, small_catalog).read_bytes())
    assert not at.exception
    report = texts(at.error)
    for column in ("'ref_id'", "'zspec'"):
        assert column in report
    assert "2 problem(s) found" in report and "bad.csv" in report
    assert "fix: drop 2 galaxies" in report
    flagged = texts(at.warning)  # the screen's business, as in the CLI: kept
    assert "3 galaxies have values the photometric screen flags; they are kept" in flagged
    assert "'flux_NB455'" in flagged and "'flux_error_NB465'" in flagged
    at.checkbox(key="fix").check()
    at.run()
    # first-use review: once fixed, the problems were still listed as found beside "All checks
    # passed"; now they are listed as fixed, with what was done
    assert not at.error, texts(at.error)
    fixed = texts(at.info)
    assert "2 problem(s) fixed" in fixed and "— fixed: drop 2 galaxies" in fixed
    assert "every row sharing such an id" in fixed
    assert "Dropped 2 galaxies." in texts(at.warning)
    assert "All checks passed: 148 galaxies (3 flagged, kept)" in texts(at.success)


def test_flagged_galaxies_are_saved_or_dropped_on_request(home: Path, small_catalog: Path) -> None:
    """Issue 6: what the CLI accepts is saved with its flagged galaxies; dropping is an option."""
    cat = read_catalog(small_catalog)
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items() if np.ndim(v) == 1}
    cols["flux_NB455"][:2] = np.nan
    cols["flux_NB465"][5] = -99.0
    pd.DataFrame(cols).to_csv(home / "flagged.csv", index=False)
    at = data_page()
    upload(at, "up_galaxies", "flagged.csv", (home / "flagged.csv").read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    assert "All checks passed: 150 galaxies (3 flagged, kept)" in texts(at.success)
    at.checkbox(key="drop_flagged").check()
    at.run()
    assert "All checks passed: 147 galaxies in 46 bands" in texts(at.success)
    at.checkbox(key="drop_flagged").uncheck()
    at.run()
    next(b for b in at.button if b.label == "Save and use this catalogue").click().run()
    saved = read_catalog(home / "data" / "uploads" / f"catalog-{at.query_params['catalog']}.fits")
    assert saved.n_galaxies == 150 and np.isnan(saved.flux[:2, 0]).all()


def test_saving_again_under_another_name_renames_nothing_silently(
    home: Path, small_catalog: Path
) -> None:
    """Issue 9: the same file saved under a new name says it is stored as 'small' already."""
    at = data_page()
    upload(at, "up_galaxies", "small.fits", small_catalog.read_bytes())
    next(b for b in at.button if b.label == "Save and use this catalogue").click().run()
    key = at.query_params["catalog"]
    at.text_input(key="cat_name").set_value("second-name").run()
    assert "already stored as 'small'" in texts(at.warning)
    assert not [b for b in at.button if b.label == "Save and use this catalogue"]
    note = home / "data" / "uploads" / f"catalog-{key}.json"
    assert json.loads(note.read_text())["name"] == "small"  # nothing renamed yet
    next(b for b in at.button if b.label == "Use 'small'").click().run()
    assert json.loads(note.read_text())["name"] == "small" and at.query_params["catalog"] == key
    at.text_input(key="cat_name").set_value("second-name").run()
    next(b for b in at.button if b.label == "Rename 'small' to 'second-name'").click().run()
    assert json.loads(note.read_text())["name"] == "second-name"


def test_a_band_without_its_error_column_is_a_warning(home: Path, small_catalog: Path) -> None:
    """Issue 10: a misspelt error column leaves its band out with a warning naming both."""
    cat = read_catalog(small_catalog)
    cols = {k: np.array(v, copy=True) for k, v in cat.columns().items() if np.ndim(v) == 1}
    cols["flux_eror_NB605"] = cols.pop("flux_error_NB605")
    pd.DataFrame(cols).to_csv(home / "typo.csv", index=False)
    at = data_page()
    upload(at, "up_galaxies", "typo.csv", (home / "typo.csv").read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    warning = texts(at.warning)
    assert "band 'NB605' is left out" in warning and "'flux_eror_NB605'" in warning
    assert "All checks passed: 150 galaxies in 45 bands" in texts(at.success)


def test_a_magnitude_catalogue_in_nanojansky_units_is_imported(home: Path) -> None:
    """Issue 20: mag_<band>/magerr_<band> columns are offered as fluxes (99 = non-detection with
    a limit column), and a FITS file's TUNIT sets the zero-point shown."""
    from astropy.table import Table

    rng = np.random.default_rng(3)
    mag = rng.uniform(20, 24, (60, 3))
    t = Table({"objectId": np.arange(60) + 7})
    for j, band in enumerate(("g", "r", "i")):
        t[f"mag_{band}"], t[f"magerr_{band}"] = mag[:, j], np.full(60, 0.05)
        t[f"maglim_{band}"] = np.full(60, 26.0)
    t["mag_g"][:4] = 99.0
    t.write(home / "mags.fits")
    at = data_page()
    upload(at, "up_galaxies", "mags.fits", (home / "mags.fits").read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    assert at.checkbox(key="convert_magnitudes").value  # no flux columns: conversion on by default
    assert "All checks passed: 60 galaxies in 3 bands" in texts(at.success)
    assert at.number_input[0].value == 23.9
    njy = Table({"ref_id": np.arange(5), "flux_g": np.ones(5), "flux_error_g": np.ones(5)})
    njy["flux_g"].unit = njy["flux_error_g"].unit = "nJy"
    njy.write(home / "njy.fits")
    at.file_uploader(key="up_galaxies").clear()
    upload(at, "up_galaxies", "njy.fits", (home / "njy.fits").read_bytes())
    assert not at.exception
    assert at.number_input[0].value == 31.4


def _sdss_like(tmp: Path, n: int = 120) -> dict[str, np.ndarray]:
    """An SDSS-like table: 19-digit objids with gaps, 'z' as the redshift, FLUX_U..FLUX_Z."""
    from tests.synthetic import SDSS_ID

    rng = np.random.default_rng(4)
    cols: dict[str, np.ndarray] = {
        "objid": SDSS_ID + np.cumsum(rng.integers(1, 40, n)),
        "z": rng.uniform(0.02, 0.4, n),
    }
    for b in "ugriz":
        flux = rng.uniform(20.0, 400.0, n)
        cols[f"FLUX_{b.upper()}"], cols[f"FLUXERR_{b.upper()}"] = flux, 0.05 * flux
    return cols


def test_sdss_names_z_and_band_suggestions(home: Path) -> None:
    """`z` is the spec-z; FLUX_G & co. get SDSS filter names (so 'auto' pretraining works); the
    19-digit ids survive the import exactly."""
    cols = _sdss_like(home)
    path = home / "sdss.csv"
    pd.DataFrame(cols).to_csv(path, index=False)
    at = data_page()
    upload(at, "up_galaxies", "sdss.csv", path.read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    picks = {s.label: s.value for s in at.selectbox}
    assert picks["Spectroscopic redshift -> zspec"] == "z"
    rename = next(s for s in at.selectbox if s.label.startswith("5 band names have no filter"))
    assert rename.value == "sdss"
    assert "All checks passed: 120 galaxies in 5 bands, 120 with spec-z" in texts(at.success)
    click = next(b for b in at.button if b.label == "Save and use this catalogue")
    click.click().run()
    saved = read_catalog(home / "data" / "uploads" / f"catalog-{at.query_params['catalog']}.fits")
    assert saved.bands == ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z")
    np.testing.assert_array_equal(saved.ref_id, cols["objid"])


def test_magnitude_columns_are_offered_for_conversion(home: Path) -> None:
    rng = np.random.default_rng(2)
    cols = {"id": np.arange(50), "zspec": rng.uniform(0.1, 1.0, 50)}
    for b in "griz":
        cols[f"mag_{b}"], cols[f"magerr_{b}"] = rng.uniform(18, 22, 50), np.full(50, 0.05)
    cols["mag_g"][:3] = 99.0  # non-detections
    pd.DataFrame(cols).to_csv(home / "mags.csv", index=False)
    at = data_page()
    upload(at, "up_galaxies", "mags.csv", (home / "mags.csv").read_bytes())
    assert not at.exception
    offered = texts(at.info) + " | " + " | ".join(c.label for c in at.checkbox)
    assert "4 magnitude bands" in offered or "4 bands are given as AB magnitudes" in offered


def test_a_dp0_parquet_without_units_is_read_in_nanojansky(home: Path) -> None:
    """Eleventh session: DP0 columns (objectId, u_cModelFlux, u_cModelFluxErr, redshift) in a
    Parquet file, which holds no unit: the zero-point was 23.9 (microJansky), so every magnitude
    was 7.5 too bright, in silence. Now 31.4 and the page says why; a file with neither units nor
    Rubin names gets a warning that 23.9 is an assumption."""
    rng = np.random.default_rng(5)
    n = 40
    cols: dict[str, np.ndarray] = {"objectId": 1651589610221862935 + np.arange(n) * 7919}
    for b in "ugrizy":
        cols[f"{b}_cModelFlux"] = rng.uniform(300.0, 3000.0, n)  # nJy: AB 22.6-25.1
        cols[f"{b}_cModelFluxErr"] = np.full(n, 30.0)
    cols["redshift"] = rng.uniform(0.1, 1.5, n)
    pd.DataFrame(cols).to_parquet(home / "dp0.parquet")
    at = data_page()
    upload(at, "up_galaxies", "dp0.parquet", (home / "dp0.parquet").read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    assert at.number_input[0].value == 31.4
    assert "Rubin pipelines columns, in nJy" in texts(at.caption)
    assert not any("assumed" in str(w.value) for w in at.warning)
    plain = pd.DataFrame({"id": np.arange(5), "flux_g": np.ones(5), "flux_error_g": np.ones(5)})
    plain.to_csv(home / "plain.csv", index=False)
    at.file_uploader(key="up_galaxies").clear()
    upload(at, "up_galaxies", "plain.csv", (home / "plain.csv").read_bytes())
    assert at.number_input[0].value == 23.9
    assert "assumed: the file states no unit" in texts(at.warning)


def test_a_magnitude_catalogue_s_report_names_its_magnitude_columns(home: Path) -> None:
    """Eleventh session: an SDSS-like file's -99 magnitudes were reported as "column
    'flux_sdss_u': 38 NaN/inf values", a column the file does not have. The report now names
    the magnitude column the flux came from."""
    rng = np.random.default_rng(6)
    cols: dict[str, np.ndarray] = {"objid": 1237648720693755918 + np.arange(40)}
    for b in "ugriz":
        cols[f"mag_{b}"], cols[f"magerr_{b}"] = rng.uniform(18, 21, 40), np.full(40, 0.05)
    cols["mag_u"][:3] = -99.0
    cols["zspec"] = rng.uniform(0.05, 0.5, 40)
    pd.DataFrame(cols).to_parquet(home / "sdss.parquet")
    at = data_page()
    upload(at, "up_galaxies", "sdss.parquet", (home / "sdss.parquet").read_bytes())
    assert not at.exception and not at.error, texts(at.error)
    report = texts(at.warning)
    assert "column 'mag_u' (band sdss_u, as a flux)" in report
    assert "flux_u" not in report and "flux_sdss_u" not in report
