"""Galaxy explorer: one galaxy's p(z) (ensemble, members, components, z_s, mode, ODDS window) and
SED (coadds and single exposures); for a template fit, chi2(z) and the best-fit template over the
SED; for a run combined with the template fit, the combination's p(z) or the networks'. Pick a
galaxy by ref_id, step through the catalogue, or click it in a table or on the z_p-z_s plot. Ids
are text all the way: a 19-digit survey id never passes through a JavaScript number."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import plots, state

TABLE_ROWS = 2000

st.title("Galaxy explorer")


def _value(x: float | None, fmt: str) -> str:
    """A number for a metric, '—' when it is missing (no spec-z, no magnitude...)."""
    return "—" if x is None or not math.isfinite(x) else format(x, fmt)


def _header(g: dict[str, Any]) -> None:
    calibrated = bool(g.get("calibrated"))
    cols = st.columns(7 if calibrated else 6)
    cols[0].metric("z_s (spec-z)", _value(g["zspec"], ".4f"))
    cols[1].metric(
        "z_p (mode before calibration)" if calibrated else "z_p (mode)",
        _value(g["mode"], ".4f"),
        help=MODE_HELP if calibrated else None,
    )
    cols[2].metric("Δz/(1+z_s)", _value(g["dz"], "+.4f"))
    cols[3].metric(f"ODDS (±{g['odds_window'] / 2:g})", _value(g["odds"], ".3f"))
    cols[4].metric("PIT", _value(g["pit"], ".3f"))
    cols[5].metric("m_AB [mag]", _value(g["mag"], ".2f"))
    if calibrated:
        cols[6].metric(
            "median [68%]",
            _value(g["zmedian"], ".4f"),
            f"{_value(g['z_lo68'], '.3f')} – {_value(g['z_hi68'], '.3f')}",
            delta_color="off",
            delta_arrow="off",
            help="Median and 68% interval of the calibrated p(z) drawn below",
        )


MODE_HELP = (
    "z_p is the mode of the networks' p(z) before the run's PIT calibration (a better point "
    "estimate); the curve drawn is the calibrated p(z), marked with its median and 68% interval"
)


def _pz(
    g: dict[str, Any], ref_id: int, inputs: dict | None = None, label: str = "ensemble p(z)"
) -> Any:
    raw = None if inputs is None else inputs.get("raw_pdf")
    return plots.pz_figure(
        g["grid"],
        g["pdf"],
        components=g["components"],
        zspec=g["zspec"],
        odds_window=g["odds_window"],
        members=None if inputs is None else inputs["members"],
        members_used=None if inputs is None else inputs["members_used"],
        title=f"p(z) of {ref_id}",
        label=label,
        **plots.pz_markers(g, raw),
    )


def _network(key: state.RunKey, ref_id: int, g: dict[str, Any]) -> None:
    inputs, problem = None, None
    try:
        inputs = state.galaxy_inputs(key, ref_id)
    except Exception as exc:  # e.g. the run's catalogue was moved: p(z) still shows
        problem = f"{type(exc).__name__}: {exc}"
    left, right = st.columns(2)
    left.plotly_chart(_pz(g, ref_id, inputs), key="explorer_pz")
    if inputs is None:
        right.warning(f"Members' p(z) and SED need the run's catalogue and model: {problem}")
    else:
        right.plotly_chart(plots.sed_figure(inputs["sed"], f"SED of {ref_id}"), key="explorer_sed")


def _template_fit(key: state.RunKey, ref_id: int, g: dict[str, Any]) -> None:
    """p(z) and chi2(z) side by side, then the SED with the best-fit template (eazy-py's view)."""
    left, right = st.columns(2)
    left.plotly_chart(_pz(g, ref_id), key="explorer_pz")
    try:
        fit = state.templatefit_galaxy(key, ref_id)
    except Exception as exc:  # e.g. the run's catalogue was moved: p(z) still shows
        right.warning(f"chi2(z) and the SED need the run's catalogue: {type(exc).__name__}: {exc}")
        return
    if fit is None:
        right.warning(f"Galaxy {ref_id} is not in the run's catalogue.")
        return
    fig = plots.chi2_figure(fit["z_chi2"], fit["chi2"], fit["z_best"], g["zspec"])
    right.plotly_chart(fig, key="explorer_chi2")
    model = {"flux": fit["model_flux"], "label": f"best fit at z = {fit['z_best']:.3f}"}
    sed = plots.sed_figure(fit["sed"], f"SED of {ref_id} and the best-fit model", model)
    st.plotly_chart(sed, key="explorer_sed")
    st.caption(f"Dominant template of the best fit: {fit['template']}.")


def _combined(key: state.RunKey, network: state.RunKey, ref_id: int, g: dict[str, Any]) -> None:
    """The combined p(z) (network x template fit), each estimator's mode, and the SED."""
    modes = state.estimator_modes(key, ref_id) or {}
    left, right = st.columns(2)
    left.plotly_chart(
        _pz(g, ref_id, label="combined p(z) (network × template fit)"), key="explorer_pz"
    )
    parts = []
    if "zphot_net" in modes:
        parts.append(f"network z_p {_value(modes['zphot_net'], '.4f')}")
    if "zphot_tf" in modes:
        chi2 = _value(modes.get("chi2_tf", float("nan")), ".1f")
        parts.append(f"template fit z_p {_value(modes['zphot_tf'], '.4f')} (χ² {chi2})")
    if parts:
        left.caption("Each estimator alone: " + "; ".join(parts) + ".")
    try:
        inputs = state.galaxy_inputs(network, ref_id)
    except Exception as exc:  # e.g. the run's catalogue was moved: p(z) still shows
        right.warning(f"The SED needs the run's catalogue and model: {type(exc).__name__}: {exc}")
        return
    if inputs is not None:
        right.plotly_chart(plots.sed_figure(inputs["sed"], f"SED of {ref_id}"), key="explorer_sed")


def _estimator(run_id: str) -> tuple[state.RunKey, str]:
    """The predictions shown: the run's networks', or for a run combined with the template fit
    the estimator chosen here (combined by default, as predictions use it). Always this run's."""
    network = state.run_key(run_id)
    combined = state.combination(run_id) if state.run_kind_of(run_id) == "deepz" else None
    key = None if combined is None else state.combined_key(run_id)
    if key is None:
        return network, "network"
    names = {
        "combined": f"combined (network × {combined['templates']} template fit)",
        "network": "network",
    }
    choice = st.radio(
        "p(z) from",
        list(names),
        format_func=names.get,
        horizontal=True,
        key="explorer_estimator",
        help="This run is combined with the template fit: show the combination's p(z) (the "
        "default for its predictions) or the networks' alone. Both are out of fold.",
    )
    return (key, "combined") if choice == "combined" else (network, "network")


def _galaxy(
    key: state.RunKey, ref_id: int, kind: str, window: float, network: state.RunKey
) -> None:
    g = state.galaxy_pz(key, ref_id, window)
    if g is None:
        st.warning(f"Galaxy {ref_id} is not in this run.")
        return
    _header(g)
    if not math.isfinite(g["mode"]):
        st.info(
            f"Galaxy {ref_id} has no p(z): its photometry did not pass the screen (see the "
            "`flag` column of the predictions download)."
        )
        return
    if kind == "templatefit":
        _template_fit(key, ref_id, g)
    elif kind == "combined":
        _combined(key, network, ref_id, g)
    else:
        _network(key, ref_id, g)


def _on_table(ids: np.ndarray) -> None:
    rows = st.session_state["explorer_table"]["selection"]["rows"]
    if rows and rows[0] < len(ids):
        state.select_galaxy(int(ids[rows[0]]))


def _on_scatter(ids: np.ndarray) -> None:
    """The clicked point's galaxy, by its position in the plotted arrays (never a JS number)."""
    for point in st.session_state["explorer_scatter"]["selection"]["points"]:
        if point.get("curve_number", 0) == 0 and "point_index" in point:
            return state.select_galaxy(int(ids[point["point_index"]]))


def _table(key: state.RunKey, window: float) -> None:
    pred = state.predictions(key)
    outlier = state.profile(key).outlier
    c1, c2, c3 = st.columns(3)
    mag_range = None
    bounds = state.mag_slider_range(pred.mag)
    if bounds is not None:
        picked = c1.slider(
            "Magnitude range [AB mag]",
            *bounds,
            bounds,
            0.1,
            help="An end left at the slider's end sets no limit on that side (galaxies "
            "beyond it, e.g. a near-zero reference flux, stay in the table)",
        )
        mag_range = state.open_mag_range(picked, bounds)
    outliers = c2.checkbox(f"Outliers only (|Δz|/(1+z_s) > {outlier:g})", key="explorer_outliers")
    odds_min = c3.slider(
        "ODDS ≥",
        0.0,
        1.0,
        0.0,
        0.01,
        key="explorer_odds",
        help=f"ODDS in the run's survey-profile window (±{window / 2:g}); "
        "other windows on the Quality cuts page",
    )
    cols, n_match = state.explorer_table(key, window, mag_range, outliers, odds_min, TABLE_ROWS)
    st.caption(
        f"{n_match:,} galaxies match; showing {len(cols['ref_id']):,}. Click a row to show it."
    )
    rows = cols.pop("row")
    ids = pred.ref_id[rows]
    table = pd.DataFrame(cols).style.format(precision=4)
    st.dataframe(
        table,
        placeholder="—",  # no spec-z, no p(z): —, not None
        key="explorer_table",
        on_select=lambda: _on_table(ids),
        selection_mode="single-row",
        hide_index=True,
        height=320,
    )


def _scatter(key: state.RunKey, ref_id: int, window: float) -> None:
    pred = state.predictions(key)
    idx = np.flatnonzero(pred.scored & np.isfinite(pred.zphot))
    if not idx.size:
        st.info("No galaxies with a spec-z to plot.")
        return
    idx = idx[:: max(1, -(-idx.size // plots.MAX_POINTS))]  # every k-th: stays clickable (WebGL)
    ids = pred.ref_id[idx]
    odds = state.window_odds(key, window)[idx]
    outlier = state.profile(key).outlier
    fig = plots.zp_zs_scatter(pred.zspec[idx], pred.zphot[idx], ids, ref_id, odds, outlier=outlier)
    st.plotly_chart(
        fig, key="explorer_scatter", on_select=lambda: _on_scatter(ids), selection_mode="points"
    )


def main() -> None:
    run_id = state.pick_analysis_run("explorer_run", state.ALL_KINDS)
    if run_id is None:
        return
    network = state.run_key(run_id)
    key, estimator = _estimator(run_id)
    kind = "combined" if estimator == "combined" else state.run_kind_of(run_id)
    window = state.profile_editor(network, "explorer_profile").odds_window
    ref_id = state.pick_galaxy(state.predictions(key), "explorer_ref_id")
    _galaxy(key, ref_id, kind, window, network)
    st.subheader("Find a galaxy")
    tab_table, tab_plot = st.tabs(["Filtered table", "z_p vs z_s (click a point)"])
    with tab_table:
        _table(key, window)
    with tab_plot:
        _scatter(key, ref_id, window)


try:
    main()
except Exception as exc:  # the page shows a message, never a traceback
    st.error(f"The explorer could not be shown: {type(exc).__name__}: {exc}")
