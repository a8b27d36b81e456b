"""deepz_core.evaluation.run_products and deepz_core.evaluation.galaxy: run products, quality cuts, exports, one-galaxy views."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.features import build_features
from deepz_core.catalog.screen import PzFlag
from deepz_core.evaluation import galaxy
from deepz_core.evaluation import run_products as analysis
from deepz_core.inference.predict import mixture_from_arrays
from deepz_core.nets.deepz import DeepzModel, ModelConfig
from deepz_core.pz import metrics
from deepz_core.pz.products import PzConfig, mixture_odds

BANDS = ("NB455", "NB465", "subaru_r", "subaru_i")


def _pred_table(rng: np.random.Generator, n: int = 200) -> Table:
    """A predictions table: one member of two Gaussians (C = 2) around z_s, 20% without spec-z."""
    zs = rng.uniform(0.1, 1.0, n)
    zp = np.round(zs + 0.01 * (1 + zs) * rng.normal(size=n), 3)
    sd = rng.uniform(0.005, 0.05, n)
    t = Table()
    t["ref_id"] = np.arange(10, 10 + n)
    t["zphot"] = zp
    t["odds"] = np.zeros(n)
    t["zspec"] = np.where(np.arange(n) % 5 == 4, np.nan, zs)
    t["pit"] = rng.uniform(size=n)
    t["mag"] = np.linspace(18, 23, n)
    t["out_of_fold"] = np.isfinite(t["zspec"])
    t["weights"] = np.tile([0.9, 0.1], (n, 1)).astype(np.float32)
    t["means"] = np.stack([zp, zp + 0.3], axis=1).astype(np.float32)
    t["stds"] = np.stack([sd, sd], axis=1).astype(np.float32)
    return t


@pytest.fixture
def pred(tmp_path, rng) -> analysis.Predictions:
    path = tmp_path / "predictions.fits"
    _pred_table(rng).write(path)
    return analysis.read_predictions(path)


def test_read_predictions_masks_to_nan(pred) -> None:
    assert pred.n == 200 and pred.weights.shape == (200, 2)
    assert np.isnan(pred.zspec[4]) and pred.scored.sum() == 160
    assert pred.index_of(12) == 2 and pred.index_of(9999) is None


def test_galaxies_without_a_pz_count_as_failures_though_never_out_of_fold(tmp_path, rng) -> None:
    t = _pred_table(rng)
    t["zphot"][:10] = np.nan  # screened: no p(z), never trained on, not out of fold
    t["out_of_fold"][:10] = False
    t.write(tmp_path / "p.fits")
    pred = analysis.read_predictions(tmp_path / "p.fits")
    n_failed = int(np.isfinite(t["zspec"][:10]).sum())
    assert n_failed == 8 and pred.failed.sum() == n_failed
    assert analysis.results_stats(pred)["n_no_pz"] == n_failed
    assert analysis.headline(pred)["n_no_pz"] == n_failed  # what Results and Train show


def test_flagged_spec_z_galaxies_with_a_pz_are_counted_as_not_scored(tmp_path, rng) -> None:
    """First-use review: 'galaxies scored 1,517' + 'spec-z without a p(z) 17' != 1,710 spec-z,
    and nothing said why: the flagged ones (a p(z), never out of fold) are counted."""
    t = _pred_table(rng)
    t["out_of_fold"][:10] = False  # flagged by the screen: a p(z), left out of training
    t.write(tmp_path / "p.fits")
    pred = analysis.read_predictions(tmp_path / "p.fits")
    n = int(np.isfinite(t["zspec"][:10]).sum())
    head = analysis.headline(pred)
    assert head["n_not_scored"] == n == 8
    assert head["n"] + head["n_no_pz"] + head["n_not_scored"] == int(np.isfinite(t["zspec"]).sum())


def test_mixture_odds_matches_gaussian() -> None:
    mix = mixture_from_arrays(np.ones((1, 1)), np.full((1, 1), 0.5), np.full((1, 1), 0.01))
    got = mixture_odds(mix, torch.tensor([0.5]), 0.003).item()
    assert got == pytest.approx(math.erf(0.0015 / (0.01 * math.sqrt(2))), rel=1e-9)


def test_odds_for_window_grows_with_window(pred) -> None:
    small, large = (
        analysis.odds_for_window(pred, 0.003, chunk=64),
        analysis.odds_for_window(pred, 0.05),
    )
    assert small.shape == (200,) and np.all(large >= small) and np.all(large <= 1 + 1e-9)


def test_the_odds_column_answers_for_its_own_window(tmp_path, rng) -> None:
    """Pages, cuts and files must agree on ODDS: for the window of the stored ``odds`` column
    (the file's DZODDSW) that column is used, for any other the mixture (review, ninth session:
    the pages' ODDS of a calibrated run differed from the file's by ~5%)."""
    t = _pred_table(rng)
    t["odds"] = np.linspace(0.1, 0.9, len(t))  # not what the mixtures give
    t.meta["DZODDSW"] = "0.003"
    t.write(tmp_path / "p.fits")
    pred = analysis.read_predictions(tmp_path / "p.fits")
    assert pred.odds_window == 0.003
    np.testing.assert_array_equal(analysis.odds_for_window(pred, 0.003), t["odds"])
    mix = mixture_from_arrays(pred.weights, pred.means, pred.stds)
    want = mixture_odds(mix, torch.as_tensor(pred.zphot), 0.01).numpy()
    np.testing.assert_allclose(analysis.odds_for_window(pred, 0.01), want, rtol=1e-12)
    del t.meta["DZODDSW"]  # a file that does not say: the mixture for every window
    t.write(tmp_path / "old.fits")
    old = analysis.read_predictions(tmp_path / "old.fits")
    assert old.odds_window is None and not np.allclose(
        analysis.odds_for_window(old, 0.003), t["odds"]
    )


def test_a_run_s_pages_and_report_take_its_odds_column(tiny_run) -> None:
    from deepz_core.evaluation.report import evaluate

    pred = analysis.read_predictions(tiny_run / "predictions.fits")
    assert pred.odds_window == 0.1  # its bands' profile: broad-band
    np.testing.assert_array_equal(analysis.odds_for_window(pred, 0.1), pred.odds)
    assert np.isfinite(evaluate(tiny_run / "predictions.fits")["overall"]["odds_best_sigma68"])


def test_results_stats(pred) -> None:
    s = analysis.results_stats(pred)
    use = pred.scored
    point = metrics.point_metrics(pred.zphot[use], pred.zspec[use])
    assert {k: s["summary"][k] for k in point} == point
    assert s["summary"]["catastrophic_fraction"] == 0.0
    assert s["by_mag"].counts.sum() <= 160 and len(s["pit"][0]) == 20
    assert s["spec_density"].counts.sum() == 160


def test_density_edges_linear_then_log() -> None:
    assert list(analysis.density_edges(3)) == [-0.5, 0.5, 1.5, 2.5, 3.5]
    edges = analysis.density_edges(1000)
    assert (
        edges[0] == -0.5 and edges[-1] == 1000.5 and np.all(np.diff(edges) > 0) and len(edges) < 30
    )


def test_cut_threshold_reaches_completeness(pred) -> None:
    odds = analysis.odds_for_window(pred, 0.01)
    thr = analysis.threshold_for_completeness(pred, odds, 0.5, mag_max=22.0)
    stats = analysis.cut_stats(pred, odds, thr, mag_max=22.0)
    assert stats["completeness"] == pytest.approx(0.5, abs=0.02)
    curves = analysis.cut_curves(pred, odds, 22.0)
    assert curves["n"] == stats["n_base"]
    assert analysis.sigma68_at(curves["optimal (|Δz| known)"], 0.5) <= analysis.sigma68_at(
        curves["ODDS cut"], 1.0
    )
    mask = analysis.selection_mask(pred, odds, thr, 22.0)
    assert mask.sum() == stats["n_selected"] >= stats["n_scored"]


@pytest.mark.parametrize("fmt", ["fits", "csv", "parquet"])
def test_export_bytes(pred, fmt, tmp_path) -> None:
    mask = np.arange(pred.n) < 7
    blob = analysis.export_bytes(pred.path, mask, fmt)
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(blob)
    table = Table.read(io.BytesIO(blob), format="ascii.csv") if fmt == "csv" else Table.read(path)
    assert len(table) == 7
    assert ("weights" in table.colnames) == (fmt != "csv")


@pytest.mark.parametrize("fmt", ["fits", "csv"])
def test_selection_file_holds_the_cut_and_its_odds(pred, fmt, tmp_path) -> None:
    odds = analysis.odds_for_window(pred, 0.02)
    thr = float(np.median(odds))
    blob = analysis.selection_bytes(pred, odds, thr, 0.02, None, fmt)
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(blob)
    csv = {"format": "ascii.csv", "comment": "#"}  # the cut is in leading "# KEY = value" lines
    table = Table.read(path, **(csv if fmt == "csv" else {}))
    assert len(table) == int((odds >= thr).sum())
    assert np.all(np.asarray(table["odds_cut"]) >= thr)  # the column the threshold applies to
    if fmt == "fits":
        assert table.meta["ODDSWIN"] == 0.02 and table.meta["ODDSMIN"] == pytest.approx(thr)
        assert table.meta["MAGMAX"] == "none"
    else:
        assert f"ODDSMIN = {thr}" in path.read_text()


def test_galaxy_table_filters(pred) -> None:
    cols, n = analysis.galaxy_table(pred, (18.0, 20.0), outliers_only=False, limit=5)
    assert len(cols["ref_id"]) == 5 and n == int(np.sum(pred.mag <= 20.0))
    cols, n = analysis.galaxy_table(pred, outliers_only=True)
    assert np.all(np.abs(cols["Δz/(1+z_s)"]) > 0.02)


def test_pdf_components_and_members_used(pred) -> None:
    grid = PzConfig().grid()
    pdf = galaxy.pdf_on_grid(pred.weights[0], pred.means[0], pred.stds[0], grid)[0]
    assert np.trapezoid(pdf, grid) == pytest.approx(1.0, abs=1e-3)
    comps = galaxy.component_curves(pred.weights[0], pred.means[0], pred.stds[0], grid)
    np.testing.assert_allclose(comps.sum(axis=0), pdf, atol=1e-8)
    assert list(galaxy.members_used(np.array([0.5, 0.5, 0, 0]), 2)) == [True, False]
    g = galaxy.galaxy_pz(pred, 3, PzConfig())
    assert g["ref_id"] == 13 and g["odds_window"] == 0.003
    assert g["dz"] == pytest.approx((g["mode"] - g["zspec"]) / (1 + g["zspec"]))
    assert not g["calibrated"] and not pred.calibrated  # no pit_raw column: raw p(z)


def test_a_calibrated_galaxy_says_so_and_carries_its_median_and_interval(tmp_path, rng) -> None:
    """First-use review: the explorer drew the calibrated p(z) (peak near 0.93) with a line
    'mode' at zphot 0.645, the raw p(z)'s mode. The view says the p(z) is calibrated and
    carries the median and 68% interval of the curve drawn."""
    t = _pred_table(rng)
    t["zmedian"], t["z_lo68"], t["z_hi68"] = t["zphot"] + 0.3, t["zphot"] + 0.2, t["zphot"] + 0.4
    t["pit_raw"] = t["pit"]
    t.write(tmp_path / "p.fits")
    pred = analysis.read_predictions(tmp_path / "p.fits")
    g = galaxy.galaxy_pz(pred, 3, PzConfig())
    assert pred.calibrated and g["calibrated"]
    assert (g["zmedian"], g["z_lo68"], g["z_hi68"]) == pytest.approx(
        (t["zphot"][3] + 0.3, t["zphot"][3] + 0.2, t["zphot"][3] + 0.4)
    )


def test_raw_ensemble_pdf_is_the_mean_of_the_used_members() -> None:
    members = np.array([[1.0, 3.0], [3.0, 5.0], [100.0, 100.0]])
    used = np.array([True, True, False])
    np.testing.assert_allclose(galaxy.raw_ensemble_pdf(members, used), [2.0, 4.0])
    np.testing.assert_allclose(galaxy.raw_ensemble_pdf(members, ~np.ones(3, bool)), [104 / 3, 36])


# ------------------------------------------------------------------ model-based views
@pytest.fixture
def catalog(rng) -> Catalog:
    """Six galaxies, two narrow bands with 3 exposures each, two broad bands without."""
    n = 6
    flux = rng.uniform(1, 3, (n, len(BANDS)))
    ids, band, num, f, e = [], [], [], [], []
    for g in range(n):
        for b in BANDS[:2]:
            for k in range(3):
                ids.append(g + 1), band.append(b), num.append(k), e.append(0.3)
                f.append(flux[g, BANDS.index(b)] + 0.3 * rng.normal())
    return Catalog(
        ref_id=np.arange(1, n + 1),
        bands=BANDS,
        flux=flux,
        flux_error=np.full((n, 4), 0.1),
        zspec=np.linspace(0.2, 0.7, n),
        mag=np.full(n, 21.0),
        exposures=Exposures(np.array(ids), np.array(band), np.array(num), np.array(f), np.array(e)),
    )


@pytest.fixture
def model() -> DeepzModel:
    cfg = ModelConfig(
        n_inputs=len(BANDS),
        encoder_layers=1,
        decoder_layers=1,
        width=8,
        photoz_layers=1,
        photoz_first_width=0,
        n_components=3,
        members=2,
    )
    return DeepzModel(cfg).eval()


def test_sed_wavelengths_and_exposures(catalog) -> None:
    s = galaxy.sed(catalog, 2)
    assert s["known"] and list(s["narrow"]) == [True, True, False, False]
    assert s["wavelength"][0] == pytest.approx(4550, abs=20)
    assert len(s["exp_flux"]) == 6 and set(np.round(s["exp_wavelength"])) == set(
        np.round(s["wavelength"][:2])
    )
    assert s["usable"].all()
    flux = catalog.flux.copy()
    flux[2, 3] = 1e30  # a bad pixel in subaru_i
    s = galaxy.sed(replace(catalog, flux=flux), 2)
    assert list(s["usable"]) == [True, True, True, False]


def test_member_pdfs_and_dropping_alignment(catalog, model) -> None:
    features = build_features(catalog)
    pz = PzConfig()
    members = galaxy.member_pdfs(model, features.ratio[0], pz.grid())
    assert members.shape == (2, len(pz.grid()))
    d = galaxy.dropping_detail(model, features, 0, pz)
    assert len(d["shift"]) == 6 and d["pdf_variants"].shape == (6, len(pz.grid()))
    assert set(d["band"]) == {"NB455", "NB465"}
    assert np.all(np.diff(np.abs(d["shift"])) <= 0)  # largest |shift| first
    grid_modes = pz.grid()[d["pdf_variants"].argmax(axis=1)]
    np.testing.assert_allclose(grid_modes, d["mode"], atol=1.5e-3)  # curves match the table rows


def test_dropping_gives_no_pz_to_a_galaxy_the_screen_gives_none(catalog, model) -> None:
    """Review, ninth session: a galaxy with a reference flux of 1e-6 had no p(z) in the explorer
    but a sharp one on the dropping page (its imputed inputs through the networks)."""
    features = build_features(catalog)
    flags = features.flags.copy()
    flags[0] |= PzFlag.NO_PZ | PzFlag.TOO_FEW_BANDS  # as the screen flags it against a population
    features = replace(features, flags=flags)
    assert galaxy.dropping_detail(model, features, 0, PzConfig()) == {"no_pz": True}
    assert len(galaxy.dropping_detail(model, features, 1, PzConfig())["shift"]) == 6


def test_spread_study_curves(catalog, model, tmp_path) -> None:
    features = build_features(catalog)
    t = Table(
        {
            "ref_id": catalog.ref_id,
            "zphot": catalog.zspec + 0.01,
            "odds": np.linspace(0, 1, 6),
            "zspec": catalog.zspec,
            "out_of_fold": np.ones(6, bool),
            "weights": np.ones((6, 1)),
            "means": np.ones((6, 1)),
            "stds": np.ones((6, 1)),
        }
    )
    t.write(tmp_path / "p.fits")
    pred = analysis.read_predictions(tmp_path / "p.fits")
    rows = galaxy.spread_selection(pred, 4, 20.0, 22.0)
    study = galaxy.spread_study(model, features, pred, rows, PzConfig())
    assert study["n"] == 4 and list(study["n_variants"]) == [6] * 4
    assert set(study["curves"]) >= {"ODDS cut", "keep small spread", "keep large spread"}
