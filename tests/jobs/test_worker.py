"""The training-queue worker (order, failures, single-worker lock), run progress and sim jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.cli import main as cli
from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write_json
from deepz_core.jobs.simulation import list_simulations, sim_progress
from deepz_core.jobs.status import run_progress, run_state, training_curves
from deepz_core.jobs.training_run import create_run, run_config
from deepz_core.jobs.worker import LOCK_FILE, WorkerLock, queued_runs, run_queue, work, worker_pid
from deepz_core.rundir import RunDir
from deepz_core.sed.bands import band_set
from deepz_core.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = {
    "width": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "photoz_layers": 1,
    "photoz_first_width": 0,
    "n_components": 3,
}
TINY_TRAIN = {
    "schedule": ((2, 1e-3),),
    "folds": 2,
    "repetitions": 1,
    "batch_size": 50,
    "device": "cpu",
    "checkpoint_every": 1,
}


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cat") / "small.fits"
    write_catalog(simulate("paus-mock", 150, band_set("paus_cosmos"), 1), path)
    return path


def tiny_run(runs: Path, name: str, catalog: Path | str, queued_at: float | None = None) -> RunDir:
    run = create_run(
        runs / name, run_config(str(catalog), None, "none", "quick", None, TINY_MODEL, TINY_TRAIN)
    )
    if queued_at is not None:
        atomic_write_json(run.file("status.json"), {**run.status(), "updated": queued_at})
    return run


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    first, second = WorkerLock(tmp_path), WorkerLock(tmp_path)
    assert worker_pid(tmp_path) is None
    assert first.acquire()
    assert not second.acquire(retries=1, wait=0.01)
    assert worker_pid(tmp_path) == os.getpid()
    first.release()
    assert worker_pid(tmp_path) is None
    assert second.acquire(retries=0)
    second.release()


def test_stale_lock_of_a_dead_worker_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "started": 0}))
    assert worker_pid(tmp_path) is None
    lock = WorkerLock(tmp_path)
    assert lock.acquire(retries=0)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_second_worker_process_is_refused(tmp_path: Path, small_catalog: Path) -> None:
    code = (
        "import sys, time; from deepz_core.jobs.worker import WorkerLock; "
        "assert WorkerLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert worker_pid(tmp_path) == holder.pid
        tiny_run(tmp_path, "r1", small_catalog)
        messages: list[str] = []
        assert work(tmp_path, messages.append) == []  # exits without touching the queue
        assert "another worker" in messages[0]
        assert RunDir(tmp_path / "r1").status()["state"] == "queued"
    finally:
        holder.kill()
        holder.wait()
    assert worker_pid(tmp_path) is None  # the kernel dropped the dead holder's lock


def test_queue_runs_oldest_first_and_survives_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_catalog: Path
) -> None:
    from deepz_core.jobs import training_run as pipeline

    t = time.time()
    for name, when in (("c", t - 10), ("a", t - 30), ("b", t - 20)):
        tiny_run(tmp_path, name, small_catalog, queued_at=when)
    finished = tiny_run(tmp_path, "done", small_catalog)
    finished.set_status("finished")
    assert [r.run_id for r in queued_runs(tmp_path)] == ["a", "b", "c"]
    order: list[str] = []

    def fake_execute(run: RunDir) -> None:
        order.append(run.run_id)
        if run.run_id == "b":
            raise RuntimeError("boom")
        run.set_status("finished")

    monkeypatch.setattr(pipeline, "execute_run", fake_execute)
    assert work(tmp_path, lambda m: None) == ["a", "b", "c"]
    assert order == ["a", "b", "c"]
    assert run_state(RunDir(tmp_path / "b")) == "failed"
    assert "boom" in RunDir(tmp_path / "b").status()["message"]
    assert queued_runs(tmp_path) == [] and worker_pid(tmp_path) is None


def test_run_state_progress_and_curves(tmp_path: Path, small_catalog: Path) -> None:
    run = tiny_run(tmp_path, "r", small_catalog)
    assert run_progress(run) == (0.0, "setting up: reading the catalogue")
    run.set_status("running", phase="finetune", epoch=1, epochs=2)
    assert run_state(run) == "running"  # this process is alive
    assert run_progress(run) == (0.5, "finetune epoch 1/2")
    atomic_write_json(run.file("status.json"), {**run.status(), "pid": dead_pid()})
    assert run_state(run) == "interrupted"
    rows = [
        {"phase": "finetune", "epoch": 1, "loss": 2.0, "val_nll": [1.0, 3.0]},
        {"phase": "finetune", "epoch": 2, "loss": 1.5},
    ]
    curve = training_curves(rows)["finetune"]
    assert curve["epoch"] == [1, 2] and curve["loss"] == [2.0, 1.5]
    assert (curve["val_epoch"], curve["val_mean"], curve["val_max"]) == ([1], [2.0], [3.0])


def test_run_queue_trains_a_real_tiny_run(tmp_path: Path, small_catalog: Path) -> None:
    run = tiny_run(tmp_path, "real", small_catalog)
    assert run_queue(tmp_path, lambda m: None) == ["real"]
    status = run.status()
    assert status["state"] == "finished", status
    assert {"sigma68", "outlier_fraction", "bias", "nmad", "n"} <= set(status["summary"])
    assert run_progress(run) == (1.0, "finished")
    assert len(run.metrics()) == 2


@pytest.mark.slow
def test_worker_command_drains_the_queue(tmp_path: Path, small_catalog: Path) -> None:
    for i, name in enumerate(("first", "second")):
        tiny_run(tmp_path, name, small_catalog, queued_at=time.time() - 10 + i)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEEPZ_QUIET": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "deepz_core", "worker", "--runs", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.index("run first: started") < out.stdout.index("run second: started")
    assert all(RunDir(tmp_path / n).status()["state"] == "finished" for n in ("first", "second"))


def test_sim_job_runs_and_is_listed(tmp_path: Path) -> None:
    out = tmp_path / "mock.fits"
    spec = tmp_path / "mock.job.json"
    atomic_write_json(
        spec,
        {
            "name": "mock",
            "kind": "paus-mock",
            "n": 30,
            "bands": ["NB455", "subaru_i"],
            "seed": 2,
            "config": None,
            "out": str(out),
            "state": "queued",
            "created": time.time(),
        },
    )
    assert cli.main(["sim-job", "--spec", str(spec)]) == 0
    assert read_catalog(out).n_galaxies == 30
    (tmp_path / "old.fits").write_bytes(out.read_bytes())
    atomic_write_json(
        tmp_path / "gone.job.json",
        {
            "name": "gone",
            "kind": "sps",
            "n": 5,
            "out": str(tmp_path / "gone.fits"),
            "state": "running",
            "pid": dead_pid(),
        },
    )
    jobs = {j.name: j for j in list_simulations(tmp_path)}
    assert jobs["mock"].state == "finished" and jobs["mock"].progress == 1.0
    assert jobs["old"].state == "file" and jobs["gone"].state == "interrupted"


def test_sim_job_records_a_bad_configuration(tmp_path: Path) -> None:
    spec = tmp_path / "bad.job.json"
    atomic_write_json(
        spec,
        {
            "kind": "sps",
            "n": 5,
            "bands": ["NB455", "subaru_i"],
            "seed": 0,
            "config": {"z": [2.0, 1.0]},
            "out": str(tmp_path / "bad.fits"),
        },
    )
    assert cli.main(["sim-job", "--spec", str(spec)]) == 2
    status = json.loads(spec.read_text())
    assert status["state"] == "failed" and "z must be a range" in status["message"]


def test_sim_progress_reads_the_last_progress_bar(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert sim_progress(log) is None
    log.write_text(
        "simulating SPS galaxies:  10%| 100/1000\rsimulating SPS galaxies:  45%| 450/1000"
    )
    assert sim_progress(log) == pytest.approx(0.45)


def test_set_up_progress_and_etas(tmp_path: Path, small_catalog: Path) -> None:
    """During set-up the page reads the worker's own step (simulating the pretraining set...)
    with elapsed time and ETA; during training, the time per epoch gives the ETA."""
    from deepz_core.jobs.status import clock, elapsed_eta, expected_duration
    from deepz_core.jobs.training_run import status_listener
    from deepz_core.progress import progress_bar, reporting

    assert (clock(42), clock(185), clock(3723)) == ("42 s", "3 min 05 s", "1 h 02 min")
    assert elapsed_eta(100.0, 0.25, now=160.0) == "1 min 00 s elapsed, about 3 min 00 s left"
    assert elapsed_eta(None, 0.5) == ""
    run = tiny_run(tmp_path, "s", small_catalog)
    run.set_status("running", phase="setup", epoch=0)
    with reporting(status_listener(run, every=0.0)), progress_bar(300, "simulating sps") as bar:
        bar.update(100)
    fraction, text = run_progress(run)
    assert fraction == pytest.approx(1 / 3) and text.startswith(
        "setting up: simulating sps 100/300"
    )
    assert "elapsed" in text
    run.set_status("running", phase="finetune", epoch=1, epochs=2)
    run.append_metrics({"phase": "finetune", "epoch": 1, "loss": 1.0, "seconds": 30.0})
    assert run_progress(run) == (
        0.5,
        "finetune epoch 1/2 — 30 s for 1 epochs, about 30 s left in this phase",
    )
    assert expected_duration([run], "quick") is None  # not finished
    run.set_status("finished", started=time.time() - 125)
    seconds, basis = expected_duration([run], "quick")
    assert seconds == pytest.approx(125, abs=2) and "no pretraining" in basis
    run.append_metrics({"phase": "finetune", "epoch": 2, "loss": 1.0, "cached": True})
    assert "restored from the shipped weights" in expected_duration([run], "quick")[1]


def test_prediction_job_runs_records_progress_and_cancels(
    tmp_path: Path, small_catalog: Path
) -> None:
    from deepz_core.jobs.prediction import (
        JOB_FILE,
        OUTPUT,
        create_prediction_job,
        job_state,
        list_prediction_jobs,
        read_job,
    )

    run = tiny_run(tmp_path / "runs", "r", small_catalog)
    assert run_queue(tmp_path / "runs", lambda m: None) == ["r"]
    with pytest.raises(Exception, match="no such file"):
        create_prediction_job(tmp_path / "preds", run.path, tmp_path / "missing.fits")
    folder = create_prediction_job(tmp_path / "preds", run.path, small_catalog, "small")
    assert read_job(folder)["state"] == "queued" and job_state(read_job(folder)) == "queued"
    assert cli.main(["predict-job", "--job", str(folder)]) == 0
    spec = read_job(folder)
    assert spec["state"] == "finished" and spec["rows"] == 150 and spec["progress"] == 1.0
    assert spec["done"] == spec["total"] == 150 and spec["flags"]["rows"] == 150
    assert (folder / OUTPUT).exists()
    cancelled = create_prediction_job(tmp_path / "preds", run.path, small_catalog)
    (cancelled / "cancel").write_text("now")
    cli.main(["predict-job", "--job", str(cancelled)])
    assert read_job(cancelled)["state"] == "cancelled" and not (cancelled / OUTPUT).exists()
    listed = list_prediction_jobs(tmp_path / "preds")
    assert {j.job_id for j in listed} == {folder.name, cancelled.name}
    # a run without a combination predicts with its networks; network_only must be a bool
    assert spec["estimator"] == "network" and spec["network_only"] is False
    with pytest.raises(ConfigError, match="network_only: expected true/false, got 'yes'"):
        create_prediction_job(tmp_path / "preds", run.path, small_catalog, network_only="yes")
    stale = json.loads((folder / JOB_FILE).read_text()) | {"state": "running", "pid": dead_pid()}
    assert job_state(stale) == "interrupted"


# ---------------------------------------------------------------- issue 19


def test_a_run_another_process_holds_is_skipped_not_failed(
    tmp_path: Path, small_catalog: Path
) -> None:
    """A queued run that a ``deepz resume`` in a terminal is already training is left to it."""
    from deepz_core.files import LOCK_FILE, ExclusiveLock
    from deepz_core.jobs.worker import execute_queued

    run = tiny_run(tmp_path / "runs", "held", small_catalog)
    other = ExclusiveLock(run.path / LOCK_FILE)
    assert other.acquire()
    try:
        messages: list[str] = []
        assert execute_queued(run, messages.append) == "skipped"
    finally:
        other.release()
    assert run.status()["state"] == "queued" and "in use by PID" in messages[0]


def test_damaged_runs_do_not_stop_the_queue(tmp_path: Path, small_catalog: Path) -> None:
    runs = tmp_path / "runs"
    bad = tiny_run(runs, "a-bad", small_catalog, queued_at=1.0)
    bad.file("status.json").write_text("{not json")  # crashed the worker before
    good = tiny_run(runs, "b-good", small_catalog, queued_at=2.0)
    assert run_queue(runs, lambda m: None) == ["b-good"]
    assert good.status()["state"] == "finished"


@pytest.mark.slow
def test_sigterm_stops_the_worker_with_a_clean_status(tmp_path: Path, small_catalog: Path) -> None:
    """SIGTERM (systemd stop, kill, a container shutting down) stops the worker within seconds:
    the run is 'cancelled' (resumable), the run folder and the queue are unlocked."""
    import signal

    from deepz_core.files import folder_holder

    runs = tmp_path / "runs"
    run = create_run(
        runs / "long",
        run_config(
            str(small_catalog),
            None,
            "none",
            "quick",
            None,
            TINY_MODEL,
            {**TINY_TRAIN, "schedule": ((100_000, 1e-3),)},
        ),
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEEPZ_QUIET": "1", "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "deepz_core", "worker", "--runs", str(runs)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not run.metrics():
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()
        time.sleep(0.2)
    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 143, out
    status = run.status()
    assert status["state"] == "cancelled" and "SIGTERM" in status["message"], status
    assert folder_holder(run.path) is None and worker_pid(runs) is None


def test_a_phase_under_way_replaces_the_set_up_step(tmp_path: Path, small_catalog: Path) -> None:
    """Eleventh session: after simulating the SPS set the Train page showed "setting up:
    simulating sps galaxies 300,000/300,000" for minutes while the first pretraining epoch ran
    (the phase was written only at an epoch's end). A phase now says it is under way."""
    import torch

    from deepz_core.training.loop import Phase, PhaseRunner

    run = tiny_run(tmp_path, "r", small_catalog)
    run.set_status("running", step="simulating sps galaxies", step_done=300, step_total=300)
    seen: list[tuple[float, str]] = []

    class Seen(Exception):
        """Raised by the first batch, once the progress it would show is recorded."""

    class Source:
        def epoch(self, *args: object) -> None:
            seen.append(run_progress(run))
            raise Seen

    phase = Phase("finetune", ((2, 1e-3),), Source(), lambda *a: None, 10, 1)
    runner = PhaseRunner(run, torch.nn.Linear(2, 1), 0.0, 0, 5, 1)
    with pytest.raises(Seen):
        runner.execute(phase)
    ((fraction, text),) = seen
    assert fraction == 0.0 and text.startswith("finetune epoch 0/2 — epoch 1 under way")
    assert "simulating" not in text
