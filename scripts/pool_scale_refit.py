"""A run's pool scale refitted with this code, scored on new galaxies (docs/benchmarks.md, "The pool
scale's integrals were not converged").

Refits lambda(mag), the truth-free narrowing of new galaxies' pooled p(z)
(``pz.calibration.fit_pool_scale`` on ``pool_grid``), on the run's training catalogue as training
does (its galaxies no network trained on, at most POOL_MAX_GALAXIES), and scores new galaxies
under the calibration as stored and with the refitted lambda: the test half of the raw
predictions that ``scripts/heldout_size_bench.py --raw FILE`` keeps (networks only).

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 python scripts/pool_scale_refit.py --run RUN --raw raw.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from heldout_size_bench import calibrated_pit, line, score


def refit_pool(run_path: str, cal):
    """lambda(mag) fitted by this code on the run's training galaxies no network trained on."""
    import deepz_core as dz
    from deepz_core.pz.calibration import fit_pool_scale, pool_grid, pool_subset

    config = json.loads((Path(run_path) / "config.json").read_text())
    t = dz.load_run(run_path).predict(config["catalog"], calibrate=False, network_only=True)
    train = np.load(Path(run_path) / "splits.npz")["train"]  # (R K, N)
    folds, reps = int(config["train"]["folds"]), int(config["train"].get("repetitions", 1))
    mag = np.asarray(t["mag"], dtype=np.float64)
    new = ~train.any(axis=0) & (np.asarray(t["flag"]) == 0) & np.isfinite(mag)
    new &= np.isfinite(np.asarray(t["zphot"], dtype=np.float64))
    rows = pool_subset(np.flatnonzero(new))
    w, mu, sd = (np.asarray(t[k], dtype=np.float64)[rows] for k in ("weights", "means", "stds"))
    pz = config["pz"]
    grid = pool_grid(pz["z_min"], pz["z_max"])
    return fit_pool_scale(w, mu, sd, (reps, folds), mag[rows], cal.full, grid)


def main() -> None:
    from deepz_core.inference.calibrate import calibration_fold, load_calibration

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished, calibrated run folder (networks)")
    p.add_argument("--raw", type=Path, required=True, help="heldout_size_bench.py --raw output")
    args = p.parse_args()
    cal = load_calibration(args.run)
    if cal is None or cal.pool is None:
        raise SystemExit(f"{args.run}: no calibration with a pool scale")
    cal = cal.without_heldout()
    pool = refit_pool(args.run, cal)
    print("lambda stored ", np.round(cal.pool.scale, 3))
    print("lambda refit  ", np.round(pool.scale, 3))
    d = dict(np.load(args.raw))
    test = calibration_fold(d["ref_id"], 2) == 1
    mag, pit, ids = d["mag"][test].astype(np.float64), d["pit"][test], d["ref_id"][test]
    for name, c in (("stored", cal), ("refit", cal.with_pool(pool))):
        print(line(name, score(calibrated_pit(c, pit, mag, ids), mag)))


if __name__ == "__main__":
    main()
