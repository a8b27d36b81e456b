"""Entry point: ``streamlit run app/main.py``. Routes to the pages in the top-level pages/ folder."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the project root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

PAGES = ROOT / "pages"


def main() -> None:
    st.set_page_config(page_title="deepz photo-z", page_icon="🔭", layout="wide")
    nav = st.navigation(
        [
            st.Page(PAGES / "home.py", title="Overview", icon="🏠", default=True),
        ]
    )
    nav.run()


main()
