"""Exposure dropping (E20 Sec. 5.3, Fig. 7): a galaxy's p(z) with each single exposure left out in
turn, which exposures move the mode most, and the spread of the modes as a quality indicator for a
selection of galaxies (E20 Sec. 6.2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import plots, state

MAX_SELECTION = 2000

st.title("Exposure dropping")
st.caption(
    "Each single exposure is left out in turn and its band's coadd rebuilt from the others "
    "(inverse-variance mean); all variants go through the ensemble in one batch. The ensemble here "
    "uses all members, also those that trained on the galaxy, so its mode can differ from the "
    "catalogue's out-of-fold z_p."
)


def _one_galaxy(key: state.RunKey, ref_id: int) -> None:
    d = state.dropping_detail(key, ref_id)
    if d is None:
        st.warning(f"Galaxy {ref_id} is not among the run's features.")
        return
    if d.get("no_pz"):
        st.info(
            f"Galaxy {ref_id} has no p(z): its photometry did not pass the screen (see the "
            "`flag` column of the predictions download), so there is nothing to leave out."
        )
        return
    if not len(d["shift"]):
        st.info("This galaxy has no band with two or more single exposures: nothing to leave out.")
        return
    g = state.galaxy_pz(key, ref_id)
    c = st.columns(4)
    c[0].metric("mode, full coadd", f"{d['mode_full']:.4f}")
    c[1].metric("variants (exposures left out)", f"{len(d['shift'])}")
    c[2].metric("spread of modes (std) [Δz]", f"{d['spread_std']:.4f}")
    c[3].metric("largest |shift| [Δz]", f"{d['max_shift']:.4f}")
    n_max = len(d["shift"])
    top = st.slider("Curves to draw (largest |shift| first)", 1, n_max, min(15, n_max))
    labels = [f"−{b} exposure {s}" for b, s in zip(d["band"][:top], d["slot"][:top], strict=True)]
    zspec = None if g is None else g["zspec"]
    fig = plots.dropping_figure(d["grid"], d["pdf_full"], d["pdf_variants"][:top], labels, zspec)
    left, right = st.columns([3, 2])
    left.plotly_chart(fig, key="dropping_fig")
    table = pd.DataFrame(
        {
            "band": d["band"],
            "exposure slot": d["slot"],
            "mode": d["mode"],
            "shift of the mode [Δz]": d["shift"],
        }
    )
    right.dataframe(table, hide_index=True, height=440, key="dropping_table")


def _selection_form(pred) -> None:
    with st.form("dropping_spread_form"):
        c1, c2 = st.columns(2)
        n = c1.number_input("Galaxies (first N with a spec-z)", 10, MAX_SELECTION, 300, 10)
        mag = None
        bounds = state.mag_slider_range(pred.mag)
        if bounds is not None:
            picked = c2.slider("Magnitude range [AB mag]", *bounds, bounds, 0.1)
            mag = state.open_mag_range(picked, bounds)
        if st.form_submit_button("Compute the spread for this selection"):
            st.session_state["dropping_spread"] = (int(n), *(mag or (None, None)))


def _selection(key: state.RunKey) -> None:
    st.subheader("The spread of the modes as a quality indicator (E20 Sec. 6.2)")
    pred = state.predictions(key)
    _selection_form(pred)
    params = st.session_state.get("dropping_spread")
    if params is None:
        st.caption("Choose a selection and press the button (a few seconds per hundred galaxies).")
        return
    study = state.spread_study(key, *params)
    if study["n"] == 0:
        st.info("No galaxy with a spec-z in this selection.")
        return
    st.caption(f"{study['n']} galaxies, {int(np.sum(study['n_variants'])):,} variants.")
    left, right = st.columns(2)
    left.plotly_chart(plots.spread_histogram(study["spread_std"]), key="dropping_hist")
    fig = plots.quality_curves(study["curves"], target=None, title="Cutting on the spread vs ODDS")
    right.plotly_chart(fig, key="dropping_curves")
    st.caption(
        "E20 found that keeping galaxies whose photo-z varies MORE when exposures are removed works "
        "better than keeping stable ones (a few exposures can drive a stable solution), but that "
        "either is a weaker cut than ODDS. Compare the red and green curves for this run."
    )


def main() -> None:
    run_id = state.pick_analysis_run("dropping_run")
    if run_id is None:
        return
    key = state.run_key(run_id)
    _, _, features = state.model_inputs(key)
    if not features.has_exposures:
        st.info("This run's catalogue has no single exposures: there is nothing to leave out.")
        return
    ref_id = state.pick_galaxy(state.predictions(key), "dropping_ref_id")
    _one_galaxy(key, ref_id)
    _selection(key)


try:
    main()
except Exception as exc:  # the page shows a message, never a traceback
    st.error(f"Exposure dropping could not be shown: {type(exc).__name__}: {exc}")
