"""Launching background work as processes: the training-queue worker and simulation jobs.

Processes are started with ``start_new_session=True`` and write to a log file (never a pipe), so they
outlive page reloads, closed tabs and a restart of the server. Pages only read the folders they write.
No streamlit import: tested directly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from deepz_core.errors import ConfigError, InUseError
from deepz_core.files import atomic_write_json
from deepz_core.jobs import queue, worker
from deepz_core.jobs.training_run import create_run, run_config
from deepz_core.rundir import RunDir, new_run_id

ROOT = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$")
_CHILDREN: list[subprocess.Popen] = []  # started here; polled so that none lingers as a zombie
_WORKERS: dict[str, subprocess.Popen] = {}  # runs folder -> the worker last started for it


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``python -m deepz_core <args>`` detached, appending its output to ``log``; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deepz_core", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(ROOT),
            env=full_env,
            start_new_session=True,
        )
    _CHILDREN.append(proc)
    return proc.pid


def reap() -> None:
    """Collect the processes started here that have finished (no zombies left behind)."""
    _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]


# --- the queue as the Train page sees it (pages import app modules, not deepz_core's internals) --

QUEUE_LIMITS = queue.QUEUE_LIMITS  # what one run queued from the app may ask for (form limits)


def worker_pid(runs: Path) -> int | None:
    """Pid of the worker serving ``runs`` (-1 if alive but unreadable), None if there is none
    (``deepz_core.jobs.worker``)."""
    return worker.worker_pid(runs)


def queued_runs(runs: Path) -> list[RunDir]:
    """Runs waiting in ``runs``, oldest queued first: the order the worker takes them in."""
    return worker.queued_runs(runs)


def is_owner(run: RunDir, owner: str | None) -> bool:
    """True when the browser token ``owner`` queued ``run`` (``deepz_core.jobs.queue``)."""
    return queue.is_owner(run, owner)


def ensure_worker(runs: Path) -> int:
    """Pid of the worker serving ``runs``, starting one if none is alive."""
    reap()
    pid = worker_pid(runs)
    if pid is not None:
        return pid
    starting = _WORKERS.get(str(runs))
    if starting is not None and starting.poll() is None:
        return starting.pid  # started here moments ago and not holding the lock yet
    runs.mkdir(parents=True, exist_ok=True)
    pid = _spawn(["worker", "--runs", str(runs)], runs / worker.LOG_FILE)
    _WORKERS[str(runs)] = _CHILDREN[-1]
    return pid


def queue_run(
    runs: Path,
    catalog: str,
    pretrain: str,
    preset_name: str,
    model: dict[str, Any],
    train: dict[str, Any],
    start: bool = True,
    ref_band: str | None = None,
    owner: str | None = None,
    templates: str | None = None,
) -> RunDir:
    """Write a new run folder (status 'queued', owned by the browser token ``owner``) and make
    sure a worker will execute it. ``templates``: a template set (bcnz2, kcorrect) to combine the
    networks with the template fit after training (``RunConfig.templates``), None for the
    networks alone. The configuration is checked by the typed configs and the queue's limits
    (``deepz_core.jobs.queue``) before anything is written."""
    config = queue.check_queue_limits(
        run_config(
            catalog, None, pretrain, preset_name, ref_band, model, train, templates=templates
        )
    )
    queue.check_fair_share(runs, owner)
    run = create_run(runs / new_run_id("run"), config)
    if owner is not None:
        queue.claim(run, owner)
    if start:
        ensure_worker(runs)
    return run


def queue_templatefit(
    runs: Path,
    catalog: str,
    device: str,
    calibrate: bool,
    start: bool = True,
    template_set: str = "bcnz2",
    owner: str | None = None,
) -> RunDir:
    """Write a new template-fit run folder (status 'queued', owned by ``owner``) with templates
    ``template_set`` for the same worker queue."""
    from deepz_core.jobs.templatefit_run import create_templatefit_run

    queue.check_fair_share(runs, owner)
    run = create_templatefit_run(
        runs / new_run_id("tfit"),
        catalog,
        device=device,
        templatefit={"template_set": template_set},
        calibrate=calibrate,
    )
    if owner is not None:
        queue.claim(run, owner)
    if start:
        ensure_worker(runs)
    return run


def cancel_run(run: RunDir, owner: str | None = None, confirmed: bool = False) -> None:
    """Ask a run to stop: a queued run is cancelled at once, a running one within seconds (the
    training loop looks for the cancel file every second). Another browser's run only when
    ``confirmed`` (``queue.require_owner``)."""
    queue.require_owner(run, owner, confirmed, "cancel")
    run.file("cancel").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
    try:
        with run.locked():  # not started yet: no worker holds it, so it cannot start meanwhile
            if run.status().get("state") == "queued":
                run.set_status("cancelled", message="cancelled before it started")
    except InUseError:
        pass  # the worker is executing it: the cancel file stops it


def resume_run(
    run: RunDir, runs: Path, start: bool = True, owner: str | None = None, confirmed: bool = False
) -> None:
    """Queue a cancelled, failed or interrupted run again; it restarts from its last checkpoint.
    Another browser's run only when ``confirmed``."""
    queue.require_owner(run, owner, confirmed, "resume")
    run.file("cancel").unlink(missing_ok=True)
    run.set_status("queued", message="queued again (resumes from its last checkpoint)")
    if start:
        ensure_worker(runs)


def check_sim_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"simulation name must be letters, digits, '.', '_' or '-', got {name!r}")
    return name


def start_simulation(
    folder: Path,
    name: str,
    kind: str,
    n: int,
    bands: tuple[str, ...],
    seed: int,
    config: dict[str, Any] | None = None,
) -> Path:
    """Start ``sim-job`` for ``folder/<name>.fits`` in the background; the job file's path."""
    out = folder / f"{check_sim_name(name)}.fits"
    spec_path = folder / f"{name}.job.json"
    if out.exists() or spec_path.exists():
        raise ConfigError(f"a simulation called {name!r} already exists; choose another name")
    if n < 1:
        raise ConfigError(f"number of galaxies must be >= 1, got {n}")
    spec = {
        "name": name,
        "kind": kind,
        "n": int(n),
        "bands": list(bands),
        "seed": int(seed),
        "config": config or None,
        "out": str(out),
        "state": "queued",
        "created": time.time(),
    }
    atomic_write_json(spec_path, spec)
    reap()
    _spawn(["sim-job", "--spec", str(spec_path)], out.with_suffix(".log"), {"DEEPZ_QUIET": "0"})
    return spec_path


def device_label() -> str:
    """'NVIDIA H100 (CUDA)' when a GPU is visible, else 'CPU only (no CUDA GPU found)'."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return "CPU only (no CUDA GPU found)"


def check_device(device: str) -> None:
    """ConfigError when ``device`` asks for a GPU this machine does not have."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: no CUDA GPU is visible here; choose auto or cpu")


def start_prediction(
    root: Path,
    run_dir: Path,
    catalog: str,
    catalog_name: str,
    device: str = "auto",
    network_only: bool = False,
) -> Path:
    """Start ``predict-job`` in the background: the finished run in ``run_dir`` predicts
    ``catalog`` into a new job folder under ``root`` (``deepz_core.jobs.prediction``); its path.
    A run combined with the template fit predicts with the combination unless ``network_only``."""
    from deepz_core.jobs.prediction import create_prediction_job

    folder = create_prediction_job(root, run_dir, catalog, catalog_name, device, network_only)
    reap()
    _spawn(["predict-job", "--job", str(folder)], folder / "log.txt")
    return folder


HELDOUT_JOB = "calibrate.job.json"  # in the run folder: the held-out calibration started here
HELDOUT_LOG = "calibrate.log"


def start_heldout_calibration(run_dir: Path, catalog: str, catalog_name: str) -> Path:
    """Start ``deepz calibrate --run RUN --catalog CATALOG`` in the background: the run's
    calibration of new galaxies fitted on the held-out spec-z galaxies of ``catalog`` (of the
    combination when the run has one); its job file in the run folder (pid, catalogue, start)."""
    run = RunDir(Path(run_dir))
    job = run.file(HELDOUT_JOB)
    if job.exists() and heldout_job(run)["state"] == "running":
        raise InUseError(f"run {run.path.name} is already being calibrated: wait for it to finish")
    log = run.file(HELDOUT_LOG)
    log.unlink(missing_ok=True)
    reap()
    pid = _spawn(["calibrate", "--run", str(run.path), "--catalog", catalog], log)
    info = {"pid": pid, "catalog": catalog, "catalog_name": catalog_name, "started": time.time()}
    atomic_write_json(job, info)
    return job


def heldout_job(run: RunDir) -> dict[str, Any]:
    """The held-out calibration started from the app for ``run``: its job file's fields and
    ``state`` ('none', 'running', 'finished' or 'failed', then with ``error``: the log's last
    line)."""
    import json

    from deepz_core.jobs.status import pid_alive

    path = run.file(HELDOUT_JOB)
    if not path.exists():
        return {"state": "none"}
    info = json.loads(path.read_text())
    reap()
    if pid_alive(info.get("pid")):
        return {**info, "state": "running"}
    log = run.file(HELDOUT_LOG)
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    if any(line.startswith('{"run"') for line in lines):  # the command's summary: it finished
        return {**info, "state": "finished"}
    error = lines[-1].removeprefix("error: ") if lines else "it stopped without a word"
    return {**info, "state": "failed", "error": error}


def cancel_prediction(folder: Path) -> None:
    """Ask a prediction job to stop after its current chunk."""
    (Path(folder) / "cancel").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))
