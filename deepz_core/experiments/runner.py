"""``python -m deepz_core experiments``: the paper's experiments on the demo mock, end to end.

Works through the plan in order of what the issue's targets need most (template fits, the default
configuration, no randomization, no pretraining, Fig. B1, ... the ablations last). After every step
it rewrites ``DIR/results.json`` (every number) and ``DIR/report.md`` (tables, figures under
``DIR/figures``, the targets met, not met or not measured yet) from what is finished; runs under
``DIR/runs`` and slow sections under ``DIR/sections`` are reused or resumed on a second call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.experiments import denoise, quality, robustness, sweep
from deepz_core.experiments.baseline import template_photoz, template_simulation
from deepz_core.experiments.classifier import appendix_e
from deepz_core.experiments.context import Context
from deepz_core.experiments.ellipticals import ELLIPTICAL_RUNS, figb1_ellipticals
from deepz_core.experiments.plan import ExperimentPlan
from deepz_core.experiments.plan import plan as get_plan
from deepz_core.experiments.progress import Progress
from deepz_core.experiments.report_writer import (
    COMBINED,
    COMBINED_KCORRECT,
    NO_U,
    TF_KCORRECT,
    TRAINED_FLUXES,
    TRAINED_GALAXIES,
    write_report,
)
from deepz_core.experiments.scoring import Scored
from deepz_core.simulate import demo_catalog_path

Step = tuple[str, Callable[[Progress], object]]


def run_experiments(
    preset: str,
    out: Path | str,
    catalog: Path | str | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every step of the plan ``preset`` into ``out``; returns the results dictionary."""
    plan = get_plan(preset)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    ctx = Context(root, plan, Path(catalog) if catalog else demo_catalog_path(), device, log)
    done = Progress(ctx)
    todo = steps(plan)
    results: dict[str, Any] = {}
    for i, (name, step) in enumerate(todo):
        log(f"[experiments] step {i + 1}/{len(todo)}: {name}")
        step(done)
        results = report_sections(done, preset, pending=[n for n, _ in todo[i + 1 :]])
        write_report(ctx, results)
    return results


def steps(plan: ExperimentPlan) -> list[Step]:
    """Every run and slow section, in the order the targets need them."""
    base = sweep.run_name(plan.alpha, True)
    others = [(n, a, keep) for n, a, keep in sweep.sweep_runs(plan) if n != base]
    first = [s for s in others if s[1] == 1.0]  # no randomization: the alpha target
    rest = [s for s in others if s[1] != 1.0]
    appendix = [("Appendix E", _appendix_e)] if plan.classifier else []
    return [
        ("template fits", _fit_templates),
        _sweep_step(base, plan.alpha, True),
        *(_sweep_step(*s) for s in first),
        ("no_pretrain", lambda d: d.train("no_pretrain", "none")),
        ("network + template fit", lambda d: _combine(d, base)),
        *_robustness_steps(plan, base),
        *(_sweep_step(*s) for s in rest),
        *appendix,
        *_ablation_steps(),
    ]


def _sweep_step(name: str, alpha: float, keep: bool) -> Step:
    """The randomized-coadd sweep's run ``name`` (E20 Fig. 6)."""
    return name, lambda d: d.train(name, "auto", {"alpha": alpha, "keep_one": keep})


def _fit_templates(d: Progress) -> None:
    """The template fits with BCNZ2's and kcorrect's templates."""
    d.fit_templates("template fit", "bcnz2")
    d.fit_templates(TF_KCORRECT, "kcorrect")


def _combine(d: Progress, base: str) -> None:
    """The network run ``base`` combined with each template fit."""
    d.combine(COMBINED, base, "bcnz2")
    d.combine(COMBINED_KCORRECT, base, "kcorrect")


def _robustness_steps(plan: ExperimentPlan, base: str) -> list[Step]:
    """Fig. B1 (photometric outliers): E20's set-up, the runs trained with outliers or without the
    u band, then the figure on the demo mock."""
    outliers = plan.train_outliers
    return [
        (
            "Fig. B1, E20's set-up",
            lambda d: d.section(
                "figB1_ellipticals", lambda: figb1_ellipticals(d.ctx), inputs=list(ELLIPTICAL_RUNS)
            ),
        ),
        (
            "train_outliers",
            lambda d: d.train("train_outliers", "auto", {"outlier_fraction": outliers}),
        ),
        (
            "train_outlier_fluxes",  # E20's "10 per cent outliers" read as 10% of the measurements
            lambda d: d.train(
                "train_outlier_fluxes",
                "auto",
                {"outlier_fraction": outliers, "outlier_unit": "measurement"},
            ),
        ),
        (
            "no_u_band",  # Fig. B1's reference: a network that never sees u, flat
            lambda d: d.train("no_u_band", "auto", catalog=robustness.catalog_without_u(d.ctx)),
        ),
        ("Fig. B1 on the demo mock", lambda d: _figb1(d, base)),
    ]


def _figb1(d: Progress, base: str) -> None:
    """Fig. B1's section: the template fit and four networks (``base`` among them)."""
    nets = {
        "network": base,
        TRAINED_GALAXIES: "train_outliers",
        TRAINED_FLUXES: "train_outlier_fluxes",
        NO_U: "no_u_band",
    }
    d.section(
        "figB1",
        lambda: robustness.figb1(
            d.ctx,
            {
                "template fit": template_photoz(d.ctx),
                **{label: robustness.network_photoz(d.runs[n]) for label, n in nets.items()},
            },
        ),
        inputs=list(nets.values()),
    )


def _appendix_e(d: Progress) -> None:
    """Appendix E's section: the classifier against the run without pretraining."""
    d.section(
        "appendixE", lambda: appendix_e(d.ctx, d.runs["no_pretrain"], d.single("no_pretrain"))
    )


def _ablation_steps() -> list[Step]:
    """The ablations, last: the autoencoder alone (Fig. 5), template pretraining, no autoencoder."""
    return [
        (
            "autoencoder_sim",
            lambda d: d.train(
                "autoencoder_sim", "auto", {"repetitions": 1, "folds": 1, "schedule": ((0, 1e-3),)}
            ),
        ),
        (
            "Fig. 5",
            lambda d: d.section("fig5", lambda: denoise.fig5(d.ctx, d.runs["autoencoder_sim"])),
        ),
        (
            "template_pretrain",
            lambda d: d.train("template_pretrain", lambda: str(template_simulation(d.ctx))),
        ),
        (
            "no_autoencoder",
            lambda d: d.train("no_autoencoder", "auto", model={"use_autoencoder": False}),
        ),
    ]


def report_sections(done: Progress, preset: str, pending: list[str]) -> dict[str, Any]:
    """Every section whose runs are finished (cheap ones recomputed, slow ones read back)."""
    ctx, plan = done.ctx, done.ctx.plan
    base = sweep.run_name(plan.alpha, True)
    results: dict[str, Any] = {
        "plan": plan.to_dict(),
        "preset": preset,
        "catalog": str(ctx.catalog_path),
        "device": ctx.device,
        "complete": not pending,
        "pending": pending,
    }
    tfs = done.template_fits
    if done.has(base) and tfs:
        used = (base, "no_pretrain", "no_autoencoder", "template_pretrain")  # lines of the figures
        single = {name: done.single(name) for name in used if done.has(name)}

        def quality_sections() -> dict[str, Any]:
            return _quality(ctx, base, single, done.ensemble(base), tfs, done.combined)

        inputs = [*single, "|", *tfs, "|", *done.combined]
        results.update(done.drawn("quality", inputs, quality_sections))
    swept = {
        n: (done.single(n), done.ensemble(n)) for n, _, _ in sweep.sweep_runs(plan) if done.has(n)
    }
    if swept:
        results["fig6"] = done.drawn("fig6", list(swept), lambda: sweep.fig6(ctx, swept))
    results.update(done.sections)
    return results


def _quality(
    ctx: Context,
    base: str,
    single: dict[str, Scored],
    ensemble: Scored,
    tfs: dict[str, Scored],
    combined: dict[str, Scored] | None = None,
) -> dict[str, Any]:
    """Fig. 2, Sec. 3.3, Fig. 3, Fig. 8 and Fig. 9 over the configurations trained so far; Fig. 2
    and Fig. 8 also show the ``combined`` lines (the ensemble with the template fit, beyond E20);
    the calibration of the ensemble's and the combined p(z) (beyond E20)."""

    def pick(names: dict[str, str]) -> dict[str, Scored]:
        return {label: single[n] for label, n in names.items() if n in single}

    fig2 = {
        **tfs,
        **pick(
            {
                "no pretraining": "no_pretrain",
                "SPS pretraining": base,
                "no autoencoder": "no_autoencoder",
            }
        ),
        "ensemble": ensemble,
        **(combined or {}),
    }
    out = {
        "fig2": quality.fig2(ctx, fig2),
        "sec33": quality.pretraining_sets(
            ctx, pick({"none": "no_pretrain", "templates": "template_pretrain", "sps": base})
        ),
        "fig3": quality.fig3(
            ctx,
            {**pick({"no pretraining": "no_pretrain", "SPS pretraining": base}), **tfs},
            _labelled_zspec(ctx),
        ),
    }
    lines = {"single network": single[base], "ensemble": ensemble, **tfs, **(combined or {})}
    out["fig8"] = quality.fig8(ctx, lines)
    out["calibration"] = quality.calibration({"ensemble": ensemble, **(combined or {})})
    out["fig9"] = quality.fig9(ctx, {"ensemble": ensemble, "single network": single[base], **tfs})
    return out


def _labelled_zspec(ctx: Context) -> np.ndarray:
    z = np.asarray(ctx.catalog.zspec, dtype=float)
    return z[np.isfinite(z) & (z >= 0)]


__all__ = ["Scored", "report_sections", "run_experiments", "steps"]
