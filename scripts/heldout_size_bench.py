"""How many held-out spec-z the calibration needs for 68 +- 2% in every half magnitude
(docs/benchmarks.md, "How many held-out spec-z the per-bin target needs").

A test that can tell 66% from 68% needs thousands of galaxies per bin, so this script simulates the
survey of a run's training catalogue again (same ``--seed``: same zero-point offsets; other
galaxies; a spec-z for every galaxy) with ``--n-per-bin`` galaxies in each half magnitude of
iAB 17-22.5, predicts them once, uncalibrated, by the networks (``--combined``: by the run's
combination with the template fit, ~225 galaxies/s on 2 cores) and cuts them in two halves by a
hash of ref_id. On the test half it scores the run's calibration as trained (out-of-fold calibration and
pool scale) and then, for each size S of ``--sizes``, a held-out stage (``Run.calibrate_on``'s fit:
``inference.calibrate.fit_heldout_stage``) fitted on S random galaxies per half magnitude of the
other half, ``--repeats`` times with other draws; last, a stage fitted on all the galaxies, each
scored by the stage fitted without it (its own cross-fitted summary, what ``deepz calibrate``
prints: 5 hash folds). Prints per half magnitude the share of spec-z inside the 68% interval and
how many of the 11 bins lie within 68.27 +- 2 points.

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 python scripts/heldout_size_bench.py --run RUN --seed 42 \\
        [--sed-family kcorrect] [--combined] [--n-per-bin 12000] [--sizes 300 1000 3000 6000] \\
        [--out sizes.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

EDGES = np.arange(17.0, 22.51, 0.5)
TARGET = (66.27, 70.27)  # 68.27 +- 2 points


def simulate_slab(lo: float, n: int, seed: int, family: str):
    """``n`` galaxies of the paus-mock survey of ``seed`` with lo <= iAB < lo + 0.5, all with a
    spec-z (the mock's spec-z error model)."""
    from deepz_core.sed.bands import band_set
    from deepz_core.simulate import galaxies
    from deepz_core.simulate.mock import MockConfig, simulate_mock

    cfg = MockConfig(
        population=galaxies.PopulationConfig(mag_min=lo, mag_max=lo + 0.5),
        spec_completeness_bright=1.0,
        spec_completeness_faint=1.0,
    )
    return simulate_mock(n, band_set("paus_cosmos"), seed, cfg, sed_family=family)


def raw_predictions(run, n: int, seed: int, family: str, combined: bool) -> dict[str, np.ndarray]:
    """Uncalibrated predictions (pit, mag, ref_id, zspec, flag) of ``n`` simulated galaxies per
    half magnitude, by the networks or (``combined``) the run's combination with the template fit;
    each slab's ref_ids offset by 10^9 so they stay unique, and its size shifted by a few galaxies
    so the slabs do not share random draws."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("pit", "mag", "ref_id", "zspec", "flag")}
    for i, lo in enumerate(EDGES[:-1]):
        cat = simulate_slab(float(lo), n + 7 * i + 1, seed, family)
        offset = (i + 1) * 10**9
        exposures = dataclasses.replace(cat.exposures, ref_id=cat.exposures.ref_id + offset)
        cat = dataclasses.replace(cat, ref_id=cat.ref_id + offset, exposures=exposures)
        table = run.predict(cat, calibrate=False, network_only=not combined)
        for k in cols:
            cols[k].append(np.asarray(table[k]))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    ok = np.isfinite(out["pit"]) & np.isfinite(out["zspec"].astype(np.float64))
    ok &= np.isfinite(out["mag"]) & (out["flag"] == 0)
    return {k: v[ok] for k, v in out.items()}


def calibrated_pit(cal, pit: np.ndarray, mag: np.ndarray, ref_id: np.ndarray) -> np.ndarray:
    """(N,) PITs of new galaxies under the run calibration ``cal``."""
    transform = cal.transform(mag, ref_id, np.zeros(len(pit), bool))
    return transform.forward(torch.as_tensor(pit, dtype=torch.float64)[:, None])[:, 0].numpy()


def score(pit: np.ndarray, mag: np.ndarray) -> dict:
    """Coverage (%) per half magnitude, the bins within the target, PIT KS."""
    from deepz_core.evaluation.calibration import coverage_by_mag
    from deepz_core.pz import metrics

    rows = coverage_by_mag(pit, mag, EDGES)
    return coverage_fields(
        [100 * r["coverage68"] for r in rows],
        [r["n"] for r in rows],
        metrics.pit_ks(np.clip(pit, 0, 1)).statistic,
    )


def crossfit_score(summary: dict) -> dict:
    """``score``'s fields from a held-out stage's own summary (each galaxy calibrated by the stage
    fitted without it: 5 hash folds), over the half magnitudes of iAB 17-22.5 (what
    ``deepz calibrate`` prints)."""
    rows = [r for r in summary["per_magnitude"] if EDGES[0] <= r["lo"] < EDGES[-1]]
    return coverage_fields(
        [100 * r["coverage68_after"] for r in rows],
        [r["n"] for r in rows],
        summary["pit_ks_after"],
    )


def coverage_fields(cov: list[float], n: list[int], pit_ks: float) -> dict:
    """The scores of coverages ``cov`` (%) of half magnitudes holding ``n`` galaxies: the bins
    within TARGET and the root mean square of cov - 68.27 (less jumpy than that count, where a bin
    at 70.3 is a miss), with the PIT KS."""
    return {
        "coverage68": cov,
        "n": n,
        "inside": int(sum(TARGET[0] <= c <= TARGET[1] for c in cov)),
        "rms": float(np.sqrt(np.mean((np.asarray(cov) - 68.27) ** 2))),
        "pit_ks": pit_ks,
    }


def draw(slab: np.ndarray, per_bin: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_bin`` random galaxies of each half magnitude (all where fewer)."""
    picks = [rng.permutation(np.flatnonzero(slab == s))[:per_bin] for s in range(len(EDGES) - 1)]
    return np.concatenate(picks)


def line(name: str, s: dict) -> str:
    cells = " ".join(f"{c:5.1f}" for c in s["coverage68"])
    return f"{name:24s} KS {s['pit_ks']:.4f}  in {s['inside']:2d}/11  rms {s['rms']:.2f} | {cells}"


def main() -> None:
    import deepz_core as dz
    from deepz_core.hybrid.runs import load_hybrid
    from deepz_core.inference.calibrate import (
        calibration_fold,
        fit_heldout_stage,
        load_calibration,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished, calibrated run folder")
    p.add_argument("--seed", type=int, required=True, help="the training catalogue's mock seed")
    p.add_argument("--sed-family", default="sps", help="the training catalogue's SED family")
    p.add_argument("--n-per-bin", type=int, default=12_000, help="galaxies per half magnitude")
    p.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000, 6000])
    p.add_argument("--repeats", type=int, default=3, help="draws per size (one for the largest)")
    p.add_argument("--combined", action="store_true", help="the run's combination (deepz combine)")
    p.add_argument(
        "--no-breaks",
        action="store_true",
        help="a combination's stage interpolated across its exponent edges (as before breaks)",
    )
    p.add_argument("--out", type=Path, help="also write the result as JSON")
    p.add_argument("--raw", type=Path, help="keep the raw predictions here (.npz); reused if there")
    args = p.parse_args()
    hybrid = load_hybrid(args.run) if args.combined else None
    cal = load_calibration(args.run) if hybrid is None else hybrid.calibration
    breaks = () if hybrid is None or args.no_breaks else hybrid.weights.breaks()
    if cal is None:
        raise SystemExit(f"{args.run}: no calibration")
    cal = cal.without_heldout()
    if args.raw is not None and args.raw.exists():
        d = dict(np.load(args.raw))
    else:
        run = dz.load_run(args.run)
        d = raw_predictions(run, args.n_per_bin, args.seed, args.sed_family, args.combined)
        if args.raw is not None:
            np.savez(args.raw, **d)
    half = calibration_fold(d["ref_id"], 2)
    test, pool = np.flatnonzero(half == 1), np.flatnonzero(half == 0)
    mag = d["mag"].astype(np.float64)
    result = {"run": args.run, "n_test": len(test), "as_trained": None, "stages": []}
    result["as_trained"] = score(
        calibrated_pit(cal, d["pit"][test], mag[test], d["ref_id"][test]), mag[test]
    )
    print("test galaxies per bin", result["as_trained"]["n"])
    print(line("as trained", result["as_trained"]))
    first = calibrated_pit(cal, d["pit"][pool], mag[pool], d["ref_id"][pool])
    slab = np.clip(np.floor((mag[pool] - EDGES[0]) / 0.5).astype(int), 0, len(EDGES) - 2)
    rng = np.random.default_rng(0)
    for size in args.sizes:
        for rep in range(args.repeats if size < max(args.sizes) else 1):
            pick = draw(slab, size, rng)
            rows = pool[pick]
            held = fit_heldout_stage(cal, first[pick], mag[rows], d["ref_id"][rows], breaks=breaks)
            s = score(calibrated_pit(held, d["pit"][test], mag[test], d["ref_id"][test]), mag[test])
            result["stages"].append({"per_bin": size, "repeat": rep, "n_fit": len(rows), **s})
            print(line(f"stage {size}/bin, draw {rep}", s), flush=True)
    first_all = calibrated_pit(cal, d["pit"], mag, d["ref_id"])
    held = fit_heldout_stage(cal, first_all, mag, d["ref_id"], breaks=breaks)
    result["cross_fitted"] = crossfit_score(held.summary["heldout"])
    print(line("stage on all, cross-fit", result["cross_fitted"]), f"({len(mag)} galaxies)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
