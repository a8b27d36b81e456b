"""The network combined with the template fit, measured (docs/benchmarks.md, "Network + template fit
(issue 22, part 2)").

For each template set: fits the combination on a finished run (``fit_hybrid``, in a copy of the run
folder, so the run itself is never changed), then predicts each ``--catalog`` with it. Prints one
JSON object: per template set and galaxy set, overall and per half magnitude, sigma68, strict
outliers (|dz| > 0.02) and catastrophic ones (|dz| > 0.15) of the networks (``zphot_net``: the
ensemble of all K networks for new galaxies, the out-of-fold network for training galaxies), the
template fit (``zphot_tf``) and the combination (``zphot``), the ratio combined / min(network,
template fit) with a bootstrap 68% interval, and the combination's PIT KS and 68% coverage; plus
the seconds per galaxy of the combined and of the network-only prediction.

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 python scripts/hybrid_bench.py --run RUN \\
        --catalog new.fits [more.fits ...] [--truth ztrue] [--templates bcnz2 kcorrect] --out bench.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table


def _scores(zp: np.ndarray, zs: np.ndarray) -> dict[str, float]:
    from deepz_core.pz import metrics

    d = metrics.dz(zp, zs)
    return {
        "sigma68": metrics.sigma68(d),
        "outliers": metrics.outlier_fraction(d),
        "catastrophic": metrics.outlier_fraction(d, 0.15),
    }


def _ratio(zc, zn, zt, zs, rng: np.random.Generator, draws: int = 200) -> list[float]:
    """combined / min(network, template fit) sigma68, and its bootstrap 16th and 84th percentile."""
    from deepz_core.pz import metrics

    def one(idx: np.ndarray) -> float:
        s = [metrics.sigma68(metrics.dz(z[idx], zs[idx])) for z in (zc, zn, zt)]
        return s[0] / min(s[1], s[2])

    n = len(zs)
    boots = [one(rng.integers(0, n, n)) for _ in range(draws)]
    return [one(np.arange(n)), *np.percentile(boots, [16, 84]).tolist()]


def score_table(t: Table, truth: str | None, rng: np.random.Generator) -> dict:
    """The three estimators on the galaxies of ``t`` with a redshift (spec-z, or ``truth``)."""
    from deepz_core.pz.calibration import half_mag_edges, pit_coverage
    from deepz_core.pz.metrics import pit_ks

    zs = np.asarray(t[truth] if truth else t["zspec"], dtype=np.float64)
    ok = np.isfinite(zs) & np.isfinite(np.asarray(t["zphot"], dtype=np.float64))
    if truth:
        pit = np.full(len(t), np.nan)
    else:
        pit = np.asarray(t["pit"], dtype=np.float64)
    cols = {
        k: np.asarray(t[c], dtype=np.float64)[ok]
        for k, c in (("combined", "zphot"), ("network", "zphot_net"), ("templatefit", "zphot_tf"))
    }
    z, mag, pit = zs[ok], np.asarray(t["mag"], dtype=np.float64)[ok], pit[ok]

    def block(s: np.ndarray) -> dict:
        row = {"n": int(s.sum()), **{k: _scores(v[s], z[s]) for k, v in cols.items()}}
        if s.sum() >= 20:
            row["ratio"] = _ratio(
                cols["combined"][s], cols["network"][s], cols["templatefit"][s], z[s], rng
            )
        if np.isfinite(pit[s]).sum() > 1:
            row["pit_ks"] = pit_ks(np.clip(pit[s][np.isfinite(pit[s])], 0, 1)).statistic
            row["coverage68"] = pit_coverage(pit[s][np.isfinite(pit[s])])
        return row

    edges = half_mag_edges(mag)
    per = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = (mag >= lo) & ((mag < hi) if hi < edges[-1] else (mag <= hi))
        if s.sum():
            per.append({"lo": float(lo), "hi": float(hi), **block(s)})
    return {"overall": block(np.ones(len(z), bool)), "per_magnitude": per}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--catalog", nargs="*", default=[])
    ap.add_argument("--truth", help="column of the true redshift (mocks), else zspec")
    ap.add_argument("--templates", nargs="+", default=["bcnz2", "kcorrect"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import deepz_core as dz
    from deepz_core.hybrid.runs import HYBRID_PREDICTIONS, fit_hybrid, predict_hybrid

    rng = np.random.default_rng(0)
    result: dict = {"run": str(args.run), "templates": {}}
    for name in args.templates:
        with tempfile.TemporaryDirectory(prefix="hybrid-bench-") as tmp:
            run = Path(tmp) / "run"
            shutil.copytree(args.run, run)
            for f in ("hybrid.json", HYBRID_PREDICTIONS):
                (run / f).unlink(missing_ok=True)
            t0 = time.perf_counter()
            hybrid = fit_hybrid(run, name, log=lambda m: print(m, flush=True))
            res = {
                "fit_seconds": time.perf_counter() - t0,
                "weights": hybrid.weights.to_dict(),
                "calibration": {
                    k: hybrid.calibration.summary[k]
                    for k in (
                        "pit_ks_before",
                        "pit_ks_after",
                        "coverage68_before",
                        "coverage68_after",
                    )
                }
                if hybrid.calibration
                else None,
                "sets": {},
            }
            oof = Table.read(run / HYBRID_PREDICTIONS)
            oof = oof[np.asarray(oof["out_of_fold"], bool)]
            res["sets"]["out of fold (training galaxies)"] = score_table(oof, None, rng)
            for path in args.catalog:
                cat = dz.read_catalog(path)
                t0 = time.perf_counter()
                table = predict_hybrid(run, cat, hybrid=hybrid)
                seconds = time.perf_counter() - t0
                t0 = time.perf_counter()
                dz.load_run(run).predict(cat, network_only=True)
                net_seconds = time.perf_counter() - t0
                if args.truth:
                    table[args.truth] = Table.read(path)[args.truth]
                res["sets"][Path(path).name] = {
                    "seconds_per_galaxy": seconds / len(table),
                    "network_only_seconds_per_galaxy": net_seconds / len(table),
                    "spec-z": score_table(table, None, rng),
                    **({"truth": score_table(table, args.truth, rng)} if args.truth else {}),
                }
            result["templates"][name] = res
            print(
                json.dumps({name: res["sets"]["out of fold (training galaxies)"]["overall"]}),
                flush=True,
            )
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
