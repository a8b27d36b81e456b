"""Overview: what deepz does, and the demo catalogue at a glance."""

import numpy as np
import streamlit as st

from app import state

st.title("deepz: deep-learning photometric redshifts")
st.markdown(
    "Mixture-density networks with an autoencoder, pretrained on stellar-population simulations and "
    "fine-tuned on spectroscopic data, for narrow-band surveys such as PAUS "
    "(after Eriksen et al. 2020, MNRAS 497, 4565)."
)

try:
    path = state.demo_catalog_path()
    cat = state.catalog(path)
except Exception as exc:  # the page shows a message, never a traceback
    st.error(f"The demo catalogue could not be prepared: {exc}")
    st.stop()

st.subheader("Demo catalogue")
st.caption(f"A PAUS-COSMOS-like mock with single exposures: `{path}`")
has_z = np.isfinite(cat.zspec)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Galaxies", f"{cat.n_galaxies:,}")
c2.metric("Bands", len(cat.bands))
c3.metric("With spec-z", f"{int(has_z.sum()):,}")
c4.metric("Single exposures", f"{0 if cat.exposures is None else len(cat.exposures.flux):,}")
