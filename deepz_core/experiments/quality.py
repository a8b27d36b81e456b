"""Photo-z quality of the trained configurations: E20 Fig. 2 (sigma68 vs magnitude), Sec. 3.3
(pretraining sets), Fig. 3 (sigma68 vs spec-z density), Fig. 8 (PIT) and Fig. 9 (quality cuts); the
calibration of the p(z) (beyond E20)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deepz_core.evaluation.calibration import LEVEL, coverage_by_mag
from deepz_core.evaluation.run_products import PAUS_TARGET, density_edges
from deepz_core.experiments import figures
from deepz_core.experiments.context import Context
from deepz_core.experiments.scoring import Scored, by_type, faintest_bin
from deepz_core.pz import metrics
from deepz_core.pz.calibration import pit_coverage


def fig2(ctx: Context, lines: Mapping[str, Scored]) -> dict[str, Any]:
    """sigma68 and outliers per iAB bin for each configuration (E20 Fig. 2), and per galaxy type
    where the catalogue has one (beyond E20)."""
    rows = {label: s.per_magnitude() for label, s in lines.items()}
    out = {
        "summary": {label: s.summary() for label, s in lines.items()},
        "faintest_bin": {label: faintest_bin(s) for label, s in lines.items()},
        "per_magnitude": rows,
        "by_type": by_type(ctx.catalog, lines),
    }
    out["figure"] = figures.binned_lines(
        ctx.figure("fig2_sigma68_vs_mag.png"), rows, "iAB", "sigma68 vs magnitude (E20 Fig. 2)"
    )
    return out


def pretraining_sets(ctx: Context, lines: Mapping[str, Scored]) -> dict[str, Any]:
    """Overall sigma68 with no pretraining, a template-based and an SPS simulation (E20 Sec. 3.3)."""
    summary = {label: s.summary() for label, s in lines.items()}
    values = {label: s["sigma68"] for label, s in summary.items()}
    fig = figures.bars(
        ctx.figure("sec33_pretraining.png"), values, "sigma68", "Pretraining set (E20 Sec. 3.3)"
    )
    return {
        "summary": summary,
        "paper_sigma68": {"none": 0.0095, "templates": 0.0077, "sps": 0.0069},
        "figure": fig,
    }


def fig3(ctx: Context, lines: Mapping[str, Scored], train_zspec: np.ndarray) -> dict[str, Any]:
    """sigma68 vs the number of training spec-z in the galaxy's dz = 0.001 bin (E20 Fig. 3).

    Out-of-fold: each network trained on (K-1)/K of ``train_zspec``; the density counts all of them
    (the same for every line, so the comparison between lines is fair)."""
    top = max(int(metrics.spec_density(s.zs, train_zspec).max()) for s in lines.values())
    edges = density_edges(top, linear_up_to=10, n_log=12)
    rows = {
        label: metrics.sigma68_vs_spec_density(s.zp, s.zs, train_zspec, 0.001, edges).rows()
        for label, s in lines.items()
    }
    fig = figures.binned_lines(
        ctx.figure("fig3_spec_density.png"),
        rows,
        "training spec-z per dz = 0.001 bin",
        "sigma68 vs spec-z density (E20 Fig. 3)",
        logx=True,
    )
    return {"per_density_bin": rows, "figure": fig}


def fig8(ctx: Context, lines: Mapping[str, Scored], bins: int = 20) -> dict[str, Any]:
    """PIT histograms and KS / CvM statistics (E20 Fig. 8)."""
    out: dict[str, Any] = {}
    hists = {}
    for label, s in lines.items():
        pit = np.clip(s.pit[np.isfinite(s.pit)], 0, 1)
        counts, edges = metrics.pit_histogram(pit, bins)
        hists[label] = (counts, edges)
        out[label] = {
            "ks": metrics.pit_ks(pit).statistic,
            "cvm": metrics.pit_cvm(pit).statistic,
            "histogram": counts,
        }
    out["figure"] = figures.pit_histograms(ctx.figure("fig8_pit.png"), hists, "PIT (E20 Fig. 8)")
    return out


def calibration(lines: Mapping[str, Scored]) -> dict[str, Any]:
    """PIT KS and the share of spec-z inside the 68% interval before and after the calibration
    (beyond E20, issue 22), overall and per iAB bin (``coverage_by_mag``: with the binomial noise
    of a calibrated share), for each line whose p(z) are calibrated (``pit_raw``)."""
    out: dict[str, Any] = {}
    for label, s in lines.items():
        if s.pit_raw is None:
            continue
        ok = np.isfinite(s.pit) & np.isfinite(s.pit_raw)
        pit, raw, mag = np.clip(s.pit[ok], 0, 1), np.clip(s.pit_raw[ok], 0, 1), s.mag[ok]
        before = coverage_by_mag(raw, mag)
        after = coverage_by_mag(pit, mag)
        out[label] = {
            "n": int(ok.sum()),
            "ks_before": metrics.pit_ks(raw).statistic,
            "ks_after": metrics.pit_ks(pit).statistic,
            "coverage_before": pit_coverage(raw, LEVEL),
            "coverage_after": pit_coverage(pit, LEVEL),
            "per_magnitude": [
                a | {"coverage68_before": b["coverage68"]}
                for a, b in zip(after, before, strict=True)
            ],
        }
    return out


def fig9(ctx: Context, lines: Mapping[str, Scored]) -> dict[str, Any]:
    """sigma68 and outliers vs completeness for the ODDS cut and the optimal cut (E20 Fig. 9)."""
    curves: dict[str, dict[str, np.ndarray]] = {}
    for label, s in lines.items():
        if np.isfinite(s.odds).all():
            curves[f"{label}, ODDS cut"] = metrics.odds_curve(s.zp, s.zs, s.odds)
        curves[f"{label}, optimal cut"] = metrics.optimal_curve(s.zp, s.zs)
    best50 = {
        label: metrics.best_fraction_sigma68(s.zp, s.zs, s.odds)
        for label, s in lines.items()
        if np.isfinite(s.odds).all()
    }
    fig = figures.completeness(ctx.figure("fig9_quality_cuts.png"), curves, PAUS_TARGET)
    return {
        "odds_best50_sigma68": best50,
        "paus_target": PAUS_TARGET,
        "figure": fig,
        "curves": {k: {n: v for n, v in c.items()} for k, c in curves.items()},
    }
