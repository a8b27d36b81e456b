"""The cost and accuracy of a calibrated prediction's refit (docs/benchmarks.md, thirteenth
session): predicts a catalogue with a run as ``deepz predict`` does, keeps the mixtures and
transforms that ``pz.calibration.refit_with_mean`` receives, then times that function alone on
them (CPU seconds, one thread) and compares its ``zmean`` with a dense integral of 1 - G
(6,000,001 points over z -4 to 9) on a sample of galaxies.

    python scripts/calibrated_predict_bench.py --run runs/demo --catalog $D --sample 40

Prints one JSON object: galaxies, components per galaxy (all, non-negligible), refit CPU
seconds, and the mean's absolute error (max, median) in z and in units of each galaxy's
narrowest component with weight > 1e-3.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import deepz_core as dz
import deepz_core.pz.products as products
from deepz_core.pz.calibration import PitTransform, negligible_components, refit_with_mean
from deepz_core.pz.mixture import GaussianMixture


def captured_refits(run: str, catalog: str) -> tuple[GaussianMixture, PitTransform]:
    """The mixtures (N galaxies with a p(z)) and transforms the prediction refits."""
    seen: list[tuple[GaussianMixture, PitTransform]] = []
    inner = products.refit_with_mean

    def keep(mix: GaussianMixture, tr: PitTransform):
        seen.append((mix, tr))
        return inner(mix, tr)

    products.refit_with_mean = keep
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dz.load_run(run).predict(catalog, out=Path(tmp) / "p.fits")
    finally:
        products.refit_with_mean = inner
    w = torch.cat([m.weights.double() for m, _ in seen])
    loc = torch.cat([m.loc.double().expand_as(m.weights) for m, _ in seen])
    scale = torch.cat([m.scale.double().expand_as(m.weights) for m, _ in seen])
    tr = PitTransform(torch.cat([t.x for _, t in seen]), torch.cat([t.y for _, t in seen]))
    ok = torch.isfinite(w).all(1)
    mix = GaussianMixture.from_params(torch.log(w[ok]), loc[ok], scale[ok])
    return mix, tr.take(torch.nonzero(ok).squeeze(1))


def dense_mean(w: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, tr: PitTransform) -> float:
    """The calibrated p(z)'s mean of one galaxy (C,) by the trapezoid rule on 1 - G."""
    z = torch.linspace(-4.0, 9.0, 6_000_001, dtype=torch.float64)
    cdf = torch.zeros_like(z)
    for j in torch.nonzero(w > 0).squeeze(1).tolist():
        cdf += w[j] * 0.5 * torch.erfc(-(z - loc[j]) / (scale[j] * np.sqrt(2.0)))
    return float(-4.0 + torch.trapezoid(1.0 - tr.forward(cdf[None])[0], z))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--sample", type=int, default=40, help="galaxies checked by a dense integral")
    args = ap.parse_args()
    mix, tr = captured_refits(args.run, args.catalog)
    torch.set_num_threads(1)
    start = time.process_time()
    _, mean = refit_with_mean(mix, tr)
    seconds = time.process_time() - start
    w, loc, scale = mix.weights, mix.loc, mix.scale
    pick = np.random.default_rng(0).choice(len(w), min(args.sample, len(w)), replace=False)
    err = np.array(
        [
            abs(float(mean[i]) - dense_mean(w[i], loc[i], scale[i], tr.take(torch.tensor([i]))))
            for i in pick
        ]
    )
    narrow = np.array([float(scale[i][w[i] > 1e-3].min()) for i in pick])
    kept = (~negligible_components(w, tr)).sum(1).double()
    print(
        json.dumps(
            {
                "galaxies": len(w),
                "components": int(w.shape[1]),
                "non_negligible_mean": round(float(kept.mean()), 2),
                "refit_cpu_s": round(seconds, 2),
                "mean_error_max": float(err.max()),
                "mean_error_median": float(np.median(err)),
                "mean_error_max_of_narrowest": float((err / narrow).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
