"""Inference with a finished run: columns, out-of-fold p(z) for training galaxies, FITS and Parquet."""

from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import pytest
import torch
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import build_features
from deepz_core.catalog.io import write_catalog
from deepz_core.catalog.screen import PzFlag
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.inference.predict import (
    mixture_from_arrays,
    predict_catalog,
    predict_features,
    predictions_table,
    summarise,
    write_table,
)
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.nets.deepz import load_model, load_model_json
from deepz_core.pz.products import PzConfig, mixture_quantile
from deepz_core.rundir import RunDir
from tests.synthetic import BANDS, synthetic_catalog

M = 2  # mixture components per member
TINY_MODEL = dict(
    n_latent=2,
    width=12,
    encoder_layers=1,
    decoder_layers=1,
    photoz_layers=2,
    photoz_first_width=0,
    n_components=M,
)
TRAIN = dict(schedule=((2, 1e-3),), batch_size=40, repetitions=2, folds=2, device="cpu", seed=2)
COLUMNS = [
    "ref_id",
    "zphot",
    "zmean",
    "zmedian",
    "z_lo68",
    "z_hi68",
    "odds",
    "zspec",
    "pit",
    "mag",
    "flag",
    "out_of_fold",
    "weights",
    "means",
    "stds",
]


pytestmark = pytest.mark.usefixtures("one_thread")


# coadds only (prediction does not use single exposures)
_synthetic = partial(synthetic_catalog, exposures=False, missing_zspec=0.2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[RunDir, Catalog]:
    root = tmp_path_factory.mktemp("predict")
    cat = _synthetic(100, 0)
    write_catalog(cat, root / "cat.fits")
    run = create_run(
        root / "run",
        run_config(str(root / "cat.fits"), pretrain="none", model=TINY_MODEL, train=TRAIN),
    )
    execute_run(run)
    assert run.status()["state"] == "finished"
    return run, cat


def _train_mask(run: RunDir) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run.file("splits.npz")) as s:
        return s["train"], s["ref_id"]


def _member_weight(weights: np.ndarray) -> np.ndarray:
    """(N, E*M) mixture weights -> (E, N) total weight of each member's components."""
    n = weights.shape[0]
    return weights.reshape(n, -1, M).sum(-1).T


def test_run_predictions_have_every_column(trained) -> None:
    run, cat = trained
    t = Table.read(run.file("predictions.fits"))
    assert t.colnames == COLUMNS and len(t) == cat.n_galaxies
    e = 4
    assert t["weights"].shape == t["means"].shape == t["stds"].shape == (len(t), e * M)
    np.testing.assert_allclose(np.asarray(t["weights"]).sum(1), 1.0, rtol=1e-5)
    assert (np.asarray(t["stds"]) > 0).all()
    np.testing.assert_array_equal(t["ref_id"], cat.ref_id)
    z = np.asarray(t["zspec"])
    pit = np.asarray(t["pit"])
    assert np.isfinite(pit[np.isfinite(z)]).all() and np.isnan(pit[~np.isfinite(z)]).all()
    assert (np.asarray(t["z_lo68"]) <= np.asarray(t["zmedian"])).all()


def test_training_galaxies_get_out_of_fold_pz(trained) -> None:
    run, _ = trained
    t = Table.read(run.file("predictions.fits"))
    train, _ = _train_mask(run)  # (E, N)
    w = _member_weight(np.asarray(t["weights"]))  # (E, N)
    assert not (w[train] > 0).any()  # no member that trained on a galaxy enters its p(z)
    labelled = train.any(axis=0)
    np.testing.assert_allclose(w[:, labelled][~train[:, labelled]], 0.5, rtol=1e-5)  # R = 2
    np.testing.assert_allclose(w[:, ~labelled], 0.25, rtol=1e-5)  # unlabelled: all E = 4
    np.testing.assert_array_equal(np.asarray(t["out_of_fold"]), labelled)


def test_predicting_the_training_catalogue_again_reproduces_the_run(tmp_path, trained) -> None:
    run, cat = trained
    shuffled = cat.select(np.random.default_rng(1).permutation(cat.n_galaxies))
    t = predict_catalog(run.path, shuffled, tmp_path / "again.fits")
    ref = Table.read(run.file("predictions.fits"))
    order = np.searchsorted(np.asarray(ref["ref_id"]), np.asarray(t["ref_id"]))
    for name in ("zphot", "zmedian", "odds", "pit", "out_of_fold", "weights", "means"):
        np.testing.assert_allclose(
            np.asarray(t[name], dtype=float),
            np.asarray(ref[name], dtype=float)[order],
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


def test_new_galaxies_use_every_member(tmp_path, trained) -> None:
    run, cat = trained
    new = _synthetic(30, 5, first_id=1000)
    mixed = Catalog(
        ref_id=np.r_[new.ref_id, cat.ref_id[:10]],
        bands=BANDS,
        flux=np.r_[new.flux, cat.flux[:10]],
        flux_error=np.r_[new.flux_error, cat.flux_error[:10]],
        zspec=np.r_[new.zspec, cat.zspec[:10]],
    )
    t = predict_catalog(run.path, mixed, tmp_path / "mixed.fits")
    w = _member_weight(np.asarray(t["weights"]))
    np.testing.assert_allclose(w[:, :30], 0.25, rtol=1e-5)
    assert not np.asarray(t["out_of_fold"])[:30].any()
    train, ids = _train_mask(run)
    seen = train[:, np.searchsorted(ids, cat.ref_id[:10])]
    assert not (w[:, 30:][seen] > 0).any()  # the training galaxies still only out-of-fold
    ref = mixed.flux[:, BANDS.index("subaru_i")]  # no mag column: the reference band's magnitude
    np.testing.assert_allclose(np.asarray(t["mag"]), 23.9 - 2.5 * np.log10(ref), rtol=1e-10)


def test_a_training_ref_id_with_other_photometry_is_a_new_galaxy(tmp_path, trained) -> None:
    """Matching is by ref_id and photometry; a run saved before photometry was stored matches by
    ref_id."""
    run, cat = trained
    other = cat.select(np.arange(10))
    other = Catalog(
        ref_id=other.ref_id,
        bands=BANDS,
        flux=other.flux * 1.01,
        flux_error=other.flux_error,
        zspec=other.zspec,
    )
    t = predict_catalog(run.path, other, tmp_path / "other.fits")
    np.testing.assert_allclose(_member_weight(np.asarray(t["weights"])), 0.25, rtol=1e-5)
    assert not np.asarray(t["out_of_fold"]).any()
    legacy = RunDir(tmp_path / "legacy")  # the same run with splits.npz as older versions wrote it
    legacy.path.mkdir()
    for name in ("config.json", "model.safetensors", "model.json"):
        legacy.file(name).write_bytes(run.file(name).read_bytes())
    with np.load(run.file("splits.npz")) as s:
        old = {k: s[k] for k in s.files if k not in ("ratio", "ratio_error")}
    np.savez(legacy.file("splits.npz"), **old)
    t = predict_catalog(legacy.path, other, tmp_path / "legacy.fits")
    assert np.asarray(t["out_of_fold"]).any()


def test_parquet_output_round_trips(tmp_path, trained) -> None:
    run, cat = trained
    t = predict_catalog(run.path, cat, tmp_path / "pred.parquet")
    back = Table.read(tmp_path / "pred.parquet")
    assert back.colnames == COLUMNS
    for name in COLUMNS:
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(t[name]), err_msg=name)
    assert back["weights"].shape == (cat.n_galaxies, 4 * M)
    fits = predict_catalog(run.path, cat, tmp_path / "pred.fits.gz")
    np.testing.assert_array_equal(
        np.asarray(Table.read(tmp_path / "pred.fits.gz")["zphot"]), np.asarray(fits["zphot"])
    )


@pytest.mark.parametrize("name", ["pred.csv", "pred", "pred.json", ".fits"])
def test_unknown_output_formats_are_refused_before_any_work(tmp_path, trained, name) -> None:
    run, cat = trained
    with pytest.raises(ConfigError, match="--out"):
        predict_catalog(run.path, cat, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_point_columns_agree_with_the_stored_mixture(trained) -> None:
    run, _ = trained
    t = Table.read(run.file("predictions.fits"))
    mix = mixture_from_arrays(
        np.asarray(t["weights"]), np.asarray(t["means"]), np.asarray(t["stds"])
    )
    np.testing.assert_allclose(
        mixture_quantile(mix, 0.5).numpy(), np.asarray(t["zmedian"]), atol=1e-5
    )
    np.testing.assert_allclose(mix.mean.numpy(), np.asarray(t["zmean"]), atol=1e-5)
    z = np.asarray(t["zspec"], dtype=np.float64)  # native byte order for torch
    known = np.isfinite(z)
    cdf = mix.cdf(torch.as_tensor(np.nan_to_num(z))).numpy()
    np.testing.assert_allclose(cdf[known], np.asarray(t["pit"])[known], atol=1e-5)


def test_mixture_from_arrays_allows_zero_weights() -> None:
    mix = mixture_from_arrays(
        np.array([[0.5, 0.0, 0.5]]), np.array([[0.2, 9.0, 0.4]]), np.array([[0.1, 0.1, 0.1]])
    )
    from scipy import stats

    expected = 0.5 * stats.norm.cdf(0.3, 0.2, 0.1) + 0.5 * stats.norm.cdf(0.3, 0.4, 0.1)
    assert float(mix.cdf(torch.tensor([0.3], dtype=torch.float64))[0]) == pytest.approx(expected)


def test_predict_features_without_a_mask_uses_all_members(trained) -> None:
    run, cat = trained
    model = load_model(run.path)
    f = build_features(cat)
    products = predict_features(model, f, None, PzConfig(), chunk=33)  # chunked = unchunked
    w = _member_weight(products["weights"])
    np.testing.assert_allclose(w, 0.25, rtol=1e-5)
    whole = predict_features(model, f, None, PzConfig())
    np.testing.assert_allclose(products["zphot"], whole["zphot"], atol=1e-12)


def test_summarise_counts_only_out_of_fold_galaxies_with_zspec(trained) -> None:
    run, cat = trained
    f = build_features(cat)
    products = predict_features(load_model(run.path), f, None, PzConfig())
    oof = np.zeros(f.n, dtype=bool)
    oof[:40] = True
    table = predictions_table(f, products, {"out_of_fold": oof})
    assert summarise(table)["n"] == int(np.isfinite(f.zspec[:40]).sum())
    table["out_of_fold"] = False
    assert summarise(table) == {"n": 0, "n_no_pz": 0, "n_rows": 100}
    nofold = predictions_table(f, products)
    assert summarise(nofold)["n"] == int(np.isfinite(f.zspec).sum())
    table["out_of_fold"] = oof
    table["zphot"][40:50] = np.nan  # screened galaxies: no p(z), never out of fold
    assert summarise(table)["n_no_pz"] == int(np.isfinite(f.zspec[40:50]).sum()) > 0


def test_write_table_is_atomic(tmp_path) -> None:
    t = Table({"ref_id": np.arange(3), "zphot": np.zeros(3)})
    write_table(t, tmp_path / "p.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["p.parquet"]
    t2 = Table({"ref_id": np.arange(3), "obj": np.array([object()] * 3)})
    with pytest.raises(Exception):  # noqa: B017 - whichever error the writer raises; the old
        write_table(t2, tmp_path / "p.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["p.parquet"]  # file intact, no temp file
    np.testing.assert_array_equal(Table.read(tmp_path / "p.parquet")["ref_id"], np.arange(3))


def test_catalogue_bands_are_matched_to_the_run_by_name(tmp_path, trained) -> None:
    run, _ = trained
    cat = _synthetic(20, 9, first_id=900)
    ref = predict_catalog(run.path, cat, tmp_path / "a.fits")
    rng = np.random.default_rng(0)
    extra = rng.uniform(1, 2, (20, 1))
    shuffled = Catalog(
        ref_id=cat.ref_id,
        bands=("sdss_g", *BANDS[::-1]),
        flux=np.c_[extra, cat.flux[:, ::-1]],
        flux_error=np.c_[extra, cat.flux_error[:, ::-1]],
        zspec=cat.zspec,
    )
    t = predict_catalog(run.path, shuffled, tmp_path / "b.fits")  # other order, one extra band
    for name in ("zphot", "odds", "weights"):
        np.testing.assert_array_equal(np.asarray(t[name]), np.asarray(ref[name]), err_msg=name)
    missing = Catalog(
        ref_id=cat.ref_id, bands=BANDS[1:], flux=cat.flux[:, 1:], flux_error=cat.flux_error[:, 1:]
    )
    t = predict_catalog(run.path, missing, tmp_path / "c.fits")  # NB455 imputed, flagged
    assert (np.asarray(t["flag"]) & PzFlag.BAND_MISSING).all()
    few = Catalog(
        ref_id=cat.ref_id, bands=BANDS[3:], flux=cat.flux[:, 3:], flux_error=cat.flux_error[:, 3:]
    )
    with pytest.raises(ConfigError, match=r"lacks bands NB455, NB555, NB655 .*no galaxy"):
        predict_catalog(run.path, few, tmp_path / "d.fits")


# ---------------------------------------------------------------- fluxes in another unit


def _scaled(cat: Catalog, factor: float) -> Catalog:
    """``cat`` with every flux and error times ``factor`` (1000: nJy values declared uJy)."""
    return dataclasses.replace(cat, flux=cat.flux * factor, flux_error=cat.flux_error * factor)


UNIT_LINE = (
    r"the catalogue: column 'flux_subaru_i' \(declared uJy\) gives reference magnitudes a median "
    r"7\.\d mag brighter .* fluxes ~x\d+ too large: nJy values read as uJy\? .*--flux-unit"
)


@pytest.fixture(scope="module")
def ratio_only(tmp_path_factory) -> tuple[RunDir, Catalog]:
    """The ``trained`` run's catalogue and settings, networks reading the flux ratios alone."""
    root = tmp_path_factory.mktemp("ratios")
    cat = _synthetic(100, 0)
    write_catalog(cat, root / "cat.fits")
    model = {**TINY_MODEL, "magnitude_input": False}
    config = run_config(str(root / "cat.fits"), pretrain="none", model=model, train=TRAIN)
    run = create_run(root / "run", config)
    execute_run(run)
    assert run.status()["state"] == "finished"
    return run, cat


def _old_run(run: RunDir, folder) -> RunDir:
    """A copy of ``run`` as a run made before its model.json stored the training magnitudes."""
    import json
    import shutil

    copy = RunDir(shutil.copytree(run.path, folder))
    doc = json.loads(copy.file("model.json").read_text())
    del doc["metadata"]["reference_magnitudes"]
    copy.file("model.json").write_text(json.dumps(doc))
    return copy


def test_the_run_stores_the_magnitudes_of_the_galaxies_its_loss_saw(trained) -> None:
    """Fourteenth session: only networks reading the magnitude kept its population (their input
    statistics); every run now stores that of the galaxies its loss saw."""
    run, cat = trained
    stored = load_model_json(run.path)["metadata"]["reference_magnitudes"]
    train, _ = _train_mask(run)
    mags = build_features(cat).ref_mag[train.any(axis=0)].astype(np.float64)
    assert stored["n"] == len(mags) < cat.n_galaxies  # the spec-z galaxies, not all
    assert stored["median"] == pytest.approx(np.median(mags), abs=1e-5)
    assert stored["lo"] == pytest.approx(np.percentile(mags, 0.1), abs=1e-5)
    assert stored["hi"] == pytest.approx(np.percentile(mags, 99.9), abs=1e-5)
    assert stored["percentiles"] == [0.1, 99.9] and 0 < stored["sigma"] < 2


def test_fluxes_a_unit_off_are_refused_before_any_output(tmp_path, trained) -> None:
    """Review, tenth session: fluxes x1000 off the training ones (nJy read as uJy) were
    predicted with one warning and flag 0 (fourteenth session): now refused in one line naming
    the column, the shift, the likely unit and the fixes, before any output; with the override
    predicted and every row flagged OUTSIDE_TRAINING."""
    run, cat = trained
    with pytest.raises(CatalogError, match=UNIT_LINE) as err:
        predict_catalog(run.path, _scaled(cat, 1000), tmp_path / "off.fits")
    assert "\n" not in str(err.value) and "--allow-magnitude-shift" in str(err.value)
    assert not (tmp_path / "off.fits").exists()
    t = predict_catalog(
        run.path, _scaled(cat, 1000), tmp_path / "off.fits", allow_magnitude_shift=True
    )
    assert (np.asarray(t["flag"]) & PzFlag.OUTSIDE_TRAINING).all()
    assert np.isfinite(np.asarray(t["zphot"])).all()  # flagged, not dropped
    same = predict_catalog(run.path, cat, tmp_path / "same.fits", allow_magnitude_shift=True)
    assert not (np.asarray(same["flag"]) & PzFlag.OUTSIDE_TRAINING).any()  # nothing shifted


def test_a_fainter_sample_of_the_same_survey_is_predicted(tmp_path, trained) -> None:
    """A catalogue 1.5 mag fainter than the training one (fluxes x0.25: a deeper sample) is no
    unit mistake: predicted, its flags those of the same colours."""
    run, cat = trained
    same = predict_catalog(run.path, cat, tmp_path / "same.fits")
    for factor in (0.25, 0.16):  # 1.5 and 2 mag fainter
        deeper = predict_catalog(run.path, _scaled(cat, factor), tmp_path / f"{factor}.fits")
        np.testing.assert_array_equal(np.asarray(deeper["flag"]), np.asarray(same["flag"]))


def test_a_network_of_flux_ratios_alone_is_refused_too(tmp_path, ratio_only) -> None:
    """Fourteenth session: networks reading flux ratios alone are unit-invariant, so the note
    never fired for them, yet the calibration (and its pool scale) is binned in magnitude: every
    galaxy silently got the calibration of the edge bin."""
    run, cat = ratio_only
    assert len(load_model(run.path).input_stats()[0]) == len(BANDS)  # no magnitude input
    with pytest.raises(CatalogError, match=UNIT_LINE):
        predict_catalog(run.path, _scaled(cat, 1000), tmp_path / "off.fits")
    assert not (tmp_path / "off.fits").exists()
    t = predict_catalog(
        run.path, _scaled(cat, 1000), tmp_path / "off.fits", allow_magnitude_shift=True
    )
    assert (np.asarray(t["flag"]) & PzFlag.OUTSIDE_TRAINING).all()


def test_damaged_training_magnitudes_are_named(tmp_path, trained) -> None:
    """An edited model.json whose training magnitudes are no numbers: one ConfigError naming the
    file and the value, not a TypeError deep in the check."""
    import json
    import shutil

    run, cat = trained
    copy = RunDir(shutil.copytree(run.path, tmp_path / "damaged"))
    doc = json.loads(copy.file("model.json").read_text())
    doc["metadata"]["reference_magnitudes"]["median"] = "21"
    copy.file("model.json").write_text(json.dumps(doc))
    match = r"model\.json: damaged model description: .*'reference_magnitudes\.median' must be a"
    with pytest.raises(ConfigError, match=match):
        predict_catalog(copy.path, cat, tmp_path / "p.fits")


def test_an_old_run_predicts_and_checks_what_it_can(tmp_path, trained, ratio_only, caplog) -> None:
    """A run made before the training magnitudes were stored still predicts; its catalogue is
    checked against its magnitude input statistics, else its calibration's magnitude bins, else
    not at all (said once)."""
    from deepz_core.inference.calibrate import fit_run_calibration, save_calibration

    run, cat = trained
    old = _old_run(run, tmp_path / "old-mag")
    predict_catalog(old.path, cat, tmp_path / "a.fits")
    with pytest.raises(CatalogError, match=r"from its magnitude input statistics\)"):
        predict_catalog(old.path, _scaled(cat, 1000), tmp_path / "b.fits")
    run, cat = ratio_only
    old = _old_run(run, tmp_path / "old-ratios")
    assert not old.file("calibration.json").exists()  # 100 galaxies: too few to calibrate
    with caplog.at_level("WARNING", logger="deepz"):
        predict_catalog(old.path, cat, tmp_path / "c.fits")
        t = predict_catalog(old.path, _scaled(cat, 1000), tmp_path / "d.fits")
    assert caplog.text.count("stores no magnitudes of its training population") == 1
    assert not (np.asarray(t["flag"]) & PzFlag.OUTSIDE_TRAINING).any()
    rng = np.random.default_rng(4)
    cal = fit_run_calibration(rng.uniform(size=300), rng.normal(21, 0.7, 300), np.arange(300))
    save_calibration(old, cal)
    predict_catalog(old.path, cat, tmp_path / "e.fits")
    with pytest.raises(CatalogError, match=r"from its calibration's magnitude bins\)"):
        predict_catalog(old.path, _scaled(cat, 1000), tmp_path / "f.fits")
