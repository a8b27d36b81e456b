"""Simulate: generate SPS pretraining sets (E20 Table 1 prior) or PAUS-like mocks in the background."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app import jobs, state
from deepz_core import DeepzError

KINDS = {
    "sps": "SPS pretraining set (E20 Table 1 prior, noiseless + noise model)",
    "paus-mock": "PAUS-COSMOS-like observed mock (single exposures, spec-z subsample)",
    "lsst-deep": "LSST-like deep ugrizy mock (10-year depths, iAB < 25, z < 3, spec-z subsample)",
}
MOCK_NOTES = {
    "paus-mock": "The mock uses its built-in PAUS-like observing conditions: depths per band and "
    "several single exposures per galaxy.",
    "lsst-deep": "The mock observes LSST-like 10-year coadds (no single exposures) to iAB < 25 "
    "with non-detections in u, and a spec-z subsample; band set lsst (ugrizy), fluxes in µJy.",
}
# slider limits: the ranges the SPS prior accepts (name, label, low, high, step)
RANGES = (
    ("z", "redshift z", 0.0, 3.0, 0.05),
    ("log_z", "metallicity log10 Z/Z_sun", -2.3, 0.7, 0.05),
    ("tau_gyr", "e-folding time tau [Gyr]", 0.01, 100.0, 0.01),
    ("const", "mass fraction in the constant SFH component", 0.0, 1.0, 0.01),
    ("ebv", "Calzetti E(B-V) [mag]", 0.0, 3.0, 0.01),
    ("log_u", "ionisation parameter log U", -4.0, 0.0, 0.1),
    ("mag_i", "reference-band magnitude [AB mag]", 5.0, 35.0, 0.1),
)


def sps_config_inputs(bands: str) -> dict:
    """Widgets for the prior's ranges and noise model, starting from the ranges proposed for the
    band set ``bands`` (E20 Table 1 for PAUS/COSMOS, shallower for SDSS, deeper and to z = 3
    for LSST...); returns the fields that differ from the prior's defaults."""
    default = state.sps_prior(bands)
    values: dict = {}
    cols = st.columns(2)
    for i, (name, label, low, high, step) in enumerate(RANGES):
        lo, hi = getattr(default, name)
        values[name] = cols[i % 2].slider(
            label, low, high, (float(lo), float(hi)), step=step, key=f"sps_{name}_{bands}"
        )
    narrow = state.narrow_band_count(state.band_set(bands)) > 0
    c1, c2 = st.columns(2)
    if narrow:
        values["snr_narrow"] = c1.number_input(
            "noise model: SNR in narrow bands", 0.1, 1e4, float(default.snr_narrow)
        )
    values["snr_broad"] = (c2 if narrow else c1).number_input(
        "noise model: SNR in broad bands", 0.1, 1e4, float(default.snr_broad)
    )
    base = {k: _plain(v) for k, v in state.sps_defaults().items()}
    return {k: _plain(v) for k, v in values.items() if _plain(v) != base[k]}


def _plain(value: object) -> object:
    """JSON-like value: tuples become lists."""
    return list(value) if isinstance(value, tuple) else value


def new_simulation() -> None:
    st.subheader("New simulation")
    kind = st.radio("Kind", list(KINDS), format_func=KINDS.get, horizontal=True)
    c = st.columns(4)
    n = c[0].number_input("Galaxies", 1, 5_000_000, 30_000 if kind == "sps" else 10_000, step=1000)
    sets = state.band_set_names()
    if kind == "lsst-deep":
        sets = ["lsst"]  # its depths and colours are LSST's
    default = state.proposed_band_set(state.catalog_path(), sets)
    bands = c[1].selectbox(
        "Band set",
        sets,
        index=sets.index(default),
        key=f"sim_bands_{kind}",
        help="Proposed from the catalogue chosen on the Data page when its bands are a standard "
        "set (so that the simulation can pretrain for it)",
    )
    seed = c[2].number_input("Seed", 0, 2**31 - 1, 0)
    name = c[3].text_input("Name", value=f"{kind}-{bands}-n{n}-s{seed}")
    config = None
    if kind == "sps":
        title = (
            "E20 Table 1 ranges"
            if bands in ("paus", "paus_cosmos", "cosmos")
            else (f"ranges for {bands}")
        )
        with st.expander(f"SPS prior: {title}, sampled uniformly"):
            config = sps_config_inputs(bands)
    else:
        st.caption(MOCK_NOTES[kind])
    if st.button("Start simulation", type="primary"):
        try:
            if config:
                state.check_sps_config(config)  # validate before starting
            jobs.start_simulation(
                state.sims_dir(),
                name.strip(),
                kind,
                int(n),
                state.band_set(bands),
                int(seed),
                config or None,
            )
            st.success(f"Started {name}: it runs in the background; progress below.")
        except DeepzError as exc:
            st.error(f"Cannot start the simulation: {exc}")


def job_rows(sims: list[state.SimJob]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": [j.name for j in sims],
            "kind": [j.spec.get("kind", "?") for j in sims],
            "galaxies": [j.spec.get("n") for j in sims],
            "bands": [len(j.spec.get("bands", [])) or None for j in sims],
            "seed": [j.spec.get("seed") for j in sims],
            "state": [j.state for j in sims],
            "progress": [j.progress or 0.0 for j in sims],
            "created": [
                time.strftime("%Y-%m-%d %H:%M", time.localtime(j.spec["created"]))
                if "created" in j.spec
                else ""
                for j in sims
            ],
        }
    )


def simulations_list() -> None:
    try:
        _simulations_list()
    except Exception as exc:  # a fragment rerun is outside the page's try
        st.error(f"The simulations cannot be shown: {type(exc).__name__}: {exc}")


def _simulations_list() -> None:
    sims = state.simulations()
    st.subheader("Simulations in data/sims")
    if not sims:
        st.info(
            "No simulation yet: start one above. Training with pretraining 'auto' simulates "
            "its own set, so this is optional."
        )
        return
    st.dataframe(
        job_rows(sims),
        hide_index=True,
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0.0, max_value=1.0, format="percent"
            )
        },
    )
    for job in sims:
        if job.state in ("failed", "interrupted"):
            st.error(f"{job.name}: {job.state}. {job.spec.get('message', '')} (log: {job.log})")
    names = [j.name for j in sims if j.log.exists()]
    if names:
        with st.expander("Log of a simulation"):
            pick = st.selectbox("Simulation", names, key="sim_log")
            job = next(j for j in sims if j.name == pick)
            text = job.log.read_text(errors="replace")[-3000:]
            st.code(text.replace("\r", "\n").strip() or "(empty)")


st.title("Simulate")
st.caption(
    "Generate SPS pretraining sets or PAUS-like mocks as background processes; they keep "
    "running when you leave the page. Files go to data/sims/ and can be chosen for "
    "pretraining on the Train page."
)
try:
    new_simulation()
    running = any(j.state in ("queued", "running") for j in state.simulations())
    st.fragment(run_every=2 if running else None)(simulations_list)()
except Exception as exc:  # never a traceback
    st.error(f"The Simulate page hit an unexpected {type(exc).__name__}: {exc}")
