"""BCNZ2-like template fitting (deepz_core.templatefit.fit*): solvers, redshift recovery, zero-points,
p(z) products, the CLI and bad inputs."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import nnls as scipy_nnls

import deepz_core.templatefit.fit as fit_module
from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.catalog.screen import PzFlag
from deepz_core.cli.main import main
from deepz_core.errors import ConfigError
from deepz_core.pz.products import PzConfig
from deepz_core.sed.bands import band_set
from deepz_core.sed.template_sets import flux_table, load_template_set
from deepz_core.templatefit.calibration import clipped_coadds, normalise_zero_points
from deepz_core.templatefit.fit import (
    TemplateFitConfig,
    calibrate_zero_points,
    fit_catalog,
    read_zero_points,
    write_templatefit,
)
from deepz_core.templatefit.nnls import chi2_value, lawson_hanson, mu_nnls, nnls
from deepz_core.templatefit.pz import (
    cdf_grid,
    chi2_pz_grid,
    compress_mixture,
    grid_products,
    quantile,
)

pytestmark = pytest.mark.usefixtures("one_thread")
BANDS = band_set("paus_cosmos")
FAST = {"dz": 0.005, "top_stride": 32, "coarse_stride": 4}  # 301 redshifts: a fast fit


def _problems(rng: np.random.Generator, n: int, b: int = 20, t: int = 6):
    """n random NNLS problems: non-negative (partly collinear) templates, noisy fluxes."""
    A = rng.uniform(0, 1, (n, b, t))
    A[:, :, -1] = A[:, :, -2] * 0.5  # two collinear templates, as line templates can be
    f = (A[:, :, :3] @ rng.uniform(0, 1, (n, 3, 1)))[..., 0] + rng.normal(0, 0.3, (n, b))
    w = rng.uniform(0.5, 2.0, (n, b))
    G = np.einsum("nb,nbi,nbj->nij", w, A, A)
    bb = np.einsum("nb,nbi,nb->ni", w, A, f)
    fwf = (w * f * f).sum(1)
    ref = np.array(
        [scipy_nnls(A[k] * np.sqrt(w[k])[:, None], f[k] * np.sqrt(w[k]))[1] ** 2 for k in range(n)]
    )
    return torch.tensor(G), torch.tensor(bb), torch.tensor(fwf), ref


def test_nnls_matches_scipy_cold_and_warm(rng: np.random.Generator) -> None:
    G, b, fwf, ref = _problems(rng, 300)
    cold = chi2_value(G, b, fwf, nnls(G, b)).numpy()
    warm_start = torch.tensor(rng.uniform(size=b.shape) < 0.5)  # a poor warm start
    warm = chi2_value(G, b, fwf, nnls(G, b, warm_start)).numpy()
    for chi2 in (cold, warm):
        np.testing.assert_allclose(chi2, ref, rtol=1e-6, atol=1e-6)
    x, _, done = lawson_hanson(G, b)
    assert bool(done.all()) and bool((x >= 0).all())


def test_multiplicative_updates_lower_chi2_towards_the_optimum(rng: np.random.Generator) -> None:
    G, b, fwf, ref = _problems(rng, 100, t=4)
    few = chi2_value(G, b, fwf, mu_nnls(G, b, 5)).numpy()
    many = chi2_value(G, b, fwf, mu_nnls(G, b, 3000)).numpy()
    assert np.all(many >= ref - 1e-6) and np.all(many <= few + 1e-9)  # feasible and monotone
    assert np.median(many - ref) < 0.05 * np.median(few - ref + 1e-12) + 1e-3


def _template_galaxies(rng: np.random.Generator, n: int, snr: float, z_max: float = 1.4):
    """n galaxies built from the template set at grid redshifts: 1-2 continua of one run + lines."""
    z_grid = TemplateFitConfig(**FAST).z_grid()
    table = flux_table(BANDS, z_grid)  # (Z, B, T)
    runs = load_template_set().run_members()
    zi = rng.integers(20, int(z_max / FAST["dz"]), n)
    flux = np.zeros((n, len(BANDS)))
    for k in range(n):
        members = runs[rng.integers(len(runs))]
        cont = rng.choice(members[:8], 2, replace=False)
        tz = table[zi[k]] / table[zi[k]].mean(0)
        flux[k] = tz[:, cont] @ rng.uniform(0.2, 1, 2) + tz[:, members[8:]] @ rng.uniform(0, 0.3, 2)
    flux *= (10 ** (-0.4 * (20.0 - 23.9)) / flux[:, -2])[:, None]  # subaru_i = 20
    error = flux / snr + 0.01 * flux[:, -2:-1]
    return flux, error, z_grid[zi]


def _catalog(flux: np.ndarray, error: np.ndarray, z: np.ndarray, noise: np.ndarray) -> Catalog:
    return Catalog(
        ref_id=np.arange(1, len(z) + 1),
        bands=BANDS,
        flux=flux + error * noise,
        flux_error=error,
        zspec=z,
        mag=np.full(len(z), 20.0),
    )


def test_template_galaxies_are_recovered_at_high_snr(rng: np.random.Generator) -> None:
    flux, error, z = _template_galaxies(rng, 40, snr=50.0)
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    t = fit_catalog(cat, TemplateFitConfig(**FAST), calibrate=False)
    dz = np.abs(np.asarray(t["zphot"]) - z) / (1 + z)
    assert np.mean(dz < 0.01) >= 0.9
    assert np.all(np.asarray(t["k_nb"]) > 0.8) and np.all(np.asarray(t["k_nb"]) < 1.25)
    assert np.all(np.asarray(t["template"]) < 42) and np.all(np.asarray(t["chi2"]) < 200)
    assert t.meta["TFSET"] == "bcnz2-like-v1" and t.meta["TFNAME"] == "bcnz2"  # the default set


def test_bcnz2_multiplicative_solver_runs_and_is_never_better(rng: np.random.Generator) -> None:
    flux, error, z = _template_galaxies(rng, 8, snr=30.0)
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    exact = fit_catalog(cat, TemplateFitConfig(**FAST), calibrate=False)
    mu = fit_catalog(cat, TemplateFitConfig(**FAST, solver="mu", mu_iterations=50), calibrate=False)
    # chi2 at the mode ~ the minimum over z: feasible MU solutions never beat the exact one
    assert np.all(np.asarray(mu["chi2"]) >= np.asarray(exact["chi2"]) - 0.5)
    assert np.median(np.abs(np.asarray(mu["zphot"]) - z)) < 0.01


def test_zero_point_calibration_recovers_injected_offsets(rng: np.random.Generator) -> None:
    flux, error, z = _template_galaxies(rng, 150, snr=40.0)
    narrow = np.array([b.startswith("NB") for b in BANDS])
    offsets = normalise_zero_points(1 + rng.normal(0, 0.04, len(BANDS)), narrow)
    cat = _catalog(flux * offsets, error * offsets, z, rng.standard_normal(flux.shape))
    zp = calibrate_zero_points(cat, TemplateFitConfig(**FAST, zp_iterations=3))
    assert np.std(np.log(zp / offsets)) < 0.01  # injected rms 0.04; measured ~0.007
    assert np.corrcoef(np.log(zp), np.log(offsets))[0, 1] > 0.95


def test_pz_products_are_normalised_and_consistent() -> None:
    pz = PzConfig()
    z_fit = TemplateFitConfig().z_grid()
    chi2 = torch.tensor(
        np.stack(
            [
                ((z_fit - 0.5) / 0.01) ** 2,
                np.minimum(((z_fit - 0.3) / 0.004) ** 2, ((z_fit - 0.9) / 0.02) ** 2 + 1),
            ]
        )
    )
    p = chi2_pz_grid(chi2, z_fit, pz)
    assert np.allclose(np.trapezoid(p.numpy(), pz.grid(), axis=1), 1.0, atol=1e-9)
    out = {k: v.numpy() for k, v in grid_products(p, pz, torch.tensor([0.5, np.nan])).items()}
    assert out["zphot"][0] == pytest.approx(0.5) and out["zphot"][1] == pytest.approx(0.3)
    assert out["zmedian"][0] == pytest.approx(0.5, abs=1e-4)
    assert out["z_hi68"][0] - out["z_lo68"][0] == pytest.approx(0.02, rel=0.02)  # 2 sigma
    assert out["odds"][0] == pytest.approx(0.1197, abs=2e-3)  # +-0.0015 of a sigma=0.01 Gaussian
    assert out["pit"][0] == pytest.approx(0.5, abs=1e-3) and np.isnan(out["pit"][1])
    mix = compress_mixture(p, pz, 4)
    assert np.allclose(mix["weights"].sum(1).numpy(), 1.0)
    assert mix["means"][0, 0] == pytest.approx(0.5, abs=1e-4)
    assert mix["stds"][0, 0] == pytest.approx(0.01, rel=0.02)
    assert sorted(mix["means"][1, :2].numpy().round(2).tolist()) == [0.3, 0.9]


def test_quantile_takes_one_level_per_galaxy() -> None:
    pz = PzConfig()
    grid = torch.as_tensor(pz.grid())
    p = torch.as_tensor(np.exp(-0.5 * ((pz.grid()[None, :] - [[0.4], [0.8], [1.1]]) / 0.05) ** 2))
    cdf = cdf_grid(p, pz.dz)
    cdf = cdf / cdf[:, -1:]
    levels = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    got = quantile(cdf, grid, levels)
    for i, q in enumerate(levels.tolist()):
        assert got[i] == quantile(cdf, grid, q)[i]  # the same as one level for all
    np.testing.assert_allclose(
        got.numpy(), [0.4 - 1.2816 * 0.05, 0.8, 1.1 + 1.2816 * 0.05], atol=1e-4
    )


def test_outlier_exposures_are_clipped(rng: np.random.Generator) -> None:
    from deepz_core.catalog.catalog import Exposures

    n = 50
    true = np.full(n, 10.0)
    flux = true[:, None] + rng.normal(0, 1, (n, 5))
    flux[:, 2] += 12.0  # one outlier exposure per galaxy
    exp = Exposures(
        ref_id=np.repeat(np.arange(1, n + 1), 5),
        band=np.full(5 * n, "NB455"),
        exp_num=np.tile(np.arange(5), n),
        flux=flux.ravel(),
        flux_error=np.ones(5 * n),
    )
    cat = Catalog(
        ref_id=np.arange(1, n + 1),
        bands=("NB455",),
        flux=flux.mean(1, keepdims=True),
        flux_error=np.full((n, 1), 0.5**0.5 * 0.63),
        exposures=exp,
    )
    f, e = clipped_coadds(cat, 4.0)
    assert abs(np.mean(f[:, 0]) - 10.0) < 0.3 and np.allclose(e[:, 0], 0.5)  # 4 exposures left


def test_cli_end_to_end(tmp_path: Path, rng: np.random.Generator) -> None:
    flux, error, z = _template_galaxies(rng, 24, snr=30.0)
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    write_catalog(cat, tmp_path / "cat.fits")
    (tmp_path / "cfg.json").write_text(json.dumps(FAST))
    out = tmp_path / "pred.parquet"
    args = [
        "templatefit",
        "--catalog",
        str(tmp_path / "cat.fits"),
        "--out",
        str(out),
        "--workers",
        "1",
        "--config",
        str(tmp_path / "cfg.json"),
        "--grid",
    ]
    assert main(args) == 0
    from astropy.table import Table

    t = Table.read(out)
    assert {"zphot", "zmean", "odds", "pit", "weights", "means", "stds", "chi2", "pz"} <= set(
        t.colnames
    )
    assert t["pz"].shape == (24, 1501)
    zp = read_zero_points(str(out) + ".zeropoints.json", BANDS)
    assert zp.shape == (46,) and np.all(zp > 0)
    out.write_text("a user's file")  # an existing output is replaced only when asked
    assert main(args) == 2 and out.read_text() == "a user's file"
    assert main([*args, "--overwrite"]) == 0 and len(Table.read(out)) == 24
    assert main(["evaluate", "--pred", str(out), "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["overall"]["n"] == 24 and report["overall"]["sigma68"] < 0.01


def test_cli_fits_the_catalogues_redshift_range_and_says_so(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: `templatefit` fitted z <= 1.5 silently on a mock to z ~ 3; the range now
    follows the catalogue's spec-z (as `train`'s grid does), --z-max sets it, and the command
    says which on stderr, in its JSON line and in the output's meta."""
    flux, error, z = _template_galaxies(rng, 8, snr=30.0)
    cat = _catalog(flux, error, np.linspace(0.2, 2.7, 8), rng.standard_normal(flux.shape))
    write_catalog(cat, tmp_path / "cat.fits")
    (tmp_path / "cfg.json").write_text(json.dumps(FAST))
    base = ["templatefit", "--catalog", str(tmp_path / "cat.fits"), "--workers", "1"]
    base += ["--config", str(tmp_path / "cfg.json"), "--no-zp-calibrate", "--grid"]
    for extra, z_max in (([], 3.0), (["--z-max", "2"], 2.0)):
        out = tmp_path / f"tf{z_max:g}.fits"
        assert main([*base, "--out", str(out), *extra]) == 0
        captured = capsys.readouterr()
        assert f"template fit over z 0-{z_max:g}" in captured.err
        assert json.loads(captured.out.strip().splitlines()[-1])["z_range"] == [0.0, z_max]
        from astropy.table import Table

        t = Table.read(out)
        assert t.meta["TF_ZMAX"] == z_max and t.meta["PZ_ZMAX"] == z_max
        assert t["pz"].shape == (8, int(round(z_max / 0.001)) + 1)


def test_bad_inputs_give_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="coarse_stride"):
        TemplateFitConfig(coarse_stride=3)
    with pytest.raises(ConfigError, match="unknown template-fit config fields"):
        TemplateFitConfig.from_dict({"nope": 1})
    with pytest.raises(ConfigError, match="solver"):
        TemplateFitConfig(solver="simplex")
    cat = Catalog(ref_id=[1], bands=("euclid_h",), flux=[[1.0]], flux_error=[[0.1]])
    with pytest.raises(ConfigError, match="outside the template wavelength range"):
        fit_catalog(cat)
    cat = Catalog(ref_id=[1], bands=("subaru_i",), flux=[[1.0]], flux_error=[[0.1]])
    with pytest.raises(ConfigError, match="zero_points"):
        fit_catalog(cat, TemplateFitConfig(**FAST), zero_points=np.array([1.0, 2.0]))
    with pytest.raises(ConfigError, match="workers"):
        fit_catalog(cat, TemplateFitConfig(**FAST), workers=0)
    with pytest.raises(ConfigError, match=r"\.fits or \.parquet|predictions are written"):
        write_templatefit(fit_catalog(cat, TemplateFitConfig(**FAST)), tmp_path / "x.csv")
    code = main(
        [
            "templatefit",
            "--catalog",
            str(tmp_path / "missing.fits"),
            "--out",
            str(tmp_path / "o.fits"),
        ]
    )
    assert code == 2 and "missing.fits" in capsys.readouterr().err
    code = main(["templatefit", "--catalog", "c.fits", "--out", str(tmp_path / "o.txt")])
    assert code == 2 and "o.txt" in capsys.readouterr().err


def test_kcorrect_set_is_one_run_of_five_templates_with_igm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepz_core.sed.photometry import BandPhotometry

    kc = load_template_set("kcorrect")
    assert kc.n_templates == 5 and kc.run_members().tolist() == [[0, 1, 2, 3, 4]]
    assert np.all(np.isnan(kc.ebv)) and not kc.is_line.any() and kc.version.startswith("kcorrect")
    load_template_set()  # in memory, so the bcnz2 table below needs no SSP library in tmp_path
    monkeypatch.setenv("DEEPZ_CACHE_DIR", str(tmp_path))
    bands, z = ("cfht_u", "subaru_r", "subaru_z"), np.array([0.2, 1.0, 3.5])
    table = flux_table(bands, z, "kcorrect")
    assert table.shape == (3, 3, 5) and np.all(np.isfinite(table)) and np.all(table >= 0)
    # same bands and grid, one cache file per set (bcnz2 stops at 900 A rest: no z = 3.5 in u)
    assert flux_table(bands, z[:2], "bcnz2").shape == (2, 3, 42)
    assert flux_table(bands, z[:2], "kcorrect").shape == (2, 3, 5)
    assert len(list(tmp_path.glob("templates_*.npz"))) == 3
    no_igm = np.stack(
        [BandPhotometry(bands, kc.wavelength).fluxes(kc.spectra, np.full(5, zi)).T for zi in z]
    )
    ratio = table / no_igm  # (Z, B, T): the IGM transmission seen by each band
    assert np.allclose(ratio[:2], 1.0, atol=1e-3) and np.allclose(ratio[:, 1:], 1.0, atol=1e-3)
    assert np.all(ratio[2, 0] < 0.5)  # u samples the Lyman-alpha forest at z = 3.5


def _kcorrect_galaxies(
    rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n noise-free galaxies: random non-negative mixtures of all 5 kcorrect templates at fit-grid
    redshifts, i = 20, errors of 2% plus a floor of 1% of the i flux."""
    z_grid = TemplateFitConfig(**FAST).z_grid()
    table = flux_table(BANDS, z_grid, "kcorrect")  # (Z, B, 5)
    zi = rng.integers(20, int(1.4 / FAST["dz"]), n)
    flux = np.einsum("nbt,nt->nb", table[zi], rng.uniform(0.1, 1.0, (n, 5)) / table[zi].mean(1))
    flux *= (10 ** (-0.4 * (20.0 - 23.9)) / flux[:, -2])[:, None]  # subaru_i = 20
    return flux, flux / 50.0 + 0.01 * flux[:, -2:-1], z_grid[zi]


def test_kcorrect_mixtures_are_recovered_at_their_redshift(rng: np.random.Generator) -> None:
    flux, error, z = _kcorrect_galaxies(rng, 10)
    cat = _catalog(flux, error, z, np.zeros_like(flux))
    t = fit_catalog(cat, TemplateFitConfig(**FAST, template_set="kcorrect"), calibrate=False)
    assert np.all(np.abs(np.asarray(t["zphot"]) - z) <= FAST["dz"] + 1e-6)  # within a grid step
    assert np.all(np.asarray(t["chi2"]) < 1.0) and np.all(np.asarray(t["template"]) < 5)
    assert np.all(np.isnan(np.asarray(t["ebv"])))  # no Calzetti grid in this set
    assert t.meta["TFNAME"] == "kcorrect" and t.meta["TFSET"].startswith("kcorrect")


def test_cli_templates_option_picks_the_set(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    flux, error, z = _kcorrect_galaxies(rng, 6)
    write_catalog(_catalog(flux, error, z, np.zeros_like(flux)), tmp_path / "cat.fits")
    (tmp_path / "cfg.json").write_text(json.dumps(FAST))
    out = tmp_path / "pred.fits"
    args = [
        "templatefit",
        "--catalog",
        str(tmp_path / "cat.fits"),
        "--out",
        str(out),
        "--workers",
        "1",
        "--config",
        str(tmp_path / "cfg.json"),
        "--no-zp-calibrate",
    ]
    assert main([*args, "--templates", "kcorrect"]) == 0
    assert json.loads(capsys.readouterr().out)["template_set"] == "kcorrect"
    from astropy.table import Table

    t = Table.read(out)
    assert t.meta["TFNAME"] == "kcorrect"
    assert np.all(np.abs(np.asarray(t["zphot"]) - z) <= FAST["dz"] + 1e-6)
    zp = json.loads((tmp_path / "pred.fits.zeropoints.json").read_text())
    assert zp["template_set_name"] == "kcorrect" and zp["template_set"].startswith("kcorrect")
    assert main([*args, "--templates", "bc03", "--overwrite"]) == 2  # the set, not the file
    err = capsys.readouterr().err
    assert "--templates" in err and "'bc03'" in err and "kcorrect" in err


def test_unknown_template_set_names_the_field_and_value() -> None:
    with pytest.raises(ConfigError, match=r"template_set must be one of .*bcnz2.*kcorrect.*'bc03'"):
        TemplateFitConfig(template_set="bc03")
    with pytest.raises(ConfigError, match=r"template_set .*'nope'"):
        TemplateFitConfig.from_dict({"template_set": "nope"})
    with pytest.raises(ConfigError, match=r"template_set .*'nope'"):
        load_template_set("nope")
    with pytest.raises(ConfigError, match=r"template_set .*'nope'"):
        flux_table(BANDS, np.array([0.5]), "nope")
    assert TemplateFitConfig().template_set == "bcnz2"


def test_explain_galaxy_lays_the_fit_open(rng: np.random.Generator) -> None:
    """eazy-py's view of one galaxy: chi2(z) is smallest at the catalogue fit's best redshift
    and the best-fit model reproduces a noiseless template galaxy's fluxes."""
    from deepz_core.templatefit.fit import explain_galaxy

    flux, error, z = _template_galaxies(rng, 3, snr=200.0)
    cat = _catalog(flux, error, z, np.zeros(flux.shape))
    cfg = TemplateFitConfig(**FAST)
    out = explain_galaxy(cat.select(np.array([1])), cfg)
    assert out["z_chi2"].shape == out["chi2"].shape and np.all(np.diff(out["z_chi2"]) > 0)
    assert out["z_best"] == pytest.approx(out["z_chi2"][np.argmin(out["chi2"])])
    assert abs(out["z_best"] - z[1]) / (1 + z[1]) < 0.01
    np.testing.assert_allclose(out["model_flux"], flux[1], rtol=0.05)
    assert isinstance(out["template"], str) and out["template"]


class _Stop(Exception):
    """What the test's ``stop`` raises (a cancel, in the jobs)."""


def test_stop_ends_the_fit_between_chunks(rng: np.random.Generator, monkeypatch) -> None:
    """``stop`` is called after every chunk; what it raises ends the fit, serially and in a pool,
    where the chunks not yet started are cancelled (a cancel within about a chunk's time)."""
    flux, error, z = _template_galaxies(rng, 40, snr=50.0)
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    cfg = TemplateFitConfig(**FAST, chunk=4)  # 10 chunks
    calls = []

    def stop_at_second() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit_catalog(cat, cfg, calibrate=False, stop=stop_at_second)
    assert len(calls) == 2
    calls.clear()
    started = []
    real = fit_module._worker_fit
    monkeypatch.setattr(fit_module, "_worker_fit", lambda *a: started.append(1) or real(*a))
    with ThreadPoolExecutor(1) as pool, pytest.raises(_Stop):
        fit_catalog(cat, cfg, calibrate=False, pool=pool, stop=stop_at_second)
    assert len(calls) == 2 and len(started) < 10  # the rest never ran
    t = fit_catalog(cat, cfg, calibrate=False, stop=lambda: None)  # a stop that never fires
    assert len(t) == 40


def test_progress_hears_the_galaxies_fitted_so_far(rng: np.random.Generator) -> None:
    """``progress`` gets the running total after every chunk (the template-fit run's status),
    serially and in a pool, ending at every galaxy."""
    flux, error, z = _template_galaxies(rng, 18, snr=50.0)
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    cfg = TemplateFitConfig(**FAST, chunk=4)  # 5 chunks, the last of 2
    seen: list[int] = []
    fit_catalog(cat, cfg, calibrate=False, progress=seen.append)
    assert seen == [4, 8, 12, 16, 18]
    seen.clear()
    with ThreadPoolExecutor(2) as pool:
        fit_catalog(cat, cfg, calibrate=False, pool=pool, progress=seen.append)
    assert len(seen) == 5 and seen[-1] == 18 and np.all(np.diff(seen) > 0)


def test_junk_bands_drop_out_of_the_fit_like_missing_ones(rng: np.random.Generator) -> None:
    """Regression: a band at 1e30 (a bad pixel) or a -99 placeholder with a positive error was
    fitted as a measurement (chi2 ~ 1e60, inf in the float32 column, the redshift decided by the
    junk); it now drops out of chi2 exactly as a NaN band does, and the fit is the same."""
    flux, error, z = _template_galaxies(rng, 6, snr=30.0)
    noise = rng.standard_normal(flux.shape)
    junk = _catalog(flux, error, z, noise)
    junk.flux[0, 3], junk.flux[1, 5], junk.flux_error[2, 7] = 1e30, -99.0, 1e30
    nan = _catalog(flux, error, z, noise)
    nan.flux[0, 3], nan.flux[1, 5], nan.flux[2, 7] = np.nan, np.nan, np.nan
    cfg = TemplateFitConfig(**FAST)
    got, want = (fit_catalog(c, cfg, calibrate=False) for c in (junk, nan))
    for name in ("zphot", "chi2", "odds"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert np.all(np.isfinite(np.asarray(got["chi2"])))


def test_galaxies_with_too_few_bands_get_no_pz_never_numbers(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """Regression: a row with every band NaN got zphot 0, chi2 0, zmedian 0.75, rows with 30 of 46
    bands NaN ordinary-looking values, and the output had no ``flag`` column, so ``evaluate``
    counted them as estimates. Now: deepz's flag column from the fit's screen, NO_PZ rows NaN."""
    flux, error, z = _template_galaxies(rng, 6, snr=30.0)
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    ref = BANDS.index("subaru_i")
    cat.flux[0] = np.nan  # no photometry
    cat.flux[1, ref] = np.nan  # reference band missing: the fit needs no ratios
    cat.flux[2, :30] = np.nan  # 16 of 46 bands: below half
    cat.flux[3, :20] = np.nan  # 26 of 46: enough
    t = fit_catalog(cat, TemplateFitConfig(**FAST), calibrate=False, grid=True)
    flag = np.asarray(t["flag"])
    no_pz = PzFlag.NO_PZ | PzFlag.TOO_FEW_BANDS
    assert flag[0] == no_pz | PzFlag.BAND_MISSING | PzFlag.REF_UNUSABLE
    assert flag[1] == PzFlag.REF_UNUSABLE and flag[2] == no_pz | PzFlag.BAND_MISSING
    assert flag[3] == PzFlag.BAND_MISSING and np.all(flag[4:] == 0)
    for name in ("zphot", "zmedian", "z_lo68", "odds", "pit", "chi2", "ebv", "k_nb"):
        values = np.asarray(t[name], dtype=float)
        assert np.all(np.isnan(values[[0, 2]])), name
        assert np.all(np.isfinite(values[[1, 3, 4, 5]])), name
    for name in ("weights", "means", "pz"):
        assert np.all(np.isnan(np.asarray(t[name])[[0, 2]])), name
    assert list(np.asarray(t["template"])[[0, 2]]) == [-1, -1]
    write_templatefit(t, tmp_path / "tf.fits")
    assert (
        main(["evaluate", "--pred", str(tmp_path / "tf.fits"), "--out", str(tmp_path / "r.json")])
        == 0
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["overall"]["n_no_pz"] == 2 and report["overall"]["n"] == 4


def test_a_catalogue_without_any_usable_galaxy_gives_nan_rows(rng: np.random.Generator) -> None:
    flux, error, z = _template_galaxies(rng, 3, snr=30.0)
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    cat.flux[:] = np.nan
    t = fit_catalog(cat, TemplateFitConfig(**FAST), calibrate=False, grid=True)
    assert len(t) == 3 and np.all(np.asarray(t["flag"]) & PzFlag.NO_PZ)
    assert np.all(np.isnan(np.asarray(t["zphot"]))) and t["pz"].shape == (3, 1501)


def test_chi2_is_never_negative_where_the_model_fits_exactly(rng: np.random.Generator) -> None:
    """Regression: 82 of 400 rows had chi2 < 0 (down to -0.0097): chi2 = fWf - 2 v.b + vGv is a
    difference of large numbers with G, b from float32 template products; an exact fit left
    round-off below 0. chi2 is a sum of squares: clamped at 0."""
    n, b, t = 200, 6, 10
    A = rng.uniform(0.1, 1, (n, b, t))
    f = np.einsum("nbt,nt->nb", A, rng.uniform(0, 1, (n, t)) * 30)  # exact fits, S/N ~ 100s
    w = np.full((n, b), 1.0)
    G = torch.tensor(np.einsum("nb,nbi,nbj->nij", w, A, A), dtype=torch.float32).double()
    bb = torch.tensor(np.einsum("nb,nbi,nb->ni", w, A, f), dtype=torch.float32).double()
    chi2 = chi2_value(G, bb, torch.tensor((w * f * f).sum(1)), nnls(G, bb)).numpy()
    assert np.all(chi2 >= 0) and np.all(chi2 < 1e-6 * (w * f * f).sum(1))  # round-off only


def test_bands_named_by_a_letter_are_told_their_survey_names() -> None:
    """Review, tenth session: mag_u ... mag_z become bands u ... z; the fit said only that they
    have no filter curve."""
    from deepz_core.templatefit.calibration import check_bands

    with pytest.raises(ConfigError, match=r"no known filter curve .*sdss_u, sdss_g.*mag_u_sdss"):
        check_bands(("u", "g", "r", "i", "z"), TemplateFitConfig())


def test_a_catalogue_without_mag_gets_the_reference_band_s(rng: np.random.Generator) -> None:
    """Eleventh session: a template fit of an SDSS-like catalogue (magnitudes per band, no 'mag'
    column) wrote no mag column, so Results said 'No magnitudes in these runs' catalogues' and
    showed no metric per magnitude. The fit now writes the reference band's magnitude, as deepz's
    predictions do; a catalogue's own mag is kept."""
    import dataclasses

    from deepz_core.catalog.features import default_ref_band

    flux, error, z = _template_galaxies(rng, 6, snr=30.0)
    sky = {"coord_ra": np.linspace(55, 56, 6), "coord_dec": np.linspace(-32, -31, 6)}  # DP0's
    cat = _catalog(flux, error, z, rng.standard_normal(flux.shape))
    cat = dataclasses.replace(cat, mag=None, extra=sky)
    t = fit_catalog(cat, TemplateFitConfig(**FAST), calibrate=False)
    np.testing.assert_allclose(t["mag"], cat.magnitudes(default_ref_band(cat.bands)))
    np.testing.assert_array_equal(t["coord_ra"], sky["coord_ra"])  # carried, as ra/dec are
    assert np.all(np.isfinite(t["mag"]))
    own = fit_catalog(_catalog(flux, error, z, np.zeros(flux.shape)), TemplateFitConfig(**FAST))
    np.testing.assert_array_equal(own["mag"], 20.0)
