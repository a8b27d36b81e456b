"""How close what qp computes from a predictions file's mixture columns is to deepz's exact columns
(docs/ecosystem.md, "qp"): the median and the 68% interval's ends of the stored mixture (by
bisection on its CDF) against ``zmedian``, ``z_lo68``, ``z_hi68``; its mean against ``zmean``; its
CDF at the spec-z against ``pit``. Rows without a p(z) are left out.

    python scripts/qp_mixture_check.py pz.fits       # deepz predict --out pz.fits
    python scripts/qp_mixture_check.py RUN/hybrid_predictions.fits

Prints one line per quantity: median, 95th percentile and maximum of the absolute difference.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from astropy.table import Table

from deepz_core.inference.predict import mixture_from_arrays
from deepz_core.pz.mixture import GaussianMixture

LEVELS = {"zmedian": 0.5, "z_lo68": 0.158655, "z_hi68": 0.841345}


def mixture_quantile(mix: GaussianMixture, q: float, steps: int = 50) -> np.ndarray:
    """(N,) the ``q`` quantile of each mixture (batch (N,)) by bisection on -1 < z < 6."""
    n = mix.batch_shape[0]
    lo = torch.full((n,), -1.0, dtype=torch.float64)
    hi = torch.full((n,), 6.0, dtype=torch.float64)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = mix.cdf(mid) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).numpy()


def line(name: str, diff: np.ndarray) -> str:
    """'name: median M, p95 P, max X' of |diff| (N,)."""
    d = np.abs(diff)
    return f"{name}: median {np.median(d):.5f}, p95 {np.percentile(d, 95):.5f}, max {d.max():.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", help="a deepz predictions FITS file")
    args = parser.parse_args()
    t = Table.read(args.predictions, hdu=1)
    ok = np.isfinite(np.asarray(t["zphot"], dtype=np.float64))
    w, m, s = (np.asarray(t[k], dtype=np.float64)[ok] for k in ("weights", "means", "stds"))
    mix = mixture_from_arrays(w, m, s)
    column = {k: np.asarray(t[k], dtype=np.float64)[ok] for k in (*LEVELS, "zmean", "pit")}
    for name, q in LEVELS.items():
        print(line(name, mixture_quantile(mix, q) - column[name]))
    print(line("zmean", (w * m).sum(1) - column["zmean"]))
    z = np.asarray(t["zspec"], dtype=np.float64)[ok]
    has = np.isfinite(z)
    pit = mixture_from_arrays(w[has], m[has], s[has]).cdf(torch.as_tensor(z[has])).numpy()
    print(line("pit", pit - column["pit"][has]))


if __name__ == "__main__":
    main()
