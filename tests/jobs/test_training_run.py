"""A run end to end: create_run validation, labels, pretraining inputs, the files a run leaves."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.features import build_features
from deepz_core.catalog.io import write_catalog
from deepz_core.errors import ConfigError
from deepz_core.jobs.training_run import (
    create_run,
    execute_run,
    labelled_mask,
    pretraining_simulation,
    record_screen,
    run_config,
    simulation_batches,
)
from deepz_core.rundir import RunDir
from deepz_core.training.config import PRESETS
from tests.synthetic import BANDS, TINY_MODEL, synthetic_catalog

TRAIN = dict(
    schedule=((3, 1e-3),), batch_size=40, folds=2, checkpoint_every=2, device="cpu", seed=1
)


pytestmark = pytest.mark.usefixtures("one_thread")


# 15% without spec-z; the first two beyond the label range: kept as galaxies, never as labels
_synthetic = partial(synthetic_catalog, missing_zspec=0.15, zspec_head=(6.5, 7.0))


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory) -> str:
    """120 galaxies with exposures, one more exposure with a NaN flux (no information: left out
    when the run reads the catalogue, and noted in its log)."""
    path = tmp_path_factory.mktemp("pipeline") / "cat.fits"
    cat = _synthetic(120, 3)
    exp = cat.exposures
    junk = (exp.ref_id[0], exp.band[0], 99, np.nan, 1.0)
    columns = ("ref_id", "band", "exp_num", "flux", "flux_error")
    exp = Exposures(*(np.append(getattr(exp, c), v) for c, v in zip(columns, junk, strict=True)))
    write_catalog(replace(cat, exposures=exp), path)
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, catalog_path) -> RunDir:
    run = create_run(
        tmp_path_factory.mktemp("runs") / "run",
        run_config(catalog_path, pretrain="none", model=TINY_MODEL, train=TRAIN),
    )
    execute_run(run)
    return run


def test_create_run_writes_a_complete_config_and_trains_nothing(tmp_path, catalog_path) -> None:
    run = create_run(
        tmp_path / "r",
        run_config(
            catalog_path, pretrain="none", model={"width": 8}, train={"folds": 3}, pz={"dz": 0.002}
        ),
    )
    config = json.loads(run.file("config.json").read_text())
    assert config["catalog"] == catalog_path and config["exposures"] is None
    assert config["pretrain"] == "none" and config["preset"] == "quick"
    assert config["model"]["width"] == 8 and config["model"]["encoder_layers"] == 4  # quick
    assert config["train"]["folds"] == 3
    assert config["train"]["schedule"][0] == list(PRESETS["quick"].train["schedule"][0])
    assert config["pz"]["dz"] == 0.002
    assert run.status()["state"] == "queued"
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "status.json"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"model": {"width": 0}}, "width"),
        ({"model": {"widht": 10}}, "widht"),
        ({"train": {"alpha": 2.0}}, "alpha"),
        ({"train": {"epochs": 3}}, "epochs"),
        ({"pz": {"dz": -1.0}}, "dz"),
        ({"pz": {"zmax": 2.0}}, "zmax"),
        ({"pretrain": "missing-sim.fits"}, "--pretrain"),
        ({"preset_name": "huge"}, "preset"),
        ({"catalog": "no-such-catalogue.fits"}, "--catalog"),
        ({"exposures": "no-such-exposures.fits"}, "--exposures"),
    ],
)
def test_create_run_rejects_bad_choices_before_writing_anything(
    tmp_path, catalog_path, kwargs, field
) -> None:
    args = {"catalog": catalog_path, "pretrain": "none", **kwargs}
    with pytest.raises(ConfigError, match=field):
        create_run(tmp_path / "r", run_config(**args))
    assert not (tmp_path / "r").exists()


def test_create_run_refuses_an_existing_run(tmp_path, catalog_path) -> None:
    create_run(tmp_path / "r", run_config(catalog_path, pretrain="none"))
    with pytest.raises(ConfigError, match="already holds a run"):
        create_run(tmp_path / "r", run_config(catalog_path, pretrain="none"))


def test_labels_are_finite_spec_z_in_range(rng) -> None:
    cat = _synthetic(40, 1)
    cat.zspec[5] = 0.0
    f = build_features(cat)
    lab = labelled_mask(f)
    np.testing.assert_array_equal(lab, np.isfinite(f.zspec) & (f.zspec <= 5.0))
    assert lab[5] and not lab[0] and not lab[1]


def test_finished_run_folder(finished) -> None:
    status = finished.status()
    assert status["state"] == "finished" and status["phase"] == "done"
    names = {p.name for p in finished.path.iterdir()}
    assert {
        "config.json",
        "status.json",
        "metrics.jsonl",
        "log.txt",
        "checkpoint.json",
        "model.safetensors",
        "model.json",
        "splits.npz",
        "predictions.fits",
    } <= names
    assert re.search(r"1 of [\d,]+ single exposures left out", finished.file("log.txt").read_text())
    assert [r["epoch"] for r in finished.metrics()] == [1, 2, 3]
    assert all(r["phase"] == "finetune" for r in finished.metrics())  # --pretrain none
    doc = json.loads(finished.file("model.json").read_text())
    mags = doc["metadata"].pop("reference_magnitudes")  # the unit check of predictions
    assert doc["metadata"] == {"bands": list(BANDS), "ref_band": "subaru_i"}
    assert set(mags) == {"median", "sigma", "lo", "hi", "percentiles", "n"}
    assert mags["lo"] < mags["median"] < mags["hi"] and mags["n"] > 0
    assert doc["config"]["members"] == 2 and doc["config"]["n_inputs"] == len(BANDS) + 1
    assert doc["config"]["magnitude_input"]  # the reference magnitude is a last input


def test_splits_file_matches_the_labels(finished, catalog_path) -> None:
    from deepz_core.catalog.io import read_catalog

    f = build_features(read_catalog(catalog_path))
    with np.load(finished.file("splits.npz")) as s:
        train, labelled, ref_id = s["train"], s["labelled"], s["ref_id"]
    np.testing.assert_array_equal(ref_id, f.ref_id)
    np.testing.assert_array_equal(labelled, labelled_mask(f))
    assert train.shape == (2, f.n) and not train[:, ~labelled].any()
    np.testing.assert_array_equal((~train[:, labelled]).sum(axis=0), 1)  # 2 folds


def test_summary_uses_out_of_fold_galaxies(finished) -> None:
    t = Table.read(finished.file("predictions.fits"))
    summary = finished.status()["summary"]
    oof = np.asarray(t["out_of_fold"])
    assert summary["n"] == int((oof & np.isfinite(np.asarray(t["zspec"]))).sum())
    assert not oof[:2].any()  # zspec beyond the label range: never trained on, not out-of-fold


def test_the_summary_judges_the_networks_against_the_redshift_distribution(finished) -> None:
    heldout = finished.status()["summary"]["heldout"]
    assert len(heldout["nz_nll"]) == 2 and np.isfinite(heldout["nz_nll"]).all()
    worse = [b >= n for b, n in zip(heldout["best_val_nll"], heldout["nz_nll"], strict=True)]
    assert ("no better than the spec-z distribution" in heldout.get("warning", "")) == any(worse)


def test_networks_that_learned_less_than_n_z_are_named_in_a_warning() -> None:
    from types import SimpleNamespace

    from deepz_core.jobs.training_run import judged_heldout
    from deepz_core.training.splits import make_splits

    z = np.random.default_rng(3).uniform(0.0, 3.0, 400)  # n(z) scores ~ln 3 = 1.1 nats
    splits = make_splits(np.ones(400, bool), 1, 2, seed=0)
    heldout = {"best_val_nll": [-1.5, 1.4], "warning": "member(s) [0]: over-fitting"}
    out = judged_heldout(heldout, SimpleNamespace(zspec=z), splits)
    assert all(abs(v - np.log(3.0)) < 0.1 for v in out["nz_nll"])
    assert out["warning"].startswith("member(s) [0]: over-fitting; member(s) [1] predict no better")
    assert "member 1: best held-out NLL 1.4 nats" in out["warning"]
    learned = judged_heldout({"best_val_nll": [-1.5, -1.0]}, SimpleNamespace(zspec=z), splits)
    assert "warning" not in learned and judged_heldout({}, SimpleNamespace(zspec=z), splits) == {}


def test_failed_run_records_the_error(tmp_path, catalog_path) -> None:
    config = run_config(catalog_path, pretrain="none", model=TINY_MODEL, train=TRAIN)
    with pytest.raises(ConfigError, match="sdss_i"):  # refused before a run folder exists
        run_config(catalog_path, pretrain="none", ref_band="sdss_i", model=TINY_MODEL)
    run = create_run(tmp_path / "r", replace(config, ref_band="sdss_i"))  # e.g. edited later
    with pytest.raises(ConfigError, match="sdss_i"):
        execute_run(run)
    status = run.status()
    assert status["state"] == "failed" and "sdss_i" in status["message"]
    assert "failed: ConfigError" in run.file("log.txt").read_text()


def test_pretraining_file_must_have_the_catalogue_bands(tmp_path, catalog_path) -> None:
    from deepz_core.catalog.io import read_catalog
    from deepz_core.training.config import RunConfig

    sim = _synthetic(50, 2, exposures=False, noiseless=True)
    other = Catalog(
        ref_id=sim.ref_id,
        bands=BANDS[::-1],
        flux=sim.flux[:, ::-1],
        flux_error=sim.flux_error[:, ::-1],
        zspec=sim.zspec,
    )
    write_catalog(other, tmp_path / "other.fits")
    f = build_features(read_catalog(catalog_path))
    config = RunConfig(str(catalog_path), pretrain=str(tmp_path / "other.fits"))
    with pytest.raises(ConfigError, match="differ"):
        pretraining_simulation(config, f)
    unknown = Catalog(
        ref_id=[1, 2], bands=("mine_a", "mine_i"), flux=np.ones((2, 2)), flux_error=np.ones((2, 2))
    )
    with pytest.raises(ConfigError, match="mine_a"):
        pretraining_simulation(RunConfig("c.fits", pretrain="auto"), build_features(unknown))


def test_simulation_batches_draw_noise_only_for_noiseless_files(catalog_path) -> None:
    from deepz_core.catalog.io import read_catalog

    f = build_features(read_catalog(catalog_path))
    sim = _synthetic(60, 4, exposures=False, noiseless=True)
    sim.flux[3, -1] = -1.0  # a non-positive reference flux is dropped
    src = simulation_batches(sim, f, members=2, device=torch.device("cpu"))
    assert src.ref == BANDS.index("subaru_i") and len(src.z) == 59
    assert (src.error > 0).all()
    noisy = Catalog(
        ref_id=sim.ref_id, bands=BANDS, flux=sim.flux, flux_error=sim.flux_error, zspec=sim.zspec
    )
    src2 = simulation_batches(noisy, f, members=2, device=torch.device("cpu"))
    assert (src2.error == 0).all()  # already noisy: no fresh noise on top


def test_pretraining_from_a_file_runs_both_phases(tmp_path, catalog_path) -> None:
    sim = tmp_path / "sim.fits"
    write_catalog(_synthetic(100, 5, exposures=False, noiseless=True), sim)
    run = create_run(
        tmp_path / "r",
        run_config(
            catalog_path,
            pretrain=str(sim),
            model=TINY_MODEL,
            train={
                **TRAIN,
                "pretrain_schedule": ((2, 1e-3),),
                "folds": 1,
                "pretrain_batch_size": 50,
            },
        ),
    )
    execute_run(run)
    assert run.status()["state"] == "finished"
    rows = run.metrics()
    assert [(r["phase"], r["epoch"]) for r in rows] == [
        ("pretrain", 1),
        ("pretrain", 2),
        ("finetune", 1),
        ("finetune", 2),
        ("finetune", 3),
    ]
    assert not any("val_nll" in r for r in rows)  # K = 1: nothing held out to validate on
    t = Table.read(run.file("predictions.fits"))
    assert not np.asarray(t["out_of_fold"]).any()


def test_rerun_without_checkpoint_drops_killed_metrics(tmp_path, catalog_path) -> None:
    run = create_run(
        tmp_path / "r", run_config(catalog_path, pretrain="none", model=TINY_MODEL, train=TRAIN)
    )
    # a first attempt killed before its first checkpoint left one metrics row
    run.append_metrics({"phase": "finetune", "epoch": 1, "loss": 99.0})
    execute_run(run)
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(r["loss"] != 99.0 for r in rows)


def test_a_finished_run_is_refused_naming_what_differs(tiny_run) -> None:
    """Review, ninth session: training again with another seed was refused as 'holds a finished
    run', without the difference the README promises."""
    import dataclasses

    from deepz_core.jobs.training_run import open_run_folder
    from deepz_core.training.config import load_run_config

    config = load_run_config(RunDir(tiny_run))
    seed = config.train.seed
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed + 1))
    with pytest.raises(
        ConfigError, match=rf"holds a finished run \(these settings differ: train.seed: {seed}"
    ):
        open_run_folder(tiny_run, other)
    with pytest.raises(ConfigError, match=r"holds a finished run; choose another folder"):
        open_run_folder(tiny_run, config)


def test_a_broad_band_run_s_odds_window_is_its_profile_s(tmp_path) -> None:
    """Review, ninth session: LSST runs wrote odds in the narrow-band window 0.003 (~3e-4)."""
    from deepz_core.jobs.training_run import grid_for
    from deepz_core.simulate import simulate

    write_catalog(simulate("lsst-deep", 80, seed=2), tmp_path / "lsst.fits")
    assert grid_for(tmp_path / "lsst.fits").odds_window == 0.1
    write_catalog(simulate("paus-mock", 60, seed=2), tmp_path / "nb.fits")
    assert grid_for(tmp_path / "nb.fits").odds_window == 0.003


def _broad_band_catalog(path, bands: tuple[str, ...], z_top: float) -> str:
    """A 40-galaxy catalogue of ``bands`` with spec-z up to ``z_top``, written to ``path``."""
    rng = np.random.default_rng(3)
    flux = rng.uniform(1.0, 10.0, (40, len(bands)))
    cat = Catalog(
        ref_id=np.arange(1, 41),
        bands=bands,
        flux=flux,
        flux_error=0.1 * flux,
        zspec=np.linspace(0.1, z_top, 40),
    )
    return str(write_catalog(cat, path))


def test_templates_the_catalogue_cannot_use_are_refused_before_training(tmp_path) -> None:
    """Regression: `train --templates bcnz2` trained for hours, then finished 'green' with
    "combined": {"error": ...}; the set is now checked against the bands and the run's grid
    first, in one line with the way out, and no run folder is made."""
    path = _broad_band_catalog(tmp_path / "c.fits", ("sdss_r", "lsst_i", "euclid_h"), 1.0)
    with pytest.raises(ConfigError, match=r"templates 'bcnz2'.*'euclid_h'.*'kcorrect' covers it"):
        run_config(path, pretrain="none", preset_name="smoke", templates="bcnz2")
    assert run_config(path, pretrain="none", preset_name="smoke", templates="kcorrect")


def test_an_lsst_run_to_z_3_can_be_combined(tmp_path) -> None:
    """Regression: lsst_u at the run's z_max 3.5 was refused (900 A rest needed down to 678 A,
    where the light is absorbed anyway), so no LSST run with a u band could be combined."""
    bands = ("lsst_u", "lsst_g", "lsst_r", "lsst_i", "lsst_z", "lsst_y")
    path = _broad_band_catalog(tmp_path / "lsst.fits", bands, 2.98)
    for name in ("bcnz2", "kcorrect"):
        config = run_config(path, pretrain="none", preset_name="smoke", templates=name)
        assert config.pz.z_max == 3.5 and config.templates == name


def test_pretrain_auto_on_bands_named_by_a_letter_is_refused_before_a_run_folder(tmp_path) -> None:
    """Review, tenth session: mag_u ... mag_z become bands u ... z, which 'auto' cannot simulate;
    the run failed after its folder was made, without saying what to call the bands."""
    cat = synthetic_catalog(30, 0, exposures=False)
    letters = ("u", "g", "r", "i", "z")
    n = len(letters)
    cat = replace(cat, bands=letters, flux=cat.flux[:, :n], flux_error=cat.flux_error[:, :n])
    write_catalog(cat, tmp_path / "c.fits")
    with pytest.raises(ConfigError, match=r"unknown bands .*sdss_u, sdss_g.*mag_u_sdss; or lsst"):
        run_config(str(tmp_path / "c.fits"), pretrain="auto", preset_name="smoke")
    run_config(str(tmp_path / "c.fits"), pretrain="none", preset_name="smoke")  # needs no curves


def test_screen_lists_every_row_left_out_of_the_loss(tmp_path) -> None:
    """Rows without a usable reference flux (not among the features) are counted and listed by
    ref_id too, and the log line agrees with screen.json (it said 5 where the file said 7)."""
    cat = synthetic_catalog(200, 4, exposures=False)
    ref = cat.bands.index("subaru_i")
    flux, error = cat.flux.copy(), cat.flux_error.copy()
    flux[0, 0] = 1e30  # implausible band
    flux[1, 1] = np.nan  # missing band
    flux[2, ref] = 1e-12  # reference below its error
    flux[3] = np.nan  # nothing measured: no reference flux
    error[4, ref] = np.nan  # reference error missing: no reference flux
    cat = replace(cat, flux=flux, flux_error=error)
    features = build_features(cat, "subaru_i")
    features = features.against_population(features.input_stats())
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    record_screen(run, cat, features)
    doc = json.loads(run.file("screen.json").read_text())
    listed = {i for ids in doc["ref_ids"].values() for i in ids}
    ids = [int(i) for i in cat.ref_id]
    assert set(ids[:5]) <= listed and len(listed) == doc["left_out_of_loss"]
    assert set(doc["ref_ids"]["REF_UNUSABLE"]) == {ids[3], ids[4]}
    assert doc["no_reference_flux"] == 2 and doc["counts"]["REF_UNUSABLE"] == 2
    assert f"screen: {doc['left_out_of_loss']} of 200 galaxies" in run.file("log.txt").read_text()


def test_label_counts_follow_the_training_rule() -> None:
    """First-use review: the Train form said '1,710 spec-z galaxies to train on' while the run
    trained on 1,517 (the screen flagged the others). ``label_counts`` applies the training's
    rule (``screened_features`` + ``labelled_mask``) and says what it left out."""
    from deepz_core.jobs.training_run import label_counts, screened_features
    from deepz_core.training.splits import labelled_mask
    from tests.synthetic import synthetic_catalog

    cat = synthetic_catalog(80, seed=2)
    flux, zspec = cat.flux.copy(), np.array(cat.zspec, float, copy=True)
    zspec[:60] = np.where(np.isfinite(zspec[:60]), zspec[:60], 0.5)  # 60+ with a spec-z
    flux[0, 1] = 1e30  # a band the screen flags
    flux[1, 0] = np.nan  # another
    zspec[2] = 7.0  # not a usable label
    cat = replace(cat, flux=flux, zspec=zspec)
    counts = label_counts(cat)
    assert counts["labelled"] == int(labelled_mask(screened_features(cat, None)).sum())
    assert counts["flagged"] >= 2 and counts["unusable_label"] == 1
    assert (
        counts["labelled"] + counts["flagged"] + counts["unusable_label"] + counts["no_reference"]
        == counts["zspec"]
        == int(np.isfinite(zspec).sum())
    )
