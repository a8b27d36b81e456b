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
    assert any("photometric with r1 — finished" in m.value for m in at.markdown)
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
    assert any("this run cannot predict it" in w.value for w in at.warning)
    assert next(b for b in at.button if b.label == "Predict this catalogue").disabled
