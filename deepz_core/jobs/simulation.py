"""Simulation jobs of the app: ``deepz sim-job --spec FILE.job.json`` runs one simulation described
by the spec (kind, n, bands, seed, SPS config, output path) and records its state in the same file;
its progress bar goes to the job's log, which the Simulate page reads (``list_simulations``)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepz_core.files import atomic_write_json, read_json_object
from deepz_core.jobs.status import pid_alive

START_GRACE_S = 60.0  # a job not yet started this long after its creation counts as interrupted


def read_spec(path: Path | str) -> dict[str, Any]:
    """The job file; ConfigError (a ValueError) naming it when it is missing or damaged."""
    return read_json_object(Path(path), "simulation job")


def update_spec(path: Path | str, **fields: Any) -> None:
    """Set ``fields`` (and the time ``updated``) in the job file at ``path``, atomically."""
    atomic_write_json(path, {**read_spec(path), **fields, "updated": time.time()})


def run_simulation_job(spec_path: Path | str) -> int:
    """Run the simulation a spec file describes, recording its state there; galaxies written."""
    from deepz_core.catalog.io import write_catalog
    from deepz_core.simulate import simulate
    from deepz_core.simulate.sps import SPSConfig

    spec = read_spec(spec_path)
    update_spec(spec_path, state="running", pid=os.getpid(), started=time.time())
    try:
        config = SPSConfig.from_dict(spec["config"]) if spec.get("config") else None
        cat = simulate(
            spec["kind"], int(spec["n"]), tuple(spec["bands"]), int(spec["seed"]), config
        )
        write_catalog(cat, spec["out"], overwrite=True)  # the app names a new file
    except Exception as exc:
        update_spec(spec_path, state="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    update_spec(spec_path, state="finished", finished=time.time(), message="")
    return cat.n_galaxies


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
