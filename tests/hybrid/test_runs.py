"""A run combined with the template fit (beyond E20): ``train(templates=...)`` writes hybrid.json and
hybrid_predictions.fits, their summary is the statistics of the stored predictions, predicting the
training catalogue again reproduces them (cross-fitted exponents for its out-of-fold galaxies, the
full ones for new galaxies), ``Run.predict`` uses the combination unless ``network_only``, and junk
rows, damaged files and outputs that would replace the input fail softly or with one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import qp
import torch
from astropy.table import Table
from scipy import special

import deepz_core as dz
from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.screen import PzFlag
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import jsonable
from deepz_core.hybrid import runs
from deepz_core.hybrid.runs import (
    CALIBRATION_BINS,
    HYBRID_FILE,
    HYBRID_PREDICTIONS,
    Hybrid,
    fit_combination_calibration,
    load_hybrid,
    predict_hybrid,
)
from deepz_core.inference.calibrate import CROSS_FOLDS, calibration_fold, fit_run_calibration
from deepz_core.jobs.prediction import (
    OUTPUT,
    check_job_cancel,
    create_prediction_job,
    read_job,
    run_prediction_job,
)
from deepz_core.jobs.training_run import combination_step
from deepz_core.pz import metrics
from deepz_core.pz.calibration import pit_coverage
from deepz_core.pz.pooling import PoolingWeights
from deepz_core.rundir import RunDir
from deepz_core.sed.bands import band_set
from deepz_core.training import loop
from deepz_core.training.config import RunConfig, load_run_config

pytestmark = pytest.mark.usefixtures("one_thread")

N = 300  # 251 with a spec-z: above the 200 out-of-fold galaxies a combination needs
BANDS = band_set("paus")[::4] + band_set("cosmos")  # 10 narrow and 6 broad bands
ESTIMATORS = ("network", "templatefit", "combined")
SCORES = ("sigma68", "outliers", "catastrophic", "pit_ks")
NEW_IDS = 10**6  # added to the ref_ids of the same photometry: new galaxies


@pytest.fixture(scope="module")
def combined(tmp_path_factory) -> tuple[dz.Run, Catalog]:
    """A smoke run on a 300-galaxy mock, combined with the bcnz2 template fit after training."""
    cat = dz.simulate_catalog("paus-mock", N, BANDS, seed=5)
    out = tmp_path_factory.mktemp("hybrid") / "run"
    run = dz.train(cat, out, preset="smoke", pretrain="none", templates="bcnz2")
    return run, cat


@pytest.fixture
def copied(combined, tmp_path) -> Path:
    """A copy of the combined run's folder, free to damage."""
    return Path(shutil.copytree(combined[0].path, tmp_path / "copy"))


def _new(cat: Catalog, rows) -> Catalog:
    """The galaxies ``rows`` of ``cat`` under new ref_ids: new galaxies to the run."""
    sub = cat.select(np.asarray(rows))
    return dataclasses.replace(sub, ref_id=sub.ref_id + NEW_IDS, exposures=None)


def _used(table: Table) -> np.ndarray:
    """The rows the summary compares: out-of-fold, with a spec-z, a magnitude and a p(z)."""
    finite = [np.isfinite(np.asarray(table[k], float)) for k in ("zspec", "mag", "zphot_net")]
    return np.asarray(table["out_of_fold"], bool) & np.logical_and.reduce(finite)


def test_training_with_templates_writes_the_combination(combined) -> None:
    run, cat = combined
    assert run.state == "finished" and run.config.templates == "bcnz2"
    table = Table.read(run.path / HYBRID_PREDICTIONS)
    assert len(table) == N
    np.testing.assert_array_equal(table["ref_id"], cat.ref_id)  # every row, in order
    for name in ("zphot", "pit", "pit_raw", "flag", "out_of_fold", "zphot_net", "zphot_tf"):
        assert name in table.colnames, name
    for name in ("odds_net", "odds_tf", "chi2_tf", "weights", "means", "stds"):
        assert name in table.colnames, name
    assert table.meta["METHOD"] == "deepz+templatefit"
    assert table.meta["DZRUNID"] == run.path.name and table.meta["DZODDSW"] == "0.003"
    hybrid = load_hybrid(run.path)
    assert hybrid.template_set == "bcnz2" and set(hybrid.bands) == set(cat.bands)
    assert np.all(np.isfinite(hybrid.zero_points) & (hybrid.zero_points > 0))
    assert len(hybrid.folds) == CROSS_FOLDS and hybrid.calibration is not None
    overall = run.summary["combined"]  # the status summary carries the comparison
    assert set(overall) == set(ESTIMATORS)
    assert all(set(overall[e]) == set(SCORES) for e in ESTIMATORS)
    assert run.combination_summary()["overall"] == overall


def test_the_summary_is_the_statistics_of_the_stored_predictions(combined) -> None:
    run, _ = combined
    table = Table.read(run.path / HYBRID_PREDICTIONS)
    summary = run.combination_summary()
    use = _used(table)
    assert summary["n"] == use.sum() >= 200
    bins = summary["per_magnitude"]  # half magnitudes over the data: every galaxy in one
    mags = np.asarray(table["mag"])[use]
    assert all(b["hi"] - b["lo"] == 0.5 for b in bins)
    assert bins[0]["lo"] <= mags.min() and bins[-1]["hi"] >= mags.max()
    assert sum(b["n"] for b in bins) == len(mags)
    zspec = np.asarray(table["zspec"])[use]
    for name, column in (
        ("network", "zphot_net"),
        ("templatefit", "zphot_tf"),
        ("combined", "zphot"),
    ):
        d = metrics.dz(np.asarray(table[column])[use], zspec)
        assert summary["overall"][name]["sigma68"] == pytest.approx(metrics.sigma68(d), rel=1e-6)
        assert summary["overall"][name]["outliers"] == pytest.approx(
            metrics.outlier_fraction(d), rel=1e-6
        )
        assert summary["overall"][name]["catastrophic"] == pytest.approx(
            float(np.mean(np.abs(d) > 0.15)), rel=1e-6
        )
    pit = np.clip(np.asarray(table["pit"])[use], 0, 1)
    assert summary["overall"]["combined"]["pit_ks"] == pytest.approx(metrics.pit_ks(pit).statistic)
    # exponents chosen by out-of-fold log density: not worse than the better estimator
    o = summary["overall"]
    best = min(o["network"]["sigma68"], o["templatefit"]["sigma68"])
    assert o["combined"]["sigma68"] <= 1.25 * best


def test_the_calibrated_pz_stays_where_the_galaxy_is(combined) -> None:
    """Regression: a widening calibration evaluated g' at F = 0 and 1 and put the mass of galaxies
    whose p(z) reaches the grid's ends there (medians at z = 0.0005 for galaxies at z = 0.2)."""
    run, _ = combined
    table = Table.read(run.path / HYBRID_PREDICTIONS)
    ok = np.isfinite(np.asarray(table["zphot"]))
    zphot, zmedian = np.asarray(table["zphot"])[ok], np.asarray(table["zmedian"])[ok]
    pz = run.config.pz
    at_an_end = (zmedian < pz.z_min + 0.002) | (zmedian > pz.z_max - 0.002)
    far = np.abs(zphot - zmedian) > 0.1
    assert not np.any(at_an_end & far), np.flatnonzero(at_an_end & far)


def test_hybrid_json_round_trips(combined, tmp_path) -> None:
    run, _ = combined
    hybrid = load_hybrid(run.path)
    doc = jsonable(hybrid.to_dict())
    assert json.loads((run.path / HYBRID_FILE).read_text()) == doc
    back = Hybrid.from_dict(json.loads(json.dumps(doc)))
    assert jsonable(back.to_dict()) == doc
    np.testing.assert_array_equal(back.zero_points, hybrid.zero_points)
    np.testing.assert_array_equal(back.weights.b, hybrid.weights.b)
    assert load_hybrid(tmp_path) is None  # a folder without a combination


def test_zero_points_are_matched_by_band_name_after_a_json_round_trip() -> None:
    """Regression: hybrid.json is written with sorted keys, and the zero-points read back in that
    order were applied to the catalogue's bands in its own order (permuted zero-points)."""
    w = PoolingWeights(np.array([0.0, 100.0]), np.ones(1), np.zeros(1), 1.0, 0.0, 1)
    bands = ("subaru_r", "NB455", "cfht_u", "subaru_B")
    hybrid = Hybrid("bcnz2", bands, np.array([1.1, 0.9, 1.3, 0.95]), w, (w,), None, {})
    back = Hybrid.from_dict(json.loads(json.dumps(jsonable(hybrid.to_dict()), sort_keys=True)))
    np.testing.assert_array_equal(back.zero_points_of(bands), [1.1, 0.9, 1.3, 0.95])
    np.testing.assert_array_equal(back.zero_points_of(("NB455", "subaru_r")), [0.9, 1.1])
    with pytest.raises(ConfigError, match=r"no zero-points of bands \['lsst_g'\]"):
        back.zero_points_of(("NB455", "lsst_g"))


def test_predicting_the_training_galaxies_reproduces_the_stored_predictions(combined) -> None:
    """The same galaxies, exponents, calibration and (stored) zero-points: the same products."""
    run, cat = combined
    rows = np.arange(40)
    stored = Table.read(run.path / HYBRID_PREDICTIONS)[rows]
    table = predict_hybrid(run.path, cat.select(rows), workers=1)
    oof = np.asarray(stored["out_of_fold"])
    assert 20 < oof.sum() < 40  # galaxies without a spec-z were not trained on
    np.testing.assert_array_equal(table["out_of_fold"], oof)
    for name in ("zphot", "zmedian", "z_lo68", "z_hi68", "odds", "pit", "pit_raw", "zphot_tf"):
        np.testing.assert_allclose(table[name], stored[name], atol=1e-5, err_msg=name)


def _same_numbers(a, b, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_numbers(x, y, f"{path}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and abs(a - b) < 1e-12), (path, a, b)


def test_fitting_and_predicting_in_small_blocks_changes_nothing(copied, monkeypatch) -> None:
    """Regression (memory): the combination fits and predicts block by block (FIT_BLOCK galaxies
    of (N, G) log p(z) at a time) instead of holding them for the whole training catalogue; blocks
    of 37 give the exponents, calibration, pool scale and products of one pass."""
    before = load_hybrid(copied)
    stored = Table.read(copied / HYBRID_PREDICTIONS)
    monkeypatch.setattr(runs, "FIT_BLOCK", 37)
    after = runs.fit_hybrid(copied, "bcnz2", workers=1)
    np.testing.assert_array_equal(after.weights.a, before.weights.a)
    np.testing.assert_array_equal(after.weights.b, before.weights.b)
    _same_numbers(jsonable(after.calibration.to_dict()), jsonable(before.calibration.to_dict()))
    again = Table.read(copied / HYBRID_PREDICTIONS)
    predicted = predict_hybrid(copied, read_catalog(load_run_config(RunDir(copied)).catalog))
    for name in ("zphot", "zmedian", "z_lo68", "z_hi68", "odds", "pit", "weights", "means"):
        np.testing.assert_array_equal(again[name], stored[name], err_msg=name)
        np.testing.assert_allclose(predicted[name], stored[name], atol=1e-5, err_msg=name)


def _constant(a: float, b: float) -> PoolingWeights:
    return PoolingWeights(np.array([0.0, 100.0]), np.array([a]), np.array([b]), a, b, 1)


def test_the_combinations_calibration_jumps_where_its_exponents_do() -> None:
    """Known answer: pooled p(z) 1.6x too broad brighter than iAB 19, where the exponents change,
    1.6x too narrow fainter. The combination's out-of-fold calibration breaks its magnitude bins
    there (listed in its summary): new galaxies in the half magnitudes either side hold 68.27 +-
    1.5% (within 1.1 points for seven seeds), where a calibration interpolated across the jump
    leaves the bright side > 71.3% and the faint side < 66.8% (72.7-73.9% and 64.6-66.3%)."""
    rng = np.random.default_rng(23)

    def population(n: int) -> tuple[np.ndarray, np.ndarray]:
        mag = rng.uniform(17.0, 21.0, n)
        width = np.where(mag < 19.0, 1.6, 1 / 1.6)
        return special.ndtr(rng.standard_normal(n) / width), mag

    weights = PoolingWeights(
        np.array([17.0, 19.0, 21.0]), np.array([0.5, 0.0]), np.array([0.1, 0.5]), 0.5, 0.5, 1
    )
    pit, mag = population(60_000)  # 12 bins of 5,000: the knots' noise well below the jump
    ref_id = np.arange(len(pit)) + 10**18
    cal = fit_combination_calibration(pit, mag, ref_id, weights)
    blur = fit_run_calibration(pit, mag, ref_id, **CALIBRATION_BINS)
    assert cal.summary["breaks"] == [19.0]
    new, new_mag = population(40_000)
    sides = [(new_mag >= lo) & (new_mag < lo + 0.5) for lo in (18.5, 19.0)]
    jump = [pit_coverage(_calibrated(cal, new, new_mag)[s]) for s in sides]
    assert jump == pytest.approx([0.6827, 0.6827], abs=0.015)
    bright, faint = (pit_coverage(_calibrated(blur, new, new_mag)[s]) for s in sides)
    assert bright > 0.6827 + 0.03 and faint < 0.6827 - 0.015


def _calibrated(cal, pit: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """(N,) PITs of new galaxies (not out of fold) under the run calibration ``cal``."""
    ids = np.arange(len(pit)) + 10**12
    transform = cal.transform(mag, ids, np.zeros(len(pit), bool))
    return transform.forward(torch.as_tensor(pit, dtype=torch.float64)[:, None])[:, 0].numpy()


def test_exponents_of_training_galaxies_are_their_folds_and_of_new_ones_the_full_fit() -> None:
    folds = tuple(_constant(0.1 * (k + 1), 0.5) for k in range(CROSS_FOLDS))
    hybrid = Hybrid("bcnz2", ("x",), np.ones(1), _constant(0.0, 1.0), folds, None, {})
    ref_id = np.arange(1, 201) + 10**18  # 19-digit ids hash like any other
    training = np.arange(200) % 2 == 0
    mag = np.where(np.arange(200) % 7 == 0, np.nan, 22.0)
    a, b = hybrid.exponents(mag, ref_id, training)
    fold = calibration_fold(ref_id, CROSS_FOLDS)
    np.testing.assert_allclose(a, np.where(training, 0.1 * (fold + 1), 0.0))
    np.testing.assert_allclose(b, np.where(training, 0.5, 1.0))
    assert len(set(fold[training])) == CROSS_FOLDS


def test_predict_uses_the_cross_fitted_exponents_only_for_out_of_fold_galaxies(combined) -> None:
    """Folds that take the network alone, a full fit that takes the template fit alone: training
    galaxies get the network's mode, the same photometry under new ids the template fit's."""
    run, cat = combined
    folds = (_constant(1.0, 0.0),) * CROSS_FOLDS
    hybrid = dataclasses.replace(
        load_hybrid(run.path), weights=_constant(0.0, 1.0), folds=folds, calibration=None
    )
    stored = Table.read(run.path / HYBRID_PREDICTIONS)
    rows = np.flatnonzero(np.asarray(stored["out_of_fold"]))[:30]
    training = predict_hybrid(run.path, cat.select(rows), workers=1, hybrid=hybrid)
    new = predict_hybrid(run.path, _new(cat, rows), workers=1, hybrid=hybrid)
    assert np.asarray(training["out_of_fold"]).all() and not np.asarray(new["out_of_fold"]).any()
    np.testing.assert_allclose(training["zphot"], training["zphot_net"], atol=1.5e-3)
    np.testing.assert_allclose(new["zphot"], new["zphot_tf"], atol=1.5e-3)
    assert "pit_raw" not in training.colnames  # no calibration: the raw pooled p(z)


def test_run_predict_gives_the_combined_or_the_network_columns(combined, tmp_path) -> None:
    run, cat = combined
    new = _new(cat, np.arange(100, 130))
    table = run.predict(new)
    assert len(table) == 30 and (np.asarray(table["ref_id"]) == new.ref_id).all()
    for name in ("zphot_net", "odds_net", "zphot_tf", "odds_tf", "chi2_tf", "pit_raw", "flag"):
        assert name in table.colnames, name
    assert not np.asarray(table["out_of_fold"]).any()
    net = run.predict(new, network_only=True)
    assert "zphot_net" not in net.colnames and "zphot_tf" not in net.colnames
    # the combination's zphot_net is the network's mode (calibration does not move it)
    np.testing.assert_allclose(table["zphot_net"], net["zphot"], atol=1e-6)
    assert "pit_raw" not in run.predict(new, calibrate=False).colnames
    table = run.predict(new, out=tmp_path / "p.fits")
    assert Table.read(tmp_path / "p.fits", hdu=1)["zphot_tf"].shape == (30,)
    run.predict(new, out=tmp_path / "p.hdf5")
    assert qp.read(str(tmp_path / "p.hdf5")).npdf == 30


def test_the_combination_refuses_fluxes_a_unit_off(combined, tmp_path, monkeypatch) -> None:
    """Fourteenth session: the combination weights the two estimators and calibrates by
    magnitude, yet a catalogue x1000 off (nJy declared uJy) was combined with flag 0. Refused
    before the template fit (the API, the CLI's and the Predict page's job); with the override
    combined and flagged."""
    run, cat = combined
    new = _new(cat, np.arange(100, 130))
    off = dataclasses.replace(new, flux=new.flux * 1000, flux_error=new.flux_error * 1000)

    def no_fit(*args, **kwargs):
        raise AssertionError("the template fit ran")

    with monkeypatch.context() as m:
        m.setattr(runs, "_templatefit", no_fit)
        with pytest.raises(CatalogError, match=r"column 'flux_\w+' \(declared uJy\) .* brighter"):
            run.predict(off, out=tmp_path / "p.fits")
        path = dz.write_catalog(off, tmp_path / "off.fits")
        folder = create_prediction_job(tmp_path / "preds", run.path, path)
        with pytest.raises(CatalogError):
            run_prediction_job(folder)
    spec = read_job(folder)
    assert spec["state"] == "failed" and "--flux-unit" in spec["message"]
    assert not (tmp_path / "p.fits").exists() and not (folder / OUTPUT).exists()
    table = run.predict(off, allow_magnitude_shift=True)
    assert (np.asarray(table["flag"]) & PzFlag.OUTSIDE_TRAINING).all()
    assert np.isfinite(np.asarray(table["zphot_tf"])).all()


@pytest.mark.parametrize(
    "options",
    [{"grid": True}, {"keep_columns": ["ra"]}, {"out": "h", "out_format": "hats"}],
    ids=["grid", "keep_columns", "hats"],
)
def test_network_only_outputs_need_network_only(combined, tmp_path, options) -> None:
    run, cat = combined
    if "out" in options:
        options = {**options, "out": tmp_path / options["out"]}
    with pytest.raises(ConfigError, match="pass network_only=True"):
        run.predict(_new(cat, [0, 1]), **options)
    assert not (tmp_path / "h").exists()


def _junk(cat: Catalog) -> Catalog:
    """10 galaxies with 19-digit ids: row 0 a NaN band, row 1 the same galaxy with that band at
    1e30, row 2 a near-zero reference flux, row 3 no finite flux, row 4 an error of 0."""
    sub = cat.select(np.arange(10))
    flux, error = sub.flux.copy(), sub.flux_error.copy()
    ref = sub.bands.index("subaru_i")
    flux[1], error[1] = flux[0], error[0]
    flux[0, 3], flux[1, 3] = np.nan, 1e30
    flux[2, ref] = 1e-3 * error[2, ref]
    flux[3] = np.nan
    error[4, 5] = 0.0
    zspec = sub.zspec.copy()
    zspec[1] = zspec[0]
    ids = np.int64(1237648720693755918) + np.arange(10, dtype=np.int64) * 7
    return Catalog(ref_id=ids, bands=sub.bands, flux=flux, flux_error=error, zspec=zspec)


def test_junk_rows_are_answered_flagged_and_never_crash(combined) -> None:
    run, cat = combined
    junk = _junk(cat)
    table = run.predict(junk)
    assert len(table) == 10
    np.testing.assert_array_equal(np.asarray(table["ref_id"], np.int64), junk.ref_id)
    flag = np.asarray(table["flag"])
    no_pz = (flag & PzFlag.NO_PZ) != 0
    assert no_pz[2] and no_pz[3]
    for name in ("zphot", "zmedian", "pit", "zphot_net"):
        assert np.isnan(np.asarray(table[name])[no_pz]).all(), name
    assert np.isnan(np.asarray(table["weights"])[no_pz]).all()
    assert np.isfinite(np.asarray(table["zphot"])[~no_pz]).all()
    assert flag[0] & PzFlag.BAND_MISSING and flag[1] & PzFlag.BAND_IMPLAUSIBLE
    assert flag[4] & PzFlag.BAND_MISSING


def test_a_band_at_1e30_counts_as_missing_in_the_template_fit(combined) -> None:
    """Regression: the template fit took the 1e30 flux the networks impute, and the combination
    followed its confident z = 0; the band is now left out of both, as a NaN band is."""
    run, cat = combined
    table = run.predict(_junk(cat))
    for name in ("zphot_tf", "chi2_tf", "zphot", "zmedian", "z_lo68", "z_hi68", "pit"):
        value = np.asarray(table[name])
        assert value[1] == pytest.approx(value[0], rel=1e-6, abs=1e-9), name


def test_a_catalogue_without_any_usable_row_is_refused(combined) -> None:
    """Regression: no galaxy with a usable reference flux left the template fit nothing to fit
    ('catalogue has no galaxies'). Such rows among others get flagged NaN rows; a catalogue of
    nothing else would be a table of NaN, refused in one line (fourteenth session), as the
    networks' path refuses it."""
    run, cat = combined
    row = _junk(cat).select([3])  # no finite flux
    junk = Catalog(
        ref_id=np.arange(3) + 10**18,
        bands=row.bands,
        flux=np.repeat(row.flux, 3, axis=0),
        flux_error=np.repeat(row.flux_error, 3, axis=0),
    )
    with pytest.raises(CatalogError, match="reference band, has no positive value in any of its 3"):
        run.predict(junk)
    good = _new(cat, [0])
    mixed = Catalog(
        ref_id=np.concatenate([junk.ref_id, good.ref_id]),
        bands=junk.bands,
        flux=np.concatenate([junk.flux, good.flux]),
        flux_error=np.concatenate([junk.flux_error, good.flux_error]),
    )
    table = run.predict(mixed)
    flag = np.asarray(table["flag"])
    assert len(table) == 4 and ((flag[:3] & PzFlag.NO_PZ) != 0).all() and not flag[3] & 1
    assert np.isnan(np.asarray(table["zphot"])[:3]).all()
    assert np.isnan(np.asarray(table["zphot_tf"])[:3]).all()
    assert np.isfinite(np.asarray(table["zphot_tf"])[3])


def test_a_galaxy_with_too_few_bands_gets_no_template_fit_numbers(combined) -> None:
    """Regression: the template fit gave a galaxy with most bands missing ordinary-looking values
    (zphot_tf, chi2_tf); now it is flagged TOO_FEW_BANDS | NO_PZ and all its products are NaN."""
    run, cat = combined
    sub = _new(cat, np.arange(4))
    ref = sub.bands.index("subaru_i")
    sub.flux[0, [b for b in range(len(sub.bands)) if b != ref][:12]] = np.nan  # 4 of 16 left
    table = run.predict(sub)
    flag = np.asarray(table["flag"])
    assert flag[0] & PzFlag.TOO_FEW_BANDS and flag[0] & PzFlag.NO_PZ
    for name in ("zphot_tf", "chi2_tf", "odds_tf", "zphot", "zphot_net"):
        assert np.isnan(np.asarray(table[name])[0]), name
    assert np.isfinite(np.asarray(table["zphot"])[1:]).all()


def test_a_galaxy_the_template_fit_gives_no_pz_gets_none_combined(combined, monkeypatch) -> None:
    """The combination pools the pair with exponents and a calibration fitted for the pair: where
    the template fit has no p(z) (NaN ``pz`` row, flag NO_PZ) the combined row is NaN and flagged,
    never the pooled NaN or a number; the other rows are unchanged."""
    run, cat = combined
    new = _new(cat, np.arange(6))
    want = run.predict(new)
    real = runs._templatefit

    def losing_row_0(*args, **kwargs) -> Table:
        tf = real(*args, **kwargs)
        tf["pz"][0] = np.nan
        tf["flag"][0] |= PzFlag.NO_PZ | PzFlag.TOO_FEW_BANDS
        return tf

    monkeypatch.setattr(runs, "_templatefit", losing_row_0)
    got = run.predict(new)
    flag = np.asarray(got["flag"])
    assert flag[0] & PzFlag.NO_PZ and flag[0] & PzFlag.TOO_FEW_BANDS
    for name in ("zphot", "zmedian", "z_lo68", "odds", "weights"):
        assert np.isnan(np.asarray(got[name])[0]).all(), name
        np.testing.assert_allclose(np.asarray(got[name])[1:], np.asarray(want[name])[1:])
    np.testing.assert_array_equal(flag[1:], np.asarray(want["flag"])[1:])


@pytest.mark.parametrize("network_only", [False, True])
def test_the_output_never_replaces_the_input_catalogue(
    combined, tmp_path, network_only: bool
) -> None:
    run, cat = combined
    path = dz.write_catalog(_new(cat, np.arange(5)), tmp_path / "in.fits")
    before = Path(path).read_bytes()
    with pytest.raises(ConfigError, match="destroy the input"):
        run.predict(path, out=path, network_only=network_only)
    assert Path(path).read_bytes() == before
    with pytest.raises(ConfigError, match="destroy the input"):
        predict_hybrid(run.path, cat.select([0]), out=run.path / HYBRID_PREDICTIONS)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{not json", "not JSON"),
        ('{"version": 1}', "hybrid.json: not a stored combination"),
        ("[1, 2]", "hybrid.json: damaged combination .*expected a JSON object"),
        ("DAMAGE_VERSION", "hybrid.json: unknown version 7"),
        ("DAMAGE_WEIGHTS", "hybrid.json: not a stored combination.*pooling weights"),
        ("DAMAGE_CALIBRATION", "hybrid.json: not a stored combination.*calibration"),
    ],
)
def test_a_damaged_hybrid_json_is_one_config_error_line(
    copied, combined, text: str, needle: str
) -> None:
    doc = json.loads((copied / HYBRID_FILE).read_text())
    if text == "DAMAGE_VERSION":
        text = json.dumps({**doc, "version": 7})
    elif text == "DAMAGE_WEIGHTS":
        text = json.dumps({**doc, "weights": {**doc["weights"], "a": "x"}})
    elif text == "DAMAGE_CALIBRATION":
        text = json.dumps({**doc, "calibration": {"full": 3}})
    (copied / HYBRID_FILE).write_text(text)
    run = dz.load_run(copied)
    new = _new(combined[1], [0, 1])
    for call in (lambda: load_hybrid(copied), run.combination_summary, lambda: run.predict(new)):
        with pytest.raises(ConfigError, match=needle) as info:
            call()
        assert "\n" not in str(info.value)


def test_a_run_without_a_combination(copied, combined) -> None:
    (copied / HYBRID_FILE).unlink()
    run = dz.load_run(copied)
    assert run.combination_summary() == {}
    with pytest.raises(ConfigError, match="deepz combine --run"):
        predict_hybrid(copied, combined[1].select([0]))
    assert "zphot_tf" not in run.predict(_new(combined[1], [0, 1])).colnames
    with pytest.raises(ConfigError, match="templates must be one of"):
        run.combine("nosuch")


def test_the_screens_unusable_bands_stay_out_of_the_template_fit_with_exposures(
    monkeypatch,
) -> None:
    """The screen's unusable (galaxy, band) cells are NaN in what the template fit sees, also for
    a catalogue with single exposures: the coadds are rebuilt first, then masked (found in
    review: rebuilding after the mask brought the junk band back from its exposures)."""
    import dataclasses

    import deepz_core as dz
    from deepz_core.catalog.features import build_features
    from deepz_core.hybrid import runs
    from deepz_core.pz.products import PzConfig

    cat = dz.simulate_catalog("paus-mock", 60, seed=3)
    assert cat.exposures is not None
    features = build_features(cat)
    usable = features.usable.copy()
    usable[0, 0] = False
    features = dataclasses.replace(features, usable=usable)
    seen = {}

    def capture(sub, cfg, **kwargs):
        seen["sub"] = sub
        return "fitted"

    monkeypatch.setattr(runs, "fit_catalog", capture)
    cfg = runs.templatefit_config("bcnz2", PzConfig(z_max=2.0))
    assert runs._templatefit(cat, features, cfg, None, 1) == "fitted"
    sub = seen["sub"]
    assert sub.exposures is None and np.isnan(sub.flux[0, 0])
    assert np.isfinite(sub.flux[1:, 0]).all() and np.isfinite(sub.flux[0, 1:]).all()


def test_a_failed_combination_leaves_the_trained_run_standing(tmp_path, monkeypatch) -> None:
    """train --templates: a combination that cannot be fitted (too few galaxies, bands the
    templates do not cover) is logged and reported, not a failed run after hours of training."""

    def refuse(*args, **kwargs):
        raise ConfigError("combination: 12 out-of-fold galaxies with a spec-z, need >= 200")

    monkeypatch.setattr("deepz_core.hybrid.runs.fit_hybrid", refuse)
    run = RunDir(tmp_path)
    out = combination_step(run, RunConfig(catalog="c.fits", templates="bcnz2"))
    assert out == {"error": "combination: 12 out-of-fold galaxies with a spec-z, need >= 200"}
    assert "warning: no combination with the template fit" in run.file("log.txt").read_text()


def test_the_combinations_columns_are_never_taken_from_a_catalogue() -> None:
    from deepz_core.inference.predict import PRODUCT_COLUMNS

    assert {"zphot_net", "odds_net", "zphot_tf", "odds_tf", "chi2_tf", "pit_raw"} <= PRODUCT_COLUMNS


def test_combined_predictions_carry_the_coordinates(combined) -> None:
    """The CLI, the API and the app's jobs all get ra/dec with the combination, as with the
    networks (found in review: only the app's jobs added them)."""
    import dataclasses

    run, cat = combined
    new = _new(cat, np.arange(20))
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(149, 151, 20), rng.uniform(1, 3, 20)
    new = dataclasses.replace(new, extra={**new.extra, "ra": ra, "dec": dec})
    table = run.predict(new)
    assert "zphot_tf" in table.colnames
    np.testing.assert_allclose(np.asarray(table["ra"]), ra)
    np.testing.assert_allclose(np.asarray(table["dec"]), dec)


def test_a_combination_calibrated_on_a_heldout_catalogue(copied) -> None:
    """Run.calibrate_on calibrates what predict uses: the combination (hybrid.json) by default,
    the networks (calibration.json) with network_only; new galaxies' intervals move, their modes
    and the training galaxies' products do not; drop_heldout_calibration undoes it exactly."""
    run = dz.load_run(copied)
    heldout = dz.simulate_catalog("paus-mock", N, BANDS, seed=6)
    heldout = dataclasses.replace(heldout, ref_id=heldout.ref_id + 2 * NEW_IDS, exposures=None)
    new = _new(dz.simulate_catalog("paus-mock", 60, BANDS, seed=7), np.arange(60))
    networks = (copied / "calibration.json").read_bytes()
    before, train_before = run.predict(new), run.combined_predictions()
    summary = run.calibrate_on(heldout)
    assert summary["n"] >= 200 and set(summary) >= {"pit_ks_before", "coverage68_after"}
    hybrid = load_hybrid(copied)
    assert hybrid.calibration.heldout is not None
    # its bins break where the exponents change (none straddles a jump of the pooled p(z))
    assert summary["breaks"] == [float(b) for b in hybrid.weights.breaks()]
    assert (copied / "calibration.json").read_bytes() == networks  # the networks' untouched
    after = run.predict(new)
    np.testing.assert_array_equal(after["zphot"], before["zphot"])
    assert not np.allclose(after["z_hi68"], before["z_hi68"], equal_nan=True)
    stored = run.predict(run.config.catalog)  # the training galaxies: out of fold, as stored
    oof = np.asarray(train_before["out_of_fold"], bool)
    np.testing.assert_allclose(stored["z_hi68"][oof], train_before["z_hi68"][oof], atol=1e-6)
    run.drop_heldout_calibration()
    assert load_hybrid(copied).calibration.heldout is None
    np.testing.assert_array_equal(run.predict(new)["z_hi68"], before["z_hi68"])
    networks_stage = run.calibrate_on(heldout, network_only=True)  # the networks' instead
    assert networks_stage["breaks"] == []
    assert (copied / "calibration.json").read_bytes() != networks
    assert load_hybrid(copied).calibration.heldout is None


def test_a_cancel_stops_the_combination_inside_its_template_fit(copied, monkeypatch) -> None:
    """A cancel during training's combination step (the run's cancel file) stops the template fit
    after its first chunk instead of after the whole catalogue; nothing of the combination is
    written and the run is cancelled, its networks and predictions kept for resume."""
    for name in (HYBRID_FILE, HYBRID_PREDICTIONS):
        (copied / name).unlink()
    monkeypatch.setattr(loop, "CANCEL_POLL_S", 0.0)  # look at every chunk (a smoke run is fast)
    run = RunDir(copied)
    run.file("cancel").touch()
    with pytest.raises(loop.Cancelled, match="template fit"):
        combination_step(run, load_run_config(run))
    assert not (copied / HYBRID_FILE).exists() and not (copied / HYBRID_PREDICTIONS).exists()
    assert (copied / "predictions.fits").exists() and (copied / "model.safetensors").exists()


def test_a_cancel_stops_a_combined_prediction_job_inside_its_template_fit(
    combined, tmp_path, monkeypatch
) -> None:
    """A prediction job with the combination (the Predict page's) looks for its cancel file
    between the template fit's chunks, not only between its own chunks of up to 25,000 rows
    (~2 minutes of template fit): a cancel that arrives once a chunk has started stops it there;
    nothing is written."""
    run, cat = combined
    path = dz.write_catalog(_new(cat, np.arange(300)), tmp_path / "new.fits")
    folder = create_prediction_job(tmp_path / "preds", run.path, path)
    checks = []

    def cancel_once_started(job: Path, when: str) -> None:
        check_job_cancel(job, when)
        checks.append(when)
        (job / "cancel").touch()  # the user cancels right after the chunk started

    monkeypatch.setattr("deepz_core.jobs.prediction.check_job_cancel", cancel_once_started)
    run_prediction_job(folder)
    spec = read_job(folder)
    assert spec["state"] == "cancelled" and spec["message"] == "cancelled during the template fit"
    assert checks == ["after 0 of 300 galaxies"] and not (folder / OUTPUT).exists()


def test_training_combines_the_catalogue_it_trained_on_without_reading_it_again(
    combined, copied, monkeypatch
) -> None:
    """train --templates hands its catalogue to the combination: the galaxies the networks trained
    on, even if the file changed since, and no second read of a large catalogue."""

    def no_reading(*args, **kwargs):
        raise AssertionError("the catalogue was read again")

    monkeypatch.setattr("deepz_core.hybrid.runs.read_catalog", no_reading)
    run = RunDir(copied)
    overall = combination_step(run, load_run_config(run), combined[1])
    assert set(overall) == set(ESTIMATORS)
    assert len(Table.read(copied / HYBRID_PREDICTIONS)) == N


def test_the_combinations_time_model_is_within_a_quarter_of_its_measurements() -> None:
    """Eleventh session's app review: the Train form said ~1 min for a combination that took
    4.6 min: it divided by the template fit's 225 galaxies/s (another machine, a 1,201-point
    grid) and left out the steps around it. Measured on 3,000 galaxies (docs/benchmarks.md)."""
    from deepz_core.hybrid.runs import combination_seconds
    from deepz_core.pz.products import PzConfig
    from deepz_core.templatefit.config import TemplateFitConfig
    from deepz_core.templatefit.fit import fit_rate, fit_seconds

    measured = {(2.0, "bcnz2"): 58.0, (2.0, "kcorrect"): 30.0, (3.0, "bcnz2"): 108.0}
    for (z_max, templates), seconds in measured.items():
        model = combination_seconds(3000, PzConfig(z_max=z_max), templates)
        assert model == pytest.approx(seconds, rel=0.25), (z_max, templates)
    cfg = TemplateFitConfig()
    assert fit_seconds(0, cfg) < fit_seconds(1000, cfg) < fit_seconds(2000, cfg)
    assert fit_rate(cfg) == pytest.approx(1000 / (fit_seconds(1000, cfg) - fit_seconds(0, cfg)))
    with pytest.raises(ConfigError, match="templates must be one of"):
        combination_seconds(10, PzConfig(), "bc03")


def _without_band(cat: Catalog, band: str, folder: Path) -> dict[str, Path]:
    """The galaxies ``cat`` written without band ``band``'s columns ('absent') and with them NaN
    in every row ('nan')."""
    keep = [j for j, b in enumerate(cat.bands) if b != band]
    absent = dataclasses.replace(
        cat,
        bands=tuple(cat.bands[j] for j in keep),
        flux=cat.flux[:, keep],
        flux_error=cat.flux_error[:, keep],
    )
    nan = dataclasses.replace(cat, flux=cat.flux.copy())
    nan.flux[:, cat.bands.index(band)] = np.nan
    return {
        "absent": dz.write_catalog(absent, folder / "absent.fits"),
        "nan": dz.write_catalog(nan, folder / "nan.fits", measured_bands=False),
    }


def test_a_run_band_absent_or_without_values_is_imputed_and_left_out_of_the_fit(
    combined, tmp_path, caplog
) -> None:
    """Fourteenth session: a combined prediction of a catalogue without band NB455, or with it NaN
    in every row, fitted the template fit with the band as a NaN column: its chi2 and p(z) off
    by float rounding (chi2_tf up to 0.016, odds_tf 8e-4) from the fit without the band, and the
    share of usable bands counted the band. Now the networks impute it (one warning, every row
    BAND_MISSING) and the template fit is that of the catalogue without it, whether the band is
    absent or without values."""
    from deepz_core.hybrid.runs import templatefit_config
    from deepz_core.templatefit.fit import fit_catalog
    from deepz_core.training.config import run_pz_config

    run, cat = combined
    files = _without_band(_new(cat, np.arange(30)), "NB455", tmp_path)
    notes = {
        "absent": "band NB455 is not in this catalogue (no flux column): imputed for every "
        "galaxy, flagged BAND_MISSING",
        "nan": "band NB455 has no values in this catalogue: imputed for every galaxy, flagged "
        "BAND_MISSING",
    }
    got = {}
    for name, path in files.items():
        caplog.clear()
        with caplog.at_level("WARNING", logger="deepz"):
            got[name] = run.predict(str(path))
        assert [r.getMessage() for r in caplog.records] == [notes[name]]
        assert (np.asarray(got[name]["flag"]) & PzFlag.BAND_MISSING).all()
        assert np.isfinite(np.asarray(got[name]["zphot"])).all()
    for name in got["absent"].colnames:
        np.testing.assert_array_equal(got["nan"][name], got["absent"][name], err_msg=name)
    net = run.predict(str(files["absent"]), network_only=True)  # the networks impute it
    np.testing.assert_allclose(got["absent"]["zphot_net"], net["zphot"], atol=1e-6)
    hybrid = load_hybrid(run.path)  # the template fit leaves it out
    dropped = read_catalog(files["absent"])
    cfg = templatefit_config(hybrid.template_set, run_pz_config(RunDir(run.path)))
    tf = fit_catalog(dropped, cfg, zero_points=hybrid.zero_points_of(dropped.bands), grid=True)
    for name in ("zphot", "chi2", "odds"):
        np.testing.assert_array_equal(got["absent"][f"{name}_tf"], tf[name], err_msg=name)


def test_a_combined_prediction_without_the_reference_band_is_refused(combined, tmp_path) -> None:
    """No galaxy could get a p(z): refused before any work, naming the band, nothing written."""
    run, cat = combined
    files = _without_band(_new(cat, np.arange(5)), "subaru_i", tmp_path)
    out = tmp_path / "p.fits"
    with pytest.raises(ConfigError, match="its reference band 'subaru_i' among them"):
        run.predict(str(files["absent"]), out=out)
    assert not out.exists()


@pytest.mark.parametrize("network_only", [False, True])
def test_a_prediction_job_in_chunks_warns_about_a_band_once(
    combined, tmp_path, monkeypatch, caplog, network_only: bool
) -> None:
    """Fourteenth session: the Predict page's job predicts in chunks (1,000 rows at least) and
    warned about band NB455 once per chunk, 'in this catalogue' each time, with the combination
    as with the networks alone. Now once per job, with the predictions of the whole file."""
    from deepz_core.jobs import prediction

    run, cat = combined
    files = _without_band(_new(cat, np.arange(30)), "NB455", tmp_path)
    monkeypatch.setattr(prediction, "MIN_CHUNK", 10)  # 3 chunks
    want = run.predict(str(files["nan"]), network_only=network_only)
    folder = create_prediction_job(
        tmp_path / "preds", run.path, files["nan"], None, "cpu", network_only
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="deepz"):
        assert run_prediction_job(folder) == 30
    assert [r.getMessage() for r in caplog.records] == [
        "band NB455 has no values in this catalogue: imputed for every galaxy, flagged BAND_MISSING"
    ]
    got = Table.read(folder / OUTPUT)
    np.testing.assert_array_equal(got["flag"], want["flag"])
    np.testing.assert_array_equal(got["zphot"], want["zphot"])
    for name in ("zmedian", "odds"):  # the template fit's rounding follows its batch of galaxies
        np.testing.assert_allclose(got[name], want[name], atol=1e-3, err_msg=name)


def test_a_combined_prediction_job_names_a_spec_z_code_once(
    combined, tmp_path, monkeypatch, caplog
) -> None:
    """Found by the bad-cells survey (fourteenth session): the Predict page's job with the
    combination named a 'no redshift' code (zspec = 99, read as unknown) once per chunk that had
    one, the networks-only job once per job. Now once per job with either estimator."""
    from deepz_core.jobs import prediction

    run, cat = combined
    new = _new(cat, np.arange(30))
    zspec = np.array(new.zspec, dtype=np.float64)
    zspec[[2, 15, 27]] = 99.0  # one code in each of the 3 chunks
    path = tmp_path / "codes.fits"
    table = Table(dataclasses.replace(new, zspec=zspec).columns())
    table.write(path)
    monkeypatch.setattr(prediction, "MIN_CHUNK", 10)  # 3 chunks
    for network_only in (True, False):
        folder = create_prediction_job(
            tmp_path / f"preds{network_only}", run.path, path, None, "cpu", network_only
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="deepz"):
            assert run_prediction_job(folder) == 30
        named = [r.getMessage() for r in caplog.records if "'zspec'" in r.getMessage()]
        assert len(named) == 1, (network_only, named)
        assert np.isnan(np.asarray(Table.read(folder / OUTPUT)["zspec"])[[2, 15, 27]]).all()


def test_a_prediction_job_gives_each_warning_of_its_reads_once(
    combined, tmp_path, monkeypatch, caplog
) -> None:
    """Fourteenth session: the Predict page's job read its catalogue in the preflight and again
    chunk by chunk, and gave a warning of each read every time (a magnitude catalogue without
    limits: its non-detections named once per read and chunk), where ``deepz predict`` gives it
    once, and the page showed none of them. Now the job holds repeats back as ``deepz predict``
    does and keeps its warnings in ``job.json`` (``notes``), which the Predict page shows."""
    from deepz_core.jobs import prediction

    run, cat = combined
    new = _new(cat, np.arange(30))
    table = Table({"ref_id": new.ref_id})
    for j, band in enumerate(new.bands):
        flux, error = new.flux[:, j], new.flux_error[:, j]
        detected = flux > error
        with np.errstate(divide="ignore", invalid="ignore"):
            table[f"mag_{band}"] = np.where(detected, 23.9 - 2.5 * np.log10(flux), 99.0)
            table[f"magerr_{band}"] = np.where(detected, 1.0857 * error / flux, 99.0)
    path = tmp_path / "mags.csv"
    table.write(path)
    monkeypatch.setattr(prediction, "MIN_CHUNK", 10)  # 3 chunks
    folder = create_prediction_job(tmp_path / "preds", run.path, path, None, "cpu", True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="deepz"):
        assert run_prediction_job(folder) == 30
    named = [
        r.getMessage() for r in caplog.records if "have no limiting magnitude" in r.getMessage()
    ]
    assert len(named) == 1, named
    # kept in the job for the Predict page, the catalogue named as uploaded, not by its path
    notes = json.loads((folder / "job.json").read_text())["notes"]
    kept = [n for n in notes if "have no limiting magnitude" in n]
    assert len(kept) == 1 and kept[0].startswith("mags.csv: non-detections"), notes
