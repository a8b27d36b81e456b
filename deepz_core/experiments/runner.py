"""``python -m deepz_core experiments``: the paper's experiments on the demo mock, end to end.

Trains every configuration once (runs under ``DIR/runs``, reused or resumed on a second call), then
measures each section and writes ``DIR/results.json`` (every number) and ``DIR/report.md`` (tables,
figures under ``DIR/figures``, the issue's targets met or not).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.experiments import denoise, quality, robustness, sweep
from deepz_core.experiments.baseline import template_fit, template_photoz, template_simulation
from deepz_core.experiments.context import Context
from deepz_core.experiments.ellipticals import figb1_ellipticals
from deepz_core.experiments.labels import appendix_e
from deepz_core.experiments.plan import plan as get_plan
from deepz_core.experiments.report import TF_KCORRECT, write_report
from deepz_core.experiments.scoring import Scored, read_scored
from deepz_core.experiments.trained import single_predictions, train_run
from deepz_core.simulate import demo_catalog_path


def run_experiments(
    preset: str, out: Path | str, catalog: Path | str | None = None, device: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """Run every section of the plan ``preset`` into ``out``; returns the results dictionary."""
    plan = get_plan(preset)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    ctx = Context(root, plan, Path(catalog) if catalog else demo_catalog_path(), device, log)
    dev = {"device": device}
    base_name = sweep.run_name(plan.alpha, True)
    runs = {name: train_run(root, name, ctx.catalog_path, plan, "auto",
                            {"alpha": a, "keep_one": keep, **dev}, log=log)
            for name, a, keep in sweep.sweep_runs(plan)}  # fmt: skip
    runs["no_pretrain"] = train_run(
        root, "no_pretrain", ctx.catalog_path, plan, "none", dev, log=log
    )
    runs["no_autoencoder"] = train_run(root, "no_autoencoder", ctx.catalog_path, plan, "auto", dev,
                                       {"use_autoencoder": False}, log=log)  # fmt: skip
    runs["template_pretrain"] = train_run(root, "template_pretrain", ctx.catalog_path, plan,
                                          str(template_simulation(ctx)), dev, log=log)  # fmt: skip
    runs["train_outliers"] = train_run(root, "train_outliers", ctx.catalog_path, plan, "auto",
                                       {"outlier_fraction": plan.train_outliers, **dev}, log=log)  # fmt: skip
    ae_run = train_run(root, "autoencoder_sim", ctx.catalog_path, plan, "auto",
                       {"repetitions": 1, "folds": 1, "schedule": ((0, 1e-3),), **dev}, log=log)  # fmt: skip

    mags = ctx.mag_of()
    single = {name: read_scored(single_predictions(run)) for name, run in runs.items()}
    ensemble = {name: read_scored(run.file("predictions.fits")) for name, run in runs.items()}
    tf = read_scored(template_fit(ctx), mags)
    tf_kc = read_scored(template_fit(ctx, "kcorrect"), mags)
    train_zspec = _labelled_zspec(ctx)

    results: dict[str, Any] = {"plan": plan.to_dict(), "preset": preset,
                               "catalog": str(ctx.catalog_path), "device": device}  # fmt: skip
    log("[experiments] Fig. 2, Sec. 3.3, Fig. 3, Fig. 8, Fig. 9")
    fig2_lines = {"template fit": tf, TF_KCORRECT: tf_kc, "no pretraining": single["no_pretrain"],
                  "SPS pretraining": single[base_name],
                  "no autoencoder": single["no_autoencoder"],
                  "ensemble": ensemble[base_name]}  # fmt: skip
    results["fig2"] = quality.fig2(ctx, fig2_lines)
    results["sec33"] = quality.pretraining_sets(ctx, {
        "none": single["no_pretrain"], "templates": single["template_pretrain"],
        "sps": single[base_name]})  # fmt: skip
    results["fig3"] = quality.fig3(ctx, {"no pretraining": single["no_pretrain"],
                                         "SPS pretraining": single[base_name],
                                         "template fit": tf, TF_KCORRECT: tf_kc},
                                        train_zspec)  # fmt: skip
    results["fig8"] = quality.fig8(ctx, {"single network": single[base_name],
                                         "ensemble": ensemble[base_name],
                                         "template fit": tf, TF_KCORRECT: tf_kc})  # fmt: skip
    results["fig9"] = quality.fig9(ctx, {"ensemble": ensemble[base_name],
                                         "single network": single[base_name],
                                         "template fit": tf, TF_KCORRECT: tf_kc})  # fmt: skip
    log("[experiments] Fig. 6")
    results["fig6"] = sweep.fig6(ctx, {n: (single[n], ensemble[n]) for n in single})
    log("[experiments] Fig. B1")
    results["figB1"] = robustness.figb1(ctx, {
        "template fit": template_photoz(ctx),
        "network": robustness.network_photoz(runs[base_name]),
        "network trained with 10% outliers": robustness.network_photoz(runs["train_outliers"])})  # fmt: skip
    log("[experiments] Fig. B1 in E20's set-up (elliptical mock)")
    results["figB1_ellipticals"] = figb1_ellipticals(ctx)
    log("[experiments] Fig. 5")
    results["fig5"] = denoise.fig5(ctx, ae_run)
    if plan.classifier:
        log("[experiments] Appendix E")
        results["appendixE"] = appendix_e(ctx, runs["no_pretrain"], single["no_pretrain"])
    write_report(ctx, results)
    return results


def _labelled_zspec(ctx: Context) -> np.ndarray:
    z = np.asarray(ctx.catalog.zspec, dtype=float)
    return z[np.isfinite(z) & (z >= 0)]


__all__ = ["Scored", "run_experiments"]
