"""The Run API: the predict path (issue 20: coordinates and keep_columns carried, survey spellings
read through conventions, outputs written with provenance, dz.to_qp on its table), the run's card
(names, notes and survey profiles reach predict and evaluate) and its folder (issue 19: foreign
files refused untouched, one writer at a time)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import qp
from astropy.table import Table

import deepz_core as dz
from deepz_core.catalog.screen import PzFlag
from deepz_core.errors import ConfigError, InUseError, TrainingWarning
from deepz_core.files import LOCK_FILE, ExclusiveLock, atomic_write_json
from tests.synthetic import synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")


def test_predict_carries_coordinates_and_keep_columns(tiny_run, sky_catalog) -> None:
    cat, path = sky_catalog
    run = dz.load_run(tiny_run)
    pz = run.predict(cat.to_table().to_pandas(), keep_columns=["objectId", "flux_NB455"])
    assert len(pz) == 200 and {"ra", "dec", "objectId", "flux_NB455"} <= set(pz.colnames)
    np.testing.assert_array_equal(pz["ra"], cat.extra["ra"])  # every row, the 3 without p(z) too
    np.testing.assert_array_equal(pz["flux_NB455"], cat.flux[:, 0])
    with pytest.raises(dz.ConfigError, match="--keep-columns"):
        run.predict(path, keep_columns=["nope"])


def test_a_run_without_a_combination_says_how_to_get_one(tiny_run) -> None:
    run = dz.load_run(tiny_run)
    assert run.combination_summary() == {}
    with pytest.raises(
        ConfigError, match="no combination with the template fit: run `deepz combine"
    ):
        run.combined_predictions()


def test_predict_reads_objectid_and_magnitudes(tiny_run, sky_catalog) -> None:
    cat, _ = sky_catalog
    table = {"objectId": cat.ref_id}
    for j, band in enumerate(cat.bands):
        table[f"mag_{band}"] = cat.fluxzp - 2.5 * np.log10(cat.flux[:, j])
        table[f"magerr_{band}"] = 2.5 / np.log(10) * cat.flux_error[:, j] / cat.flux[:, j]
    run = dz.load_run(tiny_run)
    by_mag = run.predict(table, conventions={"mag_limits": {"subaru_i": 25.0}})
    by_flux = run.predict(cat)
    np.testing.assert_array_equal(by_mag["ref_id"], cat.ref_id)
    np.testing.assert_allclose(by_mag["zphot"][3:], by_flux["zphot"][3:], atol=2e-3)
    assert (by_mag["flag"][:3] & PzFlag.NO_PZ).all()  # reference band not detected: no p(z)


def test_predict_writes_outputs_and_to_qp_uses_the_runs_grid(tiny_run, sky_catalog, tmp_path):
    cat, _ = sky_catalog
    run = dz.load_run(tiny_run)
    pz = run.predict(cat, out=tmp_path / "pz.hdf5")
    assert qp.read(str(tmp_path / "pz.hdf5")).npdf == 200
    run.predict(cat, out=tmp_path / "pz_hats", out_format="hats")
    assert (tmp_path / "pz_hats" / "hats.properties").is_file()
    ens = dz.to_qp(pz)
    z_max = run.config.pz.z_max
    assert ens.ancil["zmode"][0] == pytest.approx(z_max / 2)  # the placeholder's centre
    with pytest.raises(dz.ConfigError, match="predictions are written as"):
        run.predict(cat, out=tmp_path / "pz.csv")


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
    # review, tenth session: the run's summary (train's JSON line) counted strict outliers
    assert run.summary["outlier_fraction"] == pytest.approx(
        run.evaluate()["overall"]["outlier_fraction"]
    )
    assert run.summary["outlier_fraction"] == run.summary["catastrophic_fraction"]


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
    assert run.summary["outlier_fraction"] == pytest.approx(
        run.evaluate()["overall"]["outlier_fraction"]
    )


@pytest.fixture(scope="module")
def catalog() -> dz.Catalog:
    return synthetic_catalog(60, 2, exposures=False)


def test_train_refuses_a_folder_of_other_files_untouched(tmp_path, catalog) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "catalog.fits").write_bytes(b"the user's own catalogue")
    with pytest.raises(ConfigError, match="not a deepz run"):
        dz.train(catalog, out, preset="smoke", pretrain="none")
    assert [p.name for p in out.iterdir()] == ["catalog.fits"]
    assert (out / "catalog.fits").read_bytes() == b"the user's own catalogue"


def test_a_refused_call_leaves_no_catalogue_behind_and_the_next_one_trains(
    tmp_path, catalog
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="preset"):
        dz.train(catalog, out, preset="huge", pretrain="none")
    assert not out.exists()  # review, tenth session: it left the folder with a lock file
    with pytest.raises(ConfigError, match="device"):
        dz.train(catalog, out, preset="smoke", pretrain="none", device="gpu")
    assert not out.exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = dz.train(
            catalog, out, preset="smoke", pretrain="none", options={"schedule": [[1, 1e-3]]}
        )
    assert run.state == "finished"
    said = [str(w.message) for w in caught if issubclass(w.category, dz.TrainingWarning)]
    warning = run.folder.status()["summary"]["heldout"].get("warning")  # one epoch: n(z) may win
    assert said == ([f"run {out}: {warning}"] if warning else [])


def test_a_reused_run_takes_the_name_note_and_profile_given_again(tmp_path, catalog) -> None:
    """Review of the tenth session: ``reuse=True`` returned the finished run with its old
    profile (and so its old outlier threshold) whatever ``profile=`` said, in silence."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dz.TrainingWarning)
        first = dz.train(catalog, tmp_path / "r", preset="smoke", pretrain="none", note="first")
        again = dz.train(
            catalog, tmp_path / "r", "smoke", "none", name="mine", profile="broad-band", reuse=True
        )
    assert again.path == first.path and again.profile.name == "broad-band"
    assert dz.load_run(tmp_path / "r").card["name"] == "mine"
    assert dz.load_run(tmp_path / "r").card["note"] == "first"  # kept: not given again


def test_a_doubtful_run_warns_in_python(tmp_path, catalog) -> None:
    run = dz.train(catalog, tmp_path / "r", preset="smoke", pretrain="none")
    status = run.folder.status()
    status["summary"]["heldout"]["warning"] = "member(s) [0] predict no better than n(z)"
    atomic_write_json(run.folder.file("status.json"), status)
    with pytest.warns(dz.TrainingWarning, match=r"member\(s\) \[0\] predict no better") as said:
        dz.load_run(run.path).warn_if_doubtful()
    assert said[0].filename == __file__  # the caller's line, not deepz's
    with pytest.warns(dz.TrainingWarning) as said:  # reuse: the finished run, warned again
        dz.train(catalog, tmp_path / "r", preset="smoke", pretrain="none", reuse=True)
    assert said[0].filename == __file__  # past train's keeps_global_rng wrapper


def test_a_run_another_process_trains_is_refused(tmp_path, catalog) -> None:
    out = tmp_path / "busy"
    other = ExclusiveLock(out / LOCK_FILE)
    assert other.acquire()
    try:
        with pytest.raises(InUseError, match="in use by PID"):
            dz.train(catalog, out, preset="smoke", pretrain="none")
    finally:
        other.release()


def test_train_and_predict_leave_the_callers_torch_random_stream_alone(tmp_path, catalog) -> None:
    """Review, tenth session: dz.train re-seeded torch's global generator and predict drew from
    it, so a notebook's own seeded torch.rand changed with whether deepz ran in between."""
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run = dz.train(catalog, tmp_path / "r", preset="smoke", pretrain="none")
    run.predict(catalog)
    assert torch.equal(torch.rand(3), expected)


def test_reuse_returns_a_finished_run_unless_its_catalogue_file_changed(tmp_path, catalog) -> None:
    """reuse=True (re-running a notebook or a RAIL pipeline) hands back the finished run of the
    same settings; a catalogue file modified since, or other settings, are refused."""
    import os

    path = tmp_path / "cat.fits"
    dz.write_catalog(catalog, path)
    smoke = dict(preset="smoke", pretrain="none")
    run = dz.train(path, tmp_path / "r", **smoke)
    with pytest.raises(ConfigError, match="holds a finished run; .* or pass reuse=True"):
        dz.train(path, tmp_path / "r", **smoke)
    with warnings.catch_warnings(record=True) as caught:  # review: re-emitted as if new
        warnings.simplefilter("always")
        assert dz.train(path, tmp_path / "r", reuse=True, **smoke).path == run.path
    said = [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]
    assert all(m.startswith(f"reused run {run.path} (its warning when it trained)") for m in said)
    with pytest.raises(ConfigError, match="train.seed"):
        dz.train(path, tmp_path / "r", reuse=True, seed=4, **smoke)
    later = run.status["started"] + 10
    os.utime(path, (later, later))
    with pytest.raises(ConfigError, match="catalogue file changed"):
        dz.train(path, tmp_path / "r", reuse=True, **smoke)


FAST = dict(preset="smoke", pretrain="none", folds=2, options={"schedule": [[1, 1e-3]]})
QUIET = pytest.mark.filterwarnings("ignore::deepz_core.errors.TrainingWarning")  # 1 epoch: yes


@QUIET
def test_train_warns_once_about_the_catalogue(tmp_path, caplog) -> None:
    """Eleventh session: dz.train read the catalogue's copy twice and validated it a third time
    while writing it: exposures without information were reported three times."""
    from dataclasses import replace

    cat = synthetic_catalog(60, 2, max_exposures=3)
    flux = cat.exposures.flux.copy()
    flux[:3] = np.nan
    cat = replace(cat, exposures=replace(cat.exposures, flux=flux))
    with caplog.at_level("WARNING", logger="deepz"):
        run = dz.train(cat, tmp_path / "r", **FAST)
    notes = [
        r.getMessage() for r in caplog.records if "single exposures left out" in r.getMessage()
    ]
    assert len(notes) == 1 and notes[0].startswith("catalog: 3 of"), notes
    assert "3 of" in run.folder.file("log.txt").read_text()  # and the run's log has it


@QUIET
def test_train_reads_survey_conventions(tmp_path) -> None:
    """Eleventh session: dz.train had no ``conventions`` (read_catalog and Run.predict have):
    a survey catalogue in nJy with objectId, or in AB magnitudes, had to be converted first."""
    cat = synthetic_catalog(60, 2, exposures=False)
    table = {"objectId": cat.ref_id + 1000, "zspec": cat.zspec}
    for j, band in enumerate(cat.bands):  # the same fluxes in nJy
        table[f"flux_{band}"] = 1000 * cat.flux[:, j]
        table[f"flux_error_{band}"] = 1000 * cat.flux_error[:, j]
    run = dz.train(table, tmp_path / "njy", conventions={"flux_unit": "nJy"}, **FAST)
    assert run.state == "finished"
    saved = dz.read_catalog(run.config.catalog)
    assert saved.fluxzp == pytest.approx(31.4) and np.array_equal(saved.ref_id, cat.ref_id + 1000)
    np.testing.assert_allclose(saved.flux, 1000 * cat.flux)
    mags = {"objectId": cat.ref_id, "zspec": cat.zspec}
    for j, band in enumerate(cat.bands):  # AB magnitudes in a file
        mags[f"mag_{band}"] = cat.fluxzp - 2.5 * np.log10(cat.flux[:, j])
        mags[f"magerr_{band}"] = 2.5 / np.log(10) * cat.flux_error[:, j] / cat.flux[:, j]
    path = tmp_path / "mags.parquet"
    Table(mags).write(path)
    conv = dz.InputConventions(id_column="objectId", magnitudes=True)
    run = dz.train(path, tmp_path / "mag", conventions=conv, **FAST)
    assert run.state == "finished" and run.config.catalog == str(tmp_path / "mag/catalog.fits")
    np.testing.assert_array_equal(run.predictions()["ref_id"], cat.ref_id)
    with pytest.raises(dz.CatalogError, match="identifier column 'nope'"):
        dz.train(path, tmp_path / "bad", conventions={"id_column": "nope"}, **FAST)
    assert not (tmp_path / "bad").exists()
