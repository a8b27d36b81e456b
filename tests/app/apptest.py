"""Running the app's pages headless in the tests (streamlit's AppTest)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "pages"


def run_page(page: str, **query: str) -> AppTest:
    """The page ``page`` (a file under pages/) run once with the query parameters ``query``."""
    at = AppTest.from_file(str(PAGES / page), default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def assert_clean(at: AppTest) -> None:
    """The page ran without an exception and shows no error."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
