"""Quality cuts (E20 Sec. 6.2, Fig. 9): σ68 and strict outlier fraction vs completeness for the ODDS
cut and the optimal cut, the PAUS target, interactive cut controls and export of the selection."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import plots, state
from deepz_core.evaluation import run_products as analysis

st.title("Quality cuts")
st.caption(
    "ODDS = ∫ p(z) dz over mode ± window/2 (E20 eq. 7; paper window 0.003). Completeness = fraction "
    "of the scored galaxies (spec-z, out-of-fold p(z)) brighter than the magnitude limit that pass "
    "the cut. The optimal cut keeps the smallest |Δz|/(1+z_s) first, using the spec-z (a lower "
    "limit). PAUS target: σ68 ≤ 0.0035(1+z) for the best 50%, i.e. σ68 of Δz/(1+z_s) ≤ 0.0035."
)


def _controls(pred: analysis.Predictions, default_window: float) -> dict:
    c1, c2, c3 = st.columns(3)
    window = c1.slider(
        "ODDS window width Δz",
        0.001,
        0.05,
        float(np.clip(default_window, 0.001, 0.05)),
        0.001,
        format="%.3f",
        key="cuts_window",
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
    if pred.mag is not None and np.isfinite(pred.mag).any():
        lo = float(np.floor(np.nanmin(pred.mag) * 10) / 10)
        hi = max(float(np.ceil(np.nanmax(pred.mag) * 10) / 10), lo + 0.1)
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


def _metrics(stats: dict, threshold: float, curves: dict) -> None:
    c = st.columns(5)
    c[0].metric("ODDS threshold", f"{threshold:.3f}")
    c[1].metric("completeness", f"{stats.get('completeness', 0):.1%}")
    c[2].metric("σ68 of Δz/(1+z_s)", f"{stats.get('sigma68', np.nan):.4f}")
    c[3].metric("outlier fraction", f"{stats.get('outlier_fraction', np.nan):.1%}")
    c[4].metric("selected (all galaxies)", f"{stats['n_selected']:,}")
    best = analysis.sigma68_at(curves["ODDS cut"], 0.5)
    verdict = "meets" if best <= analysis.PAUS_TARGET else "misses"
    st.caption(f"Best 50% by ODDS: σ68 = {best:.4f}, which {verdict} the PAUS target 0.0035(1+z).")


def _export(pred: analysis.Predictions, odds: np.ndarray, threshold: float, c: dict) -> None:
    def rows(fmt: str):
        return lambda: analysis.selection_bytes(
            pred, odds, threshold, c["window"], c["mag_max"], fmt
        )

    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button(
        "Selected catalogue (FITS)",
        rows("fits"),
        "selection.fits",
        "application/fits",
        key="cuts_fits",
        on_click="ignore",
    )
    c2.download_button(
        "Selected catalogue (CSV)",
        rows("csv"),
        "selection.csv",
        "text/csv",
        key="cuts_csv",
        on_click="ignore",
    )
    st.caption(
        "Both hold `odds_cut`, the ODDS for this window that the threshold applies to, and "
        "the cut (FITS header / leading # lines); FITS holds the mixture parameters too, "
        "CSV the per-galaxy columns only."
    )


@st.fragment
def cut_panel(key: state.RunKey, default_window: float) -> None:
    """Controls, numbers, curves and export: reruns alone when a control moves."""
    try:
        _panel(key, default_window)
    except Exception as exc:  # a fragment rerun is outside main's try
        st.error(f"The quality cuts could not be computed: {type(exc).__name__}: {exc}")


def _panel(key: state.RunKey, default_window: float) -> None:
    pred = state.predictions(key)
    c = _controls(pred, default_window)
    curves = state.cut_curves(key, c["window"], c["mag_max"])
    if curves["n"] == 0:
        st.info(
            "No scored galaxies (spec-z with out-of-fold p(z)) within this magnitude limit: "
            "no completeness, σ68 or curves. An ODDS threshold still selects galaxies."
        )
        if c["how"] == "ODDS threshold":
            odds = state.window_odds(key, c["window"])
            n = int(analysis.selection_mask(pred, odds, c["value"], c["mag_max"]).sum())
            st.metric("selected (all galaxies)", f"{n:,}")
            _export(pred, odds, c["value"], c)
        return
    if c["how"] == "ODDS threshold":
        threshold = c["value"]
    else:
        threshold = state.cut_threshold(key, c["window"], c["value"], c["mag_max"])
    stats = state.cut_stats(key, c["window"], threshold, c["mag_max"])
    _metrics(stats, threshold, curves)
    shown = {k: v for k, v in curves.items() if k != "n"}
    st.plotly_chart(plots.quality_curves(shown, analysis.PAUS_TARGET, stats), key="cuts_fig")
    _export(pred, state.window_odds(key, c["window"]), threshold, c)


def main() -> None:
    run_id = state.pick_analysis_run("cuts_run", state.ALL_KINDS)
    if run_id is None:
        return
    key = state.run_key(run_id)
    cut_panel(key, state.run_pz(key).odds_window)


try:
    main()
except Exception as exc:  # the page shows a message, never a traceback
    st.error(f"The quality cuts could not be shown: {type(exc).__name__}: {exc}")
