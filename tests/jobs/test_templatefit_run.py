"""Template fitting as a run folder (the app's second run kind)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepz_core.errors import ConfigError
from deepz_core.evaluation.run_products import read_predictions, results_stats
from deepz_core.jobs import templatefit_run
from deepz_core.jobs.status import run_progress
from deepz_core.jobs.templatefit_run import create_templatefit_run, execute_templatefit_run
from deepz_core.rundir import RunDir
from deepz_core.training import loop

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_template_fit_run_writes_deepz_style_predictions(
    tmp_path: Path, small_catalog: Path
) -> None:
    run = create_templatefit_run(tmp_path / "tfit-1", str(small_catalog), device="cpu")
    assert run.status()["state"] == "queued"
    execute_templatefit_run(run)
    status = run.status()
    assert status["state"] == "finished" and status["summary"]["n"] > 100
    assert run_progress(run) == (1.0, "finished")
    assert status["phase_started"] >= status["started"]  # the fit's ETA counts from its start
    pred = read_predictions(run.file("predictions.fits"))  # what the Results/cut pages read
    assert np.all((pred.zphot >= 0) & (pred.zphot <= 1.5))
    assert pred.weights.shape[0] == pred.n and np.allclose(pred.weights.sum(1), 1, atol=1e-3)
    assert results_stats(pred)["n"] == status["summary"]["n"]
    assert Path(str(run.file("predictions.fits")) + ".zeropoints.json").is_file()


def test_a_cancelled_template_fit_says_so(tmp_path: Path, small_catalog: Path) -> None:
    run = create_templatefit_run(tmp_path / "tfit-2", str(small_catalog), device="cpu")
    run.file("cancel").write_text("now")
    execute_templatefit_run(run)
    assert run.status()["state"] == "cancelled"
    assert not run.file("predictions.fits").exists()


def test_a_cancel_during_the_fit_stops_it_after_the_chunk_in_flight(
    tmp_path: Path, small_catalog: Path, monkeypatch
) -> None:
    """The cancel file is looked for between the fit's chunks (30 galaxies here), not after the
    whole catalogue; the status counts the galaxies fitted so far."""
    monkeypatch.setattr(loop, "CANCEL_POLL_S", 0.0)
    run = create_templatefit_run(
        tmp_path / "tfit-3", str(small_catalog), templatefit={"chunk": 30}, device="cpu"
    )
    heard: list[int] = []

    class CancelAfterFirst(templatefit_run.FitProgress):
        def __call__(self, fitted: int) -> None:
            super().__call__(fitted)
            heard.append(run.status()["epoch"])
            run.file("cancel").write_text("now")

    monkeypatch.setattr(templatefit_run, "FitProgress", CancelAfterFirst)
    execute_templatefit_run(run)
    assert run.status()["state"] == "cancelled"
    assert heard == [30]  # one chunk fitted, its count in the status, then stopped
    assert not run.file("predictions.fits").exists()


def test_bad_choices_fail_before_a_folder_exists(tmp_path: Path, small_catalog: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        create_templatefit_run(tmp_path / "a", str(tmp_path / "missing.fits"))
    with pytest.raises(ConfigError, match="unknown template-fit config fields"):
        create_templatefit_run(tmp_path / "b", str(small_catalog), templatefit={"nope": 1})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    create_templatefit_run(tmp_path / "c", str(small_catalog))
    with pytest.raises(ConfigError, match="already holds a run"):
        create_templatefit_run(tmp_path / "c", str(small_catalog))
    assert RunDir(tmp_path / "c").config()["kind"] == "templatefit"


def test_the_fit_s_eta_leaves_out_the_zero_points_before_it(tmp_path: Path) -> None:
    """Review, ninth session: 40 s into a run, 30 of them on the zero-points, 256 of 2,000
    galaxies fitted read 'about 4 min 35 s left'; the run ended 3 s later."""
    import time

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    now = time.time()
    run.set_status("running", started=now - 40, phase_started=now - 4, phase="templatefit")
    run.set_status("running", epoch=1000, epochs=2000)
    fraction, text = run_progress(run)
    assert fraction == 0.5 and "about 4 s left" in text and "4 s elapsed" in text


def test_a_template_fit_run_covers_the_catalogues_redshifts(tmp_path: Path) -> None:
    """Regression: the run kind fitted E20's z <= 1.5 whatever the catalogue; a deep one (spec-z
    to 2.7) now gets the grid a training run would (0-3), unless the choices name a z_max."""
    from deepz_core.catalog.catalog import Catalog
    from deepz_core.catalog.io import write_catalog
    from deepz_core.training.config import run_pz_config

    bands = ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y")
    flux = np.random.default_rng(3).uniform(1.0, 10.0, (20, 6))
    cat = Catalog(np.arange(1, 21), bands, flux, 0.1 * flux, zspec=np.linspace(0.1, 2.7, 20))
    path = str(write_catalog(cat, tmp_path / "deep.fits"))
    run = create_templatefit_run(tmp_path / "deep", path)
    assert run.config()["templatefit"]["z_max"] == 3.0
    assert run.config()["templatefit"]["pz"]["z_max"] == 3.0 and run_pz_config(run).z_max == 3.0
    run = create_templatefit_run(tmp_path / "e20", path, templatefit={"z_max": 1.5})
    assert run.config()["templatefit"]["z_max"] == 1.5
