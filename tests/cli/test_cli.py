"""Command line: train / resume / predict / evaluate end to end, and one-line errors (exit code 2)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table

from deepz_core.catalog.io import write_catalog
from deepz_core.cli.main import main
from deepz_core.jobs.training_run import create_run, run_config
from deepz_core.rundir import RunDir
from tests.cli.messages import one_line_error
from tests.synthetic import synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")


_synthetic = partial(synthetic_catalog, max_exposures=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    paths = {"catalog": root / "cat.fits", "new": root / "new.parquet", "new_z": root / "nz.fits"}
    write_catalog(_synthetic(100, 0), paths["catalog"])
    write_catalog(_synthetic(40, 1, first_id=500, with_zspec=False), paths["new"])
    write_catalog(_synthetic(40, 1, first_id=500), paths["new_z"])  # the same, with spec-z
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory, files) -> Path:
    """`train` with the quick preset, shortened: --pretrain none --epochs 2 --folds 2."""
    out = tmp_path_factory.mktemp("cli-run") / "run"
    code = main(
        [
            "train",
            "--catalog",
            str(files["catalog"]),
            "--pretrain",
            "none",
            "--epochs",
            "2",
            "--folds",
            "2",
            "--batch-size",
            "50",
            "--device",
            "cpu",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_train_writes_a_finished_run(trained, capsys) -> None:
    run = RunDir(trained)
    status = run.status()
    assert status["state"] == "finished"
    config = run.config()
    assert config["train"]["schedule"] == [[2, 1e-3]] and config["train"]["folds"] == 2
    assert config["train"]["batch_size"] == 50 and config["pretrain"] == "none"
    assert [r["epoch"] for r in run.metrics()] == [1, 2]
    assert (trained / "model.safetensors").exists() and (trained / "predictions.fits").exists()


def test_train_prints_a_json_summary(tmp_path, files, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--catalog",
            str(files["catalog"]),
            "--pretrain",
            "none",
            "--epochs",
            "1",
            "--folds",
            "2",
            "--no-autoencoder",
            "--no-randomize",
            "--alpha",
            "0.9",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["state"] == "finished" and summary["run"] == str(out)
    assert {"sigma68", "outlier_fraction", "n"} <= set(summary)
    screen = [line for line in lines if line.startswith("screen: ")]  # the log's line, too
    assert len(screen) == 1 and screen[0] in (out / "log.txt").read_text()
    warning = summary["heldout"].get("warning")  # one epoch: the n(z) alone may score better
    assert (
        printed.err.strip().endswith(f"warning: {warning}")
        if warning
        else "warning" not in printed.err
    )
    config = RunDir(out).config()
    assert config["model"]["use_autoencoder"] is False
    assert config["train"]["randomize_coadds"] is False and config["train"]["alpha"] == 0.9


def test_train_refuses_to_overwrite_a_finished_run(trained, files, capsys) -> None:
    code = main(["train", "--catalog", str(files["catalog"]), "--out", str(trained)])
    assert code == 2
    assert "finished run" in one_line_error(capsys)


def test_predict_and_evaluate_end_to_end(tmp_path, trained, files, capsys) -> None:
    pred = tmp_path / "pred.parquet"
    assert (
        main(["predict", "--run", str(trained), "--catalog", str(files["new"]), "--out", str(pred)])
        == 0
    )
    assert "wrote 40 predictions" in capsys.readouterr().out
    t = Table.read(pred)
    assert len(t) == 40 and {"zphot", "odds", "weights", "out_of_fold"} <= set(t.colnames)
    assert np.isnan(np.asarray(t["zspec"])).all()
    report = tmp_path / "report.json"
    # the new catalogue had no spec-z: evaluate against the version that has them
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--catalog",
                str(files["new_z"]),
                "--out",
                str(report),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads(report.read_text())
    assert printed == on_disk["overall"] and on_disk["overall"]["n"] == 40
    assert np.isfinite(on_disk["overall"]["pit_ks"]) and "per_magnitude" in on_disk


def _plain_csv(cat, path: Path) -> Path:
    """``cat``'s ids and fluxes as a CSV file declaring no unit (no FLUXZP line): microJansky
    unless --flux-unit says otherwise."""
    cols = {"ref_id": cat.ref_id}
    for j, band in enumerate(cat.bands):
        cols[f"flux_{band}"], cols[f"flux_error_{band}"] = cat.flux[:, j], cat.flux_error[:, j]
    Table(cols).write(path, format="csv")
    return path


def test_predict_refuses_fluxes_a_unit_off_in_one_line(tmp_path, trained, capsys, caplog) -> None:
    """Fourteenth session: nJy values in a catalogue read as uJy (a CSV declares no unit) were
    predicted with one warning and flag 0. Now exit 2 with one line naming the column, the shift,
    the likely unit and the fixes, no output; --flux-unit nJy (the fix it names) predicts it as
    the right catalogue, --allow-magnitude-shift predicts it flagged."""
    new = _synthetic(40, 1, first_id=500, with_zspec=False, exposures=False)
    nano = dataclasses.replace(new, flux=new.flux * 1000, flux_error=new.flux_error * 1000)
    catalog = _plain_csv(nano, tmp_path / "nano.csv")
    base = ["predict", "--run", str(trained), "--catalog", str(catalog)]
    for out in (tmp_path / "p.parquet", tmp_path / "ds"):
        assert main([*base, "--out", str(out)]) == 2
        line = one_line_error(capsys)
        assert re.search(r"column 'flux_subaru_i' \(declared uJy\) .* 7\.\d mag brighter", line)
        assert "nJy values read as uJy?" in line and "--flux-unit nJy" in line
        assert "--allow-magnitude-shift" in line and not out.exists()
    fixed = tmp_path / "fixed.parquet"
    assert main([*base, "--out", str(fixed), "--flux-unit", "nJy"]) == 0
    right = tmp_path / "right.parquet"
    _plain_csv(new, tmp_path / "new.csv")
    argv = ["predict", "--run", str(trained), "--catalog", str(tmp_path / "new.csv")]
    assert main([*argv, "--out", str(right)]) == 0
    capsys.readouterr()
    np.testing.assert_allclose(Table.read(fixed)["zphot"], Table.read(right)["zphot"], rtol=1e-6)
    forced = tmp_path / "forced.parquet"
    with caplog.at_level("WARNING", logger="deepz"):
        assert main([*base, "--out", str(forced), "--allow-magnitude-shift"]) == 0
    printed = capsys.readouterr()
    assert "OUTSIDE_TRAINING 40" in printed.out and "Traceback" not in printed.err
    assert caplog.text.count("predicted as asked (--allow-magnitude-shift") == 1


def test_evaluate_the_runs_own_fits_predictions(tmp_path, trained, capsys) -> None:
    report = tmp_path / "r.json"
    assert (
        main(["evaluate", "--pred", str(trained / "predictions.fits"), "--out", str(report)]) == 0
    )
    overall = json.loads(report.read_text())["overall"]
    assert overall["n"] == RunDir(trained).status()["summary"]["n"]  # out-of-fold galaxies
    printed = json.loads(capsys.readouterr().out)
    assert printed == overall
    # review: --out was required although the command prints the overall metrics
    assert main(["evaluate", "--pred", str(trained / "predictions.fits")]) == 0
    assert json.loads(capsys.readouterr().out) == overall
    assert list(tmp_path.iterdir()) == [report]


def test_version_and_a_description_for_users(capsys) -> None:
    """Review, tenth session: ``deepz --version`` was an argparse error, and ``deepz --help``
    began with this module's notes for developers (how commands register)."""
    import deepz_core

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == (
        f"deepz {deepz_core.__version__}"
    )
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "photometric redshifts" in shown and "register" not in shown


def test_resume_finishes_a_killed_run(tmp_path, files, monkeypatch, capsys) -> None:
    run = create_run(
        tmp_path / "run",
        run_config(
            str(files["catalog"]),
            pretrain="none",
            model={
                "width": 8,
                "encoder_layers": 1,
                "decoder_layers": 1,
                "photoz_layers": 1,
                "photoz_first_width": 0,
                "n_components": 2,
            },
            train={"schedule": ((3, 1e-3),), "folds": 2, "checkpoint_every": 1, "device": "cpu"},
        ),
    )
    original = RunDir.append_metrics

    def die_at_epoch_2(self: RunDir, row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the terminal
        original(self, row)

    monkeypatch.setattr(RunDir, "append_metrics", die_at_epoch_2)
    assert main(["resume", "--run", str(run.path)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert run.status()["state"] == "cancelled"  # Ctrl-C leaves a resumable cancel
    monkeypatch.setattr(RunDir, "append_metrics", original)
    run.file("cancel").touch()  # a stale cancel file is cleared by resume
    assert main(["resume", "--run", str(run.path)]) == 0
    assert run.status()["state"] == "finished"
    # resume says how it ended, as train does (it printed nothing)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["state"] == "finished"
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--catalog", "{tmp}/missing.fits", "--pretrain", "none"], "missing.fits"),
        (
            ["train", "--catalog", "{cat}", "--pretrain", "none", "--schedule", "9-1e-3"],
            "--schedule",
        ),
        (
            ["train", "--catalog", "{cat}", "--pretrain", "none", "--schedule", "0:1e-3"],
            "--schedule",
        ),
        (["train", "--catalog", "{cat}", "--pretrain", "none", "--schedule", "5:2"], "schedule"),
        (
            ["train", "--catalog", "{cat}", "--pretrain", "none", "--pretrain-schedule", "x"],
            "--pretrain-schedule",
        ),
        (["train", "--catalog", "{cat}", "--pretrain", "none", "--pretrain-n", "-5"], "pretrain_n"),
        (["train", "--catalog", "{cat}", "--pretrain", "none", "--alpha", "1.5"], "alpha"),
        (["train", "--catalog", "{cat}", "--pretrain", "none", "--device", "gpu"], "gpu"),
        (["train", "--catalog", "{cat}", "--pretrain", "{tmp}/nosim.fits"], "--pretrain"),
        (["train", "--catalog", "{junk}", "--pretrain", "none"], "junk.fits"),
    ],
)
def test_train_argument_errors(tmp_path, files, capsys, args, needle) -> None:
    (tmp_path / "junk.fits").write_bytes(b"SIMPLE  = not really")
    subs = {
        "{tmp}": str(tmp_path),
        "{cat}": str(files["catalog"]),
        "{junk}": str(tmp_path / "junk.fits"),
    }
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in args]
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 2
    assert needle in one_line_error(capsys)
    if needle != "junk.fits":  # a config error leaves no run folder behind
        assert not out.exists()


def _magnitudes_in_subaru_r(path: Path, n: int, seed: int, first_id: int = 1) -> Path:
    """A CSV of a synthetic catalogue whose subaru_r columns hold AB magnitudes and errors."""
    cat = _synthetic(n, seed, first_id=first_id, exposures=False)
    cols = dict(cat.columns())
    flux, error = cols["flux_subaru_r"], cols["flux_error_subaru_r"]
    cols["flux_subaru_r"] = np.where(flux > 0, 23.9 - 2.5 * np.log10(np.abs(flux)), 99.0)
    cols["flux_error_subaru_r"] = 1.0857 * error / np.abs(flux)
    Table(cols).write(path, format="csv")
    return path


def test_train_and_predict_refuse_a_flux_column_of_magnitudes(tmp_path, trained, capsys) -> None:
    """Magnitudes under a flux column name: exit 2 with one line naming the column, the
    evidence and the --rename that reads them as magnitudes, before any run folder exists."""
    catalog = _magnitudes_in_subaru_r(tmp_path / "mags.csv", 100, 0)
    out = tmp_path / "run"
    assert main(["train", "--catalog", str(catalog), "--out", str(out)]) == 2
    line = one_line_error(capsys)
    assert "column 'flux_subaru_r' looks like AB magnitudes, not a flux: values" in line
    assert "--rename 'flux_subaru_r=mag_subaru_r,flux_error_subaru_r=magerr_subaru_r'" in line
    assert not out.exists()
    new = _magnitudes_in_subaru_r(tmp_path / "new.csv", 40, 1, first_id=500)
    pred = tmp_path / "pred.parquet"
    argv = ["predict", "--run", str(trained), "--catalog", str(new), "--out", str(pred)]
    assert main(argv) == 2
    assert "column 'flux_subaru_r' looks like AB magnitudes" in one_line_error(capsys)
    assert not pred.exists()


def test_predict_evaluate_resume_errors(tmp_path, trained, files, capsys, monkeypatch) -> None:
    cases = [
        (
            [
                "predict",
                "--run",
                str(tmp_path),
                "--catalog",
                str(files["new"]),
                "--out",
                str(tmp_path / "p.fits"),
            ],
            "no trained model",
        ),
        (
            [
                "predict",
                "--run",
                str(trained),
                "--catalog",
                str(tmp_path / "none.fits"),
                "--out",
                str(tmp_path / "p.fits"),
            ],
            "none.fits",
        ),
        (
            [
                "predict",
                "--run",
                str(trained),
                "--catalog",
                str(files["new"]),
                "--out",
                str(tmp_path / "p.csv"),
            ],
            "p.csv",
        ),
        (
            ["evaluate", "--pred", str(tmp_path / "nope.fits"), "--out", str(tmp_path / "r.json")],
            "nope.fits",
        ),
        (["resume", "--run", str(tmp_path / "nothing")], "not a run folder"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        assert needle in one_line_error(capsys)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [
        "predict",
        "--run",
        str(trained),
        "--catalog",
        str(files["new"]),
        "--out",
        str(tmp_path / "p.fits"),
        "--device",
        "cuda",
    ]
    assert main(argv) == 2
    assert "'cuda'" in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "x"],
        ["train", "--catalog", "c.fits", "--out", "x", "--epochs", "two"],
        ["train", "--catalog", "c.fits", "--out", "x", "--epochs", "2", "--schedule", "2:1e-3"],
        ["predict", "--run", "r"],
        ["frobnicate"],
        [],
    ],
)
def test_argparse_errors_exit_2_without_a_traceback(capsys, argv) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--members", "0"), ("--folds", "0"), ("--epochs", "0"), ("--batch-size", "-3")],
)
def test_counts_below_one_name_the_flag(capsys, flag, value) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--catalog", "c.fits", "--out", "x", flag, value])
    assert exc.value.code == 2
    assert f"argument {flag}: expected an integer >= 1, got {value.lstrip('+')}" in (
        capsys.readouterr().err
    )


@pytest.mark.usefixtures("late_ref_band_check")
def test_train_into_an_existing_folder(tmp_path, files, capsys) -> None:
    """Same arguments resume; new ones start a run over that never trained, and are refused for
    one that did (naming what differs)."""
    out = tmp_path / "run"
    base = [
        "train",
        "--catalog",
        str(files["catalog"]),
        "--pretrain",
        "none",
        "--epochs",
        "1",
        "--folds",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main([*base, "--ref-band", "NB999"]) == 2  # fails at set-up, after the folder exists
    assert "NB999" in one_line_error(capsys)
    assert RunDir(out).status()["state"] == "failed"
    RunDir(out).file("checkpoint.json").write_text(FAKE_CHECKPOINT)  # as if it had trained a while
    assert main([*base, "--ref-band", "NB655"]) == 2
    message = one_line_error(capsys)
    assert "ref_band: 'NB999' -> 'NB655'" in message and "resume --run" in message
    RunDir(out).file("checkpoint.json").unlink()
    assert main([*base, "--ref-band", "NB655"]) == 0
    assert "over with the new settings (ref_band: 'NB999' -> 'NB655')" in capsys.readouterr().out
    run = RunDir(out)
    assert run.status()["state"] == "finished" and run.config()["ref_band"] == "NB655"
    assert [r["epoch"] for r in run.metrics()] == [1]
    run.set_status("cancelled")
    assert main([*base, "--ref-band", "NB655"]) == 0
    assert f"resuming run in {out}" in capsys.readouterr().out


FAKE_CHECKPOINT = json.dumps(
    {"phase": "finetune", "epoch": 1, "tensors": "checkpoint-finetune-0001.safetensors"}
)


@pytest.mark.usefixtures("late_ref_band_check")
def test_train_leaves_live_and_template_fit_folders_alone(tmp_path, files, capsys) -> None:
    import os

    from deepz_core.files import LOCK_FILE, ExclusiveLock

    out = tmp_path / "run"
    base = [
        "train",
        "--catalog",
        str(files["catalog"]),
        "--pretrain",
        "none",
        "--epochs",
        "1",
        "--folds",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main([*base, "--ref-band", "NB999"]) == 2
    capsys.readouterr()
    run = RunDir(out)
    status = {**run.status(), "state": "running", "pid": os.getpid()}
    run.file("status.json").write_text(json.dumps(status))
    lock = ExclusiveLock(out / LOCK_FILE)  # held as a process training the folder holds it
    assert lock.acquire()
    try:
        assert main(base) == 2
        assert f"is in use by PID {os.getpid()}" in one_line_error(capsys)
    finally:
        lock.release()
    status = {**status, "state": "queued", "pid": os.getppid()}  # queued by a live app
    run.file("status.json").write_text(json.dumps(status))
    assert main(base) == 2
    assert f"queued by process {os.getppid()}" in one_line_error(capsys)
    run.file("status.json").write_text(json.dumps({**status, "state": "failed"}))
    run.file("config.json").write_text(json.dumps({**run.config(), "kind": "templatefit"}))
    assert main(base) == 2
    assert "holds a templatefit run" in one_line_error(capsys)


@pytest.mark.usefixtures("late_ref_band_check")
def test_train_resumes_on_another_device_but_not_with_another_network(
    tmp_path, files, capsys
) -> None:
    out = tmp_path / "run"
    base = [
        "train",
        "--catalog",
        str(files["catalog"]),
        "--pretrain",
        "none",
        "--epochs",
        "1",
        "--folds",
        "2",
        "--ref-band",
        "NB999",
        "--out",
        str(out),
    ]
    assert main([*base, "--device", "cpu"]) == 2  # fails at set-up
    capsys.readouterr()
    run = RunDir(out)
    run.file("checkpoint.json").write_text(FAKE_CHECKPOINT)  # as if it had trained a while
    assert main([*base, "--device", "cpu", "--no-autoencoder"]) == 2
    assert "model.use_autoencoder: True -> False" in one_line_error(capsys)
    assert main([*base, "--device", "auto"]) == 2  # resumes (and fails on NB999 again)
    assert "resuming run" in capsys.readouterr().out
    assert run.config()["train"]["device"] == "auto"


def test_galaxies_sharing_a_training_ref_id_are_new_galaxies(tmp_path, trained, files) -> None:
    """Out-of-fold p(z) only for the training galaxies themselves: an independent catalogue
    numbered 1, 2, ... like the training one is predicted by every network."""
    other = _synthetic(40, 7)  # ref_id 1..40, as in the training catalogue
    write_catalog(other, tmp_path / "other.fits")
    renumbered = _synthetic(40, 7, first_id=9001)
    write_catalog(renumbered, tmp_path / "renumbered.fits")
    for name in ("other", "renumbered"):
        assert (
            main(
                [
                    "predict",
                    "--run",
                    str(trained),
                    "--catalog",
                    str(tmp_path / f"{name}.fits"),
                    "--out",
                    str(tmp_path / f"{name}.parquet"),
                ]
            )
            == 0
        )
    a, b = Table.read(tmp_path / "other.parquet"), Table.read(tmp_path / "renumbered.parquet")
    assert not np.asarray(a["out_of_fold"]).any()
    np.testing.assert_array_equal(np.asarray(a["zphot"]), np.asarray(b["zphot"]))
    own = tmp_path / "own.parquet"  # the training catalogue: its galaxies are recognised
    assert (
        main(
            [
                "predict",
                "--run",
                str(trained),
                "--catalog",
                str(files["catalog"]),
                "--out",
                str(own),
            ]
        )
        == 0
    )
    assert np.asarray(Table.read(own)["out_of_fold"]).all()


def test_predict_says_how_many_galaxies_it_left_out(tmp_path, trained, capsys) -> None:
    cat = _synthetic(40, 8)
    ref = json.loads((trained / "model.json").read_text())["metadata"]["ref_band"]
    cat.flux[:4, cat.bands.index(ref)] = -1.0
    write_catalog(cat, tmp_path / "neg.fits")
    assert (
        main(
            [
                "predict",
                "--run",
                str(trained),
                "--catalog",
                str(tmp_path / "neg.fits"),
                "--out",
                str(tmp_path / "p.parquet"),
            ]
        )
        == 0
    )
    assert (
        f"wrote 40 predictions to {tmp_path / 'p.parquet'} (4 of 40 without a p(z); flags: "
        "REF_UNUSABLE 4; see the flag column)" in capsys.readouterr().out
    )


def test_predict_on_a_catalogue_without_the_runs_columns(tmp_path, trained, capsys) -> None:
    Table({"ref_id": [1, 2], "FLUX_I": [1.0, 2.0], "FLUXERR_I": [0.1, 0.1]}).write(
        tmp_path / "other_names.fits"
    )
    assert (
        main(
            [
                "predict",
                "--run",
                str(trained),
                "--catalog",
                str(tmp_path / "other_names.fits"),
                "--out",
                str(tmp_path / "p.parquet"),
            ]
        )
        == 2
    )
    message = one_line_error(capsys)
    assert "none of the flux columns asked for" in message and "FLUX_I" in message


def test_simulate_checks_the_output_name_first(tmp_path, capsys, monkeypatch) -> None:
    import deepz_core.simulate

    def never(*args, **kwargs):
        raise AssertionError("simulated before checking --out")

    monkeypatch.setattr(deepz_core.simulate, "simulate", never)
    assert main(["simulate", "--kind", "sps", "--n", "10", "--out", str(tmp_path / "s.txt")]) == 2
    assert "s.txt" in one_line_error(capsys)


def test_simulate_refuses_a_bad_sed_family_in_one_line(tmp_path, capsys) -> None:
    out = str(tmp_path / "m.fits")
    base = ["simulate", "--kind", "paus-mock", "--n", "10", "--out", out]
    assert main([*base, "--sed-family", "bc03"]) == 2
    assert "--sed-family must be one of ['sps', 'kcorrect'], got 'bc03'" in one_line_error(capsys)
    assert main([*base[:2], "lsst-deep", *base[3:], "--sed-family", "kcorrect"]) == 2
    assert "paus-mock only, got kind 'lsst-deep'" in one_line_error(capsys)
    assert not Path(out).exists()


def test_simulate_writes_a_mock_of_another_sed_family(tmp_path) -> None:
    from deepz_core.catalog.io import read_catalog

    out = tmp_path / "kc.fits"
    args = ["simulate", "--kind", "paus-mock", "--n", "25", "--seed", "3", "--out", str(out)]
    assert main([*args, "--sed-family", "kcorrect"]) == 0
    cat = read_catalog(out)
    assert cat.meta["SEDFAM"] == "kcorrect" and cat.n_galaxies == 25
    assert cat.exposures is not None and np.isfinite(cat.flux).all()


def test_schedule_options_set_the_stages_and_the_pretraining_size() -> None:
    from deepz_core.cli.main import build_parser
    from deepz_core.cli.train import train_overrides

    args = build_parser().parse_args(
        [
            "train",
            "--catalog",
            "c.fits",
            "--out",
            "x",
            "--schedule",
            "100:1e-3, 50:1e-4,20:1e-5",
            "--pretrain-schedule",
            "8:1e-3,2:1e-4",
            "--pretrain-n",
            "1000000",
        ]
    )
    _, train = train_overrides(args)
    assert train["schedule"] == ((100, 1e-3), (50, 1e-4), (20, 1e-5))
    assert train["pretrain_schedule"] == ((8, 1e-3), (2, 1e-4))
    assert train["pretrain_n"] == 1_000_000


def test_a_small_batch_size_brings_the_smallest_batch_kept_with_it() -> None:
    """Review, ninth session: --batch-size 5 failed on 'min_batch', a setting never given."""
    from deepz_core.cli.main import build_parser
    from deepz_core.cli.train import train_overrides
    from deepz_core.training.config import TrainConfig

    base = ["train", "--catalog", "c.fits", "--out", "x", "--batch-size"]
    _, train = train_overrides(build_parser().parse_args([*base, "5"]))
    assert (train["batch_size"], train["min_batch"]) == (5, 5)
    TrainConfig(**train)  # valid
    _, train = train_overrides(build_parser().parse_args([*base, "64"]))
    assert "min_batch" not in train


def _magnitude_catalogue(cat, path: Path) -> Path:
    """``cat`` as AB magnitudes mag_<band>/magerr_<band> (the inverse of the conversion back),
    with objectId and its coordinates, no flux columns."""
    t = Table({"objectId": cat.ref_id, "ra": cat.extra["ra"], "dec": cat.extra["dec"]})
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, band in enumerate(cat.bands):
            f, e = cat.flux[:, j], cat.flux_error[:, j]
            t[f"mag_{band}"] = np.where(f > 0, cat.fluxzp - 2.5 * np.log10(f), 99.0)
            t[f"magerr_{band}"] = 2.5 / np.log(10) * e / f
    t["zspec"] = cat.zspec
    t.write(path)
    return path


def test_predict_a_magnitude_catalogue_into_qp_and_hats(tmp_path, tiny_run, sky_catalog, capsys):
    import lsdb
    import qp

    cat, fluxes = sky_catalog
    mags = _magnitude_catalogue(cat, tmp_path / "mags.parquet")
    base = ["predict", "--run", str(tiny_run), "--catalog"]
    assert main([*base, str(fluxes), "--out", str(tmp_path / "f.hdf5")]) == 0
    keep = ["--keep-columns", "objectId", "--mag-limits", "NB455=25.5"]
    assert main([*base, str(mags), "--out", str(tmp_path / "m.hdf5"), *keep]) == 0
    assert "3 of 200 without a p(z)" in capsys.readouterr().out
    by_flux, by_mag = qp.read(str(tmp_path / "f.hdf5")), qp.read(str(tmp_path / "m.hdf5"))
    np.testing.assert_array_equal(by_mag.ancil["ref_id"], cat.ref_id)
    np.testing.assert_allclose(by_mag.ancil["zmode"], by_flux.ancil["zmode"], atol=2e-3)
    np.testing.assert_allclose(by_mag.objdata["means"], by_flux.objdata["means"], atol=1e-4)
    out = tmp_path / "m_hats"
    assert main([*base, str(mags), "--out", str(out), "--out-format", "hats", *keep]) == 0
    frame = lsdb.open_catalog(out).compute()
    assert len(frame) == 200 and {"objectId", "ra", "dec", "weights"} <= set(frame.columns)


def test_fluxes_in_an_undeclared_unit_are_flagged_and_named(
    tmp_path, tiny_run, sky_catalog, capsys
) -> None:
    """Review, ninth session: nJy read as the default microJansky (x1000, 7.5 mag) gave flag-0
    predictions with sigma68 2.4x worse; the networks read the reference magnitude. Fourteenth
    session: refused in one line; predicted flagged only when asked."""
    from deepz_core.catalog.screen import PzFlag

    _, fluxes = sky_catalog
    t = Table.read(fluxes)
    for name in t.colnames:
        if name.startswith(("flux_", "flux_error_")):
            t[name] = t[name] * 1000.0
    t.write(tmp_path / "nJy.fits")
    args = ["predict", "--run", str(tiny_run), "--out"]
    assert main([*args, str(tmp_path / "ok.parquet"), "--catalog", str(fluxes)]) == 0
    ok = capsys.readouterr().out
    nano = [str(tmp_path / "x.parquet"), "--catalog", str(tmp_path / "nJy.fits")]
    assert main([*args, *nano]) == 2
    assert "nJy values read as uJy?" in one_line_error(capsys)
    assert not (tmp_path / "x.parquet").exists()
    assert main([*args, *nano, "--allow-magnitude-shift"]) == 0
    assert "outside the training population: are the fluxes in the unit" in capsys.readouterr().out
    assert "outside the training population" not in ok
    flags = Table.read(tmp_path / "x.parquet")["flag"]
    assert np.mean((flags & PzFlag.OUTSIDE_TRAINING) > 0) > 0.5


def test_a_kept_text_column_goes_into_a_fits_output(tmp_path, tiny_run, sky_catalog) -> None:
    """Review, ninth session: a string column kept into .fits failed after the whole prediction
    (an object column, 'Illegal format P1A()')."""
    cat, fluxes = sky_catalog
    t = Table.read(fluxes)
    t["field"] = np.where(np.arange(len(t)) % 2 == 0, "W1", "W3-deep")
    t.write(tmp_path / "c.fits")
    args = ["predict", "--run", str(tiny_run), "--catalog", str(tmp_path / "c.fits")]
    assert main([*args, "--out", str(tmp_path / "p.fits"), "--keep-columns", "field"]) == 0
    out = Table.read(tmp_path / "p.fits", hdu=1)
    assert list(out["field"][:2]) == ["W1", "W3-deep"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mag-limits", "g25"], "--mag-limits: expected BAND=MAG"),
        (["--mag-limits", "g=deep"], "has no number after"),
        (["--keep-columns", "nope"], "--keep-columns: ['nope'] not in the catalogue"),
        (["--out-format", "hats", "--dask", "local"], "--dask writes a partitioned dataset"),
    ],
)
def test_predict_option_errors(tmp_path, tiny_run, sky_catalog, capsys, args, needle) -> None:
    base = ["predict", "--run", str(tiny_run), "--catalog", str(sky_catalog[1])]
    assert main([*base, "--out", str(tmp_path / "p"), *args]) == 2
    assert needle in capsys.readouterr().err


def test_a_mag_limit_naming_no_band_is_an_error(tmp_path, tiny_run, sky_catalog, capsys) -> None:
    """--mag-limits for a band the catalogue does not have fails in one line listing its bands,
    before any output (it used to be ignored silently)."""
    mags = _magnitude_catalogue(sky_catalog[0], tmp_path / "mags.parquet")
    base = ["predict", "--run", str(tiny_run), "--catalog", str(mags)]
    out = tmp_path / "p.parquet"
    assert main([*base, "--out", str(out), "--mag-limits", "nope=25"]) == 2
    err = capsys.readouterr().err
    assert "--mag-limits: 'nope' names no band given in magnitudes" in err and "NB455" in err
    assert not out.exists()


def test_evaluate_with_a_profile_and_magnitude_bins(tmp_path, trained, capsys) -> None:
    pred, report = str(trained / "predictions.fits"), tmp_path / "r.json"
    args = ["evaluate", "--pred", pred, "--out", str(report), "--mag-bins", "19:22:1"]
    assert main([*args, "--profile", "broad-band"]) == 0
    doc = json.loads(report.read_text())
    assert doc["profile"]["outlier"] == 0.15
    assert [(r["lo"], r["hi"]) for r in doc["per_magnitude"]] == [(19, 20), (20, 21), (21, 22)]
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps({"name": "custom", "outlier": 0.07, "target": None}))
    assert main([*args, "--profile", str(custom), "--overwrite"]) == 0
    assert json.loads(report.read_text())["profile"]["outlier"] == 0.07
    assert main([*args[:-1], "13"]) == 2
    assert "--mag-bins must be LO:HI:WIDTH" in capsys.readouterr().err
    capsys.readouterr()
    assert main([*args, "--profile", "wide-band", "--overwrite"]) == 2
    assert "wide-band" in one_line_error(capsys)


def test_no_calibrate_flags(tmp_path, trained, files) -> None:
    """train --no-calibrate records it and fits no calibration; predict --no-calibrate gives the
    networks' p(z) (no pit_raw column)."""
    out = tmp_path / "raw"
    args = ["--pretrain", "none", "--epochs", "1", "--folds", "2", "--batch-size", "50"]
    assert (
        main(
            [
                "train",
                "--catalog",
                str(files["catalog"]),
                *args,
                "--no-calibrate",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["calibrate"] is False
    assert not (out / "calibration.json").exists()
    pred = tmp_path / "raw.parquet"
    assert (
        main(
            [
                "predict",
                "--run",
                str(trained),
                "--catalog",
                str(files["new_z"]),
                "--out",
                str(pred),
                "--no-calibrate",
            ]
        )
        == 0
    )
    assert "pit_raw" not in Table.read(pred).colnames


def test_calibrate_errors_are_one_line(tmp_path, trained, files, capsys) -> None:
    """`deepz calibrate`: each mistake is one error line naming what is wrong."""
    cases = [
        (["--run", str(trained)], "give --catalog"),
        (["--run", str(trained), "--catalog", str(tmp_path / "none.fits")], "none.fits"),
        (["--run", str(tmp_path), "--catalog", str(files["new_z"])], "not a deepz run folder"),
        # 100 training galaxies: too few for a calibration, so nothing to build a stage on
        (["--run", str(trained), "--catalog", str(files["new_z"])], "has no calibration"),
    ]
    for argv, needle in cases:
        assert main(["calibrate", *argv]) == 2, argv
        assert needle in one_line_error(capsys)


def test_train_reads_a_survey_magnitude_catalogue_as_predict_does(tmp_path, files, capsys) -> None:
    """Review, tenth session: `train` had no --id-column / --mag-limits (predict has): an SDSS
    `objid` was refused and 99 non-detections were unusable in training, bounded in prediction."""
    from deepz_core.catalog.io import read_catalog

    cat = read_catalog(files["catalog"])
    t = Table({"objid": cat.ref_id + 1237650000000000000})
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, band in enumerate(cat.bands):
            f, e = cat.flux[:, j], cat.flux_error[:, j]
            t[f"mag_{band}"] = np.where(f > 0, cat.fluxzp - 2.5 * np.log10(f), 99.0)
            t[f"magerr_{band}"] = np.where(f > 0, 2.5 / np.log(10) * e / f, 99.0)
    t["mag_NB455"][:5] = t["magerr_NB455"][:5] = 99.0  # non-detections
    t["zspec"] = cat.zspec
    t.write(tmp_path / "mags.parquet")
    out = tmp_path / "run"
    args = ["train", "--catalog", str(tmp_path / "mags.parquet"), "--out", str(out)]
    quick = ["--pretrain", "none", "--epochs", "1", "--folds", "2", "--device", "cpu"]
    assert main([*args, *quick]) == 2
    assert "--id-column" in one_line_error(capsys)  # objid is no known identifier
    assert not out.exists()
    convert = ["--id-column", "objid", "--mag-limits", "NB455=25.5"]
    assert main([*args, *quick, *convert]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["state"] == "finished"
    own = read_catalog(out / "catalog.fits")  # the run's catalogue, as it was read
    np.testing.assert_array_equal(own.ref_id, t["objid"])
    j = own.bands.index("NB455")
    np.testing.assert_array_equal(own.flux[:5, j], 0.0)  # a bounded non-detection, not NaN
    assert np.all(own.flux_error[:5, j] > 0)
    assert main([*args, *quick, *convert]) == 2  # a finished run is refused, as without them
    assert "finished run" in one_line_error(capsys)


def test_every_command_has_a_whole_summary_and_its_docstring_in_its_help(capsys) -> None:
    """Review, tenth session: `deepz --help` cut summaries at a source line ('predict  Photo-z
    ... zmedian, z_lo68, z_hi68,') and `deepz predict --help` showed no description at all."""
    from deepz_core.cli.main import build_parser, summary

    assert summary("Photo-z, streamed: ref_id, zphot (a: b. c), odds. More.") == "Photo-z, streamed"
    assert summary("Train (resumes. really) a run. More") == "Train (resumes. really) a run"
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for choice in sub._choices_actions:
        assert choice.help and not choice.help.endswith((",", ".")), choice.dest
    for name, parser in sub.choices.items():
        assert parser.description, name


def test_predict_reads_a_csv_in_nanojansky_with_flux_unit(tmp_path, tiny_run, sky_catalog) -> None:
    """Review, tenth session: a CSV cannot declare its unit; --flux-unit nJy does, and gives the
    predictions of the same fluxes in microJansky."""
    cat, fluxes = sky_catalog
    t = Table.read(fluxes)
    for name in t.colnames:
        if name.startswith("flux"):
            t[name] = np.asarray(t[name]) * 1000.0
    t.write(tmp_path / "nano.csv")
    base = ["predict", "--run", str(tiny_run), "--catalog"]
    assert main([*base, str(fluxes), "--out", str(tmp_path / "u.parquet")]) == 0
    nano = [str(tmp_path / "nano.csv"), "--flux-unit", "nJy", "--out", str(tmp_path / "n.parquet")]
    assert main([*base, *nano]) == 0
    by_u, by_n = Table.read(tmp_path / "u.parquet"), Table.read(tmp_path / "n.parquet")
    np.testing.assert_allclose(by_n["zphot"], by_u["zphot"], atol=2e-3, equal_nan=True)
    np.testing.assert_array_equal(by_n["flag"], by_u["flag"])


def test_predict_reads_lsst_dp0_column_names_with_rename(tmp_path, tiny_run, sky_catalog) -> None:
    """Review, tenth session: `<band>_cModelFlux` columns (LSST DP0) were refused ('none of the
    flux columns asked for'); --rename reads them as the run's bands."""
    cat, fluxes = sky_catalog
    t = Table.read(fluxes)
    t.rename_columns(
        [f"flux_{b}" for b in cat.bands] + [f"flux_error_{b}" for b in cat.bands],
        [f"{b}_cModelFlux" for b in cat.bands] + [f"{b}_cModelFluxErr" for b in cat.bands],
    )
    t.write(tmp_path / "dp0.parquet")
    base = ["predict", "--run", str(tiny_run), "--catalog"]
    assert main([*base, str(fluxes), "--out", str(tmp_path / "f.parquet")]) == 0
    rename = "{b}_cModelFlux=flux_{b},{b}_cModelFluxErr=flux_error_{b}"
    dp0 = [str(tmp_path / "dp0.parquet"), "--rename", rename, "--out", str(tmp_path / "d.parquet")]
    assert main([*base, *dp0]) == 0
    by_flux, by_dp0 = Table.read(tmp_path / "f.parquet"), Table.read(tmp_path / "d.parquet")
    np.testing.assert_array_equal(by_dp0["zphot"], by_flux["zphot"])
    np.testing.assert_array_equal(by_dp0["flag"], by_flux["flag"])


def test_internal_commands_are_runnable_but_not_listed(capsys) -> None:
    """Review: worker, sim-job and predict-job (run by the app and the job queue) were listed in
    `deepz --help` among the user's commands."""
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "train" in shown and "predict " in shown
    assert not {"worker", "sim-job", "predict-job", "SUPPRESS"} & set(re.split(r"[\s{},]+", shown))
    for name in ("worker", "sim-job", "predict-job"):
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0 and f"usage: deepz {name}" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["ref-band", "no-zspec"])
def test_a_refused_train_leaves_no_run_folder(tmp_path, files, problem, capsys) -> None:
    """Review: train with a bad --ref-band or a catalogue without spec-z left a failed run folder
    under runs/; both are refused before the folder exists."""
    catalog, extra = files["catalog"], ["--ref-band", "NB999"]
    if problem == "no-zspec":
        catalog, extra = files["new"], []
    out = tmp_path / "runs" / "run"
    args = ["train", "--catalog", str(catalog), "--pretrain", "none", "--out", str(out)]
    assert main([*args, *extra]) == 2
    line = one_line_error(capsys)
    assert ("NB999" in line) if problem == "ref-band" else ("has no spec-z (column zspec" in line)
    assert not out.exists() and not (tmp_path / "runs").exists()
