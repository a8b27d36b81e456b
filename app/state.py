"""The one module holding Streamlit caches. Every cache is keyed by small values (paths, hashes)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from deepz_core.catalog import Catalog
from deepz_core.catalog_io import read_catalog


@st.cache_resource(show_spinner="Simulating the demo catalogue (first use only)...")
def demo_catalog_path() -> str:
    """Path of the cached demo mock, generated on first use."""
    from deepz_core.simulate import demo_catalog_path as make

    return str(make())


@st.cache_resource(max_entries=8, show_spinner="Reading catalogue...")
def load_catalog(path: str, mtime: float) -> Catalog:
    """A catalogue read from disk, cached by (path, modification time)."""
    return read_catalog(Path(path))


def catalog(path: str) -> Catalog:
    return load_catalog(path, Path(path).stat().st_mtime)
