"""Background-job commands of the app: ``worker`` (the training queue) and ``sim-job``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from deepz_core.cli.common import command
from deepz_core.errors import ConfigError
from deepz_core.jobs.simulation import read_spec, run_simulation_job
from deepz_core.jobs.worker import work


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, help="folder of run folders (runs/)")


@command("worker", _worker_args, internal=True)
def _worker(args: argparse.Namespace) -> int:
    """Execute queued training runs one at a time until the queue is empty (single worker)."""
    runs = Path(args.runs)
    if not runs.is_dir():
        raise ConfigError(f"--runs {args.runs} is not a folder")

    def log(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [pid {os.getpid()}] {message}", flush=True)

    done = work(runs, log)
    log(f"queue empty after {len(done)} run(s); exiting")
    return 0


def _sim_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="job file written by the app (<name>.job.json)")


@command("sim-job", _sim_job_args, internal=True)
def _sim_job(args: argparse.Namespace) -> int:
    """Run one simulation job described by a spec file, recording its state there."""
    n = run_simulation_job(args.spec)
    print(f"wrote {n} galaxies to {read_spec(args.spec)['out']}", flush=True)
    return 0


def _predict_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", required=True, help="job folder written by the app (holds job.json)")


@command("predict-job", _predict_job_args, internal=True)
def _predict_job(args: argparse.Namespace) -> int:
    """Predict a catalogue with a finished run, as a prediction job folder describes it,
    recording state and progress in its job.json (the app's Predict page)."""
    from deepz_core.jobs.prediction import read_job, run_prediction_job

    n = run_prediction_job(args.job)
    print(f"{read_job(args.job)['state']}: {n} predictions in {args.job}", flush=True)
    return 0
