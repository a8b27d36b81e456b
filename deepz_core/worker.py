"""Background jobs of the app: the training queue worker and simulation jobs.

``python -m deepz_core worker --runs DIR`` takes the oldest run folder in DIR whose status is
'queued', executes it (``deepz_core.pipeline.execute_run``), and repeats until none is left, then
exits. A lock file ``DIR/worker.lock`` (holding the worker's pid) makes it the only worker: the lock
is an ``fcntl.flock`` on that file, which the kernel drops when the process dies, so the lock of a
dead worker is simply taken over by the next one. Runs therefore train one at a time.

``python -m deepz_core sim-job --spec FILE.job.json`` runs one simulation described by the spec (kind,
n, bands, seed, SPS config, output path) and records its state in the same file; its progress bar
goes to the job's log, which the Simulate page reads.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepz_core.cli import command
from deepz_core.errors import ConfigError
from deepz_core.paths import atomic_write_json
from deepz_core.runs import RunDir, list_runs

LOCK_FILE = "worker.lock"
LOG_FILE = "worker.log"
START_GRACE_S = 60.0  # a job not yet started this long after its creation counts as interrupted


def pid_alive(pid: int | None) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


class WorkerLock:
    """The single-worker lock of a runs folder: ``flock`` on ``worker.lock``, pid written inside."""

    def __init__(self, runs: Path | str) -> None:
        self.path = Path(runs) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self, retries: int = 5, wait: float = 0.1) -> bool:
        """Take the lock (a few tries, ``wait`` s apart); False if a live worker holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(retries + 1):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == retries:
                    os.close(fd)
                    return False
                time.sleep(wait)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": time.time()}).encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def holder(self) -> int | None:
        """Pid of the live worker holding the lock, else None (a stale file does not count)."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(json.loads(self.path.read_text() or "{}").get("pid", -1))
            except ValueError:
                return -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def worker_pid(runs: Path | str) -> int | None:
    """Pid of the worker serving ``runs`` (-1 if alive but unreadable), None if there is none."""
    return WorkerLock(runs).holder()


def queued_runs(runs: Path | str) -> list[RunDir]:
    """Runs waiting in ``runs``, oldest queued first (by status time, then run id)."""
    waiting = [(r.status(), r) for r in list_runs(Path(runs))]
    waiting = [
        (s.get("updated", 0.0), r.run_id, r) for s, r in waiting if s.get("state") == "queued"
    ]
    return [r for _, _, r in sorted(waiting, key=lambda t: (t[0], t[1]))]


def execute_queued(run: RunDir, log: Callable[[str], None] = print) -> str:
    """Execute one queued run; a failure is recorded in its status, never raised. Its final state."""
    from deepz_core.pipeline import execute_run
    from deepz_core.runs import run_kind

    if run.status().get("state") != "queued":
        return run.status().get("state", "missing")
    log(f"run {run.run_id}: started")
    try:
        if run_kind(run.config()) == "templatefit":
            from deepz_core.templatefit_run import execute_templatefit_run

            execute_templatefit_run(run)
        else:
            execute_run(run)
    except Exception as exc:  # execute_run marks the run failed; make sure, then go on
        if run.status().get("state") in ("queued", "running"):
            run.set_status("failed", message=f"{type(exc).__name__}: {exc}")
    state = run.status().get("state", "missing")
    log(f"run {run.run_id}: {state}")
    return state


def run_queue(runs: Path | str, log: Callable[[str], None] = print) -> list[str]:
    """Execute queued runs, oldest first, until none is left (each tried once); their ids."""
    done: list[str] = []
    while True:
        waiting = [r for r in queued_runs(runs) if r.run_id not in done]
        if not waiting:
            return done
        execute_queued(waiting[0], log)
        done.append(waiting[0].run_id)


def work(runs: Path | str, log: Callable[[str], None] = print) -> list[str]:
    """The worker: hold the lock while the queue has runs. Returns the ids it executed."""
    done: list[str] = []
    while True:
        lock = WorkerLock(runs)
        if not lock.acquire():
            log(f"another worker (pid {lock.holder()}) serves {runs}; exiting")
            return done
        try:
            done += run_queue(runs, log)
        finally:
            lock.release()
        if not [r for r in queued_runs(runs) if r.run_id not in done]:
            return done  # else a run was queued while the lock was being released: go on


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", required=True, help="folder of run folders (runs/)")


@command("worker", _worker_args)
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


def run_state(run: RunDir) -> str:
    """The run's state, or 'interrupted' when it says 'running' but its process is gone."""
    status = run.status()
    state = status.get("state", "missing")
    if state == "running" and not pid_alive(status.get("pid")):
        return "interrupted"
    return state


def _phase_epochs(config: dict[str, Any]) -> list[tuple[str, int]]:
    train = config.get("train", {})
    phases = []
    if config.get("pretrain") != "none":
        phases.append(("pretrain", sum(int(e) for e, _ in train.get("pretrain_schedule", ()))))
    phases.append(("finetune", sum(int(e) for e, _ in train.get("schedule", ()))))
    return [(name, n) for name, n in phases if n > 0]


def run_progress(run: RunDir) -> tuple[float, str]:
    """(fraction of all epochs done, e.g. 'finetune epoch 12/50') of a run."""
    status = run.status()
    if status.get("state") == "finished":
        return 1.0, "finished"
    if status.get("phase") == "templatefit":  # galaxies fitted as epoch / epochs
        done, total = int(status.get("epoch") or 0), int(status.get("epochs") or 1)
        return min(done / max(total, 1), 1.0), f"template fit: {done:,}/{total:,} galaxies"
    phases = _phase_epochs(run.config())
    total = sum(n for _, n in phases) or 1
    phase, epoch = status.get("phase"), int(status.get("epoch") or 0)
    names = [name for name, _ in phases]
    if phase not in names:
        return 0.0, str(phase or "setup")
    before = sum(n for name, n in phases[: names.index(phase)])
    epochs = dict(phases)[phase]
    return min((before + epoch) / total, 1.0), f"{phase} epoch {epoch}/{epochs}"


def training_curves(metrics: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per phase: epoch and training loss, and held-out NLL (mean, min, max over members) at
    the epochs where it was evaluated."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in metrics:
        curve = out.setdefault(row.get("phase", "?"), {k: [] for k in (
            "epoch", "loss", "val_epoch", "val_mean", "val_min", "val_max")})  # fmt: skip
        curve["epoch"].append(row.get("epoch", 0))
        curve["loss"].append(row.get("loss", float("nan")))
        values = [v for v in row.get("val_nll") or [] if v == v]
        if values:
            curve["val_epoch"].append(row.get("epoch", 0))
            curve["val_mean"].append(sum(values) / len(values))
            curve["val_min"].append(min(values))
            curve["val_max"].append(max(values))
    return out


# --- simulation jobs -------------------------------------------------------------------------------


def read_spec(path: Path | str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def update_spec(path: Path | str, **fields: Any) -> None:
    atomic_write_json(path, {**read_spec(path), **fields, "updated": time.time()})


def _sim_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="job file written by the app (<name>.job.json)")


@command("sim-job", _sim_job_args)
def _sim_job(args: argparse.Namespace) -> int:
    """Run one simulation job described by a spec file, recording its state there."""
    from deepz_core.catalog_io import write_catalog
    from deepz_core.simulate import simulate
    from deepz_core.simulate.sps import SPSConfig

    spec = read_spec(args.spec)
    update_spec(args.spec, state="running", pid=os.getpid(), started=time.time())
    try:
        config = SPSConfig.from_dict(spec["config"]) if spec.get("config") else None
        cat = simulate(
            spec["kind"], int(spec["n"]), tuple(spec["bands"]), int(spec["seed"]), config
        )
        write_catalog(cat, spec["out"])
    except Exception as exc:
        update_spec(args.spec, state="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    update_spec(args.spec, state="finished", finished=time.time(), message="")
    print(f"wrote {cat.n_galaxies} galaxies to {spec['out']}", flush=True)
    return 0


_PROGRESS = re.compile(rb"(\d+)/(\d+)")


def sim_progress(log: Path) -> float | None:
    """Fraction done from the last 'k/n' of the progress bar in a job's log (None if none yet)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(log.stat().st_size - 4096, 0))
            tail = fh.read()
    except OSError:
        return None
    found = _PROGRESS.findall(tail)
    if not found:
        return None
    done, total = (int(v) for v in found[-1])
    return min(done / total, 1.0) if total else None


@dataclass(frozen=True)
class SimJob:
    """A simulation in ``data/sims``: its file, job spec (empty for files put there by hand),
    state (running, finished, failed, interrupted, or 'file') and progress (0..1 or None)."""

    name: str
    path: Path
    spec: dict[str, Any]
    state: str
    progress: float | None

    @property
    def log(self) -> Path:
        return self.path.with_suffix(".log")


def list_simulations(folder: Path | str) -> list[SimJob]:
    """Simulation jobs and catalogue files in ``folder``, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    jobs: dict[str, SimJob] = {}
    for spec_path in folder.glob("*.job.json"):
        try:
            spec = read_spec(spec_path)
        except (OSError, ValueError):
            continue
        state = spec.get("state", "queued")
        starting = state == "queued" and time.time() - spec.get("created", 0) < START_GRACE_S
        if state in ("queued", "running") and not starting and not pid_alive(spec.get("pid")):
            state = "interrupted"
        out = Path(spec.get("out", folder / (spec_path.name[: -len(".job.json")] + ".fits")))
        progress = 1.0 if state == "finished" else sim_progress(out.with_suffix(".log"))
        jobs[out.name] = SimJob(out.stem, out, spec, state, progress)
    for path in folder.glob("*.fits"):
        if path.name not in jobs:
            jobs[path.name] = SimJob(path.stem, path, {}, "file", 1.0)
    return sorted(jobs.values(), key=lambda j: j.spec.get("created", _mtime(j.path)), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
