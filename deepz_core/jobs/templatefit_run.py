"""Template fitting as a run (the app's second run kind): a run folder like a training run's, whose
``predictions.fits`` holds the template-fit products in deepz's columns, so the Results and Quality
cut pages compare it with deepz runs (E20 App. A; the baseline of Fig. 2).

config.json: ``{"kind": "templatefit", "catalog", "exposures", "templatefit": {...}, "device",
"calibrate"}``. Executed by the same queue worker; status phase 'templatefit' with galaxies done as
epoch/epochs; the cancel file looked for between the fit's chunks (``fit_catalog(stop=)``, about a
second apart); a resumed run starts again (it takes minutes, not hours).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.io import read_catalog
from deepz_core.errors import ConfigError
from deepz_core.evaluation.profiles import run_profile
from deepz_core.inference.predict import summarise
from deepz_core.inference.provenance import fit_provenance, provenance_meta
from deepz_core.jobs.training_run import grid_covering, record_outcome
from deepz_core.rundir import RunDir
from deepz_core.templatefit.calibration import fit_device, robust_coadds
from deepz_core.templatefit.config import over_redshifts
from deepz_core.templatefit.fit import (
    TemplateFitConfig,
    calibrate_zero_points,
    fit_catalog,
    write_templatefit,
)
from deepz_core.training.loop import CancelWatch, check_cancel

PROGRESS_S = 1.0  # seconds between status updates (galaxies fitted, for the Train page)


def create_templatefit_run(
    out: Path | str,
    catalog: str,
    exposures: str | None = None,
    templatefit: dict[str, Any] | None = None,
    device: str = "auto",
    calibrate: bool = True,
) -> RunDir:
    """Validate the choices and write ``config.json`` of a new template-fit run (nothing fitted
    yet). Without a ``z_max`` in ``templatefit`` the fit and its p(z) grid cover the catalogue's
    spec-z as a training run's grid does (``grid_covering``), not E20's 1.5 alone."""
    cfg = TemplateFitConfig.from_dict(templatefit or {})
    for flag, path in (("--catalog", catalog), ("--exposures", exposures)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{flag} {str(path)!r}: no such file")
    if "z_max" not in (templatefit or {}):
        cat = read_catalog(catalog)
        grid = grid_covering(cat.zspec, cat.bands)  # and the odds window of the bands' profile
        window = None if "pz" in (templatefit or {}) else grid.odds_window
        cfg = over_redshifts(cfg, grid.z_max, window)
    run = RunDir(Path(out))
    if run.file("config.json").exists():
        raise ConfigError(f"--out {out} already holds a run; choose another folder")
    config = {
        "kind": "templatefit",
        "catalog": str(Path(catalog).resolve()),
        "exposures": None if exposures is None else str(Path(exposures).resolve()),
        "templatefit": dataclasses.asdict(cfg),
        "pz": cfg.pz.to_dict(),  # the grid the pages read (``run_pz_config``)
        "device": device,
        "calibrate": bool(calibrate),
        "preset": "templatefit",
    }
    return run.create(config)


def execute_templatefit_run(run: RunDir) -> None:
    """Fit every galaxy of the run's catalogue and write predictions.fits (+ zero-points), holding
    the run folder's lock (InUseError when another process holds it)."""
    with run.locked():
        config = run.config()
        record_outcome(run, lambda: _fit(run, config))


class FitProgress:
    """Writes the galaxies fitted so far into the run's status (phase 'templatefit', as
    epoch/epochs) at most every PROGRESS_S seconds, and always for the last one."""

    def __init__(self, run: RunDir, n: int) -> None:
        self.run, self.n, self.last = run, n, -float("inf")

    def __call__(self, fitted: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_S or fitted >= self.n:
            self.last = now
            self.run.set_status("running", phase="templatefit", epoch=fitted, epochs=self.n)


def _fit(run: RunDir, config: dict[str, Any]) -> None:
    check_cancel(run, "the start of the template fit")
    cat = read_catalog(config["catalog"], config.get("exposures"))
    cfg = TemplateFitConfig.from_dict(config["templatefit"])
    device = fit_device(config.get("device", "auto"))
    zero_points = None
    if config.get("calibrate", True) and np.isfinite(cat.zspec).sum() >= 10:
        run.set_status("running", phase="zero-points", epoch=0)
        zero_points = calibrate_zero_points(robust_coadds(cat, cfg), cfg, device)
    run.log(
        f"template fit ({cfg.template_set} templates) of {cat.n_galaxies} galaxies over z "
        f"{cfg.z_min:g}-{cfg.z_max:g} on {device}; "
        "zero-points "
        f"{'calibrated on the spec-z sample' if zero_points is not None else 'not calibrated'}"
    )
    workers = 1 if device.type != "cpu" else max(1, min(os.cpu_count() or 1, cat.n_galaxies // 500))
    check_cancel(run, "the template fit")  # a cancel that came during the zero-points
    run.set_status(  # the ETA counts from here: the zero-points before took as long as the fit
        "running", phase="templatefit", epoch=0, epochs=cat.n_galaxies, phase_started=time.time()
    )
    table = fit_catalog(
        cat,
        cfg,
        device,
        zero_points,
        calibrate=False,
        workers=workers,
        stop=CancelWatch(run, "the template fit"),
        progress=FitProgress(run, cat.n_galaxies),
    )
    table.meta.update(provenance_meta(fit_provenance(config["catalog"], cfg.pz)))
    write_templatefit(table, run.file("predictions.fits"))
    summary = summarise(table, run_profile(run.card(), cat.bands).outlier)
    if summary["n_no_pz"]:
        run.log(f"{summary['n_no_pz']} galaxies without a p(z) (flag NO_PZ: too few usable bands)")
    run.log(f"metrics over the spec-z galaxies: {summary}")
    run.set_status("finished", phase="done", summary=summary)
    run.log("finished")
