"""Galaxy explorer: one galaxy's p(z) (ensemble, members, components, z_s, mode, ODDS window) and
SED (coadds and single exposures); pick it by ref_id, from a filtered table or on the z_p-z_s plot."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import plots, state
from deepz_core.evaluation import run_products as analysis

TABLE_ROWS = 2000

st.title("Galaxy explorer")


def _header(g: dict[str, Any]) -> None:
    dz = g["dz"]
    cols = st.columns(6)
    cols[0].metric("z_s (spec-z)", "—" if not np.isfinite(g["zspec"]) else f"{g['zspec']:.4f}")
    cols[1].metric("z_p (mode)", f"{g['mode']:.4f}")
    cols[2].metric("Δz/(1+z_s)", "—" if not np.isfinite(dz) else f"{dz:+.4f}")
    cols[3].metric(f"ODDS (±{g['odds_window'] / 2:g})", f"{g['odds']:.3f}")
    cols[4].metric("PIT", "—" if not np.isfinite(g["pit"]) else f"{g['pit']:.3f}")
    cols[5].metric("m_AB [mag]", "—" if g["mag"] is None else f"{g['mag']:.2f}")


def _galaxy(key: state.RunKey, ref_id: int) -> None:
    g = state.galaxy_pz(key, ref_id)
    if g is None:
        st.warning(f"Galaxy {ref_id} is not in this run.")
        return
    _header(g)
    inputs, problem = None, None
    try:
        inputs = state.galaxy_inputs(key, ref_id)
    except Exception as exc:  # e.g. the run's catalogue was moved: p(z) still shows
        problem = f"{type(exc).__name__}: {exc}"
    left, right = st.columns(2)
    fig = plots.pz_figure(
        g["grid"],
        g["pdf"],
        components=g["components"],
        zspec=g["zspec"],
        mode=g["mode"],
        odds_window=g["odds_window"],
        members=None if inputs is None else inputs["members"],
        members_used=None if inputs is None else inputs["members_used"],
        title=f"p(z) of {ref_id}",
    )
    left.plotly_chart(fig, key="explorer_pz")
    if inputs is None:
        right.warning(f"Members' p(z) and SED need the run's catalogue and model: {problem}")
    else:
        right.plotly_chart(plots.sed_figure(inputs["sed"], f"SED of {ref_id}"), key="explorer_sed")


def _select(ref_id: Any) -> None:
    if ref_id is not None:
        state.select_galaxy(int(ref_id))


def _on_table(ids: np.ndarray) -> None:
    rows = st.session_state["explorer_table"]["selection"]["rows"]
    if rows and rows[0] < len(ids):
        _select(ids[rows[0]])


def _on_scatter(ids: np.ndarray) -> None:
    for point in st.session_state["explorer_scatter"]["selection"]["points"]:
        custom = point.get("customdata")
        custom = custom[0] if isinstance(custom, list) and custom else custom
        if custom is None and point.get("curve_number") == 0 and "point_index" in point:
            custom = ids[point["point_index"]]
        if custom is not None:
            return _select(custom)


def _table(pred: analysis.Predictions) -> None:
    c1, c2, c3 = st.columns(3)
    mag_range = None
    if pred.mag is not None and np.isfinite(pred.mag).any():
        lo, hi = float(np.nanmin(pred.mag)), float(np.nanmax(pred.mag))
        mag_range = c1.slider("Magnitude range [AB mag]", lo, max(hi, lo + 0.01), (lo, hi), 0.1)
    outliers = c2.checkbox("Outliers only (|Δz|/(1+z_s) > 0.02)", key="explorer_outliers")
    odds_min = c3.slider(
        "ODDS ≥",
        0.0,
        1.0,
        0.0,
        0.01,
        key="explorer_odds",
        help="The run's stored ODDS (window of its p(z) settings, E20: 0.003); "
        "other windows on the Quality cuts page",
    )
    cols, n_match = analysis.galaxy_table(pred, mag_range, outliers, odds_min, TABLE_ROWS)
    st.caption(
        f"{n_match:,} galaxies match; showing {len(cols['ref_id']):,}. Click a row to show it."
    )
    ids = cols["ref_id"]
    st.dataframe(
        pd.DataFrame(cols),
        key="explorer_table",
        on_select=lambda: _on_table(ids),
        selection_mode="single-row",
        hide_index=True,
        height=320,
    )


def _scatter(pred: analysis.Predictions, ref_id: int) -> None:
    idx = np.flatnonzero(pred.scored)
    if not idx.size:
        st.info("No galaxies with a spec-z to plot.")
        return
    idx = idx[:: max(1, -(-idx.size // plots.MAX_POINTS))]  # every k-th: stays clickable (WebGL)
    ids = pred.ref_id[idx]
    fig = plots.zp_zs_scatter(pred.zspec[idx], pred.zphot[idx], ids, ref_id, pred.odds[idx])
    st.plotly_chart(
        fig, key="explorer_scatter", on_select=lambda: _on_scatter(ids), selection_mode="points"
    )


def main() -> None:
    run_id = state.pick_analysis_run("explorer_run")
    if run_id is None:
        return
    key = state.run_key(run_id)
    pred = state.predictions(key)
    ref_id = state.pick_galaxy(pred, "explorer_ref_id")
    _galaxy(key, ref_id)
    st.subheader("Find a galaxy")
    tab_table, tab_plot = st.tabs(["Filtered table", "z_p vs z_s (click a point)"])
    with tab_table:
        _table(pred)
    with tab_plot:
        _scatter(pred, ref_id)


try:
    main()
except Exception as exc:  # the page shows a message, never a traceback
    st.error(f"The explorer could not be shown: {type(exc).__name__}: {exc}")
