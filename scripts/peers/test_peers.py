"""Checks of the peer-benchmark helpers (not part of ``make test``: run them explicitly).

    .venv/bin/python -m pytest scripts/peers/test_peers.py -q

The comparisons with deepz_core are skipped when its modules cannot be imported (they are the
reference the peers' metrics must reproduce, issue 23 sec. 4).
"""

from __future__ import annotations

from pathlib import Path

import mlz_sdss
import numpy as np
import pytest
import pzmetrics
from astropy.io import fits
from catalog_fits import FitsCatalog, read_catalog, subset, write_catalog
from photometry import POGSON_A, asinh_mag, colour_features, reference_band, softening
from split import split_rows, write_split


def _dz_sample(seed: int = 3, n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """zphot, zspec (n,): Gaussian core (0.01) plus 5% wide outliers, fixed seed."""
    rng = np.random.default_rng(seed)
    zs = rng.uniform(0.01, 1.5, n)
    d = rng.normal(0.0, 0.01, n)
    wide = rng.random(n) < 0.05
    d[wide] = rng.normal(0.0, 0.3, wide.sum())
    return zs + d * (1 + zs), zs


def test_point_metrics_match_deepz() -> None:
    metrics = pytest.importorskip("deepz_core.pz.metrics")
    zp, zs = _dz_sample()
    mine = pzmetrics.summary(zp, zs)
    theirs = metrics.point_metrics(zp, zs)
    d = metrics.dz(zp, zs)
    assert mine["n"] == theirs["n"] == zs.size
    for key in ("sigma68", "nmad", "bias"):
        assert mine[key] == pytest.approx(theirs[key], rel=1e-12, abs=1e-15)
    assert mine["outlier_strict"] == pytest.approx(theirs["outlier_fraction"], abs=0)
    assert mine["outlier_catastrophic"] == pytest.approx(metrics.outlier_fraction(d, 0.15), abs=0)
    assert 0.009 < mine["sigma68"] < 0.012  # the Gaussian core's 0.01, widened by the outliers


def test_pit_ks_matches_deepz() -> None:
    metrics = pytest.importorskip("deepz_core.pz.metrics")
    pit = np.random.default_rng(4).beta(1.3, 1.0, 3000)
    assert pzmetrics.pit_ks(pit) == pytest.approx(metrics.pit_ks(pit).statistic, rel=1e-12)
    assert pzmetrics.pit_ks(np.random.default_rng(5).random(20000)) < 0.015  # uniform: small


def test_summary_counts_failures_and_skips_unknown_zspec() -> None:
    zp = np.array([0.1, np.nan, 0.3, 0.5])
    zs = np.array([0.1, 0.2, np.nan, 0.52])
    out = pzmetrics.summary(zp, zs)
    assert (out["n"], out["n_failed"], out["pit_ks"]) == (2, 1, None)
    assert out["outlier_strict"] == 0.0


def test_asinh_magnitude_limits() -> None:
    b = np.array([0.1])
    flux = np.array([[1e4], [0.0], [-0.5]])
    mag, err = asinh_mag(flux, np.full_like(flux, 0.1), b, 23.9)
    assert mag[0, 0] == pytest.approx(23.9 - 2.5 * np.log10(1e4), abs=1e-9)  # Pogson for f >> b
    assert np.all(np.isfinite(mag)) and mag[2, 0] > mag[1, 0] > mag[0, 0]
    assert err[1, 0] == pytest.approx(POGSON_A * 0.1 / 0.2)  # sigma_m = a sigma_f / 2b at f = 0


def test_asinh_error_is_the_derivative() -> None:
    b, f, h = np.array([0.3]), np.array([[0.7]]), 1e-6
    up, _ = asinh_mag(f + h, np.zeros_like(f), b, 0.0)
    down, _ = asinh_mag(f - h, np.zeros_like(f), b, 0.0)
    _, err = asinh_mag(f, np.ones_like(f), b, 0.0)
    assert err[0, 0] == pytest.approx(abs(up - down)[0, 0] / (2 * h), rel=1e-6)


def test_softening_and_features() -> None:
    err = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert softening(err) == pytest.approx(np.sqrt(POGSON_A) * np.array([3.0, 4.0]))
    mag = np.array([[20.0, 19.5, 19.0]])
    assert colour_features(mag, 2).tolist() == [[19.0, 0.5, 0.5]]


@pytest.mark.parametrize(
    "bands", [["sdss_u", "sdss_g", "sdss_i"], ["NB455", "subaru_r", "subaru_i"], ["lsst_i", "x_i"]]
)
def test_reference_band_matches_deepz(bands: list[str]) -> None:
    features = pytest.importorskip("deepz_core.catalog.features")
    assert reference_band(bands) == features.resolve_ref_band(bands)


def test_sdss_asinh_inversion_round_trip() -> None:
    mag = np.array([14.0, 17.5, 21.0, 24.0])
    flux, _ = mlz_sdss.sdss_flux(mag, np.full(4, 0.05), "u", ab=False)
    b = mlz_sdss.SOFTENING["u"]
    back = -POGSON_A * (np.arcsinh(flux / mlz_sdss.F0_UJY / (2 * b)) + np.log(b))
    assert back == pytest.approx(mag, abs=1e-9)
    assert mlz_sdss.FLUXZP - 2.5 * np.log10(flux[0]) == pytest.approx(14.0, abs=1e-6)


def _catalog(n: int = 50) -> FitsCatalog:
    """A small deepz catalogue with 2 bands, zspec NaN for every 5th galaxy, and exposures."""
    ref_id = np.arange(100, 100 + n, dtype=np.int64)
    zspec = np.linspace(0.1, 1.0, n)
    zspec[::5] = np.nan
    cols = [fits.Column(name="ref_id", format="K", array=ref_id)]
    for band in ("a_g", "a_i"):
        cols.append(fits.Column(name=f"flux_{band}", format="D", array=np.ones(n)))
        cols.append(fits.Column(name=f"flux_error_{band}", format="D", array=np.full(n, 0.1)))
    cols.append(fits.Column(name="zspec", format="D", array=zspec))
    gal = fits.BinTableHDU.from_columns(cols, name="GALAXIES")
    gal.header["FLUXZP"] = 23.9
    exp = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ref_id", format="K", array=np.repeat(ref_id, 2)),
            fits.Column(name="flux", format="D", array=np.ones(2 * n)),
        ],
        name="EXPOSURES",
    )
    return FitsCatalog(gal, exp)


def test_split_rows_deterministic_and_disjoint() -> None:
    zspec = np.where(np.arange(100) % 7 == 0, np.nan, 0.5)
    train, test = split_rows(zspec, seed=1, test_fraction=0.2)
    again = split_rows(zspec, seed=1, test_fraction=0.2)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(np.flatnonzero(np.isfinite(zspec)))
    assert test.size == round(0.2 * np.isfinite(zspec).sum())


def test_write_split_round_trip(tmp_path: Path) -> None:
    write_catalog(_catalog(), tmp_path / "cat.fits")
    record = write_split(read_catalog(tmp_path / "cat.fits"), tmp_path, seed=2, test_fraction=0.25)
    train, test = read_catalog(tmp_path / "train.fits"), read_catalog(tmp_path / "test.fits")
    assert (record["n_train"], record["n_test"]) == (30, 10)
    assert train.fluxzp == 23.9 and train.bands == ["a_g", "a_i"]
    assert list(test.galaxies.data["ref_id"]) == record["test_ref_id"]
    assert np.all(np.isfinite(train.column("zspec")))
    assert sorted(set(test.exposures.data["ref_id"])) == sorted(record["test_ref_id"])
    assert len(subset(train, np.array([0, 1])).exposures.data) == 4
