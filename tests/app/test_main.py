"""The app's entry point and server settings (issue 19): it listens on this machine only unless
served to a group on purpose, and every page carries the browser's ownership token."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from deepz_core.jobs.queue import valid_token

ROOT = Path(__file__).resolve().parents[2]


def test_the_server_listens_on_this_machine_only() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    readme = (ROOT / "README.md").read_text()
    assert "Serving the app to a group" in readme and "--server.address 0.0.0.0" in readme


def test_every_page_carries_the_browsers_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_catalog: Path
) -> None:
    from app import state

    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(state, "demo_catalog_path", lambda: str(small_catalog))
    st.cache_resource.clear()
    at = AppTest.from_file("../../app/main.py", default_timeout=60)
    at.run()
    token = at.query_params["owner"]
    assert valid_token(token)
    at.run()
    assert at.query_params["owner"] == token  # the same browser keeps it
