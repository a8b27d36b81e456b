"""app/jobs.py (issue 19): queueing checks the queue's limits before writing anything; cancel and
resume respect who queued a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import jobs
from deepz_core.errors import ConfigError
from deepz_core.jobs import queue
from tests.synthetic import synthetic_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> str:
    from deepz_core.catalog.io import write_catalog

    path = tmp_path_factory.mktemp("jobs") / "cat.fits"
    return str(write_catalog(synthetic_catalog(40, 0, exposures=False), path))


def test_queue_run_checks_everything_before_writing(tmp_path, catalog) -> None:
    runs = tmp_path / "runs"
    token = queue.new_owner_token()
    with pytest.raises(ConfigError, match="repetitions = 21"):
        jobs.queue_run(runs, catalog, "none", "smoke", {}, {"repetitions": 21}, start=False)
    assert not runs.exists() or not list(runs.iterdir())
    run = jobs.queue_run(runs, catalog, "none", "smoke", {}, {}, start=False, owner=token)
    assert queue.is_owner(run, token)
    with pytest.raises(ConfigError, match="confirm"):
        jobs.cancel_run(run, queue.new_owner_token())
    assert run.status()["state"] == "queued" and not run.file("cancel").exists()
    jobs.cancel_run(run, token)
    assert run.status()["state"] == "cancelled"
    with pytest.raises(ConfigError, match="confirm"):
        jobs.resume_run(run, runs, start=False)
    jobs.resume_run(run, runs, start=False, confirmed=True)
    assert run.status()["state"] == "queued"


def test_cancelling_a_queued_run_the_worker_just_took_leaves_it_to_the_cancel_file(
    tmp_path, catalog
) -> None:
    from deepz_core.files import LOCK_FILE, ExclusiveLock

    token = queue.new_owner_token()
    run = jobs.queue_run(tmp_path / "runs", catalog, "none", "smoke", {}, {}, False, owner=token)
    worker = ExclusiveLock(Path(run.path) / LOCK_FILE)
    assert worker.acquire()  # as the worker holds it while it starts the run
    try:
        jobs.cancel_run(run, token)
    finally:
        worker.release()
    assert run.file("cancel").exists() and run.status()["state"] == "queued"
