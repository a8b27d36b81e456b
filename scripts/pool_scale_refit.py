"""A run's pool scale (and with --calibration its out-of-fold calibration) refitted with this code,
scored on new galaxies (docs/benchmarks.md, "The pool scale's integrals were not converged" and
"The out-of-fold calibration smoothed across magnitude").

Refits lambda(mag), the truth-free narrowing of new galaxies' pooled p(z)
(``pz.calibration.fit_pool_scale`` on ``pool_grid``), on the run's training catalogue as training
does (its galaxies no network trained on, at most POOL_MAX_GALAXIES), and scores new galaxies
under the calibration as stored and with the refitted lambda: the test half of the raw
predictions that ``scripts/heldout_size_bench.py --raw FILE`` keeps (networks only). With
--calibration the out-of-fold calibration is refitted first, as training does
(``inference.calibrate.OUT_OF_FOLD_BINS`` on the raw PITs of the run's out-of-fold galaxies with a
spec-z), and lambda on top of it.

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 python scripts/pool_scale_refit.py --run RUN --raw raw.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from heldout_size_bench import calibrated_pit, line, score


def refit_calibration(t, variant: str | None = None):
    """The out-of-fold calibration as this code's training fits it, from the run's raw
    predictions ``t`` of its training catalogue; ``variant`` "MIN_PER_BIN:SPAN" (bins of at
    least MIN_PER_BIN galaxies smoothed across SPAN magnitudes, 0: not smoothed) instead of
    OUT_OF_FOLD_BINS."""
    from deepz_core.inference.calibrate import OUT_OF_FOLD_BINS, fit_run_calibration
    from deepz_core.pz.calibration import MAX_BINS

    pit, mag = (np.asarray(t[k], dtype=np.float64) for k in ("pit", "mag"))
    oof = np.asarray(t["out_of_fold"], dtype=bool) & np.isfinite(pit) & np.isfinite(mag)
    oof_ids = np.asarray(t["ref_id"])[oof]
    bins = dict(OUT_OF_FOLD_BINS)
    if variant is not None:
        per_bin, span = variant.split(":")
        bins = {"min_per_bin": int(per_bin), "smooth": float(span)}
        bins["max_bins"] = MAX_BINS if bins["min_per_bin"] >= 1000 else 40
    return fit_run_calibration(pit[oof], mag[oof], oof_ids, **bins)


def raw_training_predictions(run_path: str):
    """The run's raw (uncalibrated) network predictions of its training catalogue."""
    import deepz_core as dz

    config = json.loads((Path(run_path) / "config.json").read_text())
    return dz.load_run(run_path).predict(config["catalog"], calibrate=False, network_only=True)


def refit_pool(run_path: str, cal, t):
    """lambda(mag) fitted by this code on the run's training galaxies no network trained on, from
    its raw predictions ``t`` of its training catalogue."""
    from deepz_core.pz.calibration import fit_pool_scale, pool_grid, pool_subset

    config = json.loads((Path(run_path) / "config.json").read_text())
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
    p.add_argument(
        "--calibration",
        nargs="*",
        metavar="MIN_PER_BIN:SPAN",
        help="refit the out-of-fold calibration too: as training does, or each variant given",
    )
    args = p.parse_args()
    cal = load_calibration(args.run)
    if cal is None or cal.pool is None:
        raise SystemExit(f"{args.run}: no calibration with a pool scale")
    cal = cal.without_heldout()
    t = raw_training_predictions(args.run)
    pool = refit_pool(args.run, cal, t)
    print("lambda stored ", np.round(cal.pool.scale, 3))
    print("lambda refit  ", np.round(pool.scale, 3))
    d = dict(np.load(args.raw))
    test = calibration_fold(d["ref_id"], 2) == 1
    mag, pit, ids = d["mag"][test].astype(np.float64), d["pit"][test], d["ref_id"][test]
    rows = [("stored", cal), ("lambda refit", cal.with_pool(pool))]
    if args.calibration is not None:
        for variant in args.calibration or [None]:
            oof = refit_calibration(t, variant)
            oof = oof.with_pool(refit_pool(args.run, oof, t))
            name = f"calibration {variant or 'refit'}"
            print(
                f"{name}: {len(oof.full.mag_centres)} bins, cross-fitted PIT KS "
                f"{oof.summary['pit_ks_after']:.4f}, lambda {np.round(oof.pool.scale, 3)}"
            )
            rows.append((name, oof))
    for name, c in rows:
        print(line(name, score(calibrated_pit(c, pit, mag, ids), mag)))


if __name__ == "__main__":
    main()
