"""The Run API (deepz_core/jobs/run.py), issue 19: ``train`` never writes into someone else's
folder, leaves nothing behind when refused, and a run another process trains is refused."""

from __future__ import annotations

import pytest

import deepz_core as dz
from deepz_core.errors import ConfigError, InUseError
from deepz_core.files import LOCK_FILE, ExclusiveLock
from tests.synthetic import synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def catalog() -> dz.Catalog:
    return synthetic_catalog(60, 2, exposures=False)


def test_train_refuses_a_folder_of_other_files_untouched(tmp_path, catalog) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "catalog.fits").write_bytes(b"the user's own catalogue")
    with pytest.raises(ConfigError, match="not a deepz run"):
        dz.train(catalog, out, preset="smoke", pretrain="none")
    assert [p.name for p in out.iterdir()] == ["catalog.fits"]
    assert (out / "catalog.fits").read_bytes() == b"the user's own catalogue"


def test_a_refused_call_leaves_no_catalogue_behind_and_the_next_one_trains(
    tmp_path, catalog
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="preset"):
        dz.train(catalog, out, preset="huge", pretrain="none")
    assert not (out / "catalog.fits").exists()
    run = dz.train(catalog, out, preset="smoke", pretrain="none", options={"schedule": [[1, 1e-3]]})
    assert run.state == "finished"


def test_a_run_another_process_trains_is_refused(tmp_path, catalog) -> None:
    out = tmp_path / "busy"
    other = ExclusiveLock(out / LOCK_FILE)
    assert other.acquire()
    try:
        with pytest.raises(InUseError, match="in use by PID"):
            dz.train(catalog, out, preset="smoke", pretrain="none")
    finally:
        other.release()
