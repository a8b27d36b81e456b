"""A run's p(z) calibration: cross-fitted folds, the before/after summary, calibration.json, and a
trained run that applies it (or not) at predict time."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch
from scipy import stats

from deepz_core.catalog.io import write_catalog
from deepz_core.errors import ConfigError
from deepz_core.inference.calibrate import (
    CALIBRATION_FILE,
    calibration_fold,
    fit_heldout_stage,
    fit_run_calibration,
    load_calibration,
    save_calibration,
)
from deepz_core.jobs.run import Run
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.pz.calibration import PoolScale, pit_coverage
from deepz_core.rundir import RunDir
from tests.synthetic import TINY_MODEL, synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")


def _broad_population(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PITs (N,) of p(z) twice too broad, magnitudes (N,) and ref_ids (N,)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)  # (z - mu) / sigma_true
    return stats.norm.cdf(x / 2.0), rng.uniform(18.0, 22.5, n), np.arange(1, n + 1) * 7


def test_folds_are_fixed_and_balanced() -> None:
    ids = np.arange(10_000) * 3 + 11
    fold = calibration_fold(ids)
    np.testing.assert_array_equal(fold, calibration_fold(ids.copy()))
    assert set(np.unique(fold)) == {0, 1, 2, 3, 4}
    np.testing.assert_allclose(np.bincount(fold) / len(ids), 0.2, atol=0.02)


def test_cross_fitted_summary_of_an_over_broad_population(tmp_path) -> None:
    pit, mag, ids = _broad_population(6000, seed=1)
    cal = fit_run_calibration(pit, mag, ids)
    s = cal.summary
    assert s["n"] == 6000
    assert s["pit_ks_before"] > 0.1 and s["pit_ks_after"] < 0.03
    assert s["coverage68_before"] == pytest.approx(stats.norm.cdf(2) * 2 - 1, abs=0.02)  # 0.95
    assert s["coverage68_after"] == pytest.approx(0.6827, abs=0.02)
    assert [r["lo"] for r in s["per_magnitude"]][:2] == [18.0, 18.5]  # bins follow the data
    filled = [r for r in s["per_magnitude"] if r["n"] > 500]
    assert all(abs(r["coverage68_after"] - 0.6827) < 0.04 for r in filled)
    # JSON, no NaN literals (empty bins are null), read back equal
    path = save_calibration(RunDir(tmp_path), cal)
    assert path.name == CALIBRATION_FILE and "NaN" not in path.read_text()
    back = load_calibration(tmp_path)
    np.testing.assert_array_equal(back.full.x, cal.full.x)
    assert len(back.folds) == len(cal.folds) == 5


def test_training_galaxies_get_the_calibration_fitted_without_them() -> None:
    pit, mag, ids = _broad_population(3000, seed=2)
    cal = fit_run_calibration(pit, mag, ids)
    training = np.arange(3000) % 2 == 0
    x = cal.transform(mag, ids, training).x.numpy()
    fold = calibration_fold(ids)
    for i in (0, 1, 2, 3):
        own = cal.folds[fold[i]] if training[i] else cal.full
        np.testing.assert_allclose(x[i], own.transform(mag[i : i + 1]).x[0].numpy())


def test_too_few_galaxies_and_damaged_files(tmp_path) -> None:
    pit, mag, ids = _broad_population(150, seed=3)
    with pytest.raises(ConfigError, match="150"):
        fit_run_calibration(pit, mag, ids)
    assert load_calibration(tmp_path) is None
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="JSON"):
        load_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"full": {}}))
    with pytest.raises(ConfigError, match="calibration"):
        load_calibration(tmp_path)


TRAIN = dict(schedule=((3, 1e-3),), batch_size=50, folds=2, device="cpu", seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Run, Run, str]:
    """The same tiny run on 300 synthetic galaxies with and without calibration."""
    folder = tmp_path_factory.mktemp("cal")
    path = str(folder / "cat.fits")
    write_catalog(partial(synthetic_catalog, missing_zspec=0.1)(300, 5), path)
    runs = []
    for name, calibrate in (("on", True), ("off", False)):
        config = run_config(
            path, pretrain="none", model=TINY_MODEL, train=TRAIN, calibrate=calibrate
        )
        run = create_run(folder / name, config)
        execute_run(run)
        runs.append(Run(run.path))
    return runs[0], runs[1], path


def test_a_run_stores_and_applies_its_calibration(trained) -> None:
    on, off, path = trained
    assert (on.path / CALIBRATION_FILE).exists() and not (off.path / CALIBRATION_FILE).exists()
    assert on.calibration_summary()["n"] >= 200 and off.calibration_summary() == {}
    stored = on.predictions()
    assert "pit_raw" in stored.colnames and "pit_raw" not in off.predictions().colnames
    cal, raw = on.predict(path), on.predict(path, calibrate=False)
    assert "pit_raw" in cal.colnames and "pit_raw" not in raw.colnames
    # the training galaxies' predictions are the stored (cross-fitted) ones; the mode is untouched
    for col in ("zphot", "z_lo68", "z_hi68", "pit"):
        np.testing.assert_allclose(cal[col], stored[col], rtol=1e-5, atol=1e-6, err_msg=col)
    np.testing.assert_array_equal(cal["zphot"], raw["zphot"])
    np.testing.assert_allclose(cal["pit_raw"], raw["pit"], rtol=1e-6, atol=1e-9)
    # every product of the calibrated p(z) is consistent: zmedian inside the 68% interval
    ok = np.isfinite(np.asarray(cal["zmedian"]))
    assert np.all(
        (cal["z_lo68"][ok] <= cal["zmedian"][ok]) & (cal["zmedian"][ok] <= cal["z_hi68"][ok])
    )


def test_new_galaxies_get_the_pool_scale(tmp_path) -> None:
    pit, mag, ids = _broad_population(3000, seed=4)
    pool = PoolScale(np.array([19.0, 22.0]), np.array([1.2, 1.4]), 500)
    cal = fit_run_calibration(pit, mag, ids).with_pool(pool)
    assert cal.summary["n_pool"] == 500
    training = np.arange(3000) % 2 == 0
    tr = cal.transform(mag, ids, training)
    y = tr.y.numpy()
    np.testing.assert_allclose(y[training], np.broadcast_to(cal.full.y, y[training].shape))
    np.testing.assert_allclose(y[~training], pool.at(mag[~training])[:, None] * cal.full.y)
    # lambda h: the calibrated probit of a new galaxy is lambda times that of the full calibration
    u = torch.full((3000, 1), 0.8, dtype=torch.float64)
    plain = cal.full.transform(mag).forward(u)
    got = tr.forward(u)[~training, 0].numpy()
    want = stats.norm.cdf(pool.at(mag[~training]) * stats.norm.ppf(plain[~training, 0].numpy()))
    np.testing.assert_allclose(got, want, rtol=1e-3)
    save_calibration(RunDir(tmp_path), cal)
    np.testing.assert_array_equal(load_calibration(tmp_path).pool.scale, pool.scale)


def _narrow_new_galaxies(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw PITs (N,) of new galaxies whose p(z) are 1.2x too broad (the out-of-fold ones of
    ``_broad_population`` 2x: a calibration fitted on those over-narrows these), magnitudes and
    ref_ids (N,) other than the training galaxies'."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return stats.norm.cdf(x / 1.2), rng.uniform(18.0, 22.5, n), 10**6 + np.arange(n) * 11


def test_a_heldout_stage_calibrates_new_galaxies_the_out_of_fold_calibration_misses(
    tmp_path,
) -> None:
    """Known answer: new galaxies 1.2x too broad under a calibration fitted on 2x too broad
    out-of-fold ones; the held-out stage fitted on 4,000 of them takes 4,000 others to 68 +- 2%
    inside their 68% interval (from ~53%), per magnitude bin too; training galaxies unchanged."""
    cal = fit_run_calibration(*_broad_population(6000, seed=5))
    raw, mag, ids = _narrow_new_galaxies(8000, seed=6)
    fit, test = slice(0, 4000), slice(4000, 8000)
    new = np.zeros(4000, bool)

    def pits(c, s: slice) -> np.ndarray:
        u = torch.as_tensor(raw[s])[:, None]
        return c.transform(mag[s], ids[s], new).forward(u)[:, 0].numpy()

    first = pits(cal, fit)
    held = fit_heldout_stage(cal, first, mag[fit], ids[fit])
    before, after = pits(cal, test), pits(held, test)
    assert pit_coverage(before) < 0.58
    assert pit_coverage(after) == pytest.approx(0.6827, abs=0.02)
    assert stats.kstest(after, "uniform").statistic < 0.03
    for lo in (18.0, 19.5, 21.0):
        s = (mag[test] >= lo) & (mag[test] < lo + 1.5)
        assert pit_coverage(after[s]) == pytest.approx(0.6827, abs=0.035)
    s = held.summary["heldout"]  # cross-fitted on the 4,000: each by a stage fitted without it
    assert s["n"] == 4000 and s["coverage68_after"] == pytest.approx(0.6827, abs=0.02)
    assert s["coverage68_before"] < 0.58
    # its precision: 4 quantile bins of 1,000, binomial noise sqrt(0.6827 x 0.3173 / 1000)
    assert (s["bins"], s["per_bin"]) == (4, 1000)
    assert s["precision68"] == pytest.approx(0.01471, abs=1e-5) and not s["precise"]
    # training galaxies keep the out-of-fold calibration; without_heldout undoes the stage
    train = np.ones(4000, bool)
    u = torch.as_tensor(raw[test])[:, None]
    np.testing.assert_array_equal(
        held.transform(mag[test], ids[test], train).forward(u).numpy(),
        cal.transform(mag[test], ids[test], train).forward(u).numpy(),
    )
    np.testing.assert_array_equal(pits(held.without_heldout(), test), before)
    # stored and read back; a new pool scale (retraining) drops the stage
    save_calibration(RunDir(tmp_path), held)
    back = load_calibration(tmp_path)
    np.testing.assert_array_equal(back.heldout.x, held.heldout.x)
    assert "heldout" in back.summary
    pool = PoolScale(np.array([20.0]), np.array([1.1]), 300)
    assert back.with_pool(pool).heldout is None and "heldout" not in back.with_pool(pool).summary


def test_a_run_calibrated_on_a_heldout_catalogue(trained, tmp_path, capsys) -> None:
    """Run.calibrate_on / `deepz calibrate`: the stage is stored and applied to new galaxies at
    once (no stale predictor), the training galaxies keep their out-of-fold predictions, the mode
    never moves, --remove restores the predictions exactly; too few held-out galaxies and a
    catalogue of training galaxies are refused, naming the count."""
    import shutil

    from deepz_core.cli.main import main as cli

    on, _, train_path = trained
    shutil.copytree(on.path, tmp_path / "run")
    run = Run(tmp_path / "run")
    heldout = tmp_path / "heldout.fits"
    write_catalog(synthetic_catalog(400, 9, first_id=5001), heldout)
    new_before, train_before = run.predict(str(heldout)), run.predict(train_path)
    summary = run.calibrate_on(str(heldout))
    assert summary["n"] >= 200 and 0 <= summary["coverage68_after"] <= 1
    assert load_calibration(run.path).heldout is not None
    assert load_calibration(run.path).summary["heldout"]["catalog"] == str(heldout)
    new_after, train_after = run.predict(str(heldout)), run.predict(train_path)
    np.testing.assert_array_equal(new_after["zphot"], new_before["zphot"])
    assert not np.allclose(new_after["z_hi68"], new_before["z_hi68"], equal_nan=True)
    oof = np.asarray(train_before["out_of_fold"], bool)  # the 10% without a spec-z are new
    assert 0 < oof.sum() < len(oof)
    for col in ("z_lo68", "z_hi68", "pit"):
        np.testing.assert_array_equal(train_after[col][oof], train_before[col][oof], err_msg=col)
    capsys.readouterr()
    assert cli(["calibrate", "--run", str(run.path), "--remove"]) == 0
    assert json.loads(capsys.readouterr().out)["heldout_stage"] == "removed"
    removed = run.predict(str(heldout))
    np.testing.assert_array_equal(removed["z_hi68"], new_before["z_hi68"])
    assert not run.drop_heldout_calibration()  # nothing left to remove: says so
    capsys.readouterr()
    assert cli(["calibrate", "--run", str(run.path), "--catalog", str(heldout)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[0])["n"] == summary["n"] and out[1].startswith("iAB ")
    assert out[-1].startswith("The stage has 1 magnitude bin of ~") and "larger held-out" in out[-1]
    with pytest.raises(ConfigError, match=r"has 0 unflagged galaxies with a spec-z"):
        run.calibrate_on(train_path)  # every galaxy out of fold: none held out
    few = tmp_path / "few.fits"
    write_catalog(synthetic_catalog(120, 10, first_id=9001), few)
    with pytest.raises(ConfigError, match=r"has 1\d\d unflagged .* need >= 200"):
        run.calibrate_on(str(few))


def test_stage_precision_says_when_a_stage_is_precise_enough() -> None:
    """Known answer: 12 bins of 2,500 galaxies (noise 0.0093) are precise enough, 5 of 1,000 not."""
    from deepz_core.inference.calibrate import stage_precision
    from deepz_core.pz.calibration import PitCalibration

    knots = np.linspace(-2.0, 2.0, 5) * np.linspace(0.8, 1.3, 12)[:, None]  # 12 different bins
    big = PitCalibration(np.linspace(17.2, 22.3, 12), knots, np.linspace(-2.0, 2.0, 5), 30_000)
    assert stage_precision(big) == {
        "bins": 12,
        "per_bin": 2500,
        "precision68": pytest.approx(0.0093085, abs=1e-6),
        "precise": True,
    }
    small = PitCalibration(np.linspace(18.0, 22.0, 5), knots[:5], np.linspace(-2.0, 2.0, 5), 5000)
    assert stage_precision(small)["per_bin"] == 1000 and not stage_precision(small)["precise"]


def test_stage_precision_note_advises_a_larger_catalogue_only_when_needed() -> None:
    """One sentence for the CLI and the Results page: the bins, their size and the noise in
    points; the advice to calibrate on more held-out spec-z only when the stage is not precise."""
    from deepz_core.inference.calibrate import stage_precision_note

    precise = {"bins": 12, "per_bin": 2500, "precision68": 0.0093085, "precise": True}
    assert stage_precision_note(precise) == (
        "The stage has 12 magnitude bins of ~2,500 galaxies: it sets new galaxies' 68% coverage "
        "to within +-0.9 points by chance alone."
    )
    rough = {"bins": 1, "per_bin": 400, "precision68": 0.0233, "precise": False}
    note = stage_precision_note(rough)
    assert note.startswith("The stage has 1 magnitude bin of ~400 galaxies:")
    assert "+-2.3 points" in note and "larger held-out catalogue" in note


def test_a_heldout_catalogue_with_junk_rows(trained, tmp_path) -> None:
    """Junk in the held-out catalogue (a NaN band, 1e30, a near-zero reference flux, 19-digit
    ids) is flagged by the screen and left out of the stage's fit, never a crash or a NaN."""
    import dataclasses
    import shutil

    from tests.synthetic import with_survey_ids

    on, _, _ = trained
    shutil.copytree(on.path, tmp_path / "run")
    run = Run(tmp_path / "run")
    cat = with_survey_ids(synthetic_catalog(400, 11, exposures=False, first_id=7001))
    flux = cat.flux.copy()
    flux[0, 2], flux[1, 3], flux[2, :] = np.nan, 1e30, 1e-9
    cat = dataclasses.replace(cat, flux=flux)
    raw = run.predict(cat, calibrate=False)
    flagged = np.asarray(raw["flag"]) != 0
    assert flagged[:3].any()
    summary = run.calibrate_on(cat)
    usable = ~flagged & np.isfinite(np.asarray(raw["zspec"], float))
    assert summary["n"] == int(usable.sum()) and np.isfinite(summary["pit_ks_after"])
    after = run.predict(cat)
    ok = np.isfinite(np.asarray(after["zphot"], float))
    assert np.isfinite(np.asarray(after["z_hi68"], float)[ok]).all()
