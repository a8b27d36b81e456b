"""Entry point: ``streamlit run app/main.py``. Routes to the pages in the top-level pages/ folder."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the project root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

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
    st.navigation(pages()).run()


main()
