"""Raw against calibrated predictions: coverage per magnitude bin and the comparison report, on
tables whose answers are known (Gaussian p(z) of known width)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from scipy import stats

from deepz_core.errors import CatalogError
from deepz_core.evaluation.calibration import compare_calibration, coverage_by_mag
from deepz_core.pz.products import PzConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _table(width: float, seed: int, n: int = 3000) -> Table:
    """Gaussian p(z) of width ``width`` around mu, true z ~ N(mu, 0.02); bright half and faint half."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.3, 1.0, n)
    zs = mu + 0.02 * rng.standard_normal(n)
    t = Table()
    t["ref_id"] = np.arange(n)
    t["zphot"] = mu
    t["odds"] = np.zeros(n)
    t["zspec"] = zs
    t["pit"] = stats.norm.cdf(zs, mu, width)
    t["mag"] = np.where(np.arange(n) % 2 == 0, 19.2, 21.7)
    t["weights"] = np.ones((n, 1), np.float32)
    t["means"] = mu[:, None].astype(np.float32)
    t["stds"] = np.full((n, 1), width, np.float32)
    return t


def test_coverage_by_mag_counts_the_pits_inside_the_central_interval() -> None:
    pit = np.array([0.1, 0.2, 0.5, 0.9, 0.3, np.nan])
    mag = np.array([18.1, 18.2, 18.3, 18.4, 22.5, 18.0])
    rows = coverage_by_mag(pit, mag, np.array([18.0, 20.0, 22.5]))
    noise = np.sqrt(0.6827 * 0.3173 / 4)
    assert rows[0] == {"lo": 18.0, "hi": 20.0, "n": 4, "coverage68": 0.5, "noise68": noise}
    assert rows[1]["n"] == 1 and rows[1]["coverage68"] == 1.0  # the last bin is closed
    with pytest.raises(CatalogError, match="shape"):
        coverage_by_mag(pit, mag[:2])


def test_compare_calibration_of_a_too_broad_and_a_right_p_z() -> None:
    raw, cal = _table(0.04, seed=1), _table(0.02, seed=1)
    out = compare_calibration(raw, cal, PzConfig(z_min=0.0, z_max=1.5, dz=0.001))
    assert out["sigma68_ratio"] == 1.0
    assert out["raw"]["coverage68"] == pytest.approx(0.954, abs=0.02)
    assert out["calibrated"]["coverage68"] == pytest.approx(0.683, abs=0.02)
    assert out["calibrated"]["pit_ks"] < 0.03 < out["raw"]["pit_ks"]
    assert out["calibrated"]["cde_loss"] < out["raw"]["cde_loss"]  # the right width scores better
    filled = [r for r in out["calibrated"]["per_magnitude"] if r["n"]]
    assert [r["n"] for r in filled] == [1500, 1500]
    with pytest.raises(CatalogError, match="same galaxies"):
        compare_calibration(raw, cal[:10])
