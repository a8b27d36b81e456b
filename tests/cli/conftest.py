"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def late_ref_band_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """``train`` refuses a reference band the catalogue lacks before the run folder exists; these
    tests use one to make a run that fails at set-up, after its folder exists (as a band lost
    by an edited catalogue would), so the early check is skipped."""
    from deepz_core.jobs import training_run

    monkeypatch.setattr(training_run, "resolve_ref_band", lambda bands, ref_band=None: ref_band)
