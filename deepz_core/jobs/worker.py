"""The app's training queue: ``deepz worker --runs DIR`` takes the oldest run folder in DIR whose
status is 'queued', executes it (``deepz_core.jobs.training_run.execute_run``), and repeats until none
is left, then exits. A lock file ``DIR/worker.lock`` (holding the worker's pid) makes it the only
worker: the lock is an ``fcntl.flock`` on that file, which the kernel drops when the process dies, so
the lock of a dead worker is simply taken over by the next one. Runs therefore train one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deepz_core.errors import ConfigError, InUseError
from deepz_core.files import ExclusiveLock
from deepz_core.rundir import RunDir, list_runs

LOCK_FILE = "worker.lock"
LOG_FILE = "worker.log"


class WorkerLock:
    """The single-worker lock of a runs folder: ``deepz_core.files.ExclusiveLock`` on
    ``worker.lock``."""

    def __init__(self, runs: Path | str) -> None:
        self.lock = ExclusiveLock(Path(runs) / LOCK_FILE)
        self.path = self.lock.path

    def acquire(self, retries: int = 5, wait: float = 0.1) -> bool:
        """Take the lock (a few tries, ``wait`` s apart); False if a live worker holds it."""
        return self.lock.acquire(retries, wait)

    def release(self) -> None:
        self.lock.release()

    def holder(self) -> int | None:
        """Pid of the live worker holding the lock, else None (a stale file does not count)."""
        note = self.lock.holder()
        return None if note is None else int(note.get("pid", -1))


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
    """Execute one queued run, holding its folder's lock; a failure is recorded in its status,
    never raised; a run another process holds (a ``deepz resume`` from a terminal) is left to it.
    Its final state."""
    try:
        with run.locked():
            return _execute_locked(run, log)
    except InUseError as exc:
        log(f"run {run.run_id}: skipped, {exc}")
        return "skipped"
    except ConfigError as exc:  # damaged run files
        log(f"run {run.run_id}: skipped, {exc}")
        return "damaged"


def _execute_locked(run: RunDir, log: Callable[[str], None]) -> str:
    from deepz_core.jobs.training_run import execute_run
    from deepz_core.rundir import run_kind

    if run.status().get("state") != "queued":
        return run.status().get("state", "missing")
    log(f"run {run.run_id}: started")
    try:
        if run_kind(run.config()) == "templatefit":
            from deepz_core.jobs.templatefit_run import execute_templatefit_run

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


# --- simulation jobs -------------------------------------------------------------------------------
