"""Nothing lost: an output never replaces a file of a run folder (any command, even with
--overwrite), an input of the command, or an existing file unless --overwrite asks; a partitioned
dataset folder still resumes. The reviewer's commands, each on a small case."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import deepz_core as dz
from deepz_core.cli.main import main
from deepz_core.rundir import RunDir
from tests.cli.messages import one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

USER_TEXT = "my notes, not a deepz file\n"


@pytest.fixture
def other_run(tmp_path: Path) -> Path:
    """Another run's folder (config.json + status.json) with its out-of-fold predictions."""
    run = RunDir(tmp_path / "runs" / "mock").create({"kind": "deepz", "catalog": "c.fits"})
    run.file("predictions.fits").write_bytes(b"SIMPLE  = T / the run's own predictions")
    return run.path


def _predict(tiny_run: Path, catalog: Path, out: Path, *more: str) -> list[str]:
    return ["predict", "--run", str(tiny_run), "--catalog", str(catalog), "--out", str(out), *more]


def test_predict_over_a_users_file_needs_overwrite(tmp_path, tiny_run, sky_catalog, capsys):
    out = tmp_path / "existing.parquet"
    out.write_text(USER_TEXT)
    assert main(_predict(tiny_run, sky_catalog[1], out)) == 2
    line = one_line_error(capsys)
    assert str(out) in line and "pass --overwrite to replace it" in line
    assert out.read_text() == USER_TEXT
    assert main(_predict(tiny_run, sky_catalog[1], out, "--overwrite")) == 0
    assert pq.read_table(out).num_rows == 200


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_predict_never_replaces_another_runs_predictions(
    tiny_run, sky_catalog, other_run, capsys, overwrite
) -> None:
    target = other_run / "predictions.fits"
    before = target.read_bytes()
    assert main(_predict(tiny_run, sky_catalog[1], target, *overwrite)) == 2
    line = one_line_error(capsys)
    assert f"inside the deepz run folder '{other_run}'" in line
    assert target.read_bytes() == before
    assert main(_predict(tiny_run, sky_catalog[1], other_run / "new.parquet", *overwrite)) == 2
    assert "inside the deepz run folder" in one_line_error(capsys)
    assert not (other_run / "new.parquet").exists()


def test_predict_never_writes_a_dataset_into_a_run_folder(tiny_run, sky_catalog, other_run, capsys):
    assert main(_predict(tiny_run, sky_catalog[1], other_run / "pz_dataset")) == 2
    assert "inside the deepz run folder" in one_line_error(capsys)
    assert main(_predict(tiny_run, sky_catalog[1], other_run, "--overwrite")) == 2
    assert f"is the deepz run folder '{other_run}'" in one_line_error(capsys)
    assert sorted(p.name for p in other_run.iterdir()) == [
        "config.json",
        "predictions.fits",
        "status.json",
    ]


def test_evaluate_never_replaces_a_runs_config(tmp_path, tiny_run, sky_catalog, capsys) -> None:
    pred = tmp_path / "clean.parquet"
    assert main(_predict(tiny_run, sky_catalog[1], pred)) == 0
    config = tiny_run / "config.json"
    before = config.read_bytes()
    for more in ([], ["--overwrite"]):
        assert main(["evaluate", "--pred", str(pred), "--out", str(config), *more]) == 2
        assert f"is inside the deepz run folder '{tiny_run}'" in one_line_error(capsys)
    assert config.read_bytes() == before
    assert dz.load_run(tiny_run).config.catalog  # still a readable run


def test_evaluate_replaces_its_report_only_when_asked(tmp_path, tiny_run, capsys) -> None:
    report = tmp_path / "report.json"
    args = ["evaluate", "--pred", str(tiny_run / "predictions.fits"), "--out", str(report)]
    assert main(args) == 0
    report.write_text("{}")
    assert main(args) == 2
    assert "pass --overwrite to replace it" in one_line_error(capsys)
    assert report.read_text() == "{}"
    assert main([*args, "--overwrite"]) == 0
    assert "overall" in json.loads(report.read_text())


def _no_simulation(monkeypatch) -> None:
    import deepz_core.simulate

    def never(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(deepz_core.simulate, "simulate", never)


def test_simulate_never_replaces_a_catalogue_or_a_runs_file_unasked(
    tmp_path, other_run, capsys, monkeypatch
) -> None:
    _no_simulation(monkeypatch)
    victim = tmp_path / "cats" / "victim2.fits"
    victim.parent.mkdir()
    victim.write_bytes(b"SIMPLE  = T / a user's catalogue")
    base = ["simulate", "--kind", "lsst-deep", "--n", "50", "--out"]
    assert main([*base, str(victim)]) == 2
    assert "victim2.fits' is an existing file: pass --overwrite" in one_line_error(capsys)
    assert main([*base, str(other_run / "predictions.fits"), "--overwrite"]) == 2
    assert "inside the deepz run folder" in one_line_error(capsys)
    sidecar = tmp_path / "cats" / "mock.exposures.parquet"  # a Parquet catalogue's exposures
    sidecar.write_text(USER_TEXT)
    assert main([*base, str(tmp_path / "cats" / "mock.parquet")]) == 2
    assert "--out (its exposures)" in one_line_error(capsys)
    assert victim.read_bytes().endswith(b"a user's catalogue") and sidecar.read_text() == USER_TEXT


def test_simulate_replaces_a_catalogue_when_asked(tmp_path) -> None:
    out = tmp_path / "mock.fits"
    out.write_text(USER_TEXT)
    args = ["simulate", "--kind", "paus-mock", "--n", "20", "--seed", "3", "--out", str(out)]
    assert main([*args, "--overwrite"]) == 0
    assert dz.read_catalog(out).n_galaxies == 20


def test_templatefit_never_writes_into_a_run_folder(tmp_path, other_run, sky_catalog, capsys):
    target = other_run / "predictions.fits"
    before = target.read_bytes()
    args = ["templatefit", "--catalog", str(sky_catalog[1]), "--out", str(target), "--overwrite"]
    assert main(args) == 2
    assert "inside the deepz run folder" in one_line_error(capsys)
    assert target.read_bytes() == before


def test_train_never_nests_a_run_inside_another(tmp_path, other_run, sky_catalog, capsys) -> None:
    out = other_run / "nested"
    args = ["train", "--catalog", str(sky_catalog[1]), "--pretrain", "none", "--out", str(out)]
    assert main(args) == 2
    assert f"inside the deepz run folder '{other_run}'" in one_line_error(capsys)
    assert not out.exists()


def test_a_dataset_folder_resumes_and_starts_over_only_when_asked(
    tmp_path, tiny_run, sky_catalog, capsys
) -> None:
    """Re-running the same command resumes (also with --overwrite); other settings are refused,
    and with --overwrite start the dataset over."""
    out = tmp_path / "pz_dataset"
    args = _predict(tiny_run, sky_catalog[1], out, "--chunk-size", "80")
    assert main(args) == 0
    part = out / "part-00001.parquet"
    part.unlink()
    (out / "_SUCCESS").unlink()
    first = (out / "part-00000.parquet").stat().st_mtime_ns
    assert main(args) == 0  # resumed: only the missing part is written
    assert part.exists() and (out / "_SUCCESS").exists()
    assert (out / "part-00000.parquet").stat().st_mtime_ns == first
    assert main([*args, "--overwrite"]) == 0  # the same settings: nothing to redo
    assert (out / "part-00000.parquet").stat().st_mtime_ns == first
    other = _predict(tiny_run, sky_catalog[1], out, "--chunk-size", "150")
    assert main(other) == 2
    assert "pass --overwrite to start it over" in one_line_error(capsys)
    assert len(list(out.glob("part-*.parquet"))) == 3
    assert main([*other, "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert json.loads((out / "_SUCCESS").read_text()) == {"parts": 2, "rows": 200}


def test_no_output_goes_inside_a_dataset_folder(tmp_path, tiny_run, sky_catalog, capsys) -> None:
    """Review, ninth session: `evaluate --out DATASET/report.json` was allowed, and the foreign
    file then stopped the dataset from resuming."""
    out = tmp_path / "pz_dataset"
    args = _predict(tiny_run, sky_catalog[1], out, "--chunk-size", "80")
    assert main(args) == 0
    report = out / "report.json"
    assert main(["evaluate", "--pred", str(out), "--out", str(report)]) == 2
    assert "is inside the predictions dataset" in one_line_error(capsys)
    assert not report.exists()
    (out / "_SUCCESS").unlink()
    assert main(args) == 0  # still resumes


def test_run_predict_replaces_a_file_only_with_overwrite(tmp_path, tiny_run, sky_catalog) -> None:
    out = tmp_path / "pz.parquet"
    out.write_text(USER_TEXT)
    run = dz.load_run(tiny_run)
    with pytest.raises(dz.OutputExistsError, match="pass overwrite=True to replace it"):
        run.predict(sky_catalog[1], out=out)
    assert out.read_text() == USER_TEXT
    assert len(run.predict(sky_catalog[1], out=out, overwrite=True)) == 200
    assert pq.read_table(out).num_rows == 200
    with pytest.raises(dz.ConfigError, match="is a file inside the input run folder '"):
        run.predict(sky_catalog[1], out=tiny_run / "predictions.fits", overwrite=True)


def test_a_hats_output_is_replaced_only_when_asked(tmp_path, tiny_run, sky_catalog) -> None:
    from deepz_core.inference import stream

    out, path = tmp_path / "pz_hats", str(sky_catalog[1])
    assert stream.predict_file(str(tiny_run), path, str(out), out_format="hats") == 200
    kept = (out / "hats.properties").stat().st_mtime_ns
    with pytest.raises(dz.OutputExistsError, match="is a folder that is not empty"):
        stream.predict_file(str(tiny_run), path, str(out), out_format="hats")
    assert (out / "hats.properties").stat().st_mtime_ns == kept
    n = stream.predict_file(str(tiny_run), path, str(out), out_format="hats", overwrite=True)
    assert n == 200 and (out / "hats.properties").is_file()


def _late_bad_cell(path: Path, column: str, value: object) -> Path:
    """400 galaxies of the tiny run's bands with ``value`` in ``column`` at row 300 (beyond the
    first chunks of 100), written without write_catalog's checks."""
    import numpy as np

    from deepz_core.catalog import io
    from tests.synthetic import synthetic_catalog

    cols = dict(synthetic_catalog(400, 5, exposures=False, first_id=1001).columns())
    cols["ra"], cols["dec"] = np.linspace(150, 151, 400), np.linspace(1.5, 2.5, 400)
    values = cols[column].astype(object)
    values[300] = value
    cols[column] = (
        np.array([str(v) for v in values]) if isinstance(value, str) else values.astype(float)
    )
    io.FORMATS[io.catalog_format(path)].write(path, [("galaxies", cols, {"FLUXZP": 23.9})])
    return path


@pytest.mark.parametrize("out", ["p.parquet", "ds"])
def test_predict_refuses_a_late_text_cell_in_one_line_before_any_output(
    tmp_path, tiny_run, capsys, out
) -> None:
    """Fourteenth session: a text cell at row 300 of a CSV failed `predict` in its fourth chunk
    of 100 (a dataset kept three parts). Now one line names column, row and value; nothing is
    written."""
    cat = _late_bad_cell(tmp_path / "cat.csv", "flux_NB555", "abc")
    assert main(_predict(tiny_run, cat, tmp_path / out, "--chunk-size", "100")) == 2
    line = one_line_error(capsys)
    assert line == f"error: {cat}: column 'flux_NB555' is not numeric: 'abc' in row 300"
    assert not (tmp_path / out).exists() or not list((tmp_path / out).glob("part-*"))


def test_predict_refuses_a_galaxy_off_the_sky_before_a_hats_output(tmp_path, tiny_run, capsys):
    """Before: dec = 95 at row 300 gave a 40-line astropy traceback after predicting them all."""
    cat = _late_bad_cell(tmp_path / "cat.fits", "dec", 95.0)
    argv = _predict(tiny_run, cat, tmp_path / "h", "--out-format", "hats", "--chunk-size", "100")
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert f"{cat}: column 'dec' has 1 value off the sky (95; row 300)" in line
    assert not (tmp_path / "h").exists()


def test_predict_reads_a_spec_z_code_as_unknown_with_one_warning(
    tmp_path, tiny_run, capsys, caplog
) -> None:
    """Before: zspec = 99 at row 300 failed `predict` in its fourth chunk ('no redshift' codes
    must be NaN), though the networks do not read the spec-z. Now the row is predicted, its
    zspec NaN, and one warning says so for the whole dataset; training still refuses the code."""
    from deepz_core.inference.stream import dataset_files

    cat = _late_bad_cell(tmp_path / "cat.fits", "zspec", 99.0)
    out = tmp_path / "ds"
    with caplog.at_level("WARNING", logger="deepz"):
        assert main(_predict(tiny_run, cat, out, "--chunk-size", "100")) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "column 'zspec' has 1 value outside [0, 10) (99; row 300): read as unknown (NaN) in the "
        "predictions, without a pit; training refuses such 'no redshift' codes: write them as NaN"
    ]
    assert "wrote 400 predictions" in capsys.readouterr().out
    zspec = pq.read_table(dataset_files(out))["zspec"].to_numpy()
    assert zspec[300] != zspec[300] and (zspec[:300] == zspec[:300]).any()  # NaN there only
    assert main(["train", "--catalog", str(cat), "--out", str(tmp_path / "run")]) == 2
    assert "column 'zspec' has 1 value(s) outside [0, 10) (99)" in one_line_error(capsys)
