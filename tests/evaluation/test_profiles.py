"""Survey profiles: chosen from the bands, stored in a run's card, typed and validated."""

from __future__ import annotations

import pytest

from deepz_core.errors import ConfigError
from deepz_core.evaluation.profiles import (
    PROFILES,
    SurveyProfile,
    profile_for_bands,
    run_profile,
    survey_profile,
)
from deepz_core.sed.bands import band_set


def test_the_bands_choose_the_profile() -> None:
    assert profile_for_bands(band_set("paus_cosmos")).name == "narrow-band"
    for name in ("sdss", "lsst", "hsc", "euclid", "cosmos"):
        assert profile_for_bands(band_set(name)).name == "broad-band", name
    assert profile_for_bands(["NB1", "NB2", "NB3", "NB4", "NB5", "g"]).name == "narrow-band"
    assert profile_for_bands(["G", "R", "I"]).name == "broad-band"  # unknown names


def test_standard_profiles_hold_the_papers_and_the_conventional_thresholds() -> None:
    narrow, broad = PROFILES["narrow-band"], PROFILES["broad-band"]
    assert (narrow.outlier, narrow.odds_window, narrow.target) == (0.02, 0.003, 0.0035)
    assert narrow.catastrophic == broad.catastrophic == broad.outlier == 0.15
    assert broad.target is None and broad.odds_window == 0.1
    assert narrow.outlier_label == "strict outliers (|Δz|/(1+z) > 0.02)"
    assert not broad.shows_catastrophic and narrow.shows_catastrophic
    assert narrow.window_range() == (0.001, 0.05) and broad.window_range() == (0.001, 0.4)


def test_profiles_round_trip_and_refuse_bad_values() -> None:
    custom = SurveyProfile(name="custom", outlier=0.05, odds_window=0.02, target=None)
    assert SurveyProfile.from_dict(custom.to_dict()) == custom
    assert survey_profile(custom.to_dict()) == custom and survey_profile(None).name == "narrow-band"
    with pytest.raises(ConfigError, match="outlier"):
        SurveyProfile(outlier=0.0)
    with pytest.raises(ConfigError, match="name"):
        SurveyProfile(name="deep")
    with pytest.raises(ConfigError, match="unknown survey profile config fields"):
        survey_profile({"name": "custom", "sigma": 1})
    with pytest.raises(ConfigError, match="narrow-band"):
        survey_profile("wide")


def test_a_run_card_overrides_the_bands() -> None:
    sdss = band_set("sdss")
    assert run_profile({}, sdss).name == "broad-band"
    card = {"profile": PROFILES["narrow-band"].to_dict()}
    assert run_profile(card, sdss).name == "narrow-band"
