"""A run's combination with the template fit refitted with this code, its calibration scored on new
galaxies (docs/benchmarks.md, "The combination's out-of-fold calibration broken at its exponent
edges").

Copies the run folder (the original is not touched), fits the combination again there as
``deepz combine`` does (``Run.combine``: template fit, exponents, out-of-fold calibration, pool
scale) and scores new galaxies under the calibration stored in the original and under the refitted
one: the test half of the raw combined predictions that ``scripts/heldout_size_bench.py --combined
--raw FILE`` keeps (the raw pooled p(z) do not depend on the calibration; the exponents fitted on
all galaxies are the same when the template set and the training catalogue are).

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 python scripts/combination_refit.py --run RUN --raw raw.npz
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from heldout_size_bench import calibrated_pit, line, score


def refit(run_path: Path, copy: Path):
    """The combination of the run at ``run_path`` fitted again by this code in ``copy``."""
    import deepz_core as dz
    from deepz_core.hybrid.runs import load_hybrid

    stored = load_hybrid(run_path)
    if stored is None or stored.calibration is None:
        raise SystemExit(f"{run_path}: no calibrated combination (run `deepz combine` first)")
    shutil.copytree(run_path, copy)
    dz.load_run(copy).combine(stored.template_set)
    return stored, load_hybrid(copy)


def main() -> None:
    from deepz_core.inference.calibrate import calibration_fold

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a run combined with the template fit")
    p.add_argument("--raw", type=Path, required=True, help="heldout_size_bench.py --raw output")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stored, fitted = refit(args.run, Path(tmp) / "run")
    d = dict(np.load(args.raw))
    test = calibration_fold(d["ref_id"], 2) == 1
    mag, pit, ids = d["mag"][test].astype(np.float64), d["pit"][test], d["ref_id"][test]
    print("exponent breaks", stored.weights.breaks(), "refitted", fitted.weights.breaks())
    for name, h in (("stored", stored), ("refitted", fitted)):
        cal = h.calibration.without_heldout()
        print(
            f"{name}: cross-fitted out-of-fold PIT KS {cal.summary['pit_ks_after']:.4f}, breaks "
            f"{cal.summary.get('breaks', [])}, lambda {np.round(cal.pool.scale, 3)}"
        )
        print(line(name, score(calibrated_pit(cal, pit, mag, ids), mag)))


if __name__ == "__main__":
    main()
