"""AppTests of the analysis pages (results, explorer, dropping, cuts) on one tiny finished run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from deepz_core.catalog.io import write_catalog
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.rundir import RunDir
from deepz_core.sed.bands import band_set
from deepz_core.simulate import simulate

PAGES = Path(__file__).resolve().parents[2] / "pages"
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
    """DEEPZ_HOME with one finished run 'r1' trained for 2 epochs on a 300-galaxy mock."""
    root = tmp_path_factory.mktemp("deepz_home")
    cat = simulate("paus-mock", 300, band_set("paus_cosmos"), 1)
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


def _app(page: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _galaxy(home: Path) -> int:
    from deepz_core.evaluation.run_products import read_predictions

    pred = read_predictions(home / "runs" / "r1" / "predictions.fits")
    return int(pred.ref_id[pred.scored][3])


@pytest.mark.parametrize("page", ANALYSIS_PAGES)
def test_empty_state_without_runs(page, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = _app(page)
    _ok(at)
    assert any("No finished run yet" in i.value for i in at.info)


@pytest.mark.parametrize("page", ["explorer.py", "dropping.py"])
def test_network_pages_point_a_template_fit_elsewhere(page, tmp_path, monkeypatch) -> None:
    run = RunDir(tmp_path / "runs" / "tfit-1").create({"kind": "templatefit", "catalog": "c"})
    run.set_status("finished")
    run.file("predictions.fits").write_bytes(b"")  # only its presence counts for the listing
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    at = _app(page)
    _ok(at)
    assert any("needs a finished DEEPZ network run" in i.value for i in at.info)


def test_results_page(at_home) -> None:
    at = _app("results.py", runs="r1")
    _ok(at)
    assert at.multiselect[0].value == ["r1"]
    table = at.dataframe[0].value
    assert list(table["run"]) == ["r1"] and table["scored galaxies"][0] > 200
    assert len(at.get("plotly_chart")) == 4  # D1, Fig. 2, Fig. 8, Fig. 3
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["r1: FITS", "r1: Parquet"]
    assert at.query_params["runs"] == "r1"


def test_explorer_shows_chosen_galaxy(at_home) -> None:
    ref_id = _galaxy(at_home)
    at = _app("explorer.py", galaxy=str(ref_id))
    _ok(at)
    assert at.number_input(key="explorer_ref_id").value == ref_id
    assert at.metric[0].label == "z_s (spec-z)"
    assert len(at.get("plotly_chart")) == 3  # p(z), SED, z_p-z_s scatter
    assert at.dataframe[0].value["ref_id"].iloc[0] > 0
    at.number_input(key="explorer_ref_id").set_value(ref_id + 1).run()
    _ok(at)
    assert at.query_params["galaxy"] == str(ref_id + 1)


def test_explorer_unknown_galaxy_warns(at_home) -> None:
    at = _app("explorer.py", galaxy="999999")
    _ok(at)
    assert any("not in this run" in w.value for w in at.warning)


def test_dropping_table_and_selection(at_home) -> None:
    at = _app("dropping.py", galaxy=str(_galaxy(at_home)))
    _ok(at)
    table = at.dataframe[0].value
    assert list(table.columns) == ["band", "exposure slot", "mode", "shift of the mode [Δz]"]
    assert len(table) > 10 and np.all(np.diff(np.abs(table["shift of the mode [Δz]"])) <= 0)
    at.number_input[1].set_value(10)  # the selection size (the first input is the galaxy)
    at.button[0].click().run()
    _ok(at)
    assert any(c.value.startswith("10 galaxies") for c in at.caption)
    assert len(at.get("plotly_chart")) == 3  # Fig. 7, spread histogram, indicator curves


def _completeness(at: AppTest) -> float:
    return float(next(m.value for m in at.metric if m.label == "completeness").rstrip("%")) / 100


def test_cuts_slider_changes_numbers(at_home) -> None:
    at = _app("cuts.py")
    _ok(at)
    assert _completeness(at) == pytest.approx(0.5, abs=0.005)
    assert len(at.get("download_button")) == 2
    at.slider(key="cuts_completeness").set_value(0.8).run()
    _ok(at)
    assert _completeness(at) == pytest.approx(0.8, abs=0.005)
    sigma_80 = next(m.value for m in at.metric if m.label.startswith("σ68"))
    at.slider(key="cuts_window").set_value(0.02).run()
    at.radio(key="cuts_how").set_value("ODDS threshold").run()
    at.slider(key="cuts_threshold").set_value(0.0).run()
    _ok(at)
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
    at = _app("cuts.py")
    _ok(at)
    assert at.radio(key="cuts_how").options == ["ODDS threshold"]
    assert any("No scored galaxies" in i.value for i in at.info)
    at.slider(key="cuts_threshold").set_value(0.0).run()
    _ok(at)
    assert next(m.value for m in at.metric if m.label.startswith("selected")) == f"{len(t):,}"
    assert len(at.get("download_button")) == 2


def test_results_page_shows_an_experiments_report(tmp_path, monkeypatch) -> None:
    """Reports under $DEEPZ_HOME/experiments open on the Results page: targets, text, figures."""
    import json

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
    at = _app("results.py")
    _ok(at)
    assert [m.value for m in at.metric if m.label == "Targets met"] == ["1 / 3"]
    assert any("1 of 3 targets not measured yet" in c.value for c in at.caption)
    assert any("Fig. 2" in m.value for m in at.markdown)
    assert len(at.get("image")) == 1
