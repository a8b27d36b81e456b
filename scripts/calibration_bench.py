"""Raw against calibrated p(z) of a finished run (docs/benchmarks.md, "Calibrated p(z)").

For each catalogue given, predicts it twice with the run (``calibrate=False`` and the default) and
prints, as one JSON object per catalogue: sigma68, PIT KS, CDE loss and the share of spec-z inside
the 68% interval, overall and per iAB bin, before and after the calibration. Galaxies the run trained
on are scored out of fold (each calibrated by the calibration fitted without it); those of a
catalogue the run never saw are held out from both the networks and the calibration. ``--truth
ztrue`` adds a mock's galaxies WITHOUT a spec-z, scored against their true redshift: held out from
the networks and the calibration too, each predicted by the whole ensemble (as any new galaxy).

    DEEPZ_QUIET=1 python scripts/calibration_bench.py --run runs/demo --catalog heldout.fits
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

import deepz_core as dz
from deepz_core.evaluation.calibration import compare_calibration


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished run folder")
    p.add_argument("--catalog", nargs="+", required=True, help="catalogues with a spec-z")
    p.add_argument("--truth", help="also score galaxies without a spec-z against this column")
    args = p.parse_args()
    run = dz.load_run(args.run)
    for path in args.catalog:
        cat = dz.read_catalog(path)
        report(run, cat, path)
        if args.truth:
            report(run, unlabelled(cat, args.truth), f"{path}[no spec-z, truth {args.truth}]")


def unlabelled(cat: dz.Catalog, truth: str) -> dz.Catalog:
    """The galaxies of ``cat`` without a spec-z, with the column ``truth`` as their spec-z."""
    if truth not in cat.extra:
        raise SystemExit(f"--truth {truth}: no such column (extra columns {sorted(cat.extra)})")
    keep = np.flatnonzero(~cat.has_zspec & np.isfinite(cat.extra[truth]))
    sub = cat.select(keep)
    return dataclasses.replace(sub, zspec=np.asarray(sub.extra[truth], dtype=np.float64))


def report(run: dz.Run, cat: dz.Catalog, name: str) -> None:
    """Print the raw/calibrated comparison of ``cat`` as one JSON line."""
    t0 = time.perf_counter()
    raw = run.predict(cat, calibrate=False)
    t1 = time.perf_counter()
    cal = run.predict(cat)
    t2 = time.perf_counter()
    out = compare_calibration(raw, cal, run.config.pz)
    out["seconds"] = {"raw": round(t1 - t0, 1), "calibrated": round(t2 - t1, 1)}
    print(json.dumps({"catalog": name, **out}, default=float), flush=True)


if __name__ == "__main__":
    main()
