"""AppTest of the Predict page: a finished run predicts an uploaded photometric catalogue (no
spec-z, 19-digit ids, ra/dec) as a background job; then n(z), tomographic bins, the sky, one
galaxy's p(z) and downloads."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from deepz_core.catalog.io import write_catalog
from deepz_core.cli import main as cli
from deepz_core.errors import CatalogError
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.sed.bands import band_set
from deepz_core.simulate import simulate
from tests.synthetic import SDSS_ID, with_survey_ids

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "predict.py")
TINY_MODEL = {
    "width": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "photoz_layers": 1,
    "photoz_first_width": 0,
    "n_components": 3,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A DEEPZ_HOME with one finished tiny run 'r1' on a 200-galaxy PAUS-like mock."""
    root = tmp_path_factory.mktemp("predict_home")
    path = write_catalog(simulate("paus-mock", 200, band_set("paus_cosmos"), 5), root / "t.fits")
    train = {"schedule": ((2, 1e-3),), "folds": 2, "batch_size": 100}
    config = run_config(
        str(path), pretrain="none", preset_name="quick", model=TINY_MODEL, train=train
    )
    run = create_run(root / "runs" / "r1", config)
    execute_run(run)
    assert run.status()["state"] == "finished"
    return root


def _photometric_fits(tmp_path: Path) -> bytes:
    """150 galaxies without spec-z, 19-digit ids with gaps, and sky positions."""
    cat = with_survey_ids(simulate("paus-mock", 150, band_set("paus_cosmos"), 9))
    rng = np.random.default_rng(3)
    extra = {"ra": rng.uniform(150.0, 150.5, 150), "dec": rng.uniform(2.0, 2.5, 150)}
    cat = dataclasses.replace(cat, zspec=None, exposures=None, extra=extra)
    return write_catalog(cat, tmp_path / "photometric.fits").read_bytes()


def test_predict_an_uploaded_catalogue(trained, tmp_path, monkeypatch) -> None:
    from app import jobs, state

    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    st.cache_resource.clear()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("No prediction yet" in i.value for i in at.info)
    at.file_uploader(key="pred_upload").upload("photometric.fits", _photometric_fits(tmp_path))
    at.run()
    assert any("Imported photometric.fits: 150 galaxies" in s.value for s in at.success)
    next(b for b in at.button if b.label == "Predict this catalogue").click().run()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = state.prediction_jobs_list()[0]
    assert job.state == "finished" and job.spec["rows"] == 150
    assert at.query_params["pred"] == job.job_id
    heading = f"photometric with {state.run_title('r1')} — finished"  # the run by its name
    assert any(heading in m.value for m in at.markdown)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("Redshift distribution n(z) (150 galaxies)") for t in titles)
    assert any(t.startswith("Tomographic bins") for t in titles)
    assert "Sky positions (150 galaxies)" in titles
    ref_id = int(at.text_input(key="pred_ref_id").value)
    assert ref_id > SDSS_ID and any(t == f"p(z) of {ref_id}" for t in titles)
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels[:2] == ["All predictions (Parquet)", "All predictions (FITS)"]
    assert "All predictions (qp, HDF5)" in labels
    # the tomographic bins split the selection; the Parquet download is plain (no .mask columns)
    table = at.dataframe[-1].value
    assert int(table["galaxies"].sum()) == 150
    key = state.job_key(job.job_id)
    data = pq.read_table(io.BytesIO(state.export_bytes(key, "parquet")))
    assert not [c for c in data.column_names if c.endswith(".mask")]
    assert data["ref_id"].to_numpy()[0] > SDSS_ID and np.isnan(data["zspec"].to_numpy()).all()
    # the qp download opens in qp, one p(z) per row, the 19-digit ids intact
    import qp

    (tmp_path / "pz.hdf5").write_bytes(state.qp_bytes(key))
    ens = qp.read(str(tmp_path / "pz.hdf5"))
    assert ens.npdf == 150 and ens.ancil["ref_id"][0] > SDSS_ID


def test_a_catalogue_without_the_run_bands_is_refused(trained, tmp_path, monkeypatch) -> None:
    cat = simulate("lsst-deep", 60, seed=2)
    data = write_catalog(cat, tmp_path / "lsst.fits").read_bytes()
    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    st.cache_resource.clear()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="pred_upload").upload("lsst.fits", data)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("This run cannot predict" in w.value for w in at.warning)
    assert any("its reference band" in w.value for w in at.warning)  # the core's reason
    assert next(b for b in at.button if b.label == "Predict this catalogue").disabled


def test_a_catalogue_lacking_one_run_band_is_predicted_with_it_imputed(
    trained, tmp_path, monkeypatch
) -> None:
    """Thirteenth session: `deepz predict` imputes a run band a catalogue lacks (flagged
    BAND_MISSING) while this page refused the catalogue ('this run cannot predict it'). The
    page now says the band is imputed and predicts it, as the CLI does."""
    from app import jobs, state

    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    st.cache_resource.clear()
    cat = dataclasses.replace(simulate("paus-mock", 60, band_set("paus_cosmos"), 6), exposures=None)
    keep = [j for j, b in enumerate(cat.bands) if b != "NB455"]
    cat = dataclasses.replace(
        cat,
        bands=tuple(cat.bands[j] for j in keep),
        flux=cat.flux[:, keep],
        flux_error=cat.flux_error[:, keep],
    )
    data = write_catalog(cat, tmp_path / "no455.fits").read_bytes()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="pred_upload").upload("no455.fits", data)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("NB455): they are imputed for every galaxy" in i.value for i in at.info)
    _predict_button(at).click().run()
    at.run()
    job = next(j for j in state.prediction_jobs_list() if j.spec.get("catalog_name") == "no455")
    assert job.state == "finished" and job.spec["rows"] == 60
    assert job.spec["flags"].get("BAND_MISSING") == 60


def _predict_button(at: AppTest):
    return next(b for b in at.button if b.label == "Predict this catalogue")


def test_an_upload_with_a_spec_z_code_is_predicted_as_deepz_predict_reads_it(
    trained, tmp_path, monkeypatch
) -> None:
    """Found by the fourteenth session's browser check: an upload with one zspec = 99 (a 'no
    redshift' code) was refused by the Predict page ('correct the file and upload it again'),
    while `deepz predict` reads such a value as unknown with one note. The page now does the
    same: imported, the value read as unknown (NaN), said in one line, the button enabled."""
    import pandas as pd

    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    st.cache_resource.clear()
    cat = simulate("paus-mock", 40, band_set("paus_cosmos"), 4)
    cols = {k: v for k, v in cat.columns().items() if np.ndim(v) == 1}
    cols["zspec"] = np.where(np.arange(40) == 5, 99.0, cols["zspec"])
    pd.DataFrame(cols).to_csv(tmp_path / "z99.csv", index=False)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="pred_upload").upload("z99.csv", (tmp_path / "z99.csv").read_bytes())
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    said = [i.value for i in at.info if "read as unknown (NaN)" in i.value]
    assert len(said) == 1 and said[0].startswith("z99.csv: column 'zspec'"), said
    assert not _predict_button(at).disabled


def test_a_failed_upload_predicts_nothing(trained, tmp_path, monkeypatch) -> None:
    """Issue 1: while an uploaded file cannot be imported the button is disabled (never the
    dropdown's catalogue instead); the message names the file as uploaded and asks to map
    columns only when the columns are the problem."""
    import pandas as pd

    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    st.cache_resource.clear()
    cat = simulate("paus-mock", 40, band_set("paus_cosmos"), 4)
    cols = {k: v for k, v in cat.columns().items() if np.ndim(v) == 1}
    cols["ref_id"] = np.where(np.arange(40) == 1, cols["ref_id"][0], cols["ref_id"])
    pd.DataFrame(cols).to_csv(tmp_path / "dup.csv", index=False)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not _predict_button(at).disabled  # the dropdown's catalogue, no upload yet
    at.file_uploader(key="pred_upload").upload("dup.csv", (tmp_path / "dup.csv").read_bytes())
    at.run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("dup.csv cannot be predicted: dup.csv: column 'ref_id': duplicate")
    assert "Map its columns" not in error and ".csv:" in error
    assert _predict_button(at).disabled
    at.file_uploader(key="pred_upload").clear()
    at.file_uploader(key="pred_upload").upload("odd.csv", b"a,b\n1,2\n3,4\n")
    at.run()
    (error,) = [e.value for e in at.error]
    assert error.startswith("odd.csv cannot be predicted") and "Map its columns" in error
    assert _predict_button(at).disabled


def test_a_rejected_upload_is_removed_from_the_uploader(trained, tmp_path, monkeypatch) -> None:
    """First-use review: an image-only FITS was 'not kept' but stayed in the uploader, and the
    page asked to remove it before predicting anything. The uploader is emptied, the message
    (naming the file once) stays, and the dropdown's catalogue can be predicted."""
    from astropy.io import fits

    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    st.cache_resource.clear()
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path / "image.fits")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="pred_upload").upload("image.fits", (tmp_path / "image.fits").read_bytes())
    at.run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error == (
        "Upload rejected: image.fits holds no table (only an image in HDU 0): deepz needs a "
        "FITS binary table of galaxies (the upload was not kept)"
    )
    assert not at.file_uploader(key="pred_upload_1").value
    assert not _predict_button(at).disabled
    assert not any("Remove the uploaded file" in c.value for c in at.caption)


def test_an_upload_the_cli_accepts_is_predicted_with_flags(trained, tmp_path, monkeypatch) -> None:
    """Issue 6: NaN bands, -99 placeholders and negative errors are kept and flagged, as by
    `deepz predict`; one row per input row."""
    from app import jobs, state

    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    st.cache_resource.clear()
    cat = dataclasses.replace(simulate("paus-mock", 60, band_set("paus_cosmos"), 6), exposures=None)
    flux, error = cat.flux.copy(), cat.flux_error.copy()
    flux[0, 3], flux[1, 4], error[2, 5] = np.nan, -99.0, -1.0
    data = write_catalog(dataclasses.replace(cat, flux=flux, flux_error=error), tmp_path / "m.fits")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="pred_upload").upload("messy.fits", data.read_bytes())
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Imported messy.fits: 60 galaxies (3 with values" in s.value for s in at.success)
    _predict_button(at).click().run()
    at.run()
    job = next(j for j in state.prediction_jobs_list() if j.spec.get("catalog_name") == "messy")
    assert job.state == "finished" and job.spec["rows"] == 60
    assert job.spec["flags"].get("BAND_MISSING") == 3


@pytest.fixture(scope="module")
def trained_lsst(tmp_path_factory) -> Path:
    """A DEEPZ_HOME with one finished tiny run 'lsst' on a 200-galaxy LSST-like ugrizy mock
    (bands lsst_u ... lsst_y, fluxes in microJansky)."""
    root = tmp_path_factory.mktemp("predict_lsst_home")
    path = write_catalog(simulate("lsst-deep", 200, seed=5), root / "lsst.fits")
    train = {"schedule": ((1, 1e-3),), "folds": 2, "batch_size": 100}
    config = run_config(
        str(path), pretrain="none", preset_name="quick", model=TINY_MODEL, train=train
    )
    run = create_run(root / "runs" / "lsst", config)
    execute_run(run)
    assert run.status()["state"] == "finished"
    return root


def test_a_dp0_parquet_upload_is_predicted_with_the_run_bands(trained_lsst, tmp_path, monkeypatch):
    """Eleventh session: a DP0 export (objectId, u_cModelFlux, u_cModelFluxErr in nJy, Parquet:
    no units) uploaded here for a run trained on lsst_u ... lsst_y was refused ('lacks 6 of the
    run's bands'), since the guessed band names were u_cModel...; and had it been taken, its
    fluxes would have been read as microJansky; its coord_ra/coord_dec never reached the Sky
    tab. Now the bands take the run's names by their filter letters, the zero-point is nJy's,
    the job predicts every row and the sky shows them."""
    import pandas as pd

    from app import jobs, state
    from deepz_core.catalog.io import read_catalog

    monkeypatch.setenv("DEEPZ_HOME", str(trained_lsst))
    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    st.cache_resource.clear()
    cat = simulate("lsst-deep", 50, seed=8)
    cols: dict[str, np.ndarray] = {"objectId": SDSS_ID + np.arange(50) * 7919}
    for j, band in enumerate(cat.bands):
        letter = band.split("_")[1]
        cols[f"{letter}_cModelFlux"] = cat.flux[:, j] * 1000.0  # uJy -> nJy
        cols[f"{letter}_cModelFluxErr"] = cat.flux_error[:, j] * 1000.0
    rng = np.random.default_rng(4)
    cols["coord_ra"], cols["coord_dec"] = rng.uniform(55, 56, 50), rng.uniform(-32, -31, 50)
    pd.DataFrame(cols).to_parquet(tmp_path / "dp0.parquet")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="pred_upload").upload(
        "dp0.parquet", (tmp_path / "dp0.parquet").read_bytes()
    )
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not any("cannot predict it" in w.value for w in at.warning), [
        w.value for w in at.warning
    ]
    assert any("u_cModel → lsst_u" in c.value for c in at.caption)
    _predict_button(at).click().run()
    at.run()
    job = next(j for j in state.prediction_jobs_list() if j.spec.get("catalog_name") == "dp0")
    assert job.state == "finished" and job.spec["rows"] == 50
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Sky positions (50 galaxies)" in titles  # DP0's coord_ra/coord_dec
    imported = read_catalog(job.spec["catalog"])
    assert imported.fluxzp == 31.4 and imported.bands == cat.bands
    np.testing.assert_allclose(imported.magnitudes("lsst_i"), cat.magnitudes("lsst_i"), atol=1e-6)


def test_a_catalogue_a_unit_off_is_refused_before_any_job(trained, tmp_path, monkeypatch):
    """Fourteenth session: fluxes x1000 off (nJy values declared uJy) were predicted by the job
    with flag 0. The page now checks an upload as `deepz predict` does before anything runs
    (`state.prediction_refusal`: the stream's preflight) and says why in one line, the button
    disabled; a job started on such a file anyway (a file changed since) fails with that line,
    the catalogue named as uploaded, without the error's type (`jobs.prediction.failure_message`)."""
    from app import jobs
    from deepz_core.jobs.prediction import create_prediction_job, run_prediction_job

    monkeypatch.setenv("DEEPZ_HOME", str(trained))
    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    st.cache_resource.clear()
    cat = dataclasses.replace(simulate("paus-mock", 60, band_set("paus_cosmos"), 6), exposures=None)
    off = dataclasses.replace(cat, flux=cat.flux * 1000, flux_error=cat.flux_error * 1000)
    path = write_catalog(off, tmp_path / "off.fits")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="pred_upload").upload("nano.fits", path.read_bytes())
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = [w.value for w in at.warning if "cannot predict" in w.value]
    assert len(shown) == 1 and "\n" not in shown[0], shown
    assert "column 'flux_subaru_i' (declared uJy)" in shown[0] and "mag brighter" in shown[0]
    assert "--flux-unit nJy" in shown[0] and "/uploads/" not in shown[0]
    assert _predict_button(at).disabled
    run = next(p for p in (trained / "runs").iterdir() if (p / "model.json").exists())
    folder = create_prediction_job(tmp_path / "preds", run, path, "nano", "cpu", True)
    with pytest.raises(CatalogError):
        run_prediction_job(folder)
    message = json.loads((folder / "job.json").read_text())["message"]
    assert message.startswith("nano: column 'flux_subaru_i' (declared uJy)"), message
