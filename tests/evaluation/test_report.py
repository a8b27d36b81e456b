"""Evaluation reports of predictions tables (E20 Sec. 3.3, 6) against known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.table import Table
from scipy import stats

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.evaluation.report import evaluate_files, evaluate_table, pit_from_table
from deepz_core.inference.predict import write_table
from deepz_core.pz import metrics

OVERALL = {
    "n",
    "sigma68",
    "outlier_fraction",
    "catastrophic_fraction",
    "bias",
    "nmad",
    "odds_best50_sigma68",
    "odds_best_sigma68",
    "pit_ks",
    "pit_ks_pvalue",
    "cde_loss",
    "n_no_pz",
    "no_pz_fraction",
}


def _table(rng: np.random.Generator, n: int = 1500, calibrated: bool = True) -> Table:
    """Gaussian p(z) N(mu, s) per galaxy with zspec drawn from it (calibrated PIT); zphot = mu.

    Half the galaxies (high ODDS) have s = 0.005 (1 + z), the other half s = 0.02 (1 + z).
    """
    zs = rng.uniform(0.2, 1.0, n)
    good = np.arange(n) < n // 2
    s = np.where(good, 0.005, 0.02) * (1 + zs)
    mu = zs + s * rng.normal(size=n)  # then zs ~ N(mu, s) given mu: symmetric
    t = Table()
    t["ref_id"] = np.arange(n) + 10
    t["zphot"], t["zmean"], t["zmedian"] = mu, mu, mu
    t["z_lo68"], t["z_hi68"] = mu - s, mu + s
    t["odds"] = np.where(good, 0.9, 0.2) + 0.01 * rng.random(n)
    t["zspec"] = zs
    spread = s if calibrated else s / 4
    t["pit"] = stats.norm.cdf(zs, mu, spread)
    t["mag"] = rng.uniform(18.0, 22.5, n)
    t["weights"] = np.stack([np.ones(n), np.zeros(n)], axis=1)  # a zero-weight spare component
    t["means"] = np.stack([mu, np.full(n, 5.0)], axis=1)
    t["stds"] = np.stack([spread, np.full(n, 0.1)], axis=1)
    return t


def test_report_keys_and_known_answers(rng) -> None:
    t = _table(rng)
    report = evaluate_table(t)
    overall = report["overall"]
    assert set(overall) == OVERALL and overall["n"] == len(t)
    dz = (np.asarray(t["zphot"]) - np.asarray(t["zspec"])) / (1 + np.asarray(t["zspec"]))
    # dz is an equal mixture of N(0, 0.005) and N(0, 0.02)
    q = np.percentile(dz, [15.865, 84.135])
    assert overall["sigma68"] == pytest.approx(0.5 * (q[1] - q[0]), rel=1e-9)
    assert 0.006 < overall["sigma68"] < 0.016
    expected_outliers = 0.5 * 2 * stats.norm.sf(0.02 / 0.02) + 0.5 * 2 * stats.norm.sf(4.0)
    assert overall["outlier_fraction"] == pytest.approx(expected_outliers, abs=0.03)
    assert abs(overall["bias"]) < 0.002
    assert overall["odds_best50_sigma68"] == pytest.approx(0.005, rel=0.15)  # the narrow half
    assert overall["pit_ks_pvalue"] > 1e-3 and overall["pit_ks"] < 0.05
    # CDE loss of a Gaussian: int p^2 = 1 / (2 s sqrt(pi)); minus 2 p(zs)
    mu, s = np.asarray(t["means"])[:, 0], np.asarray(t["stds"])[:, 0]
    exact = np.mean(1 / (2 * s * math.sqrt(math.pi)) - 2 * stats.norm.pdf(t["zspec"], mu, s))
    assert overall["cde_loss"] == pytest.approx(exact, rel=2e-3)


def test_the_cde_loss_uses_the_grid_the_table_names(rng) -> None:
    """Review, tenth session: evaluate took the default 0-1.5 grid whatever the run's, so a
    broad-band run's (0-3) CDE loss cut every p(z) at 1.5 and read galaxies beyond it there."""
    t = _table(rng, 400)
    t["zspec"] = t["zspec"] + 1.2  # 0.2-1.0 -> 1.4-2.2: most beyond 1.5
    t["means"][:, 0] = t["means"][:, 0] + 1.2
    wide = np.arange(0.0, 3.0 + 5e-4, 1e-3)
    pdf = stats.norm.pdf(wide[None, :], t["means"][:, :1], t["stds"][:, :1])
    exact = metrics.cde_loss(pdf, wide, np.asarray(t["zspec"]))
    assert evaluate_table(t)["overall"]["cde_loss"] != pytest.approx(exact, rel=1e-2)
    t.meta["DZZGRID"] = "0:3:0.001"
    assert evaluate_table(t)["overall"]["cde_loss"] == pytest.approx(exact, rel=1e-4)
    t.meta["DZZGRID"] = "0:3"  # a damaged header: one line, no traceback
    with pytest.raises(CatalogError, match="DZZGRID '0:3' is no redshift grid"):
        evaluate_table(t)


def test_a_qp_ensemble_or_file_is_named_not_a_traceback(tmp_path) -> None:
    """Review, tenth session: dz.evaluate(ensemble) raised a TypeError from pathlib, and a qp
    .hdf5 file (which predict writes) was only 'not a .fits or .parquet file'."""
    import deepz_core as dz

    with pytest.raises(ConfigError, match="not a dict; for a qp Ensemble use qp's metrics"):
        dz.evaluate({"weights": []})
    (tmp_path / "pz.hdf5").write_bytes(b"")
    with pytest.raises(CatalogError, match="looks like a qp file: predict to .parquet"):
        dz.evaluate(tmp_path / "pz.hdf5")


def test_miscalibrated_pit_is_flagged(rng) -> None:
    overall = evaluate_table(_table(rng, calibrated=False))["overall"]
    assert overall["pit_ks_pvalue"] < 1e-6


def test_per_magnitude_rows(rng) -> None:
    t = _table(rng, 1000)
    rows = evaluate_table(t, mag_edges=metrics.DEFAULT_MAG_EDGES)["per_magnitude"]
    assert len(rows) == 10 and rows[0]["lo"] == 17.5 and rows[-1]["hi"] == pytest.approx(22.5)
    assert sum(r["n"] for r in rows) == len(t)
    assert {"lo", "hi", "n", "sigma68", "outlier_fraction", "bias", "nmad"} <= set(rows[0])
    assert rows[0]["n"] == 0 and math.isnan(rows[0]["sigma68"])  # 17.5-18: empty
    follow = evaluate_table(t)["per_magnitude"]  # default: 0.5-mag bins that follow the data
    assert follow[0]["lo"] == 18.0 and follow[-1]["hi"] == 22.5 and follow[0]["n"] > 0
    t["mag"] -= 5.0  # an SDSS-like catalogue at m = 13-17.5: every galaxy is still binned
    follow = evaluate_table(t)["per_magnitude"]
    assert follow[0]["lo"] == 13.0 and sum(r["n"] for r in follow) == len(t)
    t.remove_column("mag")
    assert "per_magnitude" not in evaluate_table(t)


def test_out_of_fold_galaxies_only_when_flagged(rng) -> None:
    t = _table(rng, 400)
    t["zphot"][:100] += 0.5  # galaxies the networks trained on: not to be counted
    t["out_of_fold"] = np.arange(400) >= 100
    oof = evaluate_table(t)["overall"]
    alone = t[100:].copy()
    alone.remove_column("out_of_fold")
    assert oof == evaluate_table(alone)["overall"] and oof["n"] == 300
    t["out_of_fold"] = False  # e.g. a new catalogue with spec-z: every galaxy counts
    assert evaluate_table(t)["overall"]["n"] == 400


def test_unknown_zspec_rows_are_skipped_and_none_is_an_error(rng) -> None:
    t = _table(rng, 200)
    t["zspec"][:50] = np.nan
    t["pit"][:50] = np.nan
    assert evaluate_table(t)["overall"]["n"] == 150
    t["zspec"] = np.nan
    with pytest.raises(CatalogError, match="no galaxies with a spec-z"):
        evaluate_table(t)


@pytest.mark.parametrize("suffix", [".fits", ".parquet"])
def test_evaluate_files_writes_strict_json(tmp_path, rng, suffix) -> None:
    t = _table(rng, 500)
    write_table(t, tmp_path / f"pred{suffix}")  # FITS stores big-endian, strided columns
    edges = metrics.DEFAULT_MAG_EDGES
    report = evaluate_files(tmp_path / f"pred{suffix}", None, tmp_path / "report.json", None, edges)
    text = (tmp_path / "report.json").read_text()

    def no_nan(token: str):
        raise AssertionError(f"non-standard JSON constant {token}")

    on_disk = json.loads(text, parse_constant=no_nan)
    assert set(on_disk["overall"]) == OVERALL
    assert on_disk["overall"]["sigma68"] == pytest.approx(report["overall"]["sigma68"])
    assert on_disk["per_magnitude"][0]["sigma68"] is None  # NaN of an empty bin -> null


def test_catalogue_join_supplies_zspec_mag_and_a_fresh_pit(tmp_path, rng) -> None:
    t = _table(rng, 300)
    zspec, mag = np.asarray(t["zspec"]).copy(), np.asarray(t["mag"]).copy()
    pit = np.asarray(t["pit"]).copy()
    pred = t.copy()
    pred["zspec"] = np.nan  # predicted for a catalogue without spec-z: PIT unknown
    pred["pit"] = np.nan
    pred.remove_column("mag")
    write_table(pred, tmp_path / "pred.fits")
    order = rng.permutation(len(t))  # the catalogue in another order, with extra galaxies
    ids = np.r_[np.asarray(t["ref_id"])[order], [1, 2, 3]]
    cat = Catalog(
        ref_id=ids,
        bands=("sdss_i",),
        flux=np.ones((len(ids), 1)),
        flux_error=np.ones((len(ids), 1)),
        zspec=np.r_[zspec[order], 0.1, 0.2, 0.3],
        mag=np.r_[mag[order], 20, 20, 20],
    )
    write_catalog(cat, tmp_path / "cat.fits")
    report = evaluate_files(tmp_path / "pred.fits", tmp_path / "cat.fits", tmp_path / "r.json")
    assert report["profile"]["name"] == "broad-band"  # from the catalogue's bands
    direct = evaluate_table(t, profile="broad-band")
    for key in ("n", "sigma68", "bias", "cde_loss", "odds_best50_sigma68"):
        assert report["overall"][key] == pytest.approx(direct["overall"][key], rel=1e-5), key
    assert report["overall"]["pit_ks"] == pytest.approx(
        stats.kstest(pit, "uniform").statistic, abs=1e-4
    )
    np.testing.assert_equal(report["per_magnitude"], direct["per_magnitude"])  # NaN == NaN


def test_pit_from_table_matches_the_gaussian_cdf(rng) -> None:
    t = _table(rng, 50)
    t["zspec"][0] = np.nan
    pit = pit_from_table(t)
    assert np.isnan(pit[0])
    np.testing.assert_allclose(pit[1:], np.asarray(t["pit"])[1:], atol=1e-12)


def test_evaluate_files_errors_name_the_file(tmp_path, rng) -> None:
    t = _table(rng, 50)
    with pytest.raises(CatalogError, match="missing.fits"):
        evaluate_files(tmp_path / "missing.fits", None, tmp_path / "r.json")
    (tmp_path / "junk.fits").write_bytes(b"not a table")
    with pytest.raises(CatalogError, match="junk.fits"):
        evaluate_files(tmp_path / "junk.fits", None, tmp_path / "r.json")
    no_z = t.copy()
    no_z.remove_column("zspec")
    write_table(no_z, tmp_path / "noz.fits")
    with pytest.raises(CatalogError, match="no zspec column"):
        evaluate_files(tmp_path / "noz.fits", None, tmp_path / "r.json")
    small = Catalog(
        ref_id=[10, 11],
        bands=("sdss_i",),
        flux=np.ones((2, 1)),
        flux_error=np.ones((2, 1)),
        zspec=[0.1, 0.2],
    )
    write_catalog(small, tmp_path / "small.fits")
    write_table(t, tmp_path / "pred.fits")
    with pytest.raises(CatalogError, match="48 predicted ref_id not in catalogue"):
        evaluate_files(tmp_path / "pred.fits", tmp_path / "small.fits", tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_evaluate_reads_a_partitioned_dataset_like_one_file(tmp_path, rng) -> None:
    t = _table(rng, 400)
    write_table(t, tmp_path / "pred.parquet")
    folder = tmp_path / "pz_dataset"  # what `predict --out FOLDER` writes
    folder.mkdir()
    write_table(t[:150], folder / "part-00000.parquet")
    write_table(t[150:], folder / "part-00001.parquet")
    with pytest.raises(CatalogError, match="dataset incomplete"):
        evaluate_files(folder, None, tmp_path / "b.json")
    (folder / "_SUCCESS").write_text('{"parts": 2, "rows": 400}')
    whole = evaluate_files(tmp_path / "pred.parquet", None, tmp_path / "a.json")
    parts = evaluate_files(folder, None, tmp_path / "b.json")
    assert parts["overall"]["n"] == 400
    assert parts["overall"]["sigma68"] == pytest.approx(whole["overall"]["sigma68"])
    assert parts["overall"]["cde_loss"] == pytest.approx(whole["overall"]["cde_loss"])


def test_evaluate_refuses_a_catalogue_and_a_non_json_report(tmp_path, rng) -> None:
    cat = Catalog(
        ref_id=[10, 11],
        bands=("sdss_i",),
        flux=np.ones((2, 1)),
        flux_error=np.ones((2, 1)),
        zspec=[0.1, 0.2],
    )
    write_catalog(cat, tmp_path / "cat.fits")
    with pytest.raises(
        CatalogError, match=r"not a predictions table, no columns \['zphot', 'odds', 'weights'"
    ):
        evaluate_files(tmp_path / "cat.fits", None, tmp_path / "r.json")
    write_table(_table(rng, 50), tmp_path / "pred.fits")
    with pytest.raises(ConfigError, match="give a .json name, got .*r.csv"):
        evaluate_files(tmp_path / "pred.fits", None, tmp_path / "r.csv")
    assert not (tmp_path / "r.csv").exists()


def test_galaxies_without_a_pz_are_counted_as_failures_not_numbers(rng) -> None:
    t = _table(rng, 200)
    t["zphot"][:20] = np.nan
    overall = evaluate_table(t)["overall"]
    assert overall["n"] == 180 and overall["n_no_pz"] == 20
    assert overall["no_pz_fraction"] == pytest.approx(0.1)
    assert all(np.isfinite(v) for v in overall.values())


def test_screened_galaxies_never_out_of_fold_still_count_as_failures(rng) -> None:
    """A galaxy the screen gives no p(z) is kept out of training, so it is never out of fold:
    the count must not be limited to out-of-fold galaxies (review, ninth session: a run with 12
    such spec-z galaxies reported n_no_pz 0)."""
    t = _table(rng, 200)
    t["out_of_fold"] = np.ones(200, dtype=bool)
    t["zphot"][:20] = np.nan
    t["out_of_fold"][:20] = False
    overall = evaluate_table(t)["overall"]
    assert overall["n"] == 180 and overall["n_no_pz"] == 20
    assert overall["no_pz_fraction"] == pytest.approx(0.1)


def test_all_nan_predictions_are_refused(rng) -> None:
    t = _table(rng, 50)
    t["zphot"][:] = np.nan
    with pytest.raises(CatalogError, match="none of the 50 galaxies with a spec-z has a p"):
        evaluate_table(t)


def test_survey_profiles_judge_the_same_predictions_differently(rng) -> None:
    """Broad-band: outliers |dz| > 0.15 and ODDS over a window of 0.1; narrow-band (E20): strict
    outliers |dz| > 0.02 and a window of 0.003; a custom profile takes its own thresholds."""
    t = _table(rng, 1000)
    narrow = evaluate_table(t, profile="narrow-band")
    broad = evaluate_table(t, profile="broad-band")
    custom = evaluate_table(t, profile={"name": "custom", "outlier": 0.05, "target": None})
    dz = (np.asarray(t["zphot"]) - np.asarray(t["zspec"])) / (1 + np.asarray(t["zspec"]))
    for report, threshold in ((narrow, 0.02), (broad, 0.15), (custom, 0.05)):
        expected = np.mean(np.abs(dz) > threshold)
        assert report["overall"]["outlier_fraction"] == pytest.approx(expected)
        assert report["overall"]["catastrophic_fraction"] == pytest.approx(np.mean(abs(dz) > 0.15))
    assert narrow["overall"]["outlier_fraction"] > 0.1 > broad["overall"]["outlier_fraction"]
    assert broad["profile"]["odds_window"] == 0.1 and narrow["profile"]["odds_window"] == 0.003
    with pytest.raises(ConfigError, match="profile"):
        evaluate_table(t, profile="wide-band")
    with pytest.raises(ConfigError, match="outlier"):
        evaluate_table(t, profile={"name": "custom", "outlier": -1})


def test_odds_in_window_of_a_gaussian(rng) -> None:
    from deepz_core.evaluation.report import odds_in_window

    t = _table(rng, 20)
    s = np.asarray(t["stds"])[:, 0]
    expected = [math.erf(0.05 / (si * math.sqrt(2))) for si in s]
    np.testing.assert_allclose(odds_in_window(t, 0.1), expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("p.json", b"{}", "predictions are a .fits or .parquet file"),
        ("p.fits", b"hello", "not a FITS file"),
        ("p.parquet", b"PAR1" + b"\0" * 40, "truncated Parquet"),
    ],
)
def test_what_is_not_a_predictions_table_is_refused_in_one_line(
    tmp_path, name, content, says
) -> None:
    """Issue 19: never astropy's 50-line table of formats."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CatalogError, match=says) as err:
        evaluate_files(path, None, tmp_path / "r.json")
    assert "\n" not in str(err.value)


def test_the_report_never_replaces_its_predictions(tmp_path, rng) -> None:
    """Issue 19: an output that is (a link to) an input is refused before anything is written."""
    pred = tmp_path / "pred.fits"
    pred.write_bytes(b"SIMPLE  = T")
    link = tmp_path / "report.json"
    link.symlink_to(pred)
    with pytest.raises(ConfigError, match="would destroy the input"):
        evaluate_files(pred, None, link)
    assert pred.read_bytes() == b"SIMPLE  = T"


@pytest.mark.parametrize(("window", "name"), [("0.1", "broad-band"), ("0.003", "narrow-band")])
def test_a_file_without_a_profile_is_judged_by_its_odds_window(tmp_path, rng, window, name) -> None:
    """`deepz predict` writes the odds column's window (DZODDSW, the run profile's) but no DZPROF:
    `evaluate` of a broad-band run's file judged it narrow-band (outliers |dz| > 0.02)."""
    t = _table(rng, 300)
    t.meta["DZODDSW"] = window
    write_table(t, tmp_path / "pred.fits")
    report = evaluate_files(tmp_path / "pred.fits", None, tmp_path / "report.json")
    assert report["profile"]["name"] == name
    t.meta["DZPROF"] = "narrow-band"  # a profile the table carries wins
    assert evaluate_table(t)["profile"]["name"] == "narrow-band"


def test_predictions_without_any_spec_z_point_to_catalog(tmp_path, rng) -> None:
    """Review, tenth session: `evaluate` of a catalogue predicted without spec-z said only 'no
    galaxies with a spec-z to evaluate against', not how to give them."""
    t = _table(rng, 50)
    t["zspec"] = np.nan
    write_table(t, tmp_path / "pred.fits")
    with pytest.raises(CatalogError, match="no galaxy has a spec-z .* pass --catalog"):
        evaluate_files(tmp_path / "pred.fits", None, tmp_path / "report.json")
