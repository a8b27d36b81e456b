"""AppTest of the Train and Simulate pages: queue a tiny run, run the worker, follow it; cancel,
resume, interrupted runs; start a simulation job."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from deepz_core.cli import main as cli
from deepz_core.files import atomic_write_json
from deepz_core.jobs.status import run_state
from deepz_core.jobs.worker import run_queue, worker_pid
from deepz_core.rundir import RunDir, list_runs

TIMEOUT = 60
TINY_MODEL = {
    "width": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "photoz_layers": 1,
    "photoz_first_width": 0,
    "n_components": 3,
}
TINY_TRAIN = {"schedule": [[2, 0.001]], "batch_size": 50, "checkpoint_every": 1}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_catalog: Path) -> list[Path]:
    """An empty DEEPZ_HOME, the small mock as the demo, and no real worker process: the list
    returned records the runs folders a worker was asked for."""
    from app import jobs, state

    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(state, "demo_catalog_path", lambda: str(small_catalog))
    calls: list[Path] = []
    monkeypatch.setattr(jobs, "ensure_worker", lambda runs: calls.append(runs) or 12345)
    st.cache_resource.clear()
    return calls


def page(name: str) -> AppTest:
    at = AppTest.from_file(f"../../pages/{name}", default_timeout=TIMEOUT)
    at.run()
    return at


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def click(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click()
    at.run()


def queue_tiny_run(at: AppTest) -> RunDir:
    pre = next(s for s in at.selectbox if s.label == "Pretraining set")
    pre.select("none").run()  # 'auto' may block the button (bands without filter curves)
    at.number_input(key="folds_quick").set_value(2)
    at.text_area(key="model_json").input(json.dumps(TINY_MODEL))
    at.text_area(key="train_json").input(json.dumps(TINY_TRAIN))
    before = {r.run_id for r in list_runs(Path.cwd() / "runs")}
    click(at, "Queue training run")
    runs = [r for r in list_runs(Path.cwd() / "runs") if r.run_id not in before]
    assert len(runs) == 1, texts(at.error)
    return runs[0]


def test_train_page_empty_state_and_device(home: list[Path]) -> None:
    at = page("train.py")
    assert not at.exception and not at.error, texts(at.error)
    assert "No run yet" in texts(at.info)
    assert "Device here:" in texts(at.caption)


def test_queue_run_execute_and_show_results(home: list[Path]) -> None:
    at = page("train.py")
    run = queue_tiny_run(at)
    assert home and set(home) == {Path.cwd() / "runs"}  # a worker was asked for
    config = run.config()
    assert config["pretrain"] == "none" and config["train"]["folds"] == 2
    assert config["model"]["width"] == 16 and config["model"]["use_autoencoder"] is True
    assert at.query_params["run"] == run.run_id
    assert "Waiting in the queue (position 1)" in texts(at.info)
    assert run_queue(Path.cwd() / "runs", lambda m: None) == [run.run_id]
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    assert f"{run.run_id} — finished" in texts(at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    strict = "strict outliers > 0.02"  # the demo is narrow-band (PAUS-like)
    assert set(metrics) >= {"σ68", strict, "catastrophic (> 0.15)", "bias", "NMAD"}
    assert metrics[strict].endswith("%") and "galaxies scored" in metrics
    assert len(at.get("plotly_chart")) == 1  # loss curves
    warning = run.status()["summary"]["heldout"].get("warning")  # 2 epochs: n(z) may win
    assert (warning is None) or warning in texts(at.warning), texts(at.warning)
    table = at.dataframe[0].value
    said = "finished (warning)" if warning else "finished"
    assert table.loc[0, "state"] == said and float(table.loc[0, "σ68"]) > 0
    assert table.loc[0, "catalogue"] == "Demo: PAUS-COSMOS-like mock"
    assert run.card()["profile"]["name"] == "narrow-band"
    status = run.status()
    status["summary"]["heldout"]["warning"] = "member(s) [1] predict no better than n(z)"
    atomic_write_json(run.file("status.json"), status)
    at.run()
    assert "member(s) [1] predict no better than n(z)" in texts(at.warning)
    assert at.dataframe[0].value.loc[0, "state"] == "finished (warning)"


def test_queue_shows_the_run_just_queued_and_names_it(home: list[Path]) -> None:
    """After 'Queue' the page shows the new run, not the one picked before (issue: the 'Show
    run' box overrode the new ?run=); the name and note reach the run's card and the lists."""
    at = page("train.py")
    first = queue_tiny_run(at)
    at.selectbox(key="show_run").select(first.run_id).run()
    at.text_input(key="run_name_net").input("second try")
    at.text_input(key="run_note_net").input("alpha 0.5")
    click(at, "Queue training run")
    assert not at.exception and not at.error, texts(at.error)
    runs = list_runs(Path.cwd() / "runs")
    second = next(r for r in runs if r.run_id != first.run_id)
    assert at.selectbox(key="show_run").value == second.run_id
    assert at.query_params["run"] == second.run_id
    assert second.card()["name"] == "second try" and second.card()["note"] == "alpha 0.5"
    assert "second try — queued" in texts(at.markdown) and "Note: alpha 0.5" in texts(at.caption)
    assert "second try" in list(at.dataframe[0].value["name"])


def test_the_form_keeps_its_choices_and_counts_as_training_does(home: list[Path]) -> None:
    """First-use review: after queueing a run the form was back at quick + auto; and it said
    '1,710 spec-z galaxies to train on' where training used 1,517 (the screen's rule). The
    choices are remembered (beyond the widgets' own state) and the count is the training's."""
    from app import state

    at = page("train.py")
    next(r for r in at.radio if r.label == "Preset").set_value("smoke").run()
    next(s for s in at.selectbox if s.label == "Pretraining set").select("none").run()
    assert at.session_state["train_preset__last"] == "smoke"
    assert at.session_state["train_pretrain__last"] == "none"
    at = AppTest.from_file(at._script_path, default_timeout=120)  # widgets' state gone, as
    for key in ("train_preset__last", "train_pretrain__last"):  # when the page is left
        at.session_state[key] = {"train_preset__last": "smoke"}.get(key, "none")
    at.run()
    assert next(r for r in at.radio if r.label == "Preset").value == "smoke"
    assert next(s for s in at.selectbox if s.label == "Pretraining set").value == "none"
    path = state.catalog_path(state.selected_catalog())
    ref = next(s for s in at.selectbox if s.label == "Reference band").value
    counts = state.label_counts(str(path), ref)
    assert f"{counts['labelled']:,} spec-z galaxies to train on" in texts(at.caption)


def test_own_band_names_and_no_exposures(home: list[Path], tmp_path: Path, monkeypatch) -> None:
    """A g/r/i catalogue without single exposures: the i band is proposed as the reference band
    and reaches the run; alpha is disabled; a catalogue without spec-z cannot be queued."""
    from app import state
    from deepz_core.catalog.io import write_catalog
    from tests.synthetic import synthetic_catalog

    own = write_catalog(
        synthetic_catalog(120, 0, bands=("G", "R", "I", "Z"), exposures=False),
        tmp_path / "own.fits",
    )
    monkeypatch.setattr(state, "demo_catalog_path", lambda: str(own))
    at = page("train.py")
    assert at.selectbox(key="ref_band").value == "I"
    assert at.slider[0].disabled
    assert "there is none for G, R, I, Z" in texts(at.warning)  # 'auto' cannot simulate them
    assert next(b for b in at.button if b.label == "Queue training run").disabled
    run = queue_tiny_run(at)
    assert run.config()["ref_band"] == "I"
    assert run_queue(Path.cwd() / "runs", lambda m: None) == [run.run_id]
    assert run.status()["state"] == "finished"
    blind = write_catalog(synthetic_catalog(50, 1, with_zspec=False), tmp_path / "blind.fits")
    monkeypatch.setattr(state, "demo_catalog_path", lambda: str(blind))
    st.cache_resource.clear()
    at = page("train.py")
    assert "no spec-z" in texts(at.warning)
    assert not [b for b in at.button if b.label == "Queue training run"]


def test_a_catalogue_with_a_band_without_values_is_not_offered_for_training(
    home: list[Path], tmp_path: Path, monkeypatch
) -> None:
    """Fourteenth session: the Predict page now keeps an upload with a band NaN in every row
    (predicting imputes it), and such a catalogue is listed here too; training would refuse it in
    the worker, so the page says so before anything is queued, for either method."""
    import dataclasses

    from app import state
    from deepz_core.catalog.io import write_catalog
    from tests.synthetic import synthetic_catalog

    cat = synthetic_catalog(60, 2, exposures=False)
    cat = dataclasses.replace(cat, flux=cat.flux.copy())
    cat.flux[:, 0] = np.nan
    path = write_catalog(cat, tmp_path / "gap.fits", measured_bands=False)
    monkeypatch.setattr(state, "demo_catalog_path", lambda: str(path))
    at = page("train.py")
    assert not at.exception and not at.error, texts(at.error)
    assert f"no values of band {cat.bands[0]}" in texts(at.warning)
    assert not [b for b in at.button if b.label.startswith("Queue")]
    next(r for r in at.radio if r.label == "Method").set_value("templatefit").run()
    assert f"no values of band {cat.bands[0]}" in texts(at.warning)
    assert not [b for b in at.button if b.label.startswith("Queue")]


def test_a_reload_finds_the_run_from_the_address_bar(home: list[Path]) -> None:
    run = queue_tiny_run(page("train.py"))
    run.set_status("running", phase="finetune", epoch=1, epochs=2, loss=1.5)
    at = AppTest.from_file("../../pages/train.py", default_timeout=TIMEOUT)
    at.query_params["run"] = run.run_id
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    assert at.selectbox(key="show_run").value == run.run_id
    assert at.get("progress")[0].proto.text.startswith("finetune epoch 1/2")


def test_cancel_then_resume(home: list[Path]) -> None:
    at = page("train.py")
    run = queue_tiny_run(at)
    click(at, "Cancel")
    assert run.status()["state"] == "cancelled" and run.file("cancel").exists()
    assert "cancelled before it started" in texts(at.info)
    woken = len(home)
    click(at, "Resume")
    assert run.status()["state"] == "queued" and not run.file("cancel").exists()
    assert len(home) > woken  # resuming wakes the worker


@pytest.mark.parametrize(
    ("message", "resumable"),
    [
        ("ConfigError: ref_band 'X' is not among the catalogue's bands", False),
        ("RuntimeError: CUDA out of memory", True),
    ],
)
def test_resume_is_offered_only_where_it_can_help(home: list[Path], message, resumable) -> None:
    at = page("train.py")
    run = queue_tiny_run(at)
    run.set_status("failed", message=message)
    at.run()
    assert message in texts(at.error)
    assert any(b.label == "Resume" for b in at.button) == resumable
    assert ("failed on its settings" in texts(at.caption)) != resumable


def test_interrupted_run_offers_resume(home: list[Path]) -> None:
    at = page("train.py")
    run = queue_tiny_run(at)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run.set_status("running", phase="finetune", epoch=1, epochs=2)
    atomic_write_json(run.file("status.json"), {**run.status(), "pid": gone.pid})
    at.run()
    assert "process training this run stopped" in texts(at.warning)
    click(at, "Resume")
    assert run.status()["state"] == "queued"


def test_bad_overrides_give_a_clear_message(home: list[Path]) -> None:
    at = page("train.py")
    at.text_area(key="model_json").input("{width: 16")
    at.run()
    assert not at.exception
    assert "Model overrides: not valid JSON" in texts(at.error)
    at.text_area(key="model_json").input('{"width": -3}')
    at.run()
    click(at, "Queue training run")
    assert "width" in texts(at.error) and not list_runs(Path.cwd() / "runs")


def test_simulate_page_starts_and_lists_a_job(
    home: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import jobs

    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    at = page("simulate.py")
    assert not at.exception and "No simulation yet" in texts(at.info)
    at.radio[0].set_value("paus-mock")
    at.run()
    at.number_input[0].set_value(30)
    at.run()
    click(at, "Start simulation")
    assert not at.exception and not at.error, texts(at.error)
    table = at.dataframe[0].value
    assert table.loc[0, "state"] == "finished" and table.loc[0, "galaxies"] == 30
    assert (Path.cwd() / "data" / "sims" / f"{table.loc[0, 'name']}.fits").exists()
    click(at, "Start simulation")  # same name again
    assert "already exists" in texts(at.error)
    at = page("train.py")
    assert any(str(table.loc[0, "name"]) in str(o) for o in at.selectbox[1].options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(home: list[Path]) -> None:
    at = page("train.py")
    at.selectbox(key="device").select("cuda")
    click(at, "Queue training run")
    assert "no CUDA GPU is visible here" in texts(at.error) and not list_runs(Path.cwd() / "runs")


@pytest.mark.slow
def test_jobs_start_a_real_worker_process(tmp_path: Path, small_catalog: Path) -> None:
    from app import jobs

    runs = tmp_path / "runs"
    train = {**TINY_TRAIN, "folds": 2, "device": "cpu"}
    run = jobs.queue_run(runs, str(small_catalog), "none", "quick", TINY_MODEL, train)
    assert jobs.ensure_worker(runs) > 0  # the same worker, not a second one
    deadline = time.time() + 240
    while run_state(run) in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert run.status()["state"] == "finished", (runs / "worker.log").read_text()
    while worker_pid(runs) is not None and time.time() < deadline:
        time.sleep(0.2)
    jobs.reap()
    log = (runs / "worker.log").read_text()
    assert log.count("started") == 1 and "queue empty after 1 run(s)" in log


def test_template_fit_form_queues_the_chosen_template_set(home: list[Path]) -> None:
    at = page("train.py")
    next(r for r in at.radio if r.label == "Method").set_value("templatefit").run()
    assert "Blanton" not in texts(at.caption)  # the default set's description
    at.selectbox(key="tfit_templates").select("kcorrect").run()
    assert "Blanton" in texts(at.caption)
    click(at, "Queue template fit")
    runs = list_runs(Path.cwd() / "runs")
    assert len(runs) == 1, texts(at.error)
    assert runs[0].config()["templatefit"]["template_set"] == "kcorrect"
    assert "(kcorrect templates)" in texts(at.caption)


def test_template_fit_run_kind_queues_runs_and_reaches_results(home: list[Path]) -> None:
    """The second run kind: queued from the Train page, executed by the same worker queue, then
    listed on the Results and Quality-cut pages (not on the network-only explorer)."""
    at = page("train.py")
    next(r for r in at.radio if r.label == "Method").set_value("templatefit").run()
    at.selectbox(key="tfit_device").select("cpu")
    click(at, "Queue template fit")
    runs = list_runs(Path.cwd() / "runs")
    assert len(runs) == 1, texts(at.error)
    run = runs[0]
    assert run.config()["kind"] == "templatefit" and run.run_id.startswith("tfit")
    assert run_queue(Path.cwd() / "runs", lambda m: None) == [run.run_id]
    assert run.status()["state"] == "finished", run.status()
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    assert f"{run.run_id} — finished" in texts(at.markdown)
    assert "template fit of" in texts(at.caption)
    from app import state

    assert state.finished_runs() == [run.run_id]
    assert state.finished_runs(("deepz",)) == []  # explorer/dropping need a network


# ---------------------------------------------------------------- issue 19: a bounded, fair queue


@pytest.mark.parametrize(
    ("key", "overrides", "says"),
    [
        ("train_json", {"repetitions": 500}, "repetitions"),  # 1,000 networks
        ("train_json", {"repetitions": 50}, "above the shared queue's limit of 20"),
        ("train_json", {"schedule": [[90000, 0.001]]}, "schedule (epochs) = 90,000"),
        ("model_json", {"width": 200000}, "width"),  # a 320 GB allocation
    ],
)
def test_overrides_beyond_the_forms_limits_are_refused_before_queueing(
    home: list[Path], key: str, overrides: dict, says: str
) -> None:
    at = page("train.py")
    next(s for s in at.selectbox if s.label == "Pretraining set").select("none").run()
    at.text_area(key=key).input(json.dumps(overrides))
    click(at, "Queue training run")
    assert says in texts(at.error)
    assert not list_runs(Path.cwd() / "runs") and not home  # nothing written, no worker woken


def test_another_browsers_run_is_read_only_until_confirmed(home: list[Path]) -> None:
    mine = page("train.py")
    run = queue_tiny_run(mine)
    cancel = next(b for b in mine.button if b.label == "Cancel")
    assert not cancel.disabled and "read-only here" not in texts(mine.caption)
    other = page("train.py")  # another browser: another token in its address
    assert other.query_params["owner"] != mine.query_params["owner"]
    assert "read-only here" in texts(other.caption)
    assert next(b for b in other.button if b.label == "Cancel").disabled
    other.checkbox(key=f"others_{run.run_id}").check().run()
    click(other, "Cancel")
    assert run.status()["state"] == "cancelled"


def test_a_reload_keeps_the_browsers_runs_its_own(home: list[Path]) -> None:
    mine = page("train.py")
    run = queue_tiny_run(mine)
    again = AppTest.from_file("../../pages/train.py", default_timeout=TIMEOUT)
    again.query_params["owner"] = mine.query_params["owner"]  # the same address, reloaded
    again.run()
    assert "read-only here" not in texts(again.caption)
    click(again, "Cancel")
    assert run.status()["state"] == "cancelled"


def test_a_broad_band_user_simulates_an_lsst_mock(
    home: list[Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Eleventh session: the Simulate page offered SPS sets and the PAUS-like mock only (the CLI
    also simulates 'lsst-deep'), and proposed the paus_cosmos bands for a user whose catalogue
    is ugrizy. Now the LSST-like mock is a kind, and the band set follows the catalogue."""
    from app import jobs, state
    from deepz_core.catalog.io import read_catalog, write_catalog
    from deepz_core.sed.bands import band_set
    from deepz_core.simulate import simulate

    monkeypatch.setattr(jobs, "_spawn", lambda args, log, env=None: cli.main(args))  # in-process
    lsst = write_catalog(simulate("lsst-deep", 30, seed=3), tmp_path / "lsst.fits")
    monkeypatch.setattr(state, "catalog_path", lambda choice=None: str(lsst))
    at = page("simulate.py")
    assert any(o.startswith("LSST-like deep ugrizy mock") for o in at.radio[0].options)
    assert at.selectbox(key="sim_bands_sps").value == "lsst"  # the catalogue's bands
    at.radio[0].set_value("lsst-deep")
    at.run()
    assert at.selectbox(key="sim_bands_lsst-deep").options == ["lsst"]
    at.number_input[0].set_value(40)
    at.run()
    click(at, "Start simulation")
    assert not at.exception and not at.error, texts(at.error)
    table = at.dataframe[0].value
    assert table.loc[0, "state"] == "finished" and table.loc[0, "kind"] == "lsst-deep"
    sim = read_catalog(Path.cwd() / "data" / "sims" / f"{table.loc[0, 'name']}.fits")
    assert sim.bands == band_set("lsst") and sim.n_galaxies == 40
