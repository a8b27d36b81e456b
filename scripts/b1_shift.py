"""Fig. B1 in E20's set-up (docs/benchmarks.md): how far does +100% u-band flux move the zphot of
the network trained with 10% outlier fluxes at z < 0.25, and how many galaxies does it push past the
strict outlier threshold 0.02 (1 + z)?

Usage, after ``experiments --preset quick --out experiments/quick``:

    DEEPZ_QUIET=1 PYTHONPATH=. python scripts/b1_shift.py experiments/quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from deepz_core.catalog.io import read_catalog
from deepz_core.experiments.ellipticals import elliptical_mock
from deepz_core.experiments.plan import plan
from deepz_core.experiments.robustness import add_u_flux, network_photoz
from deepz_core.pz import metrics
from deepz_core.rundir import RunDir


def main(root: Path) -> None:
    quick = plan("quick")
    bands = read_catalog(root / "b1_ellipticals" / "train.fits").bands
    # the test set of figb1_ellipticals
    _, test = elliptical_mock(quick.b1_mock_galaxies, bands, quick.seed + 11)
    low = test.select(test.zspec < 0.25)
    zphot = network_photoz(RunDir(root / "runs" / "b1_ellipticals_outlier_fluxes"))
    before, after = zphot(low), zphot(add_u_flux(low, 1.0))
    dz_before, dz_after = metrics.dz(before, low.zspec), metrics.dz(after, low.zspec)
    new = metrics.is_outlier(dz_after) & ~metrics.is_outlier(dz_before)
    lo, hi = np.percentile(after - before, [5, 95])
    print(
        f"z < 0.25: {low.n_galaxies} galaxies; zphot shift with +100% u flux, 5-95%: "
        f"{lo:+.3f} to {hi:+.3f}; new strict outliers: {new.sum()}, their median |dz| "
        f"{np.median(np.abs(dz_after[new])):.3f}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
