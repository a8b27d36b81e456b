"""Commands for training, resuming, prediction and evaluation (registered with ``deepz_core.cli.common.command``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from deepz_core.cli.common import command, positive_int
from deepz_core.errors import ConfigError

if TYPE_CHECKING:
    pass


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalog",
        required=True,
        help="training catalogue: ref_id, flux_<band> and flux_error_<band> for every "
        "band (finite; errors > 0), zspec (NaN where unknown: predicted, not trained "
        "on), optional mag",
    )
    p.add_argument("--exposures", help="single exposures, when not an HDU/key of the catalogue")
    p.add_argument(
        "--pretrain", default="auto", help="auto (simulate through the bands), none, or SIMFILE"
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=("quick", "paper", "smoke"),
        help="quick (CPU, minutes), paper (E20 protocol), smoke (seconds, for trying things)",
    )
    p.add_argument(
        "--members",
        type=positive_int,
        help="R: random partitions (repetitions; quick 1, paper 10, smoke 1); the "
        "ensemble has R x K networks",
    )
    p.add_argument(
        "--folds",
        type=positive_int,
        help="K: folds per partition (quick 5, paper 5, smoke 2); each training galaxy "
        "is predicted by the R networks that never saw it",
    )
    p.add_argument("--alpha", type=float, help="probability of keeping each single exposure (0.8)")
    p.add_argument("--no-autoencoder", action="store_true", help="ablation: photo-z network alone")
    p.add_argument("--no-randomize", action="store_true", help="train on the full coadds only")
    p.add_argument(
        "--train-outliers",
        type=float,
        metavar="FRACTION",
        help="E20 App. B: each epoch add a photometric outlier (one band, extra flux "
        "U(0, 1) x that band's flux) to this fraction of training galaxies (0)",
    )
    p.add_argument(
        "--outlier-unit",
        choices=("galaxy", "measurement"),
        help="what --train-outliers counts: galaxies, one band each (default), or "
        "every (galaxy, band) flux independently",
    )
    p.add_argument(
        "--outlier-amplitude",
        type=float,
        metavar="A",
        help="an outlier adds U(0, A) x the band's flux; A in (0, 10] (1)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs", type=positive_int, help="override: that many fine-tuning epochs at 1e-3"
    )
    length.add_argument(
        "--schedule",
        metavar="E:LR,...",
        help="override: fine-tuning stages, e.g. 100:1e-3,50:1e-4,20:1e-5 (the quick preset's)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help="fine-tuning batch size (quick 200, paper 100, smoke 100)",
    )
    p.add_argument(
        "--pretrain-n",
        type=int,
        metavar="N",
        help="override: simulated galaxies for --pretrain auto (quick 300000, paper 10^6)",
    )
    p.add_argument(
        "--pretrain-schedule",
        metavar="E:LR,...",
        help="override: pretraining stages, e.g. 8:1e-3,2:1e-4 (the quick preset's)",
    )
    p.add_argument(
        "--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps"
    )
    p.add_argument("--ref-band", help="reference band for flux ratios (default subaru_i, else *_i)")
    p.add_argument(
        "--input-norm",
        choices=("robust", "batchnorm"),
        help="robust (default): flux ratios scaled by the training set's median and "
        "IQR, clipped; batchnorm: E20's input BatchNorm on the raw ratios",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of splits, weights and coadds (0)")
    p.add_argument(
        "--out",
        required=True,
        help="run folder to create: config.json, status.json, metrics.jsonl, log.txt, "
        "checkpoints, model.safetensors + model.json, predictions.fits (out-of-fold). "
        "An existing folder of a killed run with the same arguments resumes",
    )


def train_overrides(args: argparse.Namespace) -> tuple[dict, dict]:
    """(model overrides, train overrides) from the optional arguments that were given."""
    train: dict = {"device": args.device, "seed": args.seed}
    for name, key in (
        ("members", "repetitions"),
        ("folds", "folds"),
        ("alpha", "alpha"),
        ("batch_size", "batch_size"),
        ("pretrain_n", "pretrain_n"),
        ("train_outliers", "outlier_fraction"),
        ("outlier_unit", "outlier_unit"),
        ("outlier_amplitude", "outlier_amplitude"),
    ):
        if getattr(args, name) is not None:
            train[key] = getattr(args, name)
    if args.no_randomize:
        train["randomize_coadds"] = False
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
        train["schedule"] = ((args.epochs, 1e-3),)
    if args.schedule is not None:
        train["schedule"] = parse_schedule(args.schedule)
    if args.pretrain_schedule is not None:
        train["pretrain_schedule"] = parse_schedule(args.pretrain_schedule, "--pretrain-schedule")
    model: dict = {"use_autoencoder": False} if args.no_autoencoder else {}
    if args.input_norm is not None:
        model["input_norm"] = args.input_norm
    return model, train


def parse_schedule(text: str, flag: str = "--schedule") -> tuple[tuple[int, float], ...]:
    """``"100:1e-3,50:1e-4"`` -> ((100, 1e-3), (50, 1e-4)); TrainConfig checks the values."""
    try:
        stages = tuple((int(e), float(lr)) for e, lr in (s.split(":") for s in text.split(",")))
    except ValueError:
        raise ConfigError(
            f"{flag} must be EPOCHS:LR stages separated by commas, got {text!r}"
        ) from None
    if any(e < 1 for e, _ in stages):
        raise ConfigError(f"{flag}: every stage needs >= 1 epoch, got {text!r}")
    return stages


@command("train", _train_args)
def _train(args: argparse.Namespace) -> int:
    """Train a deepz ensemble into a run folder (resumes if the folder holds a killed run)."""
    from deepz_core.jobs.training_run import (
        execute_run,
        open_run_folder,
        run_config,
        training_folder,
    )

    model, train = train_overrides(args)
    config = run_config(
        args.catalog, args.exposures, args.pretrain, args.preset, args.ref_band, model, train
    )
    own = tuple(Path(p) for p in (config.catalog, config.exposures) if p is not None)
    with training_folder(Path(args.out), own):  # locked for the whole command
        run, note = open_run_folder(Path(args.out), config)
        if note:
            print(note)
        execute_run(run)
    status = run.status()
    print(json.dumps({"run": str(run.path), "state": status["state"], **status.get("summary", {})}))
    return 0 if status["state"] == "finished" else 3


def _resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder of a killed or cancelled run")


@command("resume", _resume_args)
def _resume(args: argparse.Namespace) -> int:
    """Resume a killed or cancelled run from its last checkpoint."""
    from deepz_core.jobs.training_run import execute_run
    from deepz_core.rundir import RunDir

    run = RunDir(Path(args.run))
    if not run.file("config.json").exists():
        raise ConfigError(f"--run {args.run} is not a run folder (no config.json)")
    with run.locked():  # a run another process trains is refused, naming it
        if run.status().get("state") == "finished":
            raise ConfigError(f"--run {args.run} is finished: nothing to resume")
        run.file("cancel").unlink(missing_ok=True)
        execute_run(run)
    return 0 if run.status()["state"] == "finished" else 3


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="a finished run folder")
    p.add_argument(
        "--catalog",
        required=True,
        help="FITS/Parquet/CSV/HDF5 with the run's flux_<band>/flux_error_<band> "
        "columns, read in chunks",
    )
    p.add_argument("--exposures", help="ignored: prediction uses the coadds only")
    p.add_argument(
        "--out",
        required=True,
        help="output table (.parquet, or .fits for small outputs), or a folder (no suffix) for a "
        "partitioned Parquet dataset that resumes when re-run",
    )
    p.add_argument(
        "--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps"
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=100_000,
        help="galaxies per partition (100000); on a CPU read 25000 at a time",
    )
    p.add_argument("--grid", action="store_true", help="also write p(z) on the run's z grid")
    p.add_argument(
        "--dask",
        help="'local' (LocalCluster, one worker per core), 'local:N' (N workers) or tcp://HOST:PORT",
    )


@command("predict", _predict_args)
def _predict(args: argparse.Namespace) -> int:
    """Photo-z for a catalogue, streamed: ref_id, zphot (mode), zmean, zmedian, z_lo68, z_hi68,
    odds, zspec, pit, mag, out_of_fold, and the p(z) as mixture parameters (weights, means, stds).
    Galaxies the run trained on get their out-of-fold p(z)."""
    from deepz_core.inference.stream import load_predictor, predict_dataset, predict_file

    if args.dask:  # workers resolve --device (this machine may have no GPU)
        if not (Path(args.run) / "model.safetensors").exists():
            raise ConfigError(f"--run {args.run} has no trained model (model.safetensors)")
    else:
        load_predictor(args.run, args.device)  # a bad run or device fails before any work
    common = dict(chunk_size=args.chunk_size, device=args.device, grid=args.grid)
    if Path(args.out).suffix:
        if args.dask:
            raise ConfigError(
                f"--dask writes a folder: give --out without a suffix, got {args.out}"
            )
        n = predict_file(args.run, args.catalog, args.out, **common)
    elif args.dask:
        from deepz_core.inference.scaleout import dask_client, dask_map

        with dask_client(args.dask) as client:
            n = predict_dataset(args.run, args.catalog, args.out, mapper=dask_map(client), **common)
    else:
        n = predict_dataset(args.run, args.catalog, args.out, **common)
    print(f"wrote {n} predictions to {args.out}{_flag_note(args.out)}")
    return 0


def _flag_note(out: str) -> str:
    """``" (K of N without a p(z): ...; M more flagged ...)"`` from the output's ``flag`` column."""
    from deepz_core.inference.stream import flag_counts

    counts = flag_counts(out)
    total, no_pz = counts.pop("rows"), counts.pop("NO_PZ", 0)
    if not counts:
        return ""
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    return f" ({no_pz} of {total} without a p(z); flags: {shown}; see the flag column)"


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pred",
        required=True,
        help="predictions from 'predict': a file, or the folder of a partitioned dataset",
    )
    p.add_argument(
        "--catalog",
        help="catalogue with zspec (and mag) for every predicted ref_id, when the "
        "predictions lack them",
    )
    p.add_argument("--out", required=True, help="report (.json)")


@command("evaluate", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    """Metrics against spec-z: sigma68, strict outliers, bias, NMAD, PIT KS, CDE loss and the
    ODDS-best-50% sigma68, overall and per magnitude bin. Training galaxies count only with their
    out-of-fold p(z) when the table has any."""
    from deepz_core.evaluation.report import evaluate_files

    report = evaluate_files(args.pred, args.catalog, args.out)
    print(json.dumps(report["overall"]))
    return 0
