"""Results: headline metrics and E20 Figs D1, 2, 3 and 8 for up to three finished runs side by side,
the predictions (mixture parameters and point estimates) as FITS or Parquet downloads, and the
reports of ``python -m deepz_core experiments`` (the paper's experiments on the demo mock)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app import jobs, plots, state
from deepz_core import DeepzError

MAX_RUNS = 3

st.title("Results")
st.caption(
    "Δz/(1+z_s) with z_p the mode of p(z); σ68 = half the 15.9-84.1 percentile range of Δz/(1+z_s); "
    "outliers by the survey profile (narrow-band: E20's strict |Δz|/(1+z_s) > 0.02; broad-band: "
    "the conventional 0.15). Scored galaxies: those with a spec-z; a DEEPZ run scores "
    "each with the networks that never trained on it (out of fold); a template fit that calibrates "
    "zero-points calibrates them on all of them (in sample, slightly optimistic)."
)


def _chosen(finished: list[str]) -> list[str]:
    """Runs named by query "runs" (comma-separated), else this tab's last choice, else the current
    analysis run."""
    raw = state.query_value("runs")
    last = st.session_state.get("results_chosen", [])
    wanted = [r for r in (raw.split(",") if raw else last) if r in finished][:MAX_RUNS]
    return wanted or [state.analysis_run(finished)]


def _summary_table(stats: dict[str, dict], prof) -> None:
    rows = []
    outliers = prof.outlier_label
    best = f"σ68 of the best {prof.target_fraction:.0%} by ODDS"
    for run_id, s in stats.items():
        m, ks = s["summary"], s.get("pit_ks", (float("nan"), float("nan")))
        row = {
            "run": state.run_title(run_id),
            "scored galaxies": m.get("n", 0),
            "spec-z without a p(z)": s.get("n_no_pz", 0),  # failures: counted, not scored
            "all galaxies": s["n_total"],
            "σ68": m.get("sigma68"),
            outliers: m.get("outlier_fraction"),
        }
        if prof.shows_catastrophic:
            row[f"catastrophic (> {prof.catastrophic:g})"] = m.get("catastrophic_fraction")
        row |= {
            best: m.get("best_sigma68"),
            "bias (median Δz/(1+z_s))": m.get("bias"),
            "NMAD": m.get("nmad"),
            "PIT KS D": ks[0],
            "PIT KS p-value": ks[1],
        }
        rows.append(row)
    fixed = st.column_config.NumberColumn(format="%.4f")
    percent = st.column_config.NumberColumn(format="percent")
    formats = {c: fixed for c in ("σ68", best, "bias (median Δz/(1+z_s))", "NMAD", "PIT KS D")}
    formats |= {c: percent for c in rows[0] if c == outliers or c.startswith("catastrophic")}
    formats["PIT KS p-value"] = st.column_config.NumberColumn(format="%.2e")
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        column_config=formats,
        placeholder="—",
    )


def _density(runs: list[str], outlier: float) -> None:
    st.subheader("Photo-z vs spec-z (E20 Fig. D1)")
    for col, run_id in zip(st.columns(len(runs)), runs, strict=True):
        pred = state.predictions(state.run_key(run_id))
        use = pred.scored
        title = state.run_title(run_id)  # the name the tables use
        fig = plots.density_heatmap(pred.zspec[use], pred.zphot[use], title=title, outlier=outlier)
        col.plotly_chart(fig, key=f"results_density_{run_id}")


def _mag_bins(runs: list[str]) -> tuple | None:
    """Magnitude bins for Fig. 2: 0.5-mag bins spanning the runs' galaxies, adjustable."""
    edges = [state.default_mag_edges(state.run_key(r)) for r in runs]
    edges = [e for e in edges if e is not None]
    if not edges:
        return None
    lo, hi = min(float(e[0]) for e in edges), max(float(e[-1]) for e in edges)
    with st.expander(f"Magnitude bins: {lo:g} to {hi:g} in steps of 0.5 (follow the data)"):
        c = st.columns(3)
        lo = c[0].number_input("from [AB mag]", -10.0, 40.0, lo, 0.5, key="results_mag_lo")
        hi = c[1].number_input("to [AB mag]", -10.0, 40.0, hi, 0.5, key="results_mag_hi")
        width = c[2].number_input("bin width [mag]", 0.05, 5.0, 0.5, 0.05, key="results_mag_w")
    return state.mag_edges(lo, max(hi, lo + width), width)


def _figures(stats: dict[str, dict], outlier: float) -> None:
    named = {state.run_title(r): s for r, s in stats.items()}  # legends name runs as tables do
    by_mag = {r: s["by_mag"] for r, s in named.items() if "by_mag" in s}
    pit = {}
    for r, s in named.items():
        if "pit_raw" in s:  # a calibrated run: the PIT before and after (beyond E20)
            pit[f"{r}: before calibration"] = (*s["pit_raw"], s["pit_raw_ks"])
            pit[f"{r}: calibrated"] = (*s["pit"], s["pit_ks"])
        elif "pit" in s:
            pit[r] = (*s["pit"], s["pit_ks"])
    dens = {r: s["spec_density"] for r, s in named.items() if "spec_density" in s}
    left, right = st.columns(2)
    if by_mag:
        left.plotly_chart(plots.metrics_vs_mag(by_mag, outlier), key="results_by_mag")
        cover = [
            f"{r}: {s['mag_coverage'][0]:,} of {s['mag_coverage'][1]:,}"
            for r, s in named.items()
            if "mag_coverage" in s
        ]
        left.caption("Scored galaxies inside the magnitude bins: " + "; ".join(cover) + ".")
    else:
        left.info("No magnitudes in these runs' catalogues: no metrics per magnitude bin.")
    if pit:
        right.plotly_chart(plots.pit_figure(pit), key="results_pit")
    _coverage(stats)
    if dens:
        st.plotly_chart(plots.spec_density_figure(dens), key="results_density_fig3")
        st.caption(
            "Training spec-z: the labelled galaxies of the run's catalogue; test: their "
            "out-of-fold predictions. Bins of the count are log-spaced above 40."
        )


def _coverage(stats: dict[str, dict]) -> None:
    """The 68% intervals' coverage before and after each calibrated run's calibration."""
    calibrated = {r: s["coverage68"] for r, s in stats.items() if "coverage68" in s}
    if not calibrated:
        return
    st.subheader("Calibrated p(z) (beyond E20)")
    st.caption(
        "Share of spec-z inside the 68% interval [z_lo68, z_hi68] (target 68%), before and after "
        "the run's PIT calibration; each scored galaxy is calibrated by the calibration fitted "
        "without it. ±: the share's binomial noise were the p(z) calibrated (1.5 points at "
        "1,000 galaxies, 3.3 at 200): a bin further than twice that from 68% is miscalibrated, "
        "a closer one cannot be told from calibrated. Train with --no-calibrate (or predict "
        "with it) for the raw p(z)."
    )
    rows = []
    for run_id, c in calibrated.items():
        rows.append(
            {
                "run": state.run_title(run_id),
                "iAB": "all",
                "galaxies": c["n"],
                "before": c["raw"],
                "after": c["calibrated"],
                "±": c.get("noise"),
            }
        )
        rows += [
            {
                "run": state.run_title(run_id),
                "iAB": f"{b['lo']:.1f}-{b['hi']:.1f}",
                "galaxies": b["n"],
                "before": b["raw"],
                "after": b["calibrated"],
                "±": b.get("noise"),
            }
            for b in c["per_magnitude"]
            if b["n"]
        ]
    _coverage_table(rows)
    for run_id in calibrated:
        for kind, stage in state.heldout_stages(run_id).items():
            _heldout_stage(run_id, kind, stage)
        if state.run_kind_of(run_id) == "deepz":
            _heldout_form(run_id)


def _heldout_form(run_id: str) -> None:
    """Fit (in the background) or remove a run's held-out calibration stage (deepz calibrate)."""
    run = state.run_dir(run_id)
    job = jobs.heldout_job(run)
    with st.expander(
        f"{state.run_title(run_id)}: calibrate new galaxies on a held-out spec-z catalogue"
    ):
        st.caption(
            "The calibration above is fitted on the training galaxies; with few of them per "
            "magnitude (a few hundred at the bright end) new galaxies' 68% intervals can hold a "
            "few points more or less than 68%. A catalogue of spec-z galaxies the run never "
            "trained on (e.g. a bright spec-z survey of the field) fits a second stage for new "
            "galaxies; training galaxies keep theirs, the mode never moves. Runs in the "
            "background (the combination's template fit: ~100 galaxies/s on 2 cores)."
        )
        if job["state"] == "running":
            st.info(f"Calibrating on {job.get('catalog_name')}… (reload to follow)")
            return
        if job["state"] == "failed":
            st.error(f"The calibration on {job.get('catalog_name')} failed: {job['error']}")
        options = state.catalogue_options()
        choice = st.selectbox(
            "Held-out catalogue", list(options), format_func=options.get, key=f"heldout_{run_id}"
        )
        if st.button("Calibrate on it", key=f"heldout_go_{run_id}"):
            path = state.catalog_path(choice)
            try:
                jobs.start_heldout_calibration(run.path, str(path), options[choice])
            except DeepzError as exc:
                st.error(str(exc))
            else:
                st.info(f"Calibrating on {options[choice]} in the background.")
        if state.heldout_stages(run_id) and st.button(
            "Remove the held-out stage", key=f"heldout_drop_{run_id}"
        ):
            state.drop_heldout_stage(run_id)
            st.rerun()


def _heldout_stage(run_id: str, kind: str, s: dict) -> None:
    """The held-out calibration stage of a run's networks or combination (deepz calibrate): its
    galaxies' coverage before and after it, each by a stage fitted without it."""
    source = s.get("catalog") or "a held-out catalogue"
    st.markdown(
        f"**{state.run_title(run_id)}**: its {kind} calibrated again for new galaxies on {s['n']:,} held-out "
        f"spec-z galaxies of `{source}` (`deepz calibrate`): PIT KS {s['pit_ks_before']:.4f} → "
        f"{s['pit_ks_after']:.4f}, 68% interval coverage {s['coverage68_before']:.1%} → "
        f"{s['coverage68_after']:.1%}; training galaxies keep the calibration above."
    )
    if "precision_note" in s:
        st.caption(s["precision_note"])
    rows = [
        {
            "iAB": f"{b['lo']:.1f}-{b['hi']:.1f}",
            "galaxies": b["n"],
            "before": b["coverage68_before"],
            "after": b["coverage68_after"],
            "±": b["coverage68_noise"],
        }
        for b in s["per_magnitude"]
        if b["n"]
    ]
    _coverage_table(rows)


def _coverage_table(rows: list[dict]) -> None:
    """Coverage rows (before, after and the binomial noise ± as shares) as a table."""
    share = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        width="stretch",
        column_config={"before": share, "after": share, "±": share},
    )


def _combination(runs: list[str], prof) -> None:
    """Each run's combination of its networks with the template fit (beyond E20): network,
    template fit and combined compared out of fold per half magnitude, and the combined
    predictions; for a run without one, how to get it."""
    st.subheader("Network + template fit")
    st.caption(
        "p(z) ∝ p_net^a · p_tf^b with exponents chosen per half magnitude on the out-of-fold "
        "spec-z galaxies (each galaxy scored with exponents and a calibration fitted without "
        f"it); outliers: the {prof.name} profile's |Δz|/(1+z_s) > {prof.outlier:g}"
        + (
            f"; catastrophic: |Δz|/(1+z_s) > {state.CATASTROPHIC_OUTLIER:g}"
            if prof.outlier != state.CATASTROPHIC_OUTLIER
            else ""
        )
        + "; PIT KS: the KS statistic D of the PIT against uniform (0: calibrated)."
    )
    for run_id in runs:
        combined = state.combination(run_id, prof.outlier)
        if combined is None:
            st.info(
                f"{state.run_title(run_id)} is not combined with the template fit. Combine it "
                f"from a terminal with `deepz combine --run {state.run_dir(run_id).path}` "
                "(--templates bcnz2 or kcorrect), or train a run with **Combine with the "
                "template fit** on the Train page."
            )
            continue
        _combination_of(run_id, combined, prof.outlier != state.CATASTROPHIC_OUTLIER)


def _combination_of(run_id: str, combined: dict, catastrophic: bool = True) -> None:
    """The comparison table (``catastrophic``: with the catastrophic outliers, when they are not
    the profile's outliers again), the σ68-vs-magnitude figure and the downloads of one run."""
    summary = combined["summary"]
    st.markdown(
        f"**{state.run_title(run_id)}**: its networks × the {combined['templates']} template fit, "
        f"{summary.get('n', 0):,} out-of-fold spec-z galaxies"
    )
    rows = pd.DataFrame(plots.combination_rows(summary, catastrophic))
    fixed = st.column_config.NumberColumn(format="%.4f")
    percent = st.column_config.NumberColumn(format="percent")
    fractions = ("outliers", "catastrophic")
    formats = {c: percent if c.startswith(fractions) else fixed for c in rows.columns[2:]}
    st.dataframe(rows, hide_index=True, width="stretch", column_config=formats, placeholder="—")
    fig = plots.combination_vs_mag(summary, f"σ68 vs magnitude: {state.run_title(run_id)}")
    st.plotly_chart(fig, key=f"results_combined_{run_id}")
    key = state.combined_key(run_id)
    if key is None:
        st.warning(
            f"{state.run_title(run_id)}: the combined predictions (hybrid_predictions.fits) are missing."
        )
        return
    c1, c2, _ = st.columns([1, 1, 2])
    c1.download_button(
        f"{run_id}: combined FITS",
        on_click="ignore",
        data=lambda k=key: state.export_bytes(k, "fits"),
        file_name=f"{run_id}_combined_predictions.fits",
        mime="application/fits",
        key=f"results_combined_fits_{run_id}",
    )
    c2.download_button(
        f"{run_id}: combined Parquet",
        on_click="ignore",
        data=lambda k=key: state.export_bytes(k, "parquet"),
        file_name=f"{run_id}_combined_predictions.parquet",
        mime="application/vnd.apache.parquet",
        key=f"results_combined_pq_{run_id}",
    )
    st.caption(
        "Combined predictions: deepz's columns (the combination's mode, calibrated p(z) as an "
        "8-component mixture) plus each estimator's zphot_net/odds_net and zphot_tf/odds_tf/chi2_tf."
    )


def _downloads(runs: list[str]) -> None:
    st.subheader("Download predictions")
    st.caption(
        "One row per galaxy: ref_id, zphot (mode), zmean, zmedian, z_lo68/z_hi68, odds, zspec, pit, "
        "mag, out_of_fold and the ensemble mixture (weights, means, stds; qp 'mixmod' layout); "
        "a calibrated run's products and mixture are the calibrated ones (pit_raw: the PIT before)."
    )
    for col, run_id in zip(st.columns(len(runs)), runs, strict=True):
        key = state.run_key(run_id)
        path = state.predictions(key).path
        col.download_button(
            f"{run_id}: FITS",
            data=path.read_bytes,
            on_click="ignore",
            file_name=f"{run_id}_predictions.fits",
            mime="application/fits",
            key=f"results_fits_{run_id}",
        )
        col.download_button(
            f"{run_id}: Parquet",
            on_click="ignore",
            data=lambda k=key: state.export_bytes(k, "parquet"),
            file_name=f"{run_id}_predictions.parquet",
            mime="application/vnd.apache.parquet",
            key=f"results_pq_{run_id}",
        )
        col.download_button(
            f"{run_id}: qp (HDF5)",
            on_click="ignore",
            data=lambda k=key: state.qp_bytes(k),
            file_name=f"{run_id}_predictions.qp.hdf5",
            mime="application/x-hdf5",
            key=f"results_qp_{run_id}",
        )


def experiment_reports() -> None:
    """Reports under $DEEPZ_HOME/experiments, or any report folder typed in."""
    root = state.experiments_dir()
    found = state.reports.find_reports(root)
    st.caption(
        f"Reports written by `python -m deepz_core experiments --preset quick --out DIR`; folders "
        f"under {root} are listed, or type another folder."
    )
    names = [p.name for p in found]
    choice = st.selectbox(
        "Report",
        names,
        index=0 if names else None,
        key="results_report",
        placeholder="no report under the experiments folder",
    )
    typed = st.text_input("…or a report folder", key="results_report_path").strip()
    folder = Path(typed).expanduser() if typed else (root / choice if choice else None)
    if folder is None:
        st.info("No experiments report yet.")
        return
    if not state.reports.is_report(folder):
        st.warning(f"{folder} holds no report.md and results.json.")
        return
    met, pending, total = state.reports.target_counts(folder)
    st.metric("Targets met", f"{met} / {total}")
    if pending:
        st.caption(
            f"{pending} of {total} targets not measured yet: a partial report, written "
            "while the experiments run; rerun the same command to continue a stopped one."
        )
    for kind, value in state.reports.report_blocks(folder):
        if kind == "figure":
            st.image(str(value), width=640)
        else:
            st.markdown(value)


def main() -> None:
    runs_tab, reports_tab = st.tabs(["Runs", "Experiment reports"])
    with reports_tab:
        experiment_reports()
    with runs_tab:
        compare_runs()


def compare_runs() -> None:
    finished = state.finished_runs()
    if not finished:
        st.info(state.NO_RUN)
        return
    if "results_runs" not in st.session_state:
        st.session_state["results_runs"] = _chosen(finished)
    st.session_state["results_runs"] = [
        r for r in st.session_state["results_runs"] if r in finished
    ]
    runs = st.multiselect(
        f"Runs to compare (up to {MAX_RUNS})",
        finished,
        key="results_runs",
        max_selections=MAX_RUNS,
        format_func=state.run_title,
    )
    if not runs:
        st.info("Choose at least one run.")
        return
    st.session_state["results_chosen"] = runs  # survives leaving the page (widget state does not)
    state.set_query_value("runs", ",".join(runs))
    state.select_analysis_run(runs[0])
    catalogues = {state.run_catalog(r) for r in runs}
    if len(catalogues) > 1:
        st.warning(
            f"These runs were trained on {len(catalogues)} different catalogues: their numbers "
            "describe different galaxies and are not directly comparable."
        )
    key = state.run_key(runs[0])
    prof = state.profile_editor(key, "results_profile")
    if len(runs) > 1:
        st.caption(f"Every run here is judged by the profile of {runs[0]}: {prof.label}.")
    edges = _mag_bins(runs)
    pkey = state.profile_json(prof)
    stats = {r: state.results_stats(state.run_key(r), pkey, edges) for r in runs}
    _summary_table(stats, prof)
    if any(s["n"] for s in stats.values()):
        _density(runs, prof.outlier)
        _figures(stats, prof.outlier)
    else:
        st.info("No scored galaxies (spec-z with out-of-fold p(z)) in these runs.")
    networks = [r for r in runs if state.run_kind_of(r) == "deepz"]
    if networks:
        _combination(networks, prof)
    _downloads(runs)


try:
    main()
except Exception as exc:  # the page shows a message, never a traceback
    st.error(f"The results could not be shown: {type(exc).__name__}: {exc}")
