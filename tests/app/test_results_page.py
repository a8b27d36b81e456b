"""AppTests of the analysis pages (results, explorer, dropping, cuts) on one tiny finished run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from deepz_core.catalog.io import write_catalog
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.rundir import RunDir
from deepz_core.sed.bands import band_set
from deepz_core.simulate import simulate
from tests.app.apptest import assert_clean, run_page
from tests.synthetic import SDSS_ID, with_survey_ids

ANALYSIS_PAGES = ("results.py", "explorer.py", "dropping.py", "cuts.py")
TINY_MODEL = {
    "width": 16,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "photoz_layers": 2,
    "photoz_first_width": 16,
}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """DEEPZ_HOME with one finished run 'r1' trained for 2 epochs on a 300-galaxy mock whose ids
    are 19-digit survey ids with gaps."""
    root = tmp_path_factory.mktemp("deepz_home")
    cat = with_survey_ids(simulate("paus-mock", 300, band_set("paus_cosmos"), 1))
    path = write_catalog(cat, root / "mock.fits")
    run = create_run(
        root / "runs" / "r1",
        run_config(
            catalog=str(path),
            pretrain="none",
            preset_name="quick",
            model=TINY_MODEL,
            train={"schedule": ((2, 1e-3),), "folds": 2, "batch_size": 100},
        ),
    )
    execute_run(run)
    assert run.status()["state"] == "finished"
    return root


@pytest.fixture
def at_home(home, monkeypatch) -> Path:
    monkeypatch.setenv("DEEPZ_HOME", str(home))
    return home


def _galaxy(home: Path, nth: int = 3) -> int:
    from deepz_core.evaluation.run_products import read_predictions

    pred = read_predictions(home / "runs" / "r1" / "predictions.fits")
    return int(pred.ref_id[pred.scored][nth])


@pytest.mark.parametrize("page", ANALYSIS_PAGES)
def test_empty_state_without_runs(page, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page(page)
    assert_clean(at)
    assert any("No finished run yet" in i.value for i in at.info)


@pytest.mark.parametrize("page", ["dropping.py"])
def test_network_pages_point_a_template_fit_elsewhere(page, tmp_path, monkeypatch) -> None:
    run = RunDir(tmp_path / "runs" / "tfit-1").create({"kind": "templatefit", "catalog": "c"})
    run.set_status("finished")
    run.file("predictions.fits").write_bytes(b"")  # only its presence counts for the listing
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page(page)
    assert_clean(at)
    assert any("needs a finished DEEPZ network run" in i.value for i in at.info)


def test_results_page(at_home) -> None:
    at = run_page("results.py", runs="r1")
    assert_clean(at)
    assert at.multiselect[0].value == ["r1"]
    table = at.dataframe[0].value
    assert table["run"][0].startswith("r1 — mock.fits") and table["scored galaxies"][0] > 200
    assert table["spec-z without a p(z)"][0] == 0  # shown beside the scored ones (failures)
    assert len(at.get("plotly_chart")) == 4  # D1, Fig. 2, Fig. 8, Fig. 3
    # the run is calibrated (beyond E20): the PIT before and after, and the 68% coverage table
    assert any("Calibrated p(z)" in h.value for h in at.subheader)
    coverage = at.dataframe[1].value
    assert list(coverage["iAB"])[0] == "all" and {"before", "after", "±"} <= set(coverage.columns)
    # the binomial noise of each share: smaller for more galaxies
    assert coverage["±"][0] == pytest.approx(np.sqrt(0.6827 * 0.3173 / coverage["galaxies"][0]))
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[:2] == ["r1: FITS", "r1: Parquet"]
    assert at.query_params["runs"] == "r1"


def test_results_plots_name_runs_as_the_tables_do(at_home) -> None:
    """First-use review: plot titles and legends showed run ids while the tables showed run
    names; both use ``state.run_title``."""
    import json

    at = run_page("results.py", runs="r1")
    title = at.dataframe[0].value["run"][0]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert specs[0]["layout"]["title"]["text"] == title  # Fig. D1
    names = {t.get("name") for spec in specs[1:] for t in spec["data"]}
    assert any(str(n).startswith(f"{title}: calibrated") for n in names)  # the PIT legend
    assert not any(str(n).startswith("r1:") or n == "r1" for n in names)
    assert list(at.dataframe[1].value["run"])[0] == title  # the coverage table


def test_explorer_shows_chosen_galaxy_with_a_19_digit_id(at_home) -> None:
    ref_id = _galaxy(at_home)
    assert ref_id > 2**53  # beyond a JavaScript number: must travel as text
    at = run_page("explorer.py", galaxy=str(ref_id))
    assert_clean(at)
    assert at.text_input(key="explorer_ref_id").value == str(ref_id)
    assert at.metric[0].label == "z_s (spec-z)"
    assert len(at.get("plotly_chart")) == 3  # p(z), SED, z_p-z_s scatter
    assert int(at.dataframe[0].value["ref_id"].iloc[0]) > SDSS_ID  # text, exact
    other = _galaxy(at_home, 7)
    at.text_input(key="explorer_ref_id").input(str(other)).run()
    assert_clean(at)
    assert at.query_params["galaxy"] == str(other)
    assert f"p(z) of {other}" in [_title(c) for c in at.get("plotly_chart")]


def test_explorer_steps_by_row_over_gapped_ids(at_home) -> None:
    """The ids have gaps (+3, +30, +7, ...): the stepper moves to the next row, never id + 1."""
    from deepz_core.evaluation.run_products import read_predictions

    ids = read_predictions(at_home / "runs" / "r1" / "predictions.fits").ref_id
    at = run_page("explorer.py", galaxy=str(ids[10]))
    assert_clean(at)
    assert any(c.value.startswith("row 11 of 300") for c in at.caption)
    at.button(key="explorer_ref_id_next").click().run()
    assert_clean(at)
    assert at.query_params["galaxy"] == str(ids[11]) and ids[11] - ids[10] > 1
    at.button(key="explorer_ref_id_prev").click().run()
    at.button(key="explorer_ref_id_prev").click().run()
    assert_clean(at)
    assert at.query_params["galaxy"] == str(ids[9])
    assert at.text_input(key="explorer_ref_id").value == str(ids[9])
    at.text_input(key="explorer_ref_id").input("12x").run()
    assert_clean(at)
    assert any("not a galaxy id" in w.value for w in at.warning)


def test_explorer_galaxy_without_spec_z(at_home) -> None:
    from deepz_core.evaluation.run_products import read_predictions

    pred = read_predictions(at_home / "runs" / "r1" / "predictions.fits")
    blind = int(pred.ref_id[~np.isfinite(pred.zspec)][0])
    at = run_page("explorer.py", galaxy=str(blind))
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["z_s (spec-z)"] == "—" and metrics["Δz/(1+z_s)"] == "—"
    assert "None" not in metrics.values()


def test_explorer_unknown_galaxy_warns(at_home) -> None:
    at = run_page("explorer.py", galaxy="999999")
    assert_clean(at)
    assert any("not in this run" in w.value for w in at.warning)


def test_a_galaxy_chosen_on_another_page_is_no_warning(at_home) -> None:
    """Eleventh session: a galaxy chosen in the explorer (the training catalogue) made the
    Predict page's Galaxies tab of another catalogue open with "Galaxy ... is not in this run"
    though the user asked for nothing there. Only a galaxy asked for with this chooser (or in
    the link of a fresh session) is news."""
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "explorer.py"))
    at.query_params["galaxy"] = "999999"
    at.session_state["galaxy_chooser"] = "pred_ref_id"  # chosen on the Predict page
    at.run(timeout=120)
    assert_clean(at)
    assert not any("not in this run" in w.value for w in at.warning)
    assert int(at.text_input(key="explorer_ref_id").value) == _galaxy(at_home, 0)


def test_dropping_table_and_selection(at_home) -> None:
    at = run_page("dropping.py", galaxy=str(_galaxy(at_home)))
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table.columns) == ["band", "exposure slot", "mode", "shift of the mode [Δz]"]
    assert len(table) > 10 and np.all(np.diff(np.abs(table["shift of the mode [Δz]"])) <= 0)
    at.number_input[0].set_value(10)  # the selection size (the galaxy is a text input)
    next(b for b in at.button if b.label.startswith("Compute the spread")).click().run()
    assert_clean(at)
    assert any(c.value.startswith("10 galaxies") for c in at.caption)
    assert len(at.get("plotly_chart")) == 3  # Fig. 7, spread histogram, indicator curves


def test_pages_see_the_galaxies_the_predictions_gave_no_pz(home, tmp_path, monkeypatch) -> None:
    """Review, ninth session: the dropping page drew a confident p(z) for a galaxy the screen
    gave none only once screened against the training population (far ratios in most bands:
    too few bands); the pages' features were screened by the photometry alone."""
    import shutil

    from app import state
    from deepz_core.catalog.io import read_catalog

    shutil.copytree(home / "runs" / "r1", tmp_path / "runs" / "r2")
    config = json.loads((tmp_path / "runs" / "r2" / "config.json").read_text())
    cat = read_catalog(config["catalog"])
    flux = cat.flux.copy()
    flux[0, : 3 * len(cat.bands) // 4] *= 1e4  # far colours, yet every value plausible
    config["catalog"] = str(
        write_catalog(dataclasses.replace(cat, flux=flux, exposures=None), tmp_path / "c.fits")
    )
    config.pop("exposures", None)
    (tmp_path / "runs" / "r2" / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    st.cache_data.clear()
    _, _, features = state.model_inputs(state.run_key("r2"))
    row = int(np.flatnonzero(features.ref_id == cat.ref_id[0])[0])
    assert not features.predictable[row] and features.predictable[row + 1 :].any()


def _completeness(at: AppTest) -> float:
    return float(next(m.value for m in at.metric if m.label == "completeness").rstrip("%")) / 100


def test_cuts_slider_changes_numbers(at_home) -> None:
    at = run_page("cuts.py")
    assert_clean(at)
    assert _completeness(at) == pytest.approx(0.5, abs=0.005)
    assert len(at.get("download_button")) == 2
    at.slider(key="cuts_completeness").set_value(0.8).run()
    assert_clean(at)
    assert _completeness(at) == pytest.approx(0.8, abs=0.005)
    sigma_80 = next(m.value for m in at.metric if m.label.startswith("σ68"))
    at.slider(key="cuts_window_narrow-band").set_value(0.02).run()
    at.radio(key="cuts_how").set_value("ODDS threshold").run()
    at.slider(key="cuts_threshold").set_value(0.0).run()
    assert_clean(at)
    assert _completeness(at) == 1.0
    assert next(m.value for m in at.metric if m.label.startswith("σ68")) != sigma_80


def test_cuts_select_and_export_a_catalogue_without_spec_z(home, tmp_path, monkeypatch) -> None:
    from astropy.table import Table

    run = RunDir(tmp_path / "runs" / "blind")
    run.path.mkdir(parents=True)
    for name in ("config.json", "status.json", "model.json", "model.safetensors"):
        run.file(name).write_bytes((home / "runs" / "r1" / name).read_bytes())
    t = Table.read(home / "runs" / "r1" / "predictions.fits")
    t["zspec"], t["pit"], t["out_of_fold"] = np.nan, np.nan, False  # a photometric sample
    t.write(run.file("predictions.fits"))
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page("cuts.py")
    assert_clean(at)
    assert at.radio(key="cuts_how").options == ["ODDS threshold"]
    assert any("No scored galaxies" in i.value for i in at.info)
    at.slider(key="cuts_threshold").set_value(0.0).run()
    assert_clean(at)
    assert next(m.value for m in at.metric if m.label.startswith("selected")) == f"{len(t):,}"
    assert len(at.get("download_button")) == 2


def test_results_page_shows_an_experiments_report(tmp_path, monkeypatch) -> None:
    """Reports under $DEEPZ_HOME/experiments open on the Results page: targets, text, figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = tmp_path / "experiments" / "quick"
    (folder / "figures").mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(folder / "figures" / "fig2.png")
    plt.close(fig)
    (folder / "report.md").write_text(
        "# deepz experiments\n\n## Fig. 2\n\n![](figures/fig2.png)\n\nend"
    )
    targets = [
        {"target": "a", "met": True},
        {"target": "b", "met": False},
        {"target": "c", "measured": "not measured yet", "met": False},
    ]
    (folder / "results.json").write_text(json.dumps({"targets": targets}))
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page("results.py")
    assert_clean(at)
    assert [m.value for m in at.metric if m.label == "Targets met"] == ["1 / 3"]
    assert any("1 of 3 targets not measured yet" in c.value for c in at.caption)
    assert any("Fig. 2" in m.value for m in at.markdown)
    assert len(at.get("image")) == 1


def _title(chart) -> str:
    return json.loads(chart.proto.spec)["layout"]["title"]["text"]


def _copy_run(home: Path, root: Path, name: str, card: dict | None = None, **columns) -> RunDir:
    """A copy of run r1 under ``root``/runs/``name`` with predictions columns replaced."""
    from astropy.table import Table

    run = RunDir(root / "runs" / name)
    run.path.mkdir(parents=True)
    for f in ("config.json", "status.json", "model.json", "model.safetensors", "splits.npz"):
        run.file(f).write_bytes((home / "runs" / "r1" / f).read_bytes())
    t = Table.read(home / "runs" / "r1" / "predictions.fits")
    for col, values in columns.items():
        t[col] = values(t[col]) if callable(values) else values
    t.write(run.file("predictions.fits"))
    if card:
        run.update_card(**card)
    return run


def test_sdss_like_magnitudes_and_a_broad_band_profile(home, tmp_path, monkeypatch) -> None:
    """Magnitudes 12.9-18.8 (SDSS): every scored galaxy falls in a magnitude bin (bins follow the
    data), and a broad-band run is judged by outliers > 0.15 with no PAUS target anywhere."""
    _copy_run(
        home,
        tmp_path,
        "sdss",
        {"profile": {"name": "broad-band", "outlier": 0.15, "odds_window": 0.1, "target": None}},
        mag=lambda m: np.asarray(m) - 5.6,
    )
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page("results.py", runs="sdss")
    assert_clean(at)
    table = at.dataframe[0].value
    assert "outliers (|Δz|/(1+z) > 0.15)" in table.columns
    assert not any(c.startswith("strict") or c.startswith("catastrophic") for c in table.columns)
    scored = int(table["scored galaxies"][0])
    assert any(
        "sdss" in c.value and f": {scored:,} of {scored:,}" in c.value for c in at.caption
    )  # the run named as in the tables (run_title)
    assert "Survey profile: broad-band" in [p.proto.popover.label for p in at.get("popover")]
    at = run_page("cuts.py", run="sdss")
    assert_clean(at)
    window = at.slider(key="cuts_window_broad-band")
    assert window.value == pytest.approx(0.1) and window.max >= 0.4
    assert not any("target" in c.value for c in at.caption)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert not any(t.get("name", "").startswith("target") for t in fig["data"])
    assert "0.15" in fig["layout"]["yaxis2"]["title"]["text"]


def test_a_narrow_band_run_shows_the_paus_target(at_home) -> None:
    at = run_page("cuts.py", run="r1")
    assert_clean(at)
    assert any("target 0.0035(1+z) of the narrow-band profile" in c.value for c in at.caption)
    assert at.slider(key="cuts_window_narrow-band").value == pytest.approx(0.003)


def test_profile_editor_saves_a_custom_profile(home, tmp_path, monkeypatch) -> None:
    _copy_run(home, tmp_path, "r2")
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page("results.py", runs="r2")
    at.radio(key="results_profile_name").set_value("custom").run()
    at.number_input(key="results_profile_out_custom").set_value(0.05).run()
    next(b for b in at.button if b.label == "Use for this run").click().run()
    assert_clean(at)
    assert RunDir(tmp_path / "runs" / "r2").card()["profile"]["outlier"] == 0.05
    assert "strict outliers (|Δz|/(1+z) > 0.05)" in at.dataframe[0].value.columns


def test_cuts_selecting_nothing_says_so_and_names_files(at_home) -> None:
    at = run_page("cuts.py", run="r1")
    assert any("Files named `r1_odds0.003-ge" in c.value for c in at.caption)
    at.radio(key="cuts_how").set_value("ODDS threshold").run()
    at.slider(key="cuts_threshold").set_value(1.0).run()
    assert_clean(at)
    assert any("No galaxy has ODDS ≥ 1" in w.value for w in at.warning)
    assert not any(m.value == "nan" for m in at.metric)
    assert all(b.proto.disabled for b in at.get("download_button"))


def test_results_warns_about_runs_on_different_catalogues(home, tmp_path, monkeypatch) -> None:
    _copy_run(home, tmp_path, "a", {"name": "first try"})
    other = _copy_run(home, tmp_path, "b")
    config = other.config() | {"catalog": str(tmp_path / "another.fits")}
    other.file("config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page("results.py", runs="a,b")
    assert_clean(at)
    assert any("different catalogues" in w.value for w in at.warning)
    assert at.dataframe[0].value["run"][0] == "first try — mock.fits, quick (a)"


def test_template_fit_run_in_the_explorer(home, tmp_path, monkeypatch) -> None:
    """A template fit shows its p(z), chi2(z) and the best-fit model over the SED; a run the
    explorer cannot show is named, not silently swapped."""
    from deepz_core.catalog.io import read_catalog
    from deepz_core.jobs.templatefit_run import create_templatefit_run, execute_templatefit_run

    cat = read_catalog(home / "mock.fits")
    small = write_catalog(cat.select(np.arange(30)), tmp_path / "small.fits")
    run = create_templatefit_run(
        tmp_path / "runs" / "tfit-1", str(small), device="cpu", calibrate=False
    )
    execute_templatefit_run(run)
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = run_page("explorer.py", run="tfit-1", galaxy=str(cat.ref_id[2]))
    assert_clean(at)
    titles = [_title(c) for c in at.get("plotly_chart")]
    assert (
        "χ²(z) of the template fit" in titles
        and f"SED of {cat.ref_id[2]} and the best-fit model" in titles
    )
    sed = json.loads(at.get("plotly_chart")[2].proto.spec)
    assert any(t.get("name", "").startswith("best fit at z") for t in sed["data"])
    at = run_page("dropping.py", run="tfit-1")
    assert_clean(at)
    assert any("templatefit run, which this page cannot show" in w.value for w in at.warning)


def test_results_page_shows_a_heldout_calibration_stage(home, tmp_path, monkeypatch) -> None:
    """A run calibrated again on held-out spec-z galaxies (deepz calibrate): the Results page
    names the catalogue and shows their coverage per half magnitude before and after."""
    import shutil

    import deepz_core as dz

    copy = Path(shutil.copytree(home, tmp_path / "home"))
    heldout = write_catalog(
        simulate("paus-mock", 300, band_set("paus_cosmos"), 2), tmp_path / "heldout.fits"
    )
    dz.load_run(copy / "runs" / "r1").calibrate_on(str(heldout))
    monkeypatch.setenv("DEEPZ_HOME", str(copy))
    at = run_page("results.py", runs="r1")
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert "held-out" in text and "heldout.fits" in text
    stage = at.dataframe[2].value
    assert {"iAB", "galaxies", "before", "after", "±"} <= set(stage.columns)
    assert stage["galaxies"].sum() >= 200
    captions = " ".join(c.value for c in at.caption)
    assert "1 magnitude bin of ~" in captions and "larger held-out catalogue" in captions


def test_a_heldout_calibration_started_from_the_app(home, tmp_path, monkeypatch) -> None:
    """app.jobs.start_heldout_calibration runs `deepz calibrate` in its own process: the run gets
    the stage; a catalogue with too few held-out spec-z galaxies fails with the command's one
    error line, which the Results page shows, with the form to try another."""
    import shutil
    import time

    from app import jobs

    copy = Path(shutil.copytree(home, tmp_path / "home"))
    run = RunDir(copy / "runs" / "r1")
    heldout = write_catalog(
        simulate("paus-mock", 300, band_set("paus_cosmos"), 3), tmp_path / "heldout.fits"
    )
    few = write_catalog(
        simulate("paus-mock", 60, band_set("paus_cosmos"), 4), tmp_path / "few.fits"
    )

    def finished(path: Path, name: str) -> dict:
        jobs.start_heldout_calibration(run.path, str(path), name)
        for _ in range(600):
            job = jobs.heldout_job(run)
            if job["state"] != "running":
                return job
            time.sleep(0.2)
        raise AssertionError("the calibration did not finish in 2 minutes")

    assert jobs.heldout_job(run) == {"state": "none"}
    job = finished(few, "few.fits")
    assert job["state"] == "failed" and "need >= 200" in job["error"]
    monkeypatch.setenv("DEEPZ_HOME", str(copy))
    at = run_page("results.py", runs="r1")
    assert not at.exception
    assert [e.value for e in at.error] == [f"The calibration on few.fits failed: {job['error']}"]
    assert any(b.label == "Calibrate on it" for b in at.button)
    job = finished(heldout, "heldout.fits")
    assert job["state"] == "finished", job
    cal = json.loads(run.file("calibration.json").read_text())
    assert cal["heldout"] is not None and cal["summary"]["heldout"]["n"] >= 200


def test_one_junk_magnitude_leaves_the_sliders_on_the_data(home, tmp_path, monkeypatch) -> None:
    """Eleventh session: one galaxy with a near-zero reference flux (1e-6 nJy: m = 46.4) made
    every magnitude slider (explorer, cuts, dropping) run to 46.4, the galaxies squeezed into its
    first quarter. The sliders now follow the data; at their ends they set no limit, so that
    galaxy stays in the explorer's table and the cuts' selection."""
    from astropy.table import Table

    from deepz_core.pz.metrics import data_mag_range

    run = RunDir(tmp_path / "runs" / "junk")
    run.path.mkdir(parents=True)
    for name in ("config.json", "status.json", "model.json", "model.safetensors", "splits.npz"):
        run.file(name).write_bytes((home / "runs" / "r1" / name).read_bytes())
    t = Table.read(home / "runs" / "r1" / "predictions.fits")
    t["mag"][0] = 46.4
    t.write(run.file("predictions.fits"))
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    assert data_mag_range(np.asarray(t["mag"]))[1] < 30.0
    assert data_mag_range([20.04, 20.06]) == (20.0, 20.1) and data_mag_range([np.nan]) is None
    explorer = run_page("explorer.py")
    assert_clean(explorer)
    (mag,) = [s for s in explorer.slider if s.label == "Magnitude range [AB mag]"]
    assert mag.max < 30.0 and tuple(mag.value) == (mag.min, mag.max)
    assert any(f"{len(t):,} galaxies match" in c.value for c in explorer.caption)
    cuts = run_page("cuts.py")
    assert_clean(cuts)
    assert cuts.slider(key="cuts_mag").max < 30.0
