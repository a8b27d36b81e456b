"""Uploaded catalogues: their given names, the catalogue chosen last."""

from __future__ import annotations

import numpy as np

from deepz_core.catalog import uploads
from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog


def test_given_names_and_the_last_choice(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPZ_HOME", str(tmp_path))
    key = "0123456789abcdef0123"
    cat = Catalog(
        ref_id=np.arange(3), bands=("g",), flux=np.ones((3, 1)), flux_error=np.ones((3, 1))
    )
    path = write_catalog(cat, uploads.canonical_path(key))
    uploads.write_note(key, {"name": "SDSS DR16 sample", "n": 3})
    assert uploads.catalog_display_name(path) == "SDSS DR16 sample"
    assert uploads.catalog_display_name(tmp_path / "x" / "mine.fits") == "mine.fits"
    assert uploads.last_catalog() is None
    uploads.remember_catalog(key)
    assert uploads.last_catalog() == key
    path.unlink()
    assert uploads.last_catalog() is None  # gone: not offered any more
    uploads.remember_catalog(uploads.DEMO)
    assert uploads.last_catalog() == uploads.DEMO
