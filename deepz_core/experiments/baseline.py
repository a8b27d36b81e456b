"""The template-fitting baseline of the experiments (BCNZ2-like, E20 App. A) and the template-based
pretraining simulation (E20 Sec. 3.3), cached in the report folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.experiments.context import Context
from deepz_core.experiments.robustness import PhotoZ


def cpu_workers(device: str) -> int:
    """Processes for template fitting: one per core on CPU (it scales better over processes than
    over threads), one on a GPU."""
    return 1 if device.startswith(("cuda", "mps")) else max(1, os.cpu_count() or 1)


def template_simulation(ctx: Context) -> Path:
    """Template-based pretraining set through the catalogue's bands (same size as the SPS one)."""
    from deepz_core.simulate.templates import simulate_templates

    path = ctx.root / "template_sim.fits"
    if not path.exists():
        ctx.log("[experiments] simulating the template-based pretraining set")
        cat = simulate_templates(ctx.plan.template_sim_n, ctx.catalog.bands, ctx.plan.seed + 1)
        write_catalog(cat, path, overwrite=True)  # fixed by the plan: a rerun writes the same
    return path


def template_fit(ctx: Context, template_set: str = "bcnz2") -> Path:
    """Template-fit predictions of the whole catalogue, zero-points calibrated on its spec-z.

    ``bcnz2`` shares the demo mock's BC03 grids (an idealised fit that knows the mock's SED family);
    ``kcorrect`` is an independent SED family, as real templates are for real galaxies."""
    from deepz_core.templatefit.config import TemplateFitConfig
    from deepz_core.templatefit.fit import fit_catalog, write_templatefit

    suffix = "" if template_set == "bcnz2" else f"_{template_set}"
    path = ctx.root / f"templatefit{suffix}.fits"
    if not path.exists():
        ctx.log(f"[experiments] template fitting the catalogue ({template_set} templates)")
        table = fit_catalog(
            ctx.catalog,
            TemplateFitConfig(template_set=template_set),
            device=ctx.device,
            workers=cpu_workers(ctx.device),
        )
        write_templatefit(table, path)
    return path


def template_photoz(ctx: Context) -> PhotoZ:
    """Template-fit zphot of any catalogue with the zero-points calibrated on the full spec-z sample
    (so an outlier added to test galaxies does not leak into the calibration)."""
    from deepz_core.templatefit.fit import fit_catalog, read_zero_points, zero_points_path

    zero_points = read_zero_points(zero_points_path(template_fit(ctx)), ctx.catalog.bands)

    def zphot(cat: Catalog) -> np.ndarray:
        table = fit_catalog(
            cat,
            device=ctx.device,
            zero_points=zero_points,
            calibrate=False,
            workers=cpu_workers(ctx.device),
        )
        return np.asarray(table["zphot"], dtype=float)

    return zphot
