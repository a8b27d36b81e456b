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
    fit_run_calibration,
    load_calibration,
    save_calibration,
)
from deepz_core.jobs.run import Run
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.pz.calibration import PoolScale
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
