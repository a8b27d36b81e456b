"""Fig. B1 follow-up (docs/benchmarks.md): does more outlier augmentation flatten the network's curve?

Usage: PYTHONPATH=. python scripts/b1_outlier_check.py EXPERIMENTS_DIR  (a finished `experiments
--preset quick` folder; trains one more configuration there, outlier_fraction 0.5).
"""

import sys
from pathlib import Path

from deepz_core.experiments.context import Context
from deepz_core.experiments.plan import plan
from deepz_core.experiments.robustness import add_u_flux, network_photoz, test_galaxies
from deepz_core.experiments.trained import train_run
from deepz_core.pz import metrics
from deepz_core.rundir import RunDir
from deepz_core.simulate import demo_catalog_path

root = Path(sys.argv[1])
ctx = Context(root, plan("quick"), demo_catalog_path(), "cpu", print)
runs = {
    "no outliers": RunDir(root / "runs" / "alpha0.80_keep"),
    "outliers 0.1": RunDir(root / "runs" / "train_outliers"),
}
runs["outliers 0.5"] = train_run(
    root,
    "train_outliers_0.5",
    ctx.catalog_path,
    ctx.plan,
    "auto",
    {"outlier_fraction": 0.5, "device": "cpu"},
)
base = test_galaxies(ctx)
for label, run in runs.items():
    zphot = network_photoz(run)
    row = []
    for added in ctx.plan.u_band_added:
        cat = add_u_flux(base, added)
        row.append(metrics.outlier_fraction(metrics.dz(zphot(cat), cat.zspec)))
    print(label, " ".join(f"{100 * x:.1f}" for x in row))
