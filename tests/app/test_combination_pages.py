"""AppTests of the networks combined with the template fit (issue 22 part 2) in the app: the Train
option reaches the queued run's config; Results compares network, template fit and combination
for a combined run and says how to get one for a plain run; Predict uses the combination by
default and the networks alone when asked; the explorer shows the chosen estimator's p(z)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import streamlit as st
from astropy.table import Table
from streamlit.testing.v1 import AppTest

import deepz_core as dz
from deepz_core.cli import main as cli
from deepz_core.rundir import RunDir, list_runs
from tests.app.apptest import PAGES, assert_clean, run_page

N_TRAIN = 600  # 521 with a spec-z: enough for a combination (>= 200 out of fold)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """DEEPZ_HOME with two smoke runs on one 600-galaxy PAUS-like mock: 'c1' combined with the
    bcnz2 template fit, 'p1' the networks alone."""
    root = tmp_path_factory.mktemp("combined_home")
    path = dz.write_catalog(dz.simulate_catalog("paus-mock", N_TRAIN, seed=5), root / "mock.fits")
    dz.train(path, root / "runs" / "c1", preset="smoke", pretrain="none", templates="bcnz2")
    dz.train(path, root / "runs" / "p1", preset="smoke", pretrain="none")
    return root


@pytest.fixture
def at_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEEPZ_HOME", str(home))
    st.cache_resource.clear()
    st.cache_data.clear()
    return home


def _texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def _titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def _trace_names(at: AppTest, title: str) -> set[str]:
    """The trace names of the chart titled ``title``."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["layout"]["title"]["text"] == title:
            return {t.get("name") for t in spec["data"]}
    raise AssertionError(f"no chart titled {title!r}: {_titles(at)}")


# ---------------------------------------------------------------- Train


def test_the_train_option_reaches_the_queued_config(tmp_path, monkeypatch) -> None:
    from app import jobs, state

    cat = tmp_path / "mock.fits"
    dz.write_catalog(dz.simulate_catalog("paus-mock", 300, seed=2), cat)
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(state, "demo_catalog_path", lambda: str(cat))
    monkeypatch.setattr(jobs, "ensure_worker", lambda runs: 12345)  # no worker process
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=60).run()
    assert_clean(at)
    box = at.selectbox(key="combine_templates")
    assert box.value == "none" and "100 galaxies/s" in box.help
    next(s for s in at.selectbox if s.label == "Pretraining set").select("none").run()
    at.number_input(key="folds_quick").set_value(1).run()
    box.select("kcorrect").run()
    assert "needs at least 200 of them and 2 folds" in _texts(at.warning)
    queue = next(b for b in at.button if b.label == "Queue training run")
    assert queue.disabled  # one fold: no out-of-fold galaxies to fit the combination on
    at.number_input(key="folds_quick").set_value(2).run()
    assert "Adds the template fit of 300 galaxies" in _texts(at.caption)
    rate = state.combination_cost(state.catalog_summary(str(cat)), "kcorrect")[1]
    assert f"cost about {rate:,.0f} galaxies/s" in _texts(at.caption)  # its grid, its set
    next(b for b in at.button if b.label == "Queue training run").click().run()
    assert_clean(at)
    (run,) = list_runs(tmp_path / "runs")
    assert run.config()["templates"] == "kcorrect" and run.config()["train"]["folds"] == 2
    assert at.dataframe[0].value.loc[0, "combined with"] == "kcorrect (after training)"
    assert "to be combined with the kcorrect template fit after training" in _texts(at.caption)


# ---------------------------------------------------------------- Results


def test_results_compare_the_estimators_of_a_combined_run(at_home) -> None:
    from app import state

    at = run_page("results.py", runs="c1,p1")
    assert_clean(at)
    assert "Network + template fit" in _texts(at.subheader)
    summary = dz.load_run(at_home / "runs" / "c1").combination_summary()
    table = next(d.value for d in at.dataframe if "σ68 combined" in d.value.columns)
    want = {"σ68 network", "σ68 template fit", "outliers combined", "PIT KS network"}
    assert want | {"catastrophic template fit"} <= set(table.columns)
    assert table["magnitude"][0] == "all" and table["galaxies"][0] == summary["n"] > 400
    overall = summary["overall"]
    assert table["σ68 combined"][0] == pytest.approx(overall["combined"]["sigma68"])
    assert table["σ68 template fit"][0] == pytest.approx(overall["templatefit"]["sigma68"])
    assert len(table) == 1 + len(summary["per_magnitude"])
    chart = next(
        json.loads(c.proto.spec)
        for c in at.get("plotly_chart")
        if "σ68 vs magnitude: c1" in json.loads(c.proto.spec)["layout"]["title"]["text"]
    )
    assert {t["name"] for t in chart["data"]} == {"network", "template fit", "combined"}
    labels = [d.proto.label for d in at.get("download_button")]
    assert {"c1: combined FITS", "c1: combined Parquet"} <= set(labels)
    assert not any(label.startswith("p1: combined") for label in labels)
    hint = _texts(at.info)  # the plain run: how to get a combination
    assert "p1" in hint and "deepz combine --run" in hint and "Combine with the template" in hint
    assert "+ bcnz2 template fit" in state.run_title("c1")
    assert "template fit" not in state.run_title("p1")
    data = pq.read_table(io.BytesIO(state.export_bytes(state.combined_key("c1"), "parquet")))
    assert {"zphot_net", "zphot_tf", "chi2_tf"} <= set(data.column_names)
    assert data.num_rows == N_TRAIN
    combined = dz.load_run(at_home / "runs" / "c1").combined_predictions()
    assert len(combined) == N_TRAIN and combined.meta["METHOD"] == "deepz+templatefit"


# ---------------------------------------------------------------- Predict


def _photometric(tmp_path: Path) -> bytes:
    """40 new galaxies without spec-z, with sky positions, as FITS bytes."""
    cat = dz.simulate_catalog("paus-mock", 40, seed=9)
    rng = np.random.default_rng(3)
    extra = {"ra": rng.uniform(150.0, 150.5, 40), "dec": rng.uniform(2.0, 2.5, 40)}
    cat = dataclasses.replace(cat, zspec=None, exposures=None, extra=extra)
    return dz.write_catalog(cat, tmp_path / "photometric.fits").read_bytes()


def _predict(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Predict this catalogue").click().run()
    at.run()
    assert_clean(at)


def test_predict_with_the_combination_and_network_only(at_home, tmp_path, monkeypatch) -> None:
    from app import jobs, state

    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    at = run_page("predict.py", run="c1")
    at.file_uploader(key="pred_upload").upload("photometric.fits", _photometric(tmp_path))
    at.run()
    assert_clean(at)
    box = at.checkbox(key="pred_network_only")
    rate = state.combination_rate("c1", "bcnz2")  # the run's grid and set (~89 on z < 2)
    assert box.value is False and f"about {rate:,.0f} galaxies/s" in box.help
    assert "combined with the bcnz2 template fit" in _texts(at.caption)
    _predict(at)
    combined = state.prediction_jobs_list()[0]
    assert combined.spec["estimator"] == "combined" and combined.spec["templates"] == "bcnz2"
    assert combined.state == "finished" and combined.spec["rows"] == 40
    assert "Estimator: network + bcnz2 template fit." in _texts(at.caption)
    table = pq.read_table(combined.output)
    assert {"zphot_net", "zphot_tf", "ra", "dec"} <= set(table.column_names)
    at.checkbox(key="pred_network_only").check().run()
    assert "from the networks alone" in _texts(at.caption)
    _predict(at)
    network = state.prediction_jobs_list()[0]
    assert network.job_id != combined.job_id and network.spec["estimator"] == "network"
    assert network.spec["network_only"] is True and network.state == "finished"
    assert "zphot_net" not in pq.read_table(network.output).column_names
    assert "Estimator: network." in _texts(at.caption)
    listed = at.dataframe[0].value
    assert set(listed["estimator"]) == {"network", "network + bcnz2 template fit"}
    # a plain run offers no choice
    at.selectbox(key="pred_run").select("p1").run()
    assert_clean(at)
    assert not [c for c in at.checkbox if c.key == "pred_network_only"]
    assert "not combined with a template fit" in _texts(at.caption)


def _without_band(data: bytes, band: str, tmp_path: Path) -> dict[str, bytes]:
    """The FITS catalogue ``data`` without band ``band``'s columns ('absent') and with them NaN in
    every row ('nan'), as FITS bytes."""
    table = Table.read(io.BytesIO(data), hdu=1)
    nan = table.copy()
    nan[f"flux_{band}"] = np.nan
    table.remove_columns([f"flux_{band}", f"flux_error_{band}"])
    out = {}
    for name, t in {"absent": table, "nan": nan}.items():
        t.write(tmp_path / f"{band}-{name}.fits")
        out[name] = (tmp_path / f"{band}-{name}.fits").read_bytes()
    return out


def _uploaded(name: str, data: bytes, run: str = "c1") -> AppTest:
    at = run_page("predict.py", run=run)
    at.file_uploader(key="pred_upload").upload(f"{name}.fits", data)
    at.run()
    assert_clean(at)
    return at


def test_the_combination_predicts_a_catalogue_without_a_band_or_its_values(
    at_home, tmp_path, monkeypatch
) -> None:
    """Fourteenth session: an upload with band NB455 NaN in every row was refused ('remove band
    ... or fill it in'), for any run, while `deepz predict` imputes it. Now, as a band the
    catalogue lacks, it is imputed by the networks (flagged BAND_MISSING) and left out of the
    template fit, with the same predictions; without the reference band, or its values, the
    run cannot predict it (one warning, the button disabled)."""
    from app import jobs, state

    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    photometric = _photometric(tmp_path)
    tables = {}
    for name, data in _without_band(photometric, "NB455", tmp_path).items():
        at = _uploaded(name, data)
        assert "NB455" in _texts(at.info) and "imputed for every galaxy" in _texts(at.info)
        assert "combined with the bcnz2 template fit" in _texts(at.caption)
        _predict(at)
        job = state.prediction_jobs_list()[0]
        assert job.spec["estimator"] == "combined" and job.state == "finished"
        assert job.spec["rows"] == 40 and job.spec["flags"].get("BAND_MISSING") == 40
        tables[name] = pq.read_table(job.output)
        if name == "nan":  # a plain run predicts it too
            plain = _uploaded(name, data, run="p1")
            assert "band NB455 has no values in this catalogue" in _texts(plain.info)
    for column in ("zphot", "zphot_tf", "chi2_tf", "flag"):
        assert tables["nan"].column(column).equals(tables["absent"].column(column)), column
    for name, data in _without_band(photometric, "subaru_i", tmp_path).items():
        at = _uploaded(name, data)
        assert "This run cannot predict" in _texts(at.warning), name
        assert "subaru_i" in _texts(at.warning)
        assert next(b for b in at.button if b.label == "Predict this catalogue").disabled


# ---------------------------------------------------------------- Galaxy explorer


def test_the_explorer_shows_the_chosen_estimator(at_home) -> None:
    run = dz.load_run(at_home / "runs" / "c1")
    net, comb = run.predictions(), run.combined_predictions()
    differ = np.flatnonzero(np.abs(net["zphot"] - comb["zphot"]) > 0.05)
    ref_id = int(comb["ref_id"][differ[0]])
    at = run_page("explorer.py", run="c1", galaxy=str(ref_id))
    assert_clean(at)
    choice = at.radio(key="explorer_estimator")
    assert choice.value == "combined"
    mode = next(m.value for m in at.metric if m.label.startswith("z_p (mode"))
    assert float(mode) == pytest.approx(float(comb["zphot"][differ[0]]), abs=1e-4)
    assert "Each estimator alone: network z_p" in _texts(at.caption)
    assert f"p(z) of {ref_id}" in _titles(at) and f"SED of {ref_id}" in _titles(at)
    assert "combined p(z) (network × template fit)" in _trace_names(at, f"p(z) of {ref_id}")
    choice.set_value("network").run()
    assert_clean(at)
    mode = next(m.value for m in at.metric if m.label.startswith("z_p (mode"))
    assert float(mode) == pytest.approx(float(net["zphot"][differ[0]]), abs=1e-4)
    names = _trace_names(at, f"p(z) of {ref_id}")
    assert "ensemble p(z)" in names and "members (dotted: trained on this galaxy)" in names
    assert at.query_params["run"] == "c1"  # the same run, another estimator
    plain = run_page("explorer.py", run="p1", galaxy=str(ref_id))
    assert_clean(plain)
    assert not [r for r in plain.radio if r.key == "explorer_estimator"]
    assert plain.selectbox(key="explorer_run").value == "p1"


def test_a_broad_band_run_counts_the_combination_s_outliers_by_its_profile(
    home, tmp_path, monkeypatch
) -> None:
    """Eleventh session: a broad-band (LSST-like) combined run's Results table counted outliers
    at E20's strict 0.02 'whatever the profile' beside a page that counts them at 0.15: 55%
    'outliers' for a template fit at σ68 0.04. Now the profile's threshold, recounted from the
    combined predictions (at 0.02 the recount equals the stored summary), and no catastrophic
    columns when they are the outliers again."""
    import shutil

    from deepz_core.hybrid.runs import summary_outliers_at

    shutil.copytree(home / "runs" / "c1", tmp_path / "runs" / "c1")
    run = dz.load_run(tmp_path / "runs" / "c1")
    stored = run.combination_summary()
    again = summary_outliers_at(stored, run.combined_predictions(), 0.02)
    for name in ("network", "templatefit", "combined"):
        assert again["overall"][name]["outliers"] == pytest.approx(
            stored["overall"][name]["outliers"]
        )
        for a, b in zip(again["per_magnitude"], stored["per_magnitude"], strict=True):
            assert a[name]["outliers"] == pytest.approx(b[name]["outliers"], nan_ok=True)
    broad = run.combination_summary(0.15)
    assert broad["outlier_threshold"] == 0.15
    assert broad["overall"]["combined"]["outliers"] == pytest.approx(
        stored["overall"]["combined"]["catastrophic"]
    )
    RunDir(tmp_path / "runs" / "c1").update_card(profile="broad-band")
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    st.cache_data.clear()
    at = run_page("results.py", runs="c1")
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "σ68 combined" in d.value.columns)
    assert not any(c.startswith("catastrophic") for c in table.columns)
    assert table["outliers combined"][0] == pytest.approx(broad["overall"]["combined"]["outliers"])
    assert "broad-band profile's |Δz|/(1+z_s) > 0.15" in _texts(at.caption)
    assert "whatever the profile" not in _texts(at.caption)
