"""The held-out calibration stage measured (docs/benchmarks.md, "A held-out calibration stage").

Cuts the galaxies with a spec-z of the given catalogues (none of them the run's training catalogue)
in two halves by a hash of their ref_id: the calibration half and the test half. Copies the run
(the run itself is never changed), predicts the test half with the copy's calibration as trained,
fits the held-out stage on the calibration half (``Run.calibrate_on``), predicts the test half
again, and prints per half magnitude the share of spec-z inside the 68% interval before and after,
with its binomial noise, plus PIT KS and sigma68 (unchanged: the stage only moves the p(z) widths).
The catalogues' ref_ids are offset (10^9 per catalogue) so they stay unique when merged.

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 python scripts/heldout_calibration_bench.py --run RUN \\
        --catalog new.fits bright.fits [--network-only] [--out bench.json]

The bright catalogues come from ``scripts/bright_coverage.py`` (``--write``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

EDGES = np.arange(17.0, 23.01, 0.5)
ID_OFFSET = 10**9


def merged(paths: list[str]):
    """The spec-z galaxies of the catalogues at ``paths`` as one catalogue, ref_ids offset."""
    import deepz_core as dz
    from deepz_core.catalog.catalog import Catalog, Exposures

    parts = []
    for i, path in enumerate(paths):
        cat = dz.read_catalog(path)
        cat = cat.select(np.flatnonzero(cat.has_zspec))
        exp = cat.exposures
        offset = (i + 1) * ID_OFFSET
        if exp is not None:
            exp = dataclasses.replace(exp, ref_id=exp.ref_id + offset)
        parts.append(dataclasses.replace(cat, ref_id=cat.ref_id + offset, exposures=exp, extra={}))
    exposures = None
    if all(p.exposures is not None for p in parts):
        exposures = Exposures(
            *(
                np.concatenate([getattr(p.exposures, f) for p in parts])
                for f in Exposures.__dataclass_fields__
            )
        )
    first = parts[0]
    return Catalog(
        ref_id=np.concatenate([p.ref_id for p in parts]),
        bands=first.bands,
        flux=np.concatenate([p.flux for p in parts]),
        flux_error=np.concatenate([p.flux_error for p in parts]),
        zspec=np.concatenate([p.zspec for p in parts]),
        fluxzp=first.fluxzp,
        exposures=exposures,
    )


def scores(table) -> dict:
    """Coverage per half magnitude (with its binomial noise), PIT KS and sigma68 of ``table``."""
    from deepz_core.evaluation.calibration import coverage_by_mag
    from deepz_core.pz import metrics
    from deepz_core.pz.calibration import pit_coverage

    pit = np.asarray(table["pit"], dtype=np.float64)
    mag = np.asarray(table["mag"], dtype=np.float64)
    zp, zs = (np.asarray(table[c], dtype=np.float64) for c in ("zphot", "zspec"))
    ok = np.isfinite(pit) & np.isfinite(mag) & (np.asarray(table["flag"]) == 0)
    rows = coverage_by_mag(pit[ok], mag[ok], EDGES)
    return {
        "n": int(ok.sum()),
        "pit_ks": metrics.pit_ks(np.clip(pit[ok], 0, 1)).statistic,
        "coverage68": pit_coverage(pit[ok]),
        "sigma68": metrics.sigma68(metrics.dz(zp[ok], zs[ok])),
        "per_magnitude": rows,
    }


def main() -> None:
    import deepz_core as dz
    from deepz_core.inference.calibrate import calibration_fold

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished, calibrated run folder")
    p.add_argument("--catalog", nargs="+", required=True, help="catalogues the run never saw")
    p.add_argument("--network-only", action="store_true", help="the networks, not the combination")
    p.add_argument("--out", type=Path, help="also write the result as JSON")
    args = p.parse_args()
    cat = merged(args.catalog)
    half = calibration_fold(cat.ref_id, 2)
    cal_half, test = cat.select(np.flatnonzero(half == 0)), cat.select(np.flatnonzero(half == 1))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(args.run, copy)
        run = dz.load_run(copy)
        before = scores(run.predict(test, network_only=args.network_only))
        stage = run.calibrate_on(cal_half, network_only=args.network_only)
        after = scores(run.predict(test, network_only=args.network_only))
    result = {
        "run": args.run,
        "catalogs": args.catalog,
        "combined": not args.network_only and (Path(args.run) / "hybrid.json").exists(),
        "n_calibration": stage["n"],
        "stage_cross_fitted": {k: v for k, v in stage.items() if k != "per_magnitude"},
        "before": before,
        "after": after,
    }
    for name in ("before", "after"):
        s = result[name]
        cells = [
            f"{r['lo']:.1f}: {100 * r['coverage68']:.1f}"
            for r in s["per_magnitude"]
            if r["n"] >= 20
        ]
        print(
            f"{name:6s} N {s['n']} KS {s['pit_ks']:.4f} cov {100 * s['coverage68']:.1f} "
            f"sigma68 {s['sigma68']:.5f} | " + " ".join(cells)
        )
    print("N per bin " + " ".join(f"{r['lo']:.1f}: {r['n']}" for r in before["per_magnitude"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
