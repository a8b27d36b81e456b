"""Quality cuts (E20 Sec. 6.2, Fig. 9): σ68 and outlier fraction vs completeness for the ODDS cut and
the optimal cut, the survey profile's target, interactive cut controls and export of the selection."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from app import plots, state

st.title("Quality cuts")
st.caption(
    "ODDS = ∫ p(z) dz over mode ± window/2 (E20 eq. 7; paper window 0.003 for PAUS's narrow "
    "bands; the run's survey profile sets the default). Completeness = fraction of the scored "
    "galaxies (spec-z, out-of-fold p(z)) brighter than the magnitude limit that pass the cut. The "
    "optimal cut keeps the smallest |Δz|/(1+z_s) first, using the spec-z (a lower limit)."
)


def _controls(key: state.RunKey, prof) -> dict:
    pred = state.predictions(key)
    c1, c2, c3 = st.columns(3)
    lo, hi = prof.window_range()
    window = c1.slider(
        "ODDS window width Δz",
        lo,
        hi,
        float(np.clip(prof.odds_window, lo, hi)),
        0.001,
        format="%.3f",
        key=f"cuts_window_{prof.name}",
        help=f"The {prof.name} profile's window is {prof.odds_window:g} (±{prof.odds_window / 2:g})",
    )
    modes = ["target completeness", "ODDS threshold"] if pred.scored.any() else ["ODDS threshold"]
    how = c2.radio(
        "Cut by",
        modes,
        key="cuts_how",
        horizontal=True,
        help="Completeness needs galaxies with a spec-z and out-of-fold p(z)",
    )
    if how == "ODDS threshold":
        value = c2.slider("ODDS threshold (keep ODDS ≥)", 0.0, 1.0, 0.5, 0.01, key="cuts_threshold")
    else:
        value = c2.slider("Target completeness", 0.02, 1.0, 0.5, 0.01, key="cuts_completeness")
    mag_max = None
    bounds = state.mag_slider_range(pred.mag)
    if bounds is not None:
        lo, hi = bounds
        mag_max = c3.slider(
            "Magnitude limit [mag, AB]",
            lo,
            hi,
            hi,
            0.1,
            key="cuts_mag",
            help="E20 scores iAB < 22.5. At the far right: no limit, galaxies "
            "without a magnitude kept; any lower limit leaves them out.",
        )
        mag_max = None if mag_max >= hi else mag_max
    return {
        "window": round(window, 6),
        "how": how,
        "value": round(value, 6),
        "mag_max": None if mag_max is None else round(mag_max, 3),
    }


def _number(x: float | None, fmt: str) -> str:
    """'—' for a number that does not exist (e.g. σ68 of no galaxy)."""
    return "—" if x is None or not math.isfinite(x) else format(x, fmt)


def _metrics(stats: dict, threshold: float, curves: dict, prof) -> None:
    c = st.columns(5)
    c[0].metric("ODDS threshold", f"{threshold:.3f}")
    c[1].metric("completeness", f"{stats.get('completeness', 0):.1%}")
    c[2].metric("σ68 of Δz/(1+z_s)", _number(stats.get("sigma68"), ".4f"))
    c[3].metric(
        prof.outlier_short,
        _number(stats.get("outlier_fraction"), ".1%"),
        help=f"{prof.outlier_label} of the selected galaxies with a spec-z",
    )
    c[4].metric("selected (all galaxies)", f"{stats['n_selected']:,}")
    best = state.sigma68_at(curves["ODDS cut"], prof.target_fraction)
    text = f"Best {prof.target_fraction:.0%} by ODDS: σ68 = {best:.4f}"
    if prof.target is not None:
        verdict = "meets" if best <= prof.target else "misses"
        text += f", which {verdict} the target {prof.target:g}(1+z) of the {prof.name} profile"
    st.caption(text + ".")


def _export(key: state.RunKey, run_id: str, threshold: float, c: dict, n_selected: int) -> None:
    """Downloads of the selection, named after the run and the cut; disabled when it is empty."""
    name = state.selection_name(run_id, c["window"], threshold, c["mag_max"])

    def rows(fmt: str):
        return lambda: state.selection_bytes(key, c["window"], threshold, c["mag_max"], fmt)

    empty = n_selected == 0
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button(
        "Selected catalogue (FITS)",
        rows("fits"),
        f"{name}.fits",
        "application/fits",
        key="cuts_fits",
        on_click="ignore",
        disabled=empty,
    )
    c2.download_button(
        "Selected catalogue (CSV)",
        rows("csv"),
        f"{name}.csv",
        "text/csv",
        key="cuts_csv",
        on_click="ignore",
        disabled=empty,
    )
    st.caption(
        f"Files named `{name}.*`. Both hold `odds_cut`, the ODDS for this window that the "
        "threshold applies to, and the cut (FITS header / leading # lines); FITS holds the "
        "mixture parameters too, CSV the per-galaxy columns only."
    )


@st.fragment
def cut_panel(key: state.RunKey, run_id: str) -> None:
    """Controls, numbers, curves and export: reruns alone when a control moves."""
    try:
        _panel(key, run_id)
    except Exception as exc:  # a fragment rerun is outside main's try
        st.error(f"The quality cuts could not be computed: {type(exc).__name__}: {exc}")


def _nothing_selected(c: dict) -> None:
    st.warning(
        f"No galaxy has ODDS ≥ {c['value']:g} in a window of {c['window']:g}"
        + ("" if c["mag_max"] is None else f" and m ≤ {c['mag_max']:g}")
        + ": lower the threshold or widen the window. Nothing to download."
    )


def _panel(key: state.RunKey, run_id: str) -> None:
    prof = state.profile(key)
    c = _controls(key, prof)
    curves = state.cut_curves(key, c["window"], c["mag_max"], prof.outlier)
    if curves["n"] == 0:
        st.info(
            "No scored galaxies (spec-z with out-of-fold p(z)) within this magnitude limit: "
            "no completeness, σ68 or curves. An ODDS threshold still selects galaxies."
        )
        if c["how"] == "ODDS threshold":
            n = state.selection_count(key, c["window"], c["value"], c["mag_max"])
            st.metric("selected (all galaxies)", f"{n:,}")
            if n == 0:
                _nothing_selected(c)
            _export(key, run_id, c["value"], c, n)
        return
    if c["how"] == "ODDS threshold":
        threshold = c["value"]
    else:
        threshold = state.cut_threshold(key, c["window"], c["value"], c["mag_max"])
    stats = state.cut_stats(key, c["window"], threshold, c["mag_max"], prof.outlier)
    if stats["n_selected"] == 0 or not math.isfinite(threshold):
        _nothing_selected(c)
        _export(key, run_id, threshold, c, 0)
        return
    _metrics(stats, threshold, curves, prof)
    if stats["n_scored"] == 0:
        st.info("None of the selected galaxies has a spec-z: no σ68 or outlier fraction for them.")
    shown = {k: v for k, v in curves.items() if k != "n"}
    fig = plots.quality_curves(
        shown, prof.target, stats, outlier=prof.outlier, target_fraction=prof.target_fraction
    )
    st.plotly_chart(fig, key="cuts_fig")
    _export(key, run_id, threshold, c, stats["n_selected"])


def main() -> None:
    run_id = state.pick_analysis_run("cuts_run", state.ALL_KINDS)
    if run_id is None:
        return
    key = state.run_key(run_id)
    state.profile_editor(key, "cuts_profile")
    cut_panel(key, run_id)


try:
    main()
except Exception as exc:  # the page shows a message, never a traceback
    st.error(f"The quality cuts could not be shown: {type(exc).__name__}: {exc}")
