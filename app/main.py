"""Entry point: ``make run``, or ``python -m streamlit run app/main.py`` from the project folder
(``python -m`` puts it on the path, so ``app`` imports; deepz itself is installed with
``pip install -e .[app]``). Routes to the pages in the top-level pages/ folder."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import state

ROOT = Path(__file__).resolve().parents[1]

PAGES = ROOT / "pages"
# (file, title, icon) in menu order; a page whose file does not exist yet is left out
PAGE_LIST = (
    ("home.py", "Overview", ":material/home:"),
    ("data.py", "Data", ":material/table:"),
    ("simulate.py", "Simulate", ":material/science:"),
    ("train.py", "Train", ":material/model_training:"),
    ("results.py", "Results", ":material/monitoring:"),
    ("explorer.py", "Galaxy explorer", ":material/travel_explore:"),
    ("dropping.py", "Exposure dropping", ":material/filter_alt:"),
    ("cuts.py", "Quality cuts", ":material/tune:"),
    ("predict.py", "Predict", ":material/batch_prediction:"),
)


def pages() -> list[st.Page]:
    """The registered pages that exist on disk (Overview is the default)."""
    return [
        st.Page(PAGES / name, title=title, icon=icon, default=name == "home.py")
        for name, title, icon in PAGE_LIST
        if (PAGES / name).exists()
    ]


def main() -> None:
    st.set_page_config(page_title="deepz photo-z", page_icon="🔭", layout="wide")
    state.owner_token()  # in the address on every page: the runs this browser queues are its own
    st.navigation(pages()).run()


main()
