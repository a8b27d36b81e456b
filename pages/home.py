"""Overview: what deepz does, where to start, the latest runs and the demo catalogue at a glance."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import state

ROOT = Path(__file__).resolve().parents[1]
STEPS = (
    ("data.py", "1. Data", "use the demo catalogue or import your own (FITS, Parquet, CSV, HDF5)"),
    ("simulate.py", "2. Simulate", "optional: SPS pretraining sets with your own prior ranges"),
    ("train.py", "3. Train", "queue a run; follow its loss curves live"),
    (
        "results.py",
        "4. Results",
        "photo-z quality, p(z) of single galaxies, exposure dropping, cuts",
    ),
    ("predict.py", "5. Predict", "apply a run to a new catalogue: n(z), tomography, downloads"),
)


def start_links() -> None:
    st.subheader("Getting started")
    for name, label, text in STEPS:
        page = ROOT / "pages" / name
        if page.exists():
            c1, c2 = st.columns([1, 4])
            with c1:
                st.page_link(str(page), label=label)
            c2.write(text)


def latest_runs() -> None:
    st.subheader("Latest runs")
    runs = state.runs()[:5]
    if not runs:
        st.info("No run yet: train one on the Train page.")
        return
    for run in runs:
        summary = run.status().get("summary", {})
        sigma = f", σ68 = {summary['sigma68']:.4f}" if summary.get("sigma68") is not None else ""
        st.write(f"{state.run_title(run.run_id)}: {state.run_state(run)}{sigma}")


def demo_glance() -> None:
    st.subheader("Demo catalogue")
    try:
        path = state.demo_catalog_path()
        s = state.catalog_summary(path)
    except Exception as exc:  # the page shows a message, never a traceback
        st.error(f"The demo catalogue could not be prepared: {exc}")
        return
    st.caption(f"A PAUS-COSMOS-like mock with single exposures: `{path}`")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Galaxies", f"{s.n_galaxies:,}")
    c2.metric("Bands", len(s.bands.bands))
    c3.metric("With spec-z", f"{s.n_zspec:,}")
    c4.metric("Single exposures", f"{s.n_exposures:,}")


st.title("deepz: deep-learning photometric redshifts")
st.markdown(
    "Mixture-density networks with an autoencoder, pretrained on stellar-population simulations and "
    "fine-tuned on spectroscopic data, for narrow-band surveys such as PAUS "
    "(after Eriksen et al. 2020, MNRAS 497, 4565), and for broad-band catalogues (SDSS ugriz, "
    "LSST/DP0 ugrizy: fluxes in nJy or µJy, or AB magnitudes), judged by a broad-band profile."
)
left, right = st.columns(2, gap="large")
with left:
    try:
        start_links()
    except Exception as exc:  # e.g. a page that is not registered
        st.error(f"The page links cannot be shown: {type(exc).__name__}: {exc}")
with right:
    try:
        latest_runs()
    except Exception as exc:
        st.error(f"The runs cannot be listed: {type(exc).__name__}: {exc}")
demo_glance()
