"""The Run handle of the API: names, notes and survey profiles (the run's card) reach predict and
evaluate."""

from __future__ import annotations

import json

import pytest

import deepz_core as dz

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def broad(tmp_path_factory) -> tuple[dz.Run, dz.Catalog]:
    cat = dz.simulate_catalog("lsst-deep", 300, seed=6)
    out = tmp_path_factory.mktemp("api") / "run"
    run = dz.train(cat, out, preset="smoke", pretrain="none", name="deep test", note="smoke")
    return run, cat


def test_the_bands_choose_the_profile_and_the_card_names_the_run(broad) -> None:
    run, cat = broad
    assert run.card == {"name": "deep test", "note": "smoke"}
    assert run.profile.name == "broad-band"
    pz = run.predict(cat)
    assert json.loads(pz.meta["DZPROF"])["outlier"] == 0.15
    report = dz.evaluate(pz)
    assert report["profile"]["name"] == "broad-band"
    strict = run.evaluate(profile="narrow-band")
    assert strict["profile"]["name"] == "narrow-band"
    assert strict["overall"]["outlier_fraction"] >= report["overall"]["outlier_fraction"]
    assert report["overall"]["catastrophic_fraction"] == strict["overall"]["catastrophic_fraction"]


def test_a_profile_given_to_train_is_stored(tmp_path) -> None:
    cat = dz.simulate_catalog("lsst-deep", 200, seed=7)
    custom = {"name": "custom", "outlier": 0.05, "odds_window": 0.05, "target": None}
    run = dz.train(cat, tmp_path / "r", preset="smoke", pretrain="none", profile=custom)
    assert run.profile.outlier == 0.05 and dz.load_run(tmp_path / "r").card["profile"] == {
        **custom,
        "catastrophic": 0.15,
        "target_fraction": 0.5,
    }
    assert run.evaluate()["profile"]["outlier"] == 0.05
