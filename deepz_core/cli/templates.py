"""Template-fitting commands (registered with ``deepz_core.cli.common.command``): ``templatefit`` and
``bench-templates`` (E20 Appendix A, the BCNZ2-like baseline)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepz_core.cli.common import (
    add_convention_args,
    add_overwrite,
    command,
    conventions_from_args,
)
from deepz_core.device import usable_cores
from deepz_core.errors import ConfigError

if TYPE_CHECKING:
    from deepz_core.catalog.catalog import Catalog
    from deepz_core.templatefit.config import TemplateFitConfig


def _workers(text: str) -> int:
    """'auto' (one per usable core) or a positive integer."""
    if text == "auto":
        return usable_cores()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--workers must be 'auto' or an integer >= 1, got {text!r}")
    return value


def _config(
    path: str | None, templates: str | None = None
) -> tuple[TemplateFitConfig, dict[str, Any]]:
    """TemplateFitConfig from a JSON file of fields (defaults without one), and the file's fields
    ({} without one); ``templates`` (the --templates option), when given, overrides the file's
    template_set."""
    from deepz_core.sed.template_sets import set_info
    from deepz_core.templatefit.config import TemplateFitConfig

    if templates is not None:
        set_info(templates, "--templates")
    override = {} if templates is None else {"template_set": templates}
    if path is None:
        return TemplateFitConfig(**override), {}
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--config {path}: cannot read a JSON object ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of TemplateFitConfig fields")
    return TemplateFitConfig.from_dict({**values, **override}), values


def _templatefit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", required=True, help="catalogue (FITS/Parquet/CSV/HDF5)")
    p.add_argument("--exposures", help="single exposures, when not an HDU/key of the catalogue")
    p.add_argument("--out", required=True, help="predictions (.fits or .parquet)")
    add_overwrite(p)
    p.add_argument("--device", default="auto", help="auto (cuda > cpu), cpu, cuda, cuda:N")
    p.add_argument(
        "--zp-calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="calibrate band zero-points on the spec-z galaxies (BCNZ2)",
    )
    p.add_argument("--zero-points", help="use these zero-points (a .zeropoints.json file)")
    p.add_argument("--grid", action="store_true", help="also write p(z) on the z grid (column pz)")
    p.add_argument("--workers", default="auto", help="CPU processes: auto (one per core) or N")
    p.add_argument("--config", help="JSON file of TemplateFitConfig fields to override")
    p.add_argument(
        "--templates",
        help="template set: bcnz2 (default; the mock's own SED family) or "
        "kcorrect (5 NMF templates, independent of the mock); overrides --config",
    )
    p.add_argument(
        "--z-max",
        type=float,
        help="fit (and write p(z) over) z 0..Z_MAX; default: --config's z_max, else 1.5 widened "
        "in steps of 0.5 to cover the catalogue's spec-z (as `train` picks a run's grid)",
    )
    add_convention_args(p)


def _fit_range(
    cfg: TemplateFitConfig,
    cat: Catalog,
    z_max: float | None,
    config: dict[str, Any],
) -> tuple[TemplateFitConfig, str]:
    """``cfg`` over the redshifts to fit: ``z_max`` (--z-max) when given, else the config file's
    (fields ``config``) when it set one, else the training grid's rule for the catalogue's
    spec-z; with the odds window of its bands' survey profile, as a training run's (unless the
    config file sets ``pz``); and the line that says which range (stderr)."""
    import numpy as np

    from deepz_core.jobs.training_run import grid_covering
    from deepz_core.templatefit.config import over_redshifts

    zspec = cat.zspec
    grid = grid_covering(zspec, cat.bands)
    if z_max is not None:
        why = "--z-max"
    elif "z_max" in config:
        z_max, why = cfg.z_max, "--config"
    else:
        z_max = grid.z_max
        top = np.nanmax(zspec) if np.isfinite(zspec).any() else float("nan")
        why = f"covering the catalogue's spec-z up to {top:.2f}; --z-max to change"
    window = None if "pz" in config else grid.odds_window
    line = f"template fit over z {cfg.z_min:g}-{z_max:g} ({why})"
    return over_redshifts(cfg, z_max, window), line


@command("templatefit", _templatefit_args)
def _templatefit(args: argparse.Namespace) -> int:
    """BCNZ2-like template-fitting photo-z for a catalogue (E20 Appendix A)."""
    import numpy as np

    from deepz_core.catalog.io import read_catalog
    from deepz_core.catalog.screen import PzFlag
    from deepz_core.files import check_outputs
    from deepz_core.inference.predict import table_format
    from deepz_core.inference.provenance import fit_provenance, provenance_meta
    from deepz_core.templatefit.calibration import without_empty_bands
    from deepz_core.templatefit.fit import (
        fit_catalog,
        read_zero_points,
        write_templatefit,
        zero_points_path,
    )

    table_format(args.out)  # a bad output name fails before any work
    check_outputs(
        {"--out": args.out, "--out (its zero-points)": zero_points_path(args.out)},
        {
            "--catalog": args.catalog,
            "--exposures": args.exposures,
            "--zero-points": args.zero_points,
            "--config": args.config,
        },
        args.overwrite,
    )
    cfg, fields = _config(args.config, args.templates)
    workers = _workers(args.workers)
    cat = read_catalog(
        args.catalog, args.exposures, conventions_from_args(args), measured_bands=False
    )
    cat = without_empty_bands(cat)  # a band without any value: fitted without it, one warning
    cfg, line = _fit_range(cfg, cat, args.z_max, fields)
    print(line, file=sys.stderr)
    zp = None if args.zero_points is None else read_zero_points(args.zero_points, cat.bands)
    table = fit_catalog(
        cat,
        cfg,
        args.device,
        zero_points=zp,
        calibrate=args.zp_calibrate,
        grid=args.grid,
        workers=workers,
    )
    table.meta.update(provenance_meta(fit_provenance(args.catalog, cfg.pz)))
    write_templatefit(table, args.out)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "galaxies": len(table),
                "template_set": cfg.template_set,
                "z_range": [cfg.z_min, cfg.z_max],
                "no_pz": int(np.count_nonzero(np.asarray(table["flag"]) & PzFlag.NO_PZ)),
                "zero_points_calibrated": bool(table.meta["ZPCAL"]),
            }
        )
    )
    return 0


def _combine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="a finished training run folder")
    p.add_argument(
        "--templates",
        default="bcnz2",
        help="template set of the template fit: bcnz2 (default) or kcorrect",
    )
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep the pooled p(z) raw: no PIT calibration of the combination",
    )
    p.add_argument("--workers", default="auto", help="CPU processes: auto (one per core) or N")


@command("combine", _combine_args)
def _combine(args: argparse.Namespace) -> int:
    """Combine a finished run's networks with the template fit (beyond E20): p_net^a p_tf^b with
    exponents per half magnitude fitted on the out-of-fold galaxies, then calibrated; writes
    hybrid.json and hybrid_predictions.fits into the run, which `predict` then uses (its
    --network-only keeps the fast path). Prints the out-of-fold sigma68 of network, template fit
    and combination."""
    from deepz_core.hybrid.runs import check_template_set, fit_hybrid
    from deepz_core.rundir import RunDir

    check_template_set(args.templates)
    workers = _workers(args.workers)
    run = RunDir(Path(args.run))
    if not run.file("model.safetensors").exists():
        raise ConfigError(f"--run {args.run} has no trained model (model.safetensors)")
    with run.locked():
        hybrid = fit_hybrid(
            run.path, args.templates, calibrate=not args.no_calibrate, workers=workers
        )
    overall = hybrid.summary["overall"]
    print(json.dumps({"run": str(run.path), "templates": args.templates, **overall}))
    return 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--galaxies", type=int, default=2000, help="demo-catalogue galaxies to fit")
    p.add_argument("--device", default="auto", help="auto (cuda > cpu), cpu, cuda, cuda:N")
    p.add_argument("--workers", default="auto", help="CPU processes for the second timing")
    p.add_argument("--templates", default="bcnz2", help="template set: bcnz2 or kcorrect")


@command("bench-templates", _bench_args)
def _bench_templates(args: argparse.Namespace) -> int:
    """Time the template fit on demo galaxies (46 bands, 1201 redshifts): galaxies per second."""
    workers = _workers(args.workers)
    print(json.dumps(bench_templates(args.galaxies, args.device, workers, args.templates)))
    return 0


def bench_templates(
    n: int, device: str = "auto", workers: int = 1, template_set: str = "bcnz2"
) -> dict:
    """Galaxies/s of ``fit_catalog`` (no zero-point calibration) with set ``template_set`` on n
    demo galaxies: in this process, and (CPU) with a pool of ``workers`` processes, both after a
    warm-up (tables cached, processes started; their start-up time is reported separately)."""
    import numpy as np
    import torch

    from deepz_core.catalog.io import read_catalog
    from deepz_core.simulate import demo_catalog_path
    from deepz_core.templatefit.calibration import fit_device
    from deepz_core.templatefit.fit import fit_catalog, template_names, worker_pool

    if n < 1:
        raise ConfigError(f"--galaxies must be >= 1, got {n}")
    cfg, _ = _config(None, template_set)
    dev = fit_device(device)
    cat = read_catalog(demo_catalog_path())
    cat = cat.select(
        np.sort(
            np.random.default_rng(0).choice(cat.n_galaxies, min(n, cat.n_galaxies), replace=False)
        )
    )
    fit_catalog(
        cat.select(np.arange(min(64, cat.n_galaxies))), cfg, dev, calibrate=False
    )  # warm-up

    def rate(pool=None) -> float:
        t0 = time.perf_counter()
        fit_catalog(cat, cfg, dev, calibrate=False, pool=pool)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return cat.n_galaxies / (time.perf_counter() - t0)

    out = {
        "galaxies": cat.n_galaxies,
        "bands": len(cat.bands),
        "n_z": len(cfg.z_grid()),
        "template_set": template_set,
        "templates": len(template_names(template_set)),
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "gal_per_s": rate(),
    }
    if dev.type == "cpu" and workers > 1:
        with worker_pool(workers) as pool:
            t0 = time.perf_counter()
            warm = cat.select(np.arange(min(cat.n_galaxies, 16 * workers)))
            fit_catalog(warm, dataclasses.replace(cfg, chunk=16), dev, calibrate=False, pool=pool)
            out["workers"] = workers
            out["workers_startup_s"] = time.perf_counter() - t0
            out["gal_per_s_workers"] = rate(pool)
    return out
