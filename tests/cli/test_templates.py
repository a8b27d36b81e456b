"""Command line of the combination with the template fit (beyond E20): `train --templates`,
`combine`, and `predict` on a combined run (the combination by default, `--network-only` for the
networks' fast path); wrong choices fail with one line and exit code 2, before any work."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import qp
from astropy.table import Table

import deepz_core as dz
from deepz_core.catalog.io import write_catalog
from deepz_core.cli.main import main
from deepz_core.hybrid.runs import HYBRID_FILE, HYBRID_PREDICTIONS, load_hybrid
from deepz_core.rundir import RunDir
from deepz_core.sed.bands import band_set
from tests.cli.messages import one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

N = 300  # 251 with a spec-z: above the 200 out-of-fold galaxies a combination needs
BANDS = band_set("paus")[::4] + band_set("cosmos")
COMBINED_ONLY = ("zphot_net", "odds_net", "zphot_tf", "odds_tf", "chi2_tf")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-hybrid")
    paths = {"catalog": root / "cat.fits", "new": root / "new.fits"}
    write_catalog(dz.simulate_catalog("paus-mock", N, BANDS, seed=5), paths["catalog"])
    new = dz.simulate_catalog("paus-mock", 30, BANDS, seed=6)  # new ids: new galaxies
    write_catalog(dataclasses.replace(new, ref_id=new.ref_id + 10**6, exposures=None), paths["new"])
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory, files) -> tuple[Path, str]:
    """`train --preset smoke --templates kcorrect`: a run combined with the kcorrect template fit;
    returns its folder and what the command printed."""
    out = tmp_path_factory.mktemp("cli-hybrid-run") / "run"
    args = ["train", "--catalog", str(files["catalog"]), "--preset", "smoke", "--pretrain", "none"]
    code = main([*args, "--templates", "kcorrect", "--device", "cpu", "--out", str(out)])
    assert code == 0
    return out, (out / HYBRID_FILE).read_text()


def test_train_with_templates_combines_the_run(trained) -> None:
    out, hybrid_json = trained
    run = RunDir(out)
    assert run.status()["state"] == "finished" and run.config()["templates"] == "kcorrect"
    assert json.loads(hybrid_json)["template_set"] == "kcorrect"
    assert set(run.status()["summary"]["combined"]) == {"network", "templatefit", "combined"}
    table = Table.read(out / HYBRID_PREDICTIONS)
    assert len(table) == N and set(COMBINED_ONLY) <= set(table.colnames)


def test_combine_prints_json_and_writes_hybrid_json(trained, tmp_path, capsys) -> None:
    run = Path(shutil.copytree(trained[0], tmp_path / "run"))
    (run / HYBRID_FILE).unlink()
    (run / HYBRID_PREDICTIONS).unlink()
    args = ["combine", "--run", str(run), "--templates", "bcnz2", "--workers", "1"]
    assert main([*args, "--no-calibrate"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["run"] == str(run) and printed["templates"] == "bcnz2"
    for name in ("network", "templatefit", "combined"):
        assert set(printed[name]) == {"sigma68", "outliers", "catastrophic", "pit_ks"}, name
    hybrid = load_hybrid(run)
    assert hybrid.template_set == "bcnz2" and hybrid.calibration is None
    assert hybrid.summary["overall"]["combined"]["sigma68"] == printed["combined"]["sigma68"]
    assert len(Table.read(run / HYBRID_PREDICTIONS)) == N
    with RunDir(run).locked():  # the command let go of the run's lock
        pass


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--templates", "nosuch"], "templates must be one of ['bcnz2', 'kcorrect'], got 'nosuch'"),
        (["--workers", "0"], "--workers must be 'auto' or an integer >= 1, got '0'"),
    ],
)
def test_combine_argument_errors(trained, capsys, args, needle) -> None:
    before = (trained[0] / HYBRID_FILE).read_text()
    assert main(["combine", "--run", str(trained[0]), *args]) == 2
    assert needle in one_line_error(capsys)
    assert (trained[0] / HYBRID_FILE).read_text() == before


def test_combine_needs_a_trained_run(tmp_path, capsys) -> None:
    assert main(["combine", "--run", str(tmp_path)]) == 2
    assert "has no trained model" in one_line_error(capsys)


def test_train_refuses_an_unknown_template_set_before_any_work(tmp_path, files, capsys) -> None:
    args = ["train", "--catalog", str(files["catalog"]), "--preset", "smoke"]
    assert main([*args, "--templates", "nosuch", "--out", str(tmp_path / "r")]) == 2
    assert "nosuch" in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_train_refuses_templates_that_cannot_cover_a_band_before_any_work(tmp_path, capsys) -> None:
    """Regression: the set was checked against the bands only after training (rc 0, the error
    inside the status's "combined"); now one line with the way out, and no run folder."""
    cat = dz.simulate_catalog("paus-mock", 40, ("sdss_r", "subaru_i", "euclid_h"), seed=5)
    write_catalog(cat, tmp_path / "c.fits")
    args = ["train", "--catalog", str(tmp_path / "c.fits"), "--preset", "smoke"]
    assert main([*args, "--templates", "bcnz2", "--out", str(tmp_path / "r")]) == 2
    line = one_line_error(capsys)
    assert "'euclid_h'" in line and "template set 'kcorrect' covers it" in line
    assert not (tmp_path / "r").exists()


def test_predict_on_a_combined_run_writes_the_combined_columns(
    trained, files, tmp_path, capsys
) -> None:
    base = ["predict", "--run", str(trained[0]), "--catalog", str(files["new"]), "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "p.fits")]) == 0
    assert "wrote 30 combined predictions" in capsys.readouterr().out
    table = Table.read(tmp_path / "p.fits", hdu=1)
    assert len(table) == 30 and set(COMBINED_ONLY) <= set(table.colnames)
    np.testing.assert_array_equal(table["ref_id"], dz.read_catalog(files["new"]).ref_id)
    assert main([*base, "--out", str(tmp_path / "p.hdf5")]) == 0
    ens = qp.read(str(tmp_path / "p.hdf5"))
    assert ens.npdf == 30
    np.testing.assert_allclose(ens.ancil["zmode"], table["zphot"])
    assert main([*base, "--network-only", "--out", str(tmp_path / "n.fits")]) == 0
    net = Table.read(tmp_path / "n.fits", hdu=1)
    assert not set(COMBINED_ONLY) & set(net.colnames)
    np.testing.assert_allclose(table["zphot_net"], net["zphot"], atol=1e-6)
    assert main([*base, "--network-only", "--out", str(tmp_path / "dataset")]) == 0
    assert list((tmp_path / "dataset").glob("part-*.parquet"))


@pytest.mark.parametrize(
    "args",
    [
        ["--out", "{tmp}/folder"],
        ["--out", "{tmp}/folder", "--dask", "local:1"],
        ["--out", "{tmp}/h", "--out-format", "hats"],
        ["--out", "{tmp}/p.fits", "--grid"],
        ["--out", "{tmp}/p.fits", "--keep-columns", "ra"],
    ],
    ids=["dataset", "dask", "hats", "grid", "keep-columns"],
)
def test_predict_options_of_the_networks_alone_need_network_only(
    trained, files, tmp_path, capsys, args
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["predict", "--run", str(trained[0]), "--catalog", str(files["new"])]
    assert main([*base, *args]) == 2
    assert "--network-only" in one_line_error(capsys)
    assert not list(tmp_path.iterdir())


def test_predict_never_writes_over_its_catalogue(trained, files, tmp_path, capsys) -> None:
    path = Path(shutil.copy(files["new"], tmp_path / "in.fits"))
    before = path.read_bytes()
    for extra in ([], ["--network-only"]):
        args = ["predict", "--run", str(trained[0]), "--catalog", str(path), "--out", str(path)]
        assert main([*args, *extra]) == 2
        assert "would destroy the input" in one_line_error(capsys)
        assert path.read_bytes() == before


def test_predict_with_a_damaged_hybrid_json_fails_with_one_line(
    trained, files, tmp_path, capsys
) -> None:
    run = Path(shutil.copytree(trained[0], tmp_path / "run"))
    doc = json.loads((run / HYBRID_FILE).read_text())
    (run / HYBRID_FILE).write_text(json.dumps({**doc, "folds": [{"version": 1}]}))
    args = ["predict", "--run", str(run), "--catalog", str(files["new"])]
    assert main([*args, "--out", str(tmp_path / "p.fits")]) == 2
    assert "hybrid.json: not a stored combination" in one_line_error(capsys)
    assert not (tmp_path / "p.fits").exists()
    (run / HYBRID_FILE).write_text("{")
    assert main([*args, "--out", str(tmp_path / "p.fits")]) == 2
    assert "not JSON" in one_line_error(capsys)


def test_templatefit_of_a_broad_band_catalogue_takes_its_odds_window(tmp_path, capsys) -> None:
    """Review, tenth session: `templatefit` of an LSST catalogue wrote ODDS over E20's narrow-band
    window (0.003) and `evaluate` judged it narrow-band, where a run on the same bands uses the
    broad-band profile (window 0.1, outliers |dz| > 0.15)."""
    write_catalog(dz.simulate_catalog("lsst-deep", 40, seed=3), tmp_path / "deep.fits")
    out = tmp_path / "tf.fits"
    fit = ["templatefit", "--catalog", str(tmp_path / "deep.fits"), "--workers", "1"]
    assert main([*fit, "--out", str(out)]) == 0
    assert Table.read(out, hdu=1).meta["DZODDSW"] == "0.1"
    assert main(["evaluate", "--pred", str(out), "--out", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["profile"]["name"] == "broad-band"


def test_templatefit_output_records_its_provenance(tmp_path, capsys) -> None:
    """Docs review (thirteenth session): the README said every output records its provenance,
    but a template fit's file had only its set and zero-points. It now carries deepz's version,
    the catalogue's path and sha256, the grid and the time, under predict's FITS keywords."""
    from deepz_core.inference.provenance import file_sha256

    cat = write_catalog(dz.simulate_catalog("lsst-deep", 30, seed=4), tmp_path / "deep.fits")
    out = tmp_path / "tf.fits"
    assert main(["templatefit", "--catalog", str(cat), "--workers", "1", "--out", str(out)]) == 0
    meta = Table.read(out, hdu=1).meta
    assert meta["DZCATSHA"] == file_sha256(cat) and meta["DZCAT"] == str(cat.resolve())
    assert meta["DZVERS"] == dz.__version__ and meta["DZZGRID"].startswith("0:")
    assert "DATE" in meta and meta["TFNAME"]


def _without_band(cat_path: Path, band: str, folder: Path) -> dict[str, Path]:
    """The catalogue at ``cat_path`` written without band ``band``'s columns ('absent') and with
    them NaN in every row ('nan')."""
    table = Table.read(cat_path, hdu=1)
    nan = table.copy()
    nan[f"flux_{band}"] = np.nan
    table.remove_columns([f"flux_{band}", f"flux_error_{band}"])
    paths = {"absent": folder / "absent.fits", "nan": folder / "nan.fits"}
    table.write(paths["absent"])
    nan.write(paths["nan"])
    return paths


def test_predict_on_a_combined_run_imputes_a_band_absent_or_without_values(
    trained, files, tmp_path, capsys, caplog
) -> None:
    """Fourteenth session: `predict` on a combined run refused a catalogue with band NB455 NaN in
    every row ('remove band ... or fill it in to train on it; predicting the file with a trained
    run (deepz predict ...) imputes it'), which the networks' path predicts. Now both absent and
    valueless bands are predicted, BAND_MISSING, with one warning, the same predictions; without
    the reference band it is one line, nothing written."""
    paths = _without_band(files["new"], "NB455", tmp_path)
    base = ["predict", "--run", str(trained[0]), "--device", "cpu"]
    tables = {}
    for name, path in paths.items():
        out = tmp_path / f"{name}.parquet"
        caplog.clear()
        with caplog.at_level("WARNING", logger="deepz"):
            assert main([*base, "--catalog", str(path), "--out", str(out)]) == 0
        notes = [r.getMessage() for r in caplog.records]
        assert len(notes) == 1 and notes[0].startswith("band NB455 ") and "imputed" in notes[0]
        assert "wrote 30 combined predictions" in capsys.readouterr().out
        tables[name] = Table.read(out)
        assert (np.asarray(tables[name]["flag"]) & dz.PzFlag.BAND_MISSING).all()
    for name in ("zphot", "zphot_tf", "chi2_tf", "zmedian", "odds", "flag"):
        np.testing.assert_array_equal(tables["nan"][name], tables["absent"][name], err_msg=name)
    (tmp_path / "noref").mkdir()
    noref = _without_band(files["new"], "subaru_i", tmp_path / "noref")
    out = tmp_path / "noref.parquet"
    assert main([*base, "--catalog", str(noref["absent"]), "--out", str(out)]) == 2
    assert "its reference band 'subaru_i' among them" in one_line_error(capsys)
    assert not out.exists()


def test_templatefit_fits_a_catalogue_with_a_band_without_values_without_it(
    files, tmp_path, capsys, caplog
) -> None:
    """Fourteenth session: `templatefit` refused a catalogue with band NB455 NaN in every row,
    sending the user to `deepz predict`; it now fits the catalogue without the band, saying so
    once: the fit of the catalogue without the band's columns."""
    from deepz_core.templatefit.fit import zero_points_path

    paths = _without_band(files["new"], "NB455", tmp_path)
    fits = {}
    for name, path in paths.items():
        out = tmp_path / f"tf_{name}.fits"
        caplog.clear()
        with caplog.at_level("WARNING", logger="deepz"):
            args = ["templatefit", "--catalog", str(path), "--workers", "1", "--out", str(out)]
            assert main(args) == 0
        notes = [r.getMessage() for r in caplog.records]
        if name == "nan":
            assert notes == [
                "band NB455 has no values in this catalogue: left out of the template fit"
            ]
        else:
            assert notes == []
        fits[name] = Table.read(out, hdu=1)
    zero_points = json.loads(zero_points_path(tmp_path / "tf_nan.fits").read_text())
    assert "NB455" not in zero_points["bands"] and len(zero_points["bands"]) == len(BANDS) - 1
    for name in ("zphot", "chi2", "odds", "flag"):
        np.testing.assert_array_equal(fits["nan"][name], fits["absent"][name], err_msg=name)
