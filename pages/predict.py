"""Predict: apply a finished run to a photometric catalogue (no spec-z needed) in the background,
then browse it (a galaxy's p(z) and SED, ODDS and magnitude cuts) and take away the survey
products: n(z) of a selection as its stacked p(z), tomographic bins by photo-z, the sky, and the
predictions as FITS or Parquet (one row per catalogue row, in order)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import jobs, plots, state
from deepz_core import DeepzError

ACTIVE = ("queued", "running")
UPLOAD_TYPES = ["fits", "fit", "gz", "fz", "parquet", "pq", "csv", "h5", "hdf5", "hdf"]

st.title("Predict")
st.caption(
    "Apply a finished DEEPZ run to a catalogue with the run's bands (spec-z not needed): the "
    "prediction runs in the background and keeps going when you leave the page. Every catalogue "
    "row gets a row of predictions, in order; rows without a usable reference flux get NaN and "
    "say why in `flag`."
)


def problem_text(action: str, exc: Exception) -> str:
    """'<action>: <message>' for deepz's own errors; unexpected ones name their type."""
    if isinstance(exc, DeepzError):
        return f"{action}: {exc}"
    return f"{action}: unexpected {type(exc).__name__}: {exc}"


# --- a new prediction ----------------------------------------------------------------------------


def _uploaded_catalogue(run_id: str) -> str | None:
    """A catalogue uploaded here, imported with the guessed column mapping and the bands named as
    run ``run_id``'s: its key; '' when a file is uploaded but cannot be imported (the page then
    predicts nothing); None without one."""
    file = st.file_uploader(
        "…or upload a catalogue (fluxes per band, as the run's; ids; ra/dec optional)",
        type=UPLOAD_TYPES,
        key=state.uploader_key("pred_upload"),
        help="Columns are recognised by name (flux_<band>, flux_error_<band>, ref_id...). For "
        "other names, or magnitudes, import it on the **Data** page and choose it above.",
    )
    rejected = state.upload_rejection("pred_upload", file is not None)
    if rejected:
        st.error(rejected)
    if file is None:
        return None
    try:
        path = state.save_upload(file.getvalue(), file.name)
        key, report, renamed = state.auto_import(path, file.name, state.run_band_names(run_id))
    except DeepzError as exc:  # not kept: the uploader is emptied, the message stays
        state.reject_upload("pred_upload", f"Upload rejected: {exc}")
    if key is None:
        problems = "; ".join(p.text() for p in report.problems[:5])
        problems = problems.replace(Path(path).name, file.name)
        if report.mapping_failed:
            advice = "Map its columns on the **Data** page, then choose it above."
        else:
            advice = "Correct the file and upload it again (the **Data** page lists every fix)."
        st.error(f"{file.name} cannot be predicted: {problems}. {advice}")
        return ""
    flagged = f" ({report.n_flagged:,} with values the screen flags)" if report.flagged else ""
    st.success(f"Imported {file.name}: {report.catalog.n_galaxies:,} galaxies{flagged}.")
    for fixed in report.fixed:  # as deepz predict reads them
        text = fixed.text().replace(Path(path).name, file.name)
        st.info(f"{text}: read as unknown (NaN), as by `deepz predict`.")
    if renamed:
        pairs = ", ".join(f"{b} → {r}" for b, r in list(renamed.items())[:6])
        more = " ..." if len(renamed) > 6 else ""
        st.caption(f"Bands named as the run's by their filter letters: {pairs}{more}.")
    return key


def new_prediction() -> None:
    runs = state.finished_runs(("deepz",))
    if not runs:
        st.info("No finished DEEPZ run yet: train one on the **Train** page first.")
        return
    c1, c2 = st.columns(2)
    current = state.analysis_run(runs)
    run_id = c1.selectbox(
        "Run", runs, index=runs.index(current), format_func=state.run_title, key="pred_run"
    )
    options = state.catalogue_options()
    selected = state.selected_catalog()
    choice = c2.selectbox(
        "Catalogue",
        list(options),
        index=list(options).index(selected) if selected in options else 0,
        format_func=options.get,
        key="pred_catalog",
        help="The demo and the catalogues imported on the Data page",
    )
    uploaded = _uploaded_catalogue(run_id)
    if uploaded == "":  # a failed upload: never predict the dropdown's catalogue instead
        st.button("Predict this catalogue", type="primary", disabled=True)
        st.caption("Remove the uploaded file to predict the catalogue chosen above.")
        return
    if uploaded is not None:
        choice = uploaded
        options = state.catalogue_options()
    path = state.catalog_path(choice)
    if path is None:
        st.warning("The chosen catalogue no longer exists: choose another.")
        return
    missing, refusal = state.absent_bands(run_id, path)
    refusal = refusal or state.prediction_refusal(run_id, path)  # as deepz predict refuses it
    if refusal is not None:
        st.warning(f"This run cannot predict {options.get(choice, choice)}: {refusal}")
    elif missing:
        st.info(
            f"{options.get(choice, choice)} lacks {len(missing)} of the run's bands "
            f"({', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}): they are imputed "
            "for every galaxy, which is flagged BAND_MISSING (as by `deepz predict`)."
        )
    for note in state.unmeasured_band_notes(run_id, path) if refusal is None else ():
        st.info(f"{options.get(choice, choice)}: {note} (as by `deepz predict`).")
    label = options.get(choice, choice).split(" (")[0]
    network_only = estimator_choice(run_id, path)
    if st.button("Predict this catalogue", type="primary", disabled=refusal is not None):
        folder = jobs.start_prediction(
            state.predictions_dir(),
            state.runs_dir() / run_id,
            path,
            label,
            network_only=network_only,
        )
        state.set_query_value("pred", folder.name)
        st.session_state["pred_job"] = folder.name
        st.success(f"Started: {label} with {state.run_title(run_id)}.")


def estimator_choice(run_id: str, path: str) -> bool:
    """For a run combined with the template fit: the 'Network only (fast)' checkbox (the
    combination is the default); whether to predict with the networks alone."""
    combined = state.combination(run_id)
    if combined is None:
        st.caption("This run predicts with its networks (it is not combined with a template fit).")
        return False
    tset = combined["templates"]
    rate = state.combination_rate(run_id, tset)
    network_only = st.checkbox(
        "Network only (fast)",
        value=False,
        key="pred_network_only",
        help=f"This run is combined with the {tset} template fit, which predicts about {rate:,.0f} "
        "galaxies/s on 2 CPU cores; the networks alone predict thousands per second.",
    )
    if network_only:
        st.caption("Predictions from the networks alone (the combination is not used).")
    else:
        n = state.catalog_summary(path).n_galaxies
        st.caption(
            f"Predictions from the networks combined with the {tset} template fit: about "
            f"{max(1, round(n / rate / 60))} min for {n:,} galaxies on 2 CPU cores."
        )
    return network_only


# --- the jobs --------------------------------------------------------------------------------------


def jobs_table(found: list) -> None:
    st.dataframe(
        pd.DataFrame(
            {
                "job": [j.job_id for j in found],
                "catalogue": [j.spec.get("catalog_name") for j in found],
                "run": [state.run_title(j.spec.get("run_id", "?")) for j in found],
                "estimator": [estimator_label(j.spec) for j in found],
                "state": [j.state for j in found],
                "progress": [j.progress for j in found],
                "galaxies": [j.spec.get("rows", j.spec.get("total")) for j in found],
                "started": [
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(j.spec.get("created", 0)))
                    for j in found
                ],
            }
        ),
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0.0, max_value=1.0, format="percent"
            )
        },
    )


def estimator_label(spec: dict) -> str:
    """What produced a job's table: 'network', or 'network + bcnz2 template fit'."""
    if spec.get("estimator") == "combined":
        return f"network + {spec.get('templates')} template fit"
    return "network"


def job_progress(job_id: str) -> None:
    """Progress of a running job with elapsed time and ETA (re-drawn every 2 s), Cancel."""
    job = state.prediction_job(job_id)
    if job is None:
        return
    if job.state not in ACTIVE:
        st.rerun()  # it just ended: show the results
    done, total = job.spec.get("done", 0), job.spec.get("total")
    timing = state.elapsed_eta(job.spec.get("started"), job.progress)
    text = f"{done:,}/{total:,} galaxies" if total else "starting"
    st.progress(job.progress, text=f"{text}" + (f" — {timing}" if timing else ""))
    if st.button("Cancel", key=f"pred_cancel_{job_id}"):
        jobs.cancel_prediction(job.folder)


# --- browsing a finished prediction ------------------------------------------------------------------


def galaxy_tab(key: state.RunKey) -> None:
    pred = state.predictions(key)
    ref_id = state.pick_galaxy(pred, "pred_ref_id")
    window = state.profile(key).odds_window
    g = state.galaxy_pz(key, ref_id, window)
    if g is None:
        st.warning(f"Galaxy {ref_id} is not in these predictions.")
        return
    cols = st.columns(5 if g["calibrated"] else 4)
    mode_label = "z_p (mode before calibration)" if g["calibrated"] else "z_p (mode)"
    cols[0].metric(mode_label, "—" if not math.isfinite(g["mode"]) else f"{g['mode']:.4f}")
    cols[1].metric(
        f"ODDS (±{window / 2:g})", "—" if not math.isfinite(g["odds"]) else f"{g['odds']:.3f}"
    )
    mag = g["mag"]
    cols[2].metric("m_AB [mag]", "—" if mag is None or not math.isfinite(mag) else f"{mag:.2f}")
    zs = g["zspec"]
    cols[3].metric("z_s (spec-z)", "—" if not math.isfinite(zs) else f"{zs:.4f}")
    if g["calibrated"] and math.isfinite(g["zmedian"]):
        cols[4].metric(
            "median [68%]",
            f"{g['zmedian']:.4f}",
            f"{g['z_lo68']:.3f} – {g['z_hi68']:.3f}",
            delta_color="off",
            delta_arrow="off",
            help="Median and 68% interval of the calibrated p(z) drawn below; z_p is the mode "
            "of the networks' p(z) before calibration",
        )
    if not math.isfinite(g["mode"]):
        st.info(f"Galaxy {ref_id} has no p(z): see its `flag` in the download.")
        return
    left, right = st.columns(2)
    fig = plots.pz_figure(
        g["grid"],
        g["pdf"],
        components=g["components"],
        zspec=zs,
        odds_window=window,
        title=f"p(z) of {ref_id}",
        **plots.pz_markers(g),
    )
    left.plotly_chart(fig, key="pred_pz")
    sed = state.prediction_sed(key, ref_id)
    if sed is not None:
        right.plotly_chart(plots.sed_figure(sed, f"SED of {ref_id}"), key="pred_sed")


def cut_controls(key: state.RunKey) -> dict:
    """ODDS window and threshold, magnitude limit: the selection every product below uses."""
    prof = state.profile(key)
    pred = state.predictions(key)
    lo, hi = prof.window_range()
    c1, c2, c3 = st.columns(3)
    window = c1.slider(
        "ODDS window width Δz",
        lo,
        hi,
        float(np.clip(prof.odds_window, lo, hi)),
        0.001,
        format="%.3f",
        key=f"pred_window_{prof.name}",
        help=f"The run's {prof.name} profile: {prof.odds_window:g}",
    )
    threshold = c2.slider("ODDS threshold (keep ODDS ≥)", 0.0, 1.0, 0.0, 0.01, key="pred_odds")
    mag_max = None
    bounds = state.mag_slider_range(pred.mag)
    if bounds is not None:
        m_lo, m_hi = bounds
        value = c3.slider("Magnitude limit [AB mag]", m_lo, m_hi, m_hi, 0.1, key="pred_mag")
        mag_max = None if value >= m_hi else round(value, 3)
    return {"window": round(window, 6), "threshold": round(threshold, 6), "mag_max": mag_max}


def downloads(key: state.RunKey, job_id: str, cut: dict, n_selected: int) -> None:
    """The whole predictions and the selection, named after the job and the cut."""
    name = state.selection_name(job_id, cut["window"], cut["threshold"], cut["mag_max"])
    c = st.columns(4)
    c[0].download_button(
        "All predictions (Parquet)",
        lambda: state.export_bytes(key, "parquet"),
        f"{job_id}_predictions.parquet",
        "application/vnd.apache.parquet",
        key="pred_all_pq",
        on_click="ignore",
    )
    c[1].download_button(
        "All predictions (FITS)",
        lambda: state.export_bytes(key, "fits"),
        f"{job_id}_predictions.fits",
        "application/fits",
        key="pred_all_fits",
        on_click="ignore",
    )
    sel = (key, cut["window"], cut["threshold"], cut["mag_max"])
    c[2].download_button(
        f"Selection, {n_selected:,} galaxies (FITS)",
        lambda: state.selection_bytes(*sel, "fits"),
        f"{name}.fits",
        "application/fits",
        key="pred_sel_fits",
        on_click="ignore",
        disabled=n_selected == 0,
    )
    c[3].download_button(
        "All predictions (qp, HDF5)",
        lambda: state.qp_bytes(key),
        f"{job_id}_predictions.qp.hdf5",
        "application/x-hdf5",
        key="pred_qp",
        on_click="ignore",
    )


def products_tab(key: state.RunKey, job_id: str) -> tuple[dict, int]:
    cut = cut_controls(key)
    n = state.selection_count(key, cut["window"], cut["threshold"], cut["mag_max"])
    st.caption(f"{n:,} of {state.predictions(key).n:,} galaxies selected.")
    if n == 0:
        st.warning("No galaxy passes this cut: lower the ODDS threshold or raise the limit.")
    else:
        nz = state.stacked_nz(key, cut["window"], cut["threshold"], cut["mag_max"])
        st.plotly_chart(plots.nz_figure(nz.grid, nz.nz, nz.n), key="pred_nz")
        st.caption(
            f"n(z) = the mean p(z) of the selected galaxies; mean z = {nz.mean_z:.3f}"
            + (f"; {nz.n_no_pz:,} selected galaxies have no p(z)." if nz.n_no_pz else ".")
        )
    downloads(key, job_id, cut, n)
    return cut, n


def tomography_tab(key: state.RunKey, cut: dict, n: int) -> None:
    if n == 0:
        st.info("No galaxy passes the cut on the previous tab.")
        return
    pred = state.predictions(key)
    zp = pred.zphot[np.isfinite(pred.zphot)]
    c1, c2 = st.columns([1, 3])
    bins = c1.number_input("Bins", 1, 10, 4, key="pred_tomo_bins")
    lo, hi = float(np.floor(zp.min() * 10) / 10), float(np.ceil(zp.max() * 10) / 10)
    default = state.equal_count_edges(key, int(bins), lo, hi)
    text = c2.text_input(
        "Photo-z edges (comma-separated; default: equal numbers of galaxies)",
        ", ".join(f"{e:.3f}" for e in default),
        key=f"pred_tomo_edges_{bins}",
    )
    if len(default) - 1 < bins:
        st.caption(
            f"{len(default) - 1} bins instead of {int(bins)}: many galaxies share a photo-z, so "
            "equal-count edges coincided and were merged."
        )
    try:
        edges = tuple(float(v) for v in text.split(","))
        tomo = state.tomography(key, edges, cut["window"], cut["threshold"], cut["mag_max"])
    except (ValueError, DeepzError) as exc:
        st.warning(f"Edges {text!r}: {exc}")
        return
    st.plotly_chart(
        plots.tomography_figure(tomo.grid, tomo.nz, tomo.edges, tomo.counts), key="pred_tomo"
    )
    st.dataframe(
        pd.DataFrame(
            {
                "bin": np.arange(1, len(tomo.counts) + 1),
                "z_p from": tomo.edges[:-1],
                "z_p to": tomo.edges[1:],
                "galaxies": tomo.counts,
                "mean z of n(z)": tomo.mean_z,
            }
        ),
        hide_index=True,
    )


def sky_tab(key: state.RunKey) -> None:
    sky = state.sky(key)
    if sky is None:
        st.info("This catalogue has no ra/dec columns: nothing to put on the sky.")
        return
    fig = plots.sky_figure(*sky, color=state.predictions(key).zphot)
    st.plotly_chart(fig, key="pred_sky")


def show_job(job_id: str) -> None:
    job = state.prediction_job(job_id)
    if job is None:
        return
    spec = job.spec
    run = state.run_title(spec.get("run_id", "?"))
    st.markdown(f"### {spec.get('catalog_name')} with {run} — {job.state}")
    if job.state in ACTIVE:
        st.fragment(run_every=2)(job_progress)(job_id)
        return
    if job.state != "finished":
        (st.error if job.state == "failed" else st.info)(spec.get("message") or job.state)
        return
    flags = {k: v for k, v in spec.get("flags", {}).items() if k != "rows"}
    no_pz = flags.pop("NO_PZ", 0)
    listed = ", ".join(f"{name} {count:,}" for name, count in flags.items())
    said = f"; {no_pz:,} without a p(z)" if no_pz else ""
    st.caption(
        f"{spec.get('rows', 0):,} rows predicted"
        + (f"{said} (flags: {listed}; see the flag column)" if listed else said)
        + f". Survey profile of the run: {state.profile(state.job_key(job_id)).label}."
    )
    st.caption(f"Estimator: {estimator_label(spec)}.")
    for note in spec.get("notes", []):  # the job's warnings, each once (its log holds them too)
        st.warning(note)
    key = state.job_key(job_id)
    tabs = st.tabs(["n(z) and downloads", "Tomographic bins", "Galaxies", "Sky"])
    with tabs[0]:
        cut, n = products_tab(key, job_id)
    with tabs[1]:
        tomography_tab(key, cut, n)
    with tabs[2]:
        galaxy_tab(key)
    with tabs[3]:
        sky_tab(key)


def jobs_section() -> None:
    found = state.prediction_jobs_list()
    st.subheader("Predictions")
    if not found:
        st.info("No prediction yet: choose a run and a catalogue above.")
        return
    jobs_table(found)
    ids = [j.job_id for j in found]
    wanted = state.query_value("pred") or st.session_state.get("pred_job")
    if wanted in ids:
        st.session_state["pred_show"] = wanted
    elif st.session_state.get("pred_show") not in ids:
        st.session_state["pred_show"] = ids[0]
    labels = {
        j.job_id: f"{j.spec.get('catalog_name')} with {state.run_title(j.spec.get('run_id', '?'))}"
        f" ({j.job_id})"
        for j in found
    }
    pick = st.selectbox("Show", ids, key="pred_show", format_func=labels.get)
    st.session_state["pred_job"] = pick
    state.set_query_value("pred", pick)
    show_job(pick)


try:
    with st.container(border=True):
        new_prediction()
except Exception as exc:  # the page shows a message, never a traceback
    st.error(problem_text("Cannot start a prediction", exc))
try:
    jobs_section()
except Exception as exc:
    st.error(problem_text("The predictions cannot be shown", exc))
