"""The randomized-coadd sweep (E20 Sec. 5.1, Fig. 6): sigma68 vs alpha, keeping one exposure per
band or dropping galaxies left without one, for a single network and for the ensemble."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepz_core.experiments import figures
from deepz_core.experiments.context import Context
from deepz_core.experiments.plan import ExperimentPlan
from deepz_core.experiments.scoring import Scored, faintest_bin


def run_name(alpha: float, keep_one: bool) -> str:
    """The sweep run's folder name for ``alpha`` and ``keep_one`` (``alpha0.80_keep``)."""
    return f"alpha{alpha:.2f}_{'keep' if keep_one else 'drop'}"


def fig6(ctx: Context, scored: Mapping[str, tuple[Scored, Scored]]) -> dict[str, Any]:
    """``scored``: run name -> (single, ensemble). Returns per-mode arrays over the alphas whose
    runs are in ``scored`` (all of them once the experiments finish)."""
    sweep: dict[str, dict[str, list[float]]] = {}
    plan = ctx.plan
    for mode, alphas in (("keep", plan.alphas), ("drop", plan.alphas_drop)):
        d: dict[str, list[float]] = {
            k: []
            for k in (
                "alpha",
                "single",
                "ensemble",
                "single_faint",
                "ensemble_faint",
                "single_outliers",
                "ensemble_outliers",
            )
        }
        for alpha in sorted(alphas):
            name = run_name(alpha, True) if alpha == 1.0 else run_name(alpha, mode == "keep")
            if name not in scored:
                continue
            single, ensemble = scored[name]
            d["alpha"].append(alpha)
            for kind, s in (("single", single), ("ensemble", ensemble)):
                summary = s.summary()
                d[kind].append(summary["sigma68"])
                d[f"{kind}_outliers"].append(summary["outlier_fraction"])
                d[f"{kind}_faint"].append(faintest_bin(s)["sigma68"])
        if d["alpha"]:
            sweep[mode] = d
    fig = figures.alpha_sweep(ctx.figure("fig6_alpha_sweep.png"), sweep)
    return {"sweep": sweep, "figure": fig}


def sweep_runs(plan: ExperimentPlan) -> list[tuple[str, float, bool]]:
    """(name, alpha, keep_one) of every run the sweep needs; alpha = 1 (no randomization) once."""
    runs = [(run_name(a, True), a, True) for a in plan.alphas]
    runs += [(run_name(a, False), a, False) for a in plan.alphas_drop if a < 1.0]
    return runs
