"""Fault injection (issue 19), as a new user would try it: malformed files against every command,
the ways deepz could lose data, and two writers at once (two real processes).

Every malformed-file probe must exit 2 with one line on stderr (``error: ...``; no traceback, no
warning), leave its input files bit for bit (sha256) and leave no output behind. The probe table
and its count are documented in docs/reliability.md.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.cli.main import main
from deepz_core.files import LOCK_FILE
from deepz_core.rundir import RunDir
from tests.synthetic import synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- malformed files


def _raw(cat: Catalog, path: Path) -> Path:
    """Write the catalogue's columns without deepz's checks (to make bad files)."""
    Table(cat.columns()).write(path, overwrite=True)
    return path


def _with_zspec(cat: Catalog, values: float | list[float]) -> Catalog:
    """The catalogue with its first spec-z replaced by ``values`` (a number: all of them)."""
    z = cat.zspec.copy()
    z[: np.size(values) if np.ndim(values) else len(z)] = values
    return dataclasses.replace(cat, zspec=z)


def _fits_bytes(good: Path) -> bytes:
    return good.read_bytes()


def _duplicate_fits(d: Path, good: Catalog, path: Path) -> Path:
    cols = good.columns()
    hdu = fits.BinTableHDU(Table({**cols, "flux_XXXXX": cols["flux_NB455"]}))
    hdu.writeto(path)
    path.write_bytes(path.read_bytes().replace(b"'flux_XXXXX'", b"'flux_NB455'"))
    return path


def _duplicate_parquet(d: Path, good: Catalog, path: Path) -> Path:
    cols = good.columns()
    arrays = [pa.array(v) for v in cols.values()] + [pa.array(cols["flux_NB455"])]
    pq.write_table(pa.Table.from_arrays(arrays, names=[*cols, "flux_NB455"]), path)
    return path


def _csv(good: Catalog, path: Path, edit: Callable[[str], str]) -> Path:
    write_catalog(good, path)
    path.write_text(edit(path.read_text()))
    return path


def _h5_without_table(d: Path, good: Catalog, path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("notes", data=np.arange(5))
    return path


def _no_table_fits(d: Path, good: Catalog, path: Path) -> Path:
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(path)
    return path


def _zero_rows(d: Path, good: Catalog, path: Path) -> Path:
    return _raw(good.select(np.zeros(good.n_galaxies, bool)), path)


def _band_all_nan(d: Path, good: Catalog, path: Path) -> Path:
    flux = good.flux.copy()
    flux[:, 1] = np.nan
    return _raw(dataclasses.replace(good, flux=flux), path)


def _duplicate_ids(d: Path, good: Catalog, path: Path) -> Path:
    cols = good.columns()
    cols["ref_id"] = cols["ref_id"].copy()
    cols["ref_id"][1] = cols["ref_id"][0]
    Table(cols).write(path)
    return path


def _drop(column: str) -> Callable[[Path, Catalog, Path], Path]:
    def make(d: Path, good: Catalog, path: Path) -> Path:
        cols = good.columns()
        del cols[column]
        pq.write_table(pa.table(cols), path) if path.suffix == ".parquet" else Table(cols).write(
            path
        )
        return path

    return make


def _truncate(fraction: float, fits_block: bool = False) -> Callable[[Path, Catalog, Path], Path]:
    def make(d: Path, good: Catalog, path: Path) -> Path:
        source = d / f"whole{path.suffix}"
        write_catalog(good, source)
        data = source.read_bytes()
        cut = int(len(data) * fraction)
        if fits_block:  # a multiple of 2880 bytes: passes the size check, fails inside the data
            cut = (len(data) // 2880 - 1) * 2880
        path.write_bytes(data[:cut])
        source.unlink()
        for side in d.glob("whole.exposures*"):
            side.unlink()
        return path

    return make


MALFORMED: dict[str, Callable[[Path, Catalog, Path], Path]] = {
    "empty.fits": lambda d, g, p: (p.write_bytes(b""), p)[1],
    "random-bytes.fits": lambda d, g, p: (p.write_bytes(np.random.default_rng(0).bytes(5000)), p)[
        1
    ],
    "text.parquet": lambda d, g, p: (p.write_text("ref_id,flux_g\n1,2\n"), p)[1],
    "html.csv": lambda d, g, p: (p.write_bytes(gzip.compress(b"<html></html>")), p)[1],
    "truncated-2880.fits": _truncate(0.8, fits_block=True),
    "truncated.fits": _truncate(0.7),
    "truncated.parquet": _truncate(0.6),
    "truncated.h5": _truncate(0.5),
    "corrupt.fits.gz": lambda d, g, p: (
        p.write_bytes(gzip.compress(b"SIMPLE  = T" * 400)[:-40]),
        p,
    )[1],
    "no-table.fits": _no_table_fits,
    "no-table.h5": _h5_without_table,
    "duplicate-columns.fits": _duplicate_fits,
    "duplicate-columns.parquet": _duplicate_parquet,
    "duplicate-columns.csv": lambda d, g, p: _csv(
        g, p, lambda t: t.replace("flux_NB555,", "flux_NB455,", 1)
    ),
    "semicolons.csv": lambda d, g, p: _csv(g, p, lambda t: t.replace(",", ";")),
    "tabs.csv": lambda d, g, p: _csv(g, p, lambda t: t.replace(",", "\t")),
    "header-only.csv": lambda d, g, p: _csv(g, p, lambda t: t.splitlines()[0] + "\n"),
    "text-in-flux.csv": lambda d, g, p: _csv(
        g, p, lambda t: re.sub(r"\n1,[^,]*,", "\n1,abc,", t, count=1)
    ),
    "zero-rows.fits": _zero_rows,
    "no-ref-id.parquet": _drop("ref_id"),
    "no-flux-error.fits": _drop("flux_error_NB455"),
    "duplicate-ref-id.fits": _duplicate_ids,
    "band-all-nan.fits": _band_all_nan,
    "zspec-99.fits": lambda d, g, p: _raw(_with_zspec(g, [99.0] * 20), p),
    "zspec-minus-99.fits": lambda d, g, p: _raw(_with_zspec(g, [-99.0] * 20), p),
    "zspec-12.fits": lambda d, g, p: _raw(_with_zspec(g, 12.0), p),
    "zspec-inf.fits": lambda d, g, p: _raw(_with_zspec(g, np.inf), p),
    "unknown-extension.txt": lambda d, g, p: (p.write_text("ref_id\n1\n"), p)[1],
    "a-folder.fits": lambda d, g, p: (p.mkdir(), p)[1],
    "missing.fits": lambda d, g, p: p,
}


def sha256(path: Path) -> str:
    if path.is_dir():
        return "dir"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


@pytest.fixture(scope="module")
def good() -> Catalog:
    return synthetic_catalog(100, 0, exposures=False, first_id=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory, good: Catalog) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fault-files")
    out = {"good": write_catalog(good, d / "good.fits")}
    for name, make in MALFORMED.items():
        out[name] = make(d, good, d / name)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, files) -> Path:
    """A tiny finished run to predict with (--pretrain none, smoke preset, 2 epochs)."""
    out = tmp_path_factory.mktemp("fault-run") / "run"
    args = ["train", "--catalog", str(files["good"]), "--pretrain", "none", "--preset", "smoke"]
    assert main([*args, "--epochs", "2", "--device", "cpu", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def predictions(tmp_path_factory, run, files) -> Path:
    out = tmp_path_factory.mktemp("fault-pred") / "pred.parquet"
    args = ["predict", "--run", str(run), "--catalog", str(files["good"]), "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    return out


def cli(args: list[str], capsys, caplog) -> tuple[int, list[str]]:
    """Run the command in this process; (exit code, the lines a user would see on stderr: the
    printed ones, Python warnings and deepz log warnings)."""
    capsys.readouterr()
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        for hidden in (ResourceWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.simplefilter("ignore", hidden)  # Python hides these from users too
        code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    logged = [f"log: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    return code, err + [f"warning: {w.message}" for w in caught] + logged


def assert_one_line_error(code: int, lines: list[str]) -> str:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in lines[0]
    return lines[0]


COMMANDS = {
    "train": lambda f, out, ctx: [
        "train",
        "--catalog",
        str(f),
        "--pretrain",
        "none",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--out",
        str(out / "run"),
    ],
    "predict": lambda f, out, ctx: [
        "predict",
        "--run",
        str(ctx["run"]),
        "--catalog",
        str(f),
        "--device",
        "cpu",
        "--out",
        str(out / "p.parquet"),
    ],
    "predict-dataset": lambda f, out, ctx: [
        "predict",
        "--run",
        str(ctx["run"]),
        "--catalog",
        str(f),
        "--device",
        "cpu",
        "--chunk-size",
        "40",
        "--out",
        str(out / "dataset"),
    ],
    "templatefit": lambda f, out, ctx: [
        "templatefit",
        "--catalog",
        str(f),
        "--device",
        "cpu",
        "--workers",
        "1",
        "--out",
        str(out / "t.fits"),
    ],
    "evaluate": lambda f, out, ctx: [
        "evaluate",
        "--pred",
        str(ctx["predictions"]),
        "--catalog",
        str(f),
        "--out",
        str(out / "report.json"),
    ],
}


# a band without any value is imputed for every galaxy when a trained run predicts (flagged
# BAND_MISSING, one warning), left out of the template fit (one warning, fourteenth session);
# training and evaluate refuse it
IMPUTED = {
    ("band-all-nan.fits", "predict"),
    ("band-all-nan.fits", "predict-dataset"),
    ("band-all-nan.fits", "templatefit"),
}
# a spec-z outside [0, 10) is unknown when a trained run predicts (the networks do not read it:
# NaN, one warning, fourteenth session); training (labels) and evaluate (the truth) refuse it
UNKNOWN = {
    (name, command)
    for name in ("zspec-99.fits", "zspec-minus-99.fits", "zspec-12.fits", "zspec-inf.fits")
    for command in ("predict", "predict-dataset")
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("bad", list(MALFORMED))
def test_malformed_files_give_one_line_and_change_nothing(
    bad, command, files, run, predictions, tmp_path, capsys, caplog
) -> None:
    inputs = [files[bad], files["good"], predictions, run / "model.safetensors"]
    before = [sha256(p) for p in inputs]
    ctx = {"run": run, "predictions": predictions}
    code, lines = cli(COMMANDS[command](files[bad], tmp_path, ctx), capsys, caplog)
    assert [sha256(p) for p in inputs] == before
    if (bad, command) in IMPUTED:  # predicted, the band named once (review: no dead end)
        assert code == 0, lines
        assert sum("band NB555 has no values in " in line for line in lines) == 1
        return
    if (bad, command) in UNKNOWN:  # predicted, the values named once
        assert code == 0, lines
        named = [line for line in lines if line.startswith("log: column 'zspec' has ")]
        assert len(named) == 1 and "read as unknown (NaN) in the predictions" in named[0], lines
        return
    assert_one_line_error(code, lines)
    left = {p.name for p in tmp_path.iterdir()}
    assert left <= {"dataset"}, left  # no output file, no run folder
    if "dataset" in left:  # at most the plan and lock of a dataset refused while reading parts
        assert {p.name for p in (tmp_path / "dataset").iterdir()} <= {"_plan.json", LOCK_FILE}


BAD_PREDICTIONS = {
    "catalogue.fits": lambda d, files: files["good"],  # a table, but not predictions
    "report.json": lambda d, files: (d / "r.json").write_text("{}") and d / "r.json",
    "not-fits.fits": lambda d, files: (d / "x.fits").write_text("hello") and d / "x.fits",
    "truncated.parquet": lambda d, files: files["truncated.parquet"],
    "incomplete-dataset": lambda d, files: (d / "ds").mkdir() or d / "ds",
    "missing.parquet": lambda d, files: d / "nothing.parquet",
}


@pytest.mark.parametrize("bad", list(BAD_PREDICTIONS))
def test_evaluate_refuses_what_is_not_predictions_in_one_line(
    bad, files, tmp_path, capsys, caplog
) -> None:
    pred = BAD_PREDICTIONS[bad](tmp_path, files)
    before = sha256(pred)
    args = ["evaluate", "--pred", str(pred), "--out", str(tmp_path / "report.json")]
    code, lines = cli(args, capsys, caplog)
    assert_one_line_error(code, lines)
    assert sha256(pred) == before and not (tmp_path / "report.json").exists()


def test_identical_spec_z_are_refused_by_train_only(good, run, tmp_path, capsys, caplog) -> None:
    path = write_catalog(_with_zspec(good, 0.5), tmp_path / "same.fits")
    args = ["train", "--catalog", str(path), "--pretrain", "none", "--preset", "smoke"]
    code, lines = cli([*args, "--device", "cpu", "--out", str(tmp_path / "r")], capsys, caplog)
    assert "every usable spec-z is 0.5" in assert_one_line_error(code, lines)
    args = ["predict", "--run", str(run), "--catalog", str(path), "--device", "cpu"]
    assert cli([*args, "--out", str(tmp_path / "p.parquet")], capsys, caplog)[0] == 0


def test_spec_z_codes_are_named_not_counted_as_missing(files, tmp_path, capsys, caplog) -> None:
    args = ["train", "--catalog", str(files["zspec-12.fits"]), "--pretrain", "none"]
    code, lines = cli([*args, "--out", str(tmp_path / "r")], capsys, caplog)
    line = assert_one_line_error(code, lines)
    assert "outside [0, 10)" in line and "'no redshift' codes" in line


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("semicolons.csv", "delimiter looks wrong"),
        ("truncated-2880.fits", "truncated"),
        ("duplicate-columns.parquet", "appear more than once"),
        ("duplicate-columns.fits", "appear more than once"),
        ("zero-rows.fits", "no galaxies"),
        ("text-in-flux.csv", "column 'flux_NB455' is not numeric: 'abc' in row 0"),
    ],
)
def test_the_line_says_what_is_wrong(bad, says, files, run, tmp_path, capsys, caplog) -> None:
    args = ["predict", "--run", str(run), "--catalog", str(files[bad]), "--device", "cpu"]
    code, lines = cli([*args, "--out", str(tmp_path / "p.parquet")], capsys, caplog)
    assert says in assert_one_line_error(code, lines)


def test_hdf5_whose_first_object_is_not_the_table(good, run, tmp_path, capsys, caplog) -> None:
    import h5py

    whole = write_catalog(good, tmp_path / "whole.h5")
    path = tmp_path / "first-not-table.h5"
    with h5py.File(path, "w") as f, h5py.File(whole) as g:
        f.create_dataset("aaa_notes", data=np.arange(5))
        f.create_dataset("photometry", data=g["galaxies"][()])
    args = ["predict", "--run", str(run), "--catalog", str(path), "--device", "cpu"]
    assert cli([*args, "--out", str(tmp_path / "p.parquet")], capsys, caplog)[0] == 0
    assert len(Table.read(tmp_path / "p.parquet")) == good.n_galaxies


# ---------------------------------------------------------------- data loss


@pytest.fixture
def catalogue(good, tmp_path) -> Path:
    return write_catalog(good, tmp_path / "cat.fits")


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
@pytest.mark.parametrize("command", ["predict", "templatefit"])
def test_an_output_that_is_the_input_catalogue_is_refused(
    command, spelling, catalogue, run, tmp_path, capsys, caplog
) -> None:
    out = {
        "same": catalogue,
        "dotdot": tmp_path / "sub" / ".." / catalogue.name,
        "symlink": tmp_path / "link.fits",
        "hardlink": tmp_path / "hard.fits",
    }[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        out.symlink_to(catalogue)
    if spelling == "hardlink":
        os.link(catalogue, out)
    before = sha256(catalogue)
    args = {
        "predict": ["predict", "--run", str(run), "--device", "cpu"],
        "templatefit": ["templatefit", "--device", "cpu", "--workers", "1"],
    }[command]
    code, lines = cli([*args, "--catalog", str(catalogue), "--out", str(out)], capsys, caplog)
    assert "would destroy the input" in assert_one_line_error(code, lines)
    assert sha256(catalogue) == before


def test_predict_never_writes_over_the_run(run, catalogue, tmp_path, capsys, caplog) -> None:
    before = sha256(run / "predictions.fits")
    base = ["predict", "--run", str(run), "--catalog", str(catalogue), "--device", "cpu"]
    for out in (run / "predictions.fits", run):
        code, lines = cli([*base, "--out", str(out)], capsys, caplog)
        assert "would destroy the input" in assert_one_line_error(code, lines)
    assert sha256(run / "predictions.fits") == before


def test_evaluate_never_writes_over_its_predictions(predictions, tmp_path, capsys, caplog) -> None:
    report = tmp_path / "report.json"
    report.symlink_to(predictions)
    before = sha256(predictions)
    args = ["evaluate", "--pred", str(predictions), "--out", str(report)]
    code, lines = cli(args, capsys, caplog)
    assert "would destroy the input" in assert_one_line_error(code, lines)
    assert sha256(predictions) == before


def train_args(catalog: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--catalog",
        str(catalog),
        "--pretrain",
        "none",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def test_train_refuses_a_folder_of_other_files(catalogue, tmp_path, capsys, caplog) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "predictions.fits").write_bytes(b"my predictions")
    (out / "model.json").write_text('{"mine": true}')
    before = {p.name: sha256(p) for p in out.iterdir()}
    code, lines = cli(train_args(catalogue, out), capsys, caplog)
    assert "not a deepz run" in assert_one_line_error(code, lines)
    assert {p.name: sha256(p) for p in out.iterdir()} == before  # not even a lock file


@pytest.mark.usefixtures("late_ref_band_check")
@pytest.mark.parametrize("damaged", ["status.json", "config.json", "checkpoint.json"])
def test_damaged_run_files_are_named_and_nothing_is_written(
    damaged, catalogue, tmp_path, capsys, caplog
) -> None:
    out = tmp_path / "run"
    assert cli(train_args(catalogue, out, "--ref-band", "NB999"), capsys, caplog)[0] == 2
    (out / damaged).write_text('{"state": "runn')  # cut short
    before = {p.name: sha256(p) for p in out.iterdir() if p.name != LOCK_FILE}
    code, lines = cli(train_args(catalogue, out, "--ref-band", "NB999"), capsys, caplog)
    line = assert_one_line_error(code, lines)
    assert damaged in line and "damaged" in line
    after = {p.name: sha256(p) for p in out.iterdir() if p.name != LOCK_FILE}
    assert after == before
    code, lines = cli(["resume", "--run", str(out)], capsys, caplog)
    assert damaged in assert_one_line_error(code, lines)


def damage_model(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` whose weights differ a little (another run with the same bands)."""
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-run"
    shutil.copytree(run, other)
    weights = load_file(str(other / "model.safetensors"))
    key = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
    weights[key] = weights[key] * 1.01
    save_file(weights, str(other / "model.safetensors"))
    return other


@pytest.mark.parametrize("change", ["run", "catalogue", "grid"])
def test_a_dataset_is_never_mixed_from_two_runs_or_catalogues(
    change, run, good, tmp_path, capsys, caplog
) -> None:
    cat = write_catalog(good, tmp_path / "cat.parquet")
    out = tmp_path / "dataset"
    base = ["predict", "--catalog", str(cat), "--device", "cpu", "--chunk-size", "40"]
    assert cli([*base, "--run", str(run), "--out", str(out)], capsys, caplog)[0] == 0
    (out / "part-00001.parquet").unlink()  # as if killed before the end
    (out / "_SUCCESS").unlink()
    parts = {p.name: sha256(p) for p in out.glob("part-*")}
    again = [*base, "--run", str(run), "--out", str(out)]
    if change == "run":
        again = [*base, "--run", str(damage_model(run, tmp_path)), "--out", str(out)]
    if change == "catalogue":  # another catalogue, same path, same number of rows
        other = synthetic_catalog(100, 9, exposures=False, first_id=1)
        write_catalog(other, cat, overwrite=True)
    if change == "grid":
        again.append("--grid")
    code, lines = cli(again, capsys, caplog)
    says = {"run": "another run", "catalogue": "another catalogue", "grid": "--grid off then"}
    assert says[change] in assert_one_line_error(code, lines)
    assert {p.name: sha256(p) for p in out.glob("part-*")} == parts
    assert not (out / "_SUCCESS").exists()


@pytest.mark.usefixtures("late_ref_band_check")
def test_orphans_of_killed_commands_are_cleaned_by_the_next_one(
    run, good, tmp_path, capsys, caplog
) -> None:
    train_out = tmp_path / "run"
    assert (
        cli(
            train_args(write_catalog(good, tmp_path / "c.fits"), train_out, "--ref-band", "NB999"),
            capsys,
            caplog,
        )[0]
        == 2
    )
    orphans = [
        ".checkpoint-finetune-0002.safetensors.abcd1234.safetensors",
        ".status.json.zyxw9876.json",
        "checkpoint-finetune-0003.safetensors",  # tensors written, checkpoint.json never was
    ]
    for name in orphans:
        (train_out / name).write_bytes(b"half-written")
    (train_out / ".my-notes").write_text("kept")
    assert (
        cli(train_args(tmp_path / "c.fits", train_out, "--ref-band", "NB999"), capsys, caplog)[0]
        == 2
    )
    names = {p.name for p in train_out.iterdir()}
    assert not names & set(orphans) and ".my-notes" in names

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / ".part-00000.parquet.k2j3h4l5.parquet").write_bytes(b"half")
    args = ["predict", "--run", str(run), "--catalog", str(tmp_path / "c.fits"), "--device", "cpu"]
    assert cli([*args, "--out", str(dataset)], capsys, caplog)[0] == 0
    assert not list(dataset.glob(".part-*"))


def test_outputs_are_readable_by_the_group_as_the_umask_says(
    good, tmp_path, capsys, caplog
) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert (
            cli(
                train_args(write_catalog(good, tmp_path / "c.fits"), out, "--epochs", "1"),
                capsys,
                caplog,
            )[0]
            == 0
        )
        args = ["predict", "--run", str(out), "--catalog", str(tmp_path / "c.fits")]
        assert cli([*args, "--out", str(tmp_path / "p.parquet")], capsys, caplog)[0] == 0
    finally:
        os.umask(old)
    files = [p for p in out.iterdir() if p.is_file()] + [tmp_path / "p.parquet"]
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


def test_outputs_the_system_refuses_give_one_line(
    catalogue, run, predictions, tmp_path, capsys, caplog
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    probes = [
        train_args(catalogue, blocker / "run"),
        [
            "predict",
            "--run",
            str(run),
            "--catalog",
            str(catalogue),
            "--out",
            str(blocker / "p.parquet"),
        ],
        [
            "templatefit",
            "--catalog",
            str(catalogue),
            "--workers",
            "1",
            "--out",
            str(blocker / "t.fits"),
        ],
        ["evaluate", "--pred", str(predictions), "--out", str(blocker / "r.json")],
        ["simulate", "--kind", "sps", "--n", "10", "--out", str(blocker / "s.fits")],
    ]
    if os.geteuid() != 0:  # root writes anywhere: a read-only folder stops only other users
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        probes.append(["evaluate", "--pred", str(predictions), "--out", str(locked / "r.json")])
    for args in probes:
        code, lines = cli(args, capsys, caplog)
        assert str(blocker) in assert_one_line_error(code, lines) or "ermission" in lines[0]


# ---------------------------------------------------------------- two writers at once


def spawn_cli(*args: str) -> subprocess.Popen:
    """``python -m deepz_core ARGS`` in another process (this checkout's code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DEEPZ_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "deepz_core", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )


def finished(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_a_second_predict_into_a_dataset_is_refused(run, good, tmp_path) -> None:
    """While this process writes the dataset, a second ``predict`` into it (a real process) stops
    with the first one's pid; the dataset is complete and one run's."""
    from deepz_core.inference import stream

    cat = write_catalog(good, tmp_path / "cat.parquet")
    out = tmp_path / "dataset"
    seen = {}

    def mapper(tasks):
        seen["second"] = finished(
            spawn_cli("predict", "--run", str(run), "--catalog", str(cat), "--out", str(out))
        )
        yield from stream.local_map(tasks)

    assert stream.predict_dataset(str(run), str(cat), str(out), chunk_size=40, mapper=mapper) == 100
    code, err = seen["second"]
    assert code == 2 and f"is in use by PID {os.getpid()}" in err, err
    assert len(err.strip().splitlines()) == 1
    assert json.loads((out / "_SUCCESS").read_text())["rows"] == 100


def test_train_and_resume_of_a_folder_being_trained_are_refused(
    good, tmp_path, monkeypatch
) -> None:
    """While this process trains a run folder, ``train`` and ``resume`` into it from two other
    processes stop at once naming this one; its metrics are its own."""
    from deepz_core.training import loop

    cat = write_catalog(good, tmp_path / "cat.fits")
    out = tmp_path / "run"
    real, seen = loop.train_epoch, {}

    def epoch(*args, **kwargs):
        if not seen:
            procs = [spawn_cli(*train_args(cat, out)), spawn_cli("resume", "--run", str(out))]
            seen["others"] = [finished(p) for p in procs]
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", epoch)
    assert main(train_args(cat, out, "--epochs", "2")) == 0
    for code, err in seen["others"]:
        assert code == 2 and f"is in use by PID {os.getpid()}" in err, err
    assert [r["epoch"] for r in RunDir(out).metrics()] == [1, 2]


@pytest.mark.slow
def test_two_train_commands_and_a_cancel_in_the_first_epoch(tmp_path) -> None:
    """Two real ``train`` processes started together on one folder: one trains, the other is
    refused naming it; a cancel stops the first epoch (~6,000 batches) within seconds."""
    import time

    cat = write_catalog(synthetic_catalog(60_000, 4, exposures=False), tmp_path / "cat.fits")
    out = tmp_path / "run"
    args = train_args(cat, out, "--epochs", "100000", "--batch-size", "10")
    procs = [spawn_cli(*args), spawn_cli(*args)]
    deadline = time.monotonic() + 180
    while all(p.poll() is None for p in procs):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    code, err = finished(loser)
    assert code == 2 and f"in use by PID {winner.pid}" in err, err
    log = out / "log.txt"
    while not (log.exists() and "finetune:" in log.read_text()):
        assert winner.poll() is None and time.monotonic() < deadline, winner.communicate()
        time.sleep(0.1)
    (out / "cancel").write_text("now")
    t0 = time.monotonic()
    code, err = finished(winner, timeout=60)
    assert code == 3 and time.monotonic() - t0 < 20, err
    status = RunDir(out).status()
    assert status["state"] == "cancelled", status
    assert "during finetune epoch 1" in status["message"], status
