"""Prediction jobs of the app: ``deepz predict-job --job FOLDER`` applies a finished run to a
photometric catalogue (no spec-z needed) and writes ``FOLDER/predictions.parquet`` (one row per
catalogue row, in order; see ``deepz_core.inference.stream``), recording its state and progress in
``FOLDER/job.json``, which the Predict page reads. A ``cancel`` file in the folder stops it between
chunks.

A run combined with the template fit (``deepz_core.hybrid``) predicts with the combination (the
job's ``estimator`` is "combined"; ~100 galaxies/s on 2 CPU cores) unless the job asks for
``network_only`` (the networks' fast path, thousands of galaxies per second).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.screen import UnitCheck
from deepz_core.configs import check_bool
from deepz_core.device import usable_cores
from deepz_core.errors import ConfigError, DeepzError
from deepz_core.files import atomic_write_json
from deepz_core.hybrid.runs import load_hybrid
from deepz_core.jobs.status import pid_alive

if TYPE_CHECKING:
    from deepz_core.inference.stream import ReadOptions

JOB_FILE = "job.json"
OUTPUT = "predictions.parquet"
START_GRACE_S = 60.0  # a job not started this long after its creation counts as interrupted
MIN_CHUNK, MAX_CHUNK = 1_000, 25_000  # rows per step: ~20 progress updates, bounded memory


class JobCancelled(Exception):
    """The user asked the job to stop (a ``cancel`` file in its folder)."""


def read_job(folder: Path | str) -> dict[str, Any]:
    """The job's ``job.json`` in ``folder``."""
    return json.loads((Path(folder) / JOB_FILE).read_text())


def update_job(folder: Path | str, **fields: Any) -> None:
    """Set ``fields`` (and the time ``updated``) in the job's ``job.json``, atomically."""
    path = Path(folder) / JOB_FILE
    atomic_write_json(path, {**read_job(folder), **fields, "updated": time.time()})


def create_prediction_job(
    root: Path | str,
    run_dir: Path | str,
    catalog: Path | str,
    catalog_name: str | None = None,
    device: str = "cpu",
    network_only: bool = False,
) -> Path:
    """A new job folder under ``root`` (``pred-YYYYmmdd-HHMMSS-<hex>``) predicting ``catalog``
    with the run in ``run_dir``; its path. Nothing runs until ``run_prediction_job``. A run
    combined with the template fit predicts with the combination unless ``network_only``; the
    spec records which (``estimator``: "combined" or "network"; ``templates``: the set)."""
    run_dir, catalog = Path(run_dir).resolve(), Path(catalog).resolve()
    network_only = check_bool("network_only", network_only)
    if not (run_dir / "model.safetensors").is_file():
        raise ConfigError(f"run {run_dir.name}: no trained model (model.safetensors) to predict")
    if not catalog.is_file():
        raise ConfigError(f"catalogue {str(catalog)!r}: no such file")
    config = json.loads((run_dir / "config.json").read_text())
    hybrid = None if network_only else load_hybrid(run_dir)  # a broken hybrid.json fails here
    folder = Path(root) / f"pred-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    spec = {
        "run": str(run_dir),
        "run_id": run_dir.name,
        "catalog": str(catalog),
        "catalog_name": catalog_name or catalog.name,
        "device": device,
        "network_only": network_only,
        "estimator": "network" if hybrid is None else "combined",
        "templates": None if hybrid is None else hybrid.template_set,
        "pz": config.get("pz", {}),
        "state": "queued",
        "progress": 0.0,
        "created": time.time(),
    }
    atomic_write_json(folder / JOB_FILE, spec)
    return folder


ChunkPredict = Callable[[Catalog, set[str]], pa.Table]  # a chunk and the notes given so far


def _tables(
    folder: Path,
    predictor: Any,
    catalog: str,
    total: int,
    predict: ChunkPredict,
    read: ReadOptions | None = None,
    given: set[str] | None = None,
) -> Iterator[pa.Table]:
    """The predictions chunk by chunk (``predictor`` reads the chunks with the ``read`` options
    of the preflight, ``predict`` predicts each), recording progress; JobCancelled on a cancel
    file. Each warning about the catalogue comes once per job, not once per chunk
    (``stream.StreamNotes``; ``given``: the notes the preflight gave)."""
    from deepz_core.inference.stream import StreamNotes

    chunk = max(MIN_CHUNK, min(MAX_CHUNK, -(-total // 20)))
    notes = StreamNotes(predictor.bands, predictor.ref_band, set() if given is None else given)
    done, last = 0, 0.0
    for cat in predictor.chunks(catalog, (0, total), chunk, read):
        check_job_cancel(folder, f"after {done:,} of {total:,} galaxies")
        notes.seen(cat)
        yield predict(cat, notes.given)
        done += cat.n_galaxies
        if time.time() - last > 0.5 or done == total:
            update_job(folder, progress=done / max(total, 1), done=done)
            last = time.time()
    notes.close()


def check_job_cancel(folder: Path, when: str) -> None:
    """JobCancelled ("cancelled ``when``") when the job's folder holds a ``cancel`` file."""
    if (folder / "cancel").exists():
        raise JobCancelled(f"cancelled {when}")


def run_prediction_job(folder: Path | str) -> int:
    """Run the job in ``folder``: state running -> finished (rows, flag counts), failed or
    cancelled; rows written. The catalogue is checked as ``deepz predict`` checks it before any
    output exists (``stream.preflight``: its layout, every row's ids, spec-z and coordinates,
    and the unit of its fluxes against the run's training magnitudes): a refusal fails the job
    with its one line as the message, which the Predict page shows. Each warning comes once, as
    from ``deepz predict`` (``stream.repeats_held_back``), not once per read or chunk."""
    from deepz_core.inference.stream import flag_counts, repeats_held_back

    folder = Path(folder)
    spec = read_job(folder)
    update_job(folder, state="running", pid=os.getpid(), started=time.time())
    notes = WarningsKept()
    try:
        with repeats_held_back(), notes.kept():
            n = _predict_job(folder, spec)
    except JobCancelled as exc:
        update_job(folder, state="cancelled", message=str(exc))
        return 0
    except Exception as exc:
        update_job(folder, state="failed", message=failure_message(exc, spec))
        raise
    counts = flag_counts(folder / OUTPUT)
    said = [with_catalog_name(m, spec) for m in notes.messages]
    update_job(
        folder,
        state="finished",
        progress=1.0,
        rows=n,
        flags=counts,
        notes=said,
        finished=time.time(),
    )
    return n


class WarningsKept(logging.Handler):
    """The warnings deepz logs during a job (after ``stream.repeats_held_back``'s filter: each
    once), kept in ``messages`` for the job's ``notes``, which the Predict page shows beside its
    results (the job's log holds them too)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    @contextmanager
    def kept(self) -> Iterator[None]:
        """Keep deepz's warnings within the block."""
        logger = logging.getLogger("deepz")
        logger.addHandler(self)
        try:
            yield
        finally:
            logger.removeHandler(self)


def failure_message(exc: Exception, spec: dict[str, Any]) -> str:
    """The line a failed job shows: a user-facing error's own message (the catalogue named by
    the name it was uploaded under, not its stored path), another error's type and message."""
    if not isinstance(exc, DeepzError):
        return f"{type(exc).__name__}: {exc}"
    return with_catalog_name(str(exc), spec)


def with_catalog_name(text: str, spec: dict[str, Any]) -> str:
    """``text`` with the job's stored catalogue path replaced by the name it was uploaded under."""
    name = spec.get("catalog_name")
    return text.replace(str(spec["catalog"]), str(name)) if name else text


def _predict_job(folder: Path, spec: dict[str, Any]) -> int:
    """``run_prediction_job``'s prediction: the preflight (a bad file fails in one line before
    any output), then the chunks into its output with their provenance; rows written."""
    from deepz_core.inference.provenance import provenance
    from deepz_core.inference.stream import load_predictor, preflight, write_parquet

    given: set[str] = set()  # the notes of this prediction, once each
    checked = preflight(spec["run"], spec["catalog"], given=given)
    update_job(folder, total=checked.rows)
    predictor = load_predictor(spec["run"], spec.get("device", "cpu"))
    prov = provenance(spec["run"], spec["catalog"])
    with ExitStack() as stack:
        predict = _chunk_predictor(folder, spec, predictor, stack, checked.check)
        tables = _tables(
            folder, predictor, spec["catalog"], checked.rows, predict, checked.read, given
        )
        return write_parquet(tables, folder / OUTPUT, prov)


def _chunk_predictor(
    folder: Path, spec: dict[str, Any], predictor: Any, stack: ExitStack, check: UnitCheck
) -> ChunkPredict:
    """What predicts one chunk: the networks (``predictor``), or the run's combination with the
    template fit when the job's ``estimator`` is "combined" (its coordinates carried along, as
    the networks' are; one pool of template-fit processes for the whole job, closed by
    ``stack``; a cancel looked for between the template fit's chunks of 256 galaxies, not only
    between the job's chunks of up to 25,000: ~2 minutes of template fit). ``check``: the
    preflight's unit check of the whole catalogue, which every chunk carries."""
    if spec.get("estimator", "network") != "combined":
        return lambda cat, given: predictor(cat, given=given, check=check, source=spec["catalog"])
    from deepz_core.hybrid.runs import predict_hybrid
    from deepz_core.inference.arrow_tables import arrow_table
    from deepz_core.templatefit.fit import worker_pool

    hybrid = load_hybrid(spec["run"])
    if hybrid is None:
        raise ConfigError(
            f"run {spec.get('run_id')} no longer has its combination with the template fit "
            "(hybrid.json): predict it again with 'network only'"
        )

    pool = stack.enter_context(worker_pool(usable_cores()))

    def combined(cat: Catalog, given: set[str]) -> pa.Table:
        device = spec.get("device", "cpu")
        stop = partial(check_job_cancel, folder, "during the template fit")
        table = predict_hybrid(
            spec["run"],
            cat,
            hybrid=hybrid,
            device=device,
            pool=pool,
            stop=stop,
            check=check,
            given=given,
        )
        return arrow_table(table)  # one row per catalogue row, coordinates carried

    return combined


@dataclass(frozen=True)
class PredictionJob:
    """A job folder: its spec (``job.json``) and state (queued, running, finished, failed,
    cancelled, or interrupted when its process is gone)."""

    folder: Path
    spec: dict[str, Any]
    state: str

    @property
    def job_id(self) -> str:
        return self.folder.name

    @property
    def output(self) -> Path:
        return self.folder / OUTPUT

    @property
    def progress(self) -> float:
        return float(self.spec.get("progress") or 0.0)


def job_state(spec: dict[str, Any], now: float | None = None) -> str:
    """The recorded state, or 'interrupted' when a queued or running job's process is gone."""
    state = str(spec.get("state", "queued"))
    now = time.time() if now is None else now
    starting = state == "queued" and now - spec.get("created", 0) < START_GRACE_S
    if state in ("queued", "running") and not starting and not pid_alive(spec.get("pid")):
        return "interrupted"
    return state


def list_prediction_jobs(root: Path | str) -> list[PredictionJob]:
    """The job folders under ``root``, newest first (unreadable ones skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    jobs = []
    for folder in root.iterdir():
        try:
            spec = read_job(folder)
        except (OSError, ValueError):
            continue
        jobs.append(PredictionJob(folder, spec, job_state(spec)))
    return sorted(jobs, key=lambda j: j.spec.get("created", 0.0), reverse=True)
