"""Commands for training, resuming, prediction and evaluation (registered with ``deepz_core.cli.common.command``)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from deepz_core.cli.common import (
    add_convention_args,
    add_overwrite,
    command,
    conventions_from_args,
    positive_int,
)
from deepz_core.errors import ConfigError, TrainingWarning

if TYPE_CHECKING:
    from collections.abc import Iterator

    from deepz_core.catalog.conventions import InputConventions
    from deepz_core.rundir import RunDir
    from deepz_core.training.config import RunConfig


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalog",
        required=True,
        help="training catalogue: ref_id (or objectId, object_id, id; --id-column), "
        "flux_<band> and flux_error_<band> (or AB mag_<band> and magerr_<band>) for every "
        "band, zspec (NaN where unknown: predicted, not trained on), optional mag. With "
        "--id-column, --mag-limits, --limit-nsigma, --flux-unit or --rename the catalogue read "
        "that way is saved as OUT/catalog.fits",
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
    p.add_argument(
        "--ref-band", help="reference band for flux ratios (default subaru_i, else i or *_i)"
    )
    p.add_argument(
        "--input-norm",
        choices=("robust", "batchnorm"),
        help="robust (default): flux ratios scaled by the training set's median and "
        "IQR, clipped; batchnorm: E20's input BatchNorm on the raw ratios",
    )
    p.add_argument(
        "--no-magnitude-input",
        action="store_true",
        help="the networks read the flux ratios only, as E20's (default: also the reference "
        "band's magnitude)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of splits, weights and coadds (0)")
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep the networks' p(z) as they are: no PIT calibration fitted on the "
        "out-of-fold predictions (calibration.json; on by default, beyond E20)",
    )
    p.add_argument(
        "--templates",
        help="after training, combine the networks with the template fit of this template set "
        "(bcnz2 or kcorrect): hybrid.json and hybrid_predictions.fits, used by predict "
        "(beyond E20; see `deepz combine`)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="run folder to create: config.json, status.json, metrics.jsonl, log.txt, "
        "checkpoints, model.safetensors + model.json, predictions.fits (out-of-fold). "
        "An existing folder of a killed run with the same arguments resumes",
    )
    add_convention_args(p)


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
    if args.batch_size is not None:  # the smallest last batch kept may not exceed a batch
        from deepz_core.training.config import TrainConfig

        if args.batch_size < TrainConfig.min_batch:
            train["min_batch"] = args.batch_size
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
    if args.no_magnitude_input:
        model["magnitude_input"] = False
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
    from deepz_core.catalog.conventions import conventions_of
    from deepz_core.jobs.training_run import (
        configured_run,
        execute_run,
        open_run_folder,
        training_folder,
    )

    model, train = train_overrides(args)
    conventions = conventions_from_args(args)
    if conventions != conventions_of(None):
        return _train_converted(args, conventions, model, train)
    config, catalog = configured_run(  # the catalogue is read once: its warnings come once
        args.catalog,
        args.exposures,
        args.pretrain,
        args.preset,
        args.ref_band,
        model,
        train,
        calibrate=not args.no_calibrate,
        templates=args.templates,
    )
    own = tuple(Path(p) for p in (config.catalog, config.exposures) if p is not None)
    with training_folder(Path(args.out), own):  # locked for the whole command
        run, note = open_run_folder(Path(args.out), config)
        if note:
            print(note)
        execute_run(run, catalog)
    return _train_result(run)


def _train_converted(
    args: argparse.Namespace, conventions: InputConventions, model: dict, train: dict
) -> int:
    """``train`` of a catalogue read with any input convention (--id-column, --mag-limits,
    --limit-nsigma, --flux-unit, --rename): the converted catalogue
    becomes the run's own (OUT/catalog.fits, as ``dz.train`` keeps a catalogue from memory), so
    a resume, ``combine`` and ``calibrate`` read it as training did."""
    from deepz_core.catalog.io import read_catalog
    from deepz_core.jobs.run import train as train_run

    cat = read_catalog(args.catalog, args.exposures, conventions)
    with warnings.catch_warnings():  # _train_result prints it as one line
        warnings.simplefilter("ignore", TrainingWarning)
        run = train_run(
            cat,
            args.out,
            args.preset,
            args.pretrain,
            ref_band=args.ref_band,
            model=model,
            options=train,
            calibrate=not args.no_calibrate,
            templates=args.templates,
        )
    return _train_result(run.folder)


def _train_result(run: RunDir) -> int:
    """Print the run's state and headline metrics as one JSON line; exit 0 when finished."""
    status = run.status()
    print_screen(run)
    print(json.dumps({"run": str(run.path), "state": status["state"], **status.get("summary", {})}))
    print_run_warning(run)
    return 0 if status["state"] == "finished" else 3


def print_screen(run: RunDir) -> None:
    """The run's screen line (as its log.txt has it, naming its screen.json), when it has one."""
    from deepz_core.jobs.training_run import screen_summary

    path = run.file("screen.json")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):  # no screen (a run that failed before it) or a damaged one
        return
    print(screen_summary(doc, str(path)))


def print_run_warning(run: RunDir) -> None:
    """The finished run's ``training_warning`` on stderr, one line, so that it is not lost in
    the summary's JSON."""
    from deepz_core.jobs.status import training_warning

    warning = training_warning(run)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def _resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder of a killed or cancelled run")


@command("resume", _resume_args)
def _resume(args: argparse.Namespace) -> int:
    """Resume a killed or cancelled run from its last checkpoint; prints its state and headline
    metrics as `train` does."""
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
    return _train_result(run)


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
        help="output table (.parquet; .fits or .hdf5, a qp file, for smaller outputs), or a "
        "folder (no suffix) for a partitioned Parquet dataset that resumes when re-run (or a "
        "HATS catalogue with --out-format hats)",
    )
    add_overwrite(
        p, "; a dataset folder made with other settings starts over (the same ones resume)"
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
        "--no-calibrate",
        action="store_true",
        help="the networks' raw p(z), without the run's PIT calibration (faster; a run "
        "trained with --no-calibrate has none)",
    )
    p.add_argument(
        "--network-only",
        action="store_true",
        help="a run combined with the template fit (`deepz combine`, `train --templates`) "
        "predicts with the combination by default (~100 galaxies/s on 2 cores, whole files "
        "only); this keeps the networks' fast path",
    )
    p.add_argument(
        "--dask",
        help="'local' (LocalCluster, one worker per core), 'local:N' (N workers) or tcp://HOST:PORT",
    )
    p.add_argument(
        "--out-format",
        default="auto",
        choices=("auto", "hats"),
        help="auto: by the --out suffix (.parquet, .fits, .hdf5 = a qp file; none = a partitioned "
        "dataset); hats: a HATS catalogue folder that lsdb.open_catalog opens (needs ra/dec)",
    )
    p.add_argument(
        "--keep-columns",
        default="",
        help="comma-separated catalogue columns to copy to the predictions besides ref_id and "
        "the coordinates (ra/dec, RA/DEC, coord_ra/coord_dec, _healpix_29), e.g. objectId",
    )
    p.add_argument(
        "--allow-magnitude-shift",
        action="store_true",
        help="predict a catalogue whose reference-band magnitudes lie a median more than 5 mag "
        "from the run's training population (refused by default: "
        "fluxes in another unit than declared, e.g. nJy read as uJy = 7.5 mag; fix that with "
        "--flux-unit, a FLUXZP header, TUNIT or --rename); the rows outside the training "
        "magnitudes are flagged OUTSIDE_TRAINING",
    )
    add_convention_args(p)


@command("predict", _predict_args)
def _predict(args: argparse.Namespace) -> int:
    """Photo-z for a catalogue, streamed: ref_id, zphot (mode), zmean, zmedian, z_lo68, z_hi68,
    odds, zspec, pit, mag, flag, out_of_fold, coordinates, and the p(z) as qp mixmod parameters
    (weights, means, stds). Galaxies the run trained on get their out-of-fold p(z). Every output
    carries its provenance (deepz version, run, model and catalogue checksums, z grid, time).
    Calibrated when the run has a calibration (pit_raw: the PIT before it), unless --no-calibrate.
    A catalogue whose reference magnitudes lie a unit's shift from the run's training population
    is refused before any output, unless --allow-magnitude-shift."""
    from deepz_core.inference.stream import load_predictor, predict_dataset, predict_file

    if not args.network_only and (Path(args.run) / "hybrid.json").exists():
        return _predict_combined(args)
    if args.dask:  # workers resolve --device (this machine may have no GPU)
        if not (Path(args.run) / "model.safetensors").exists():
            raise ConfigError(f"--run {args.run} has no trained model (model.safetensors)")
    else:
        load_predictor(args.run, args.device)  # a bad run or device fails before any work
    read = _read_options(args)
    common = dict(
        chunk_size=args.chunk_size,
        device=args.device,
        grid=args.grid,
        read=read,
        calibrate=not args.no_calibrate,
        overwrite=args.overwrite,
        allow_magnitude_shift=args.allow_magnitude_shift,
    )
    if Path(args.out).suffix or args.out_format == "hats":
        if args.dask:
            raise ConfigError(
                f"--dask writes a partitioned dataset: give --out without a suffix and no "
                f"--out-format, got {args.out}"
            )
        n = predict_file(args.run, args.catalog, args.out, out_format=args.out_format, **common)
    elif args.dask:
        from deepz_core.inference.scaleout import dask_client, dask_map

        with dask_client(args.dask) as client:
            n = predict_dataset(args.run, args.catalog, args.out, mapper=dask_map(client), **common)
    else:
        n = predict_dataset(args.run, args.catalog, args.out, **common)
    print(f"wrote {n} predictions to {args.out}{_flag_note(args.out)}")
    return 0


def _predict_combined(args: argparse.Namespace) -> int:
    """``predict`` with a run combined with the template fit: one file in, one file out."""
    from deepz_core.catalog.io import read_catalog
    from deepz_core.catalog.screen import UnitCheck
    from deepz_core.files import check_outputs
    from deepz_core.hybrid.runs import predict_hybrid
    from deepz_core.inference.arrow_tables import arrow_table
    from deepz_core.inference.provenance import provenance
    from deepz_core.inference.stream import output_format, write_output
    from deepz_core.rundir import RunDir
    from deepz_core.training.config import run_pz_config

    if args.dask or not Path(args.out).suffix or args.out_format == "hats":
        raise ConfigError(
            f"run {args.run} is combined with the template fit, which predicts one file into one "
            "file (.fits, .parquet, .hdf5): add --network-only for --dask, partitioned datasets "
            "and HATS"
        )
    if args.grid or args.keep_columns.strip():  # never dropped silently
        raise ConfigError(
            f"run {args.run} is combined with the template fit, which writes no --grid and no "
            "--keep-columns: add --network-only for them"
        )
    fmt = output_format(args.out)
    inputs = {"--catalog": args.catalog, "--run": args.run}
    check_outputs({"--out": args.out}, inputs, args.overwrite)
    conventions = _read_options(args).conventions
    # a run band without any value is predicted, as the networks' path does: imputed by the
    # networks (one warning, BAND_MISSING), left out of the template fit
    catalog = read_catalog(args.catalog, conventions=conventions, predicting=True)
    check = UnitCheck(args.allow_magnitude_shift)
    table = predict_hybrid(
        args.run, catalog, calibrate=not args.no_calibrate, device=args.device, check=check
    )
    pz = run_pz_config(RunDir(Path(args.run)))
    prov = provenance(args.run, args.catalog)
    write_output(arrow_table(table), args.out, fmt, prov, (pz.z_min, pz.z_max))
    print(f"wrote {len(table)} combined predictions to {args.out}{_flag_note(args.out)}")
    return 0


def _calibrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="a finished, calibrated run folder")
    p.add_argument(
        "--catalog",
        help="held-out catalogue: galaxies with a spec-z that no network trained on (FITS, "
        "Parquet, CSV, HDF5); galaxies the run trained on are left out",
    )
    add_convention_args(p)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--network-only",
        action="store_true",
        help="calibrate the networks' p(z) even when the run is combined with the template fit "
        "(by default the combination, which `predict` uses, is calibrated)",
    )
    p.add_argument(
        "--remove", action="store_true", help="remove the held-out stage instead of fitting one"
    )


@command("calibrate", _calibrate_args)
def _calibrate(args: argparse.Namespace) -> int:
    """Fit the calibration of new galaxies to a held-out spec-z catalogue (beyond E20): a second
    stage on top of the run's out-of-fold calibration, which `predict` then applies to galaxies
    the run did not train on. Prints the held-out galaxies' PIT KS and 68% coverage before and
    after it, each galaxy by a stage fitted without it. --remove undoes it."""
    import deepz_core as dz
    from deepz_core.inference.calibrate import stage_precision_note

    run = dz.load_run(args.run)
    if args.remove:
        removed = run.drop_heldout_calibration(network_only=args.network_only)
        stage = "removed" if removed else "none (the run had no held-out stage)"
        print(json.dumps({"run": args.run, "heldout_stage": stage}))
        return 0
    if not args.catalog:
        raise ConfigError("calibrate: give --catalog (a held-out spec-z catalogue) or --remove")
    s = run.calibrate_on(
        args.catalog,
        args.device,
        network_only=args.network_only,
        conventions=conventions_from_args(args),
    )
    keys = ("n", "pit_ks_before", "pit_ks_after", "coverage68_before", "coverage68_after")
    print(json.dumps({"run": args.run, **{k: s[k] for k in keys}}))
    for b in s["per_magnitude"]:
        if b["n"]:
            print(
                f"iAB {b['lo']:.1f}-{b['hi']:.1f}: N {b['n']}, 68% coverage "
                f"{100 * b['coverage68_before']:.1f}% -> {100 * b['coverage68_after']:.1f}% "
                f"(+- {100 * b['coverage68_noise']:.1f} by chance)"
            )
    print(stage_precision_note(s))
    return 0


def _read_options(args: argparse.Namespace):
    """The stream.ReadOptions of --keep-columns, --id-column, --mag-limits and --limit-nsigma."""
    from deepz_core.inference.stream import ReadOptions

    keep = tuple(c.strip() for c in args.keep_columns.split(",") if c.strip())
    return ReadOptions(keep=keep, conventions=conventions_from_args(args))


def _flag_note(out: str) -> str:
    """``" (K of N without a p(z): ...; M more flagged ...)"`` from the output's ``flag`` column."""
    from deepz_core.inference.stream import flag_counts

    counts = flag_counts(out)
    total, no_pz = counts.pop("rows"), counts.pop("NO_PZ", 0)
    if not counts:
        return ""
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    hint = ""
    if counts.get("OUTSIDE_TRAINING", 0) > total / 2:
        hint = (
            "; most galaxies lie outside the training population: are the fluxes in the unit "
            "the catalogue declares (README: magnitudes and units)?"
        )
    return f" ({no_pz} of {total} without a p(z); flags: {shown}; see the flag column{hint})"


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
    p.add_argument(
        "--out", help="the whole report (.json); the overall metrics are printed in any case"
    )
    add_overwrite(p)
    p.add_argument(
        "--profile",
        default="auto",
        help="survey profile the metrics are judged by: narrow-band (E20: outliers |dz| > 0.02, "
        "ODDS window 0.003), broad-band (outliers |dz| > 0.15, ODDS window 0.1), a JSON file "
        "of a custom profile's fields, or auto (the one the predictions carry, else from "
        "--catalog's bands, else narrow-band)",
    )
    p.add_argument(
        "--mag-bins",
        metavar="LO:HI:WIDTH",
        help="magnitude bins of the per-magnitude metrics, e.g. 13:19:0.5 (default: 0.5-mag bins "
        "spanning the data)",
    )


def parse_profile(text: str) -> object:
    """--profile: None for auto, a standard name, or the fields in a JSON file."""
    if text == "auto":
        return None
    path = Path(text)
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise ConfigError(f"--profile {text!r}: no such file")
        return json.loads(path.read_text())
    return text


def parse_mag_bins(text: str | None) -> object:
    """--mag-bins LO:HI:WIDTH -> bin edges; None -> None (bins follow the data)."""
    if text is None:
        return None
    try:
        lo, hi, width = (float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--mag-bins must be LO:HI:WIDTH, e.g. 13:19:0.5, got {text!r}") from None
    from deepz_core.pz.metrics import data_mag_edges

    if not hi > lo:
        raise ConfigError(f"--mag-bins: HI must be > LO, got {text!r}")
    return data_mag_edges([], width, lo, hi)


@command("evaluate", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    """Metrics against spec-z: sigma68, outliers (outlier_fraction, by the survey profile's
    threshold), the catastrophic rate (catastrophic_fraction, |dz| > 0.15), bias, NMAD, PIT KS,
    CDE loss and the ODDS-best-50% sigma68, overall and per magnitude bin. Training galaxies count
    only with their out-of-fold p(z) when the table has any."""
    from deepz_core.evaluation.report import evaluate_files

    profile, edges = parse_profile(args.profile), parse_mag_bins(args.mag_bins)
    report = evaluate_files(args.pred, args.catalog, args.out, profile, edges, args.overwrite)
    print(json.dumps(report["overall"]))
    return 0


def _weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", help="catalogue to train for (default: the demo mock)")
    p.add_argument("--preset", default="quick", choices=("quick", "paper", "smoke"))
    p.add_argument("--seed", type=int, default=0, help="seed of the runs that will use them (0)")
    p.add_argument(
        "--pretraining-only",
        action="store_true",
        help="ship the end of pretraining only (minutes less; no fine-tuned networks)",
    )
    p.add_argument(
        "--out",
        help="folder of the shipped weights (default: deepz_core/training/weights in the package)",
    )


@command("pretrain-weights", _weights_args)
def _pretrain_weights(args: argparse.Namespace) -> int:
    """Train a catalogue's default run once (SPS pretraining 'auto', the preset's schedules and
    ensemble, alpha 0.8, the seed, on the CPU: the Train page's default run) and write weights shipped
    with deepz: its end of pretraining, from which a run of the same catalogue, preset and seed
    with --pretrain auto starts (no simulation, no pretraining), and its fine-tuned networks, which
    a run with exactly these settings restores (no training; docs/benchmarks.md, "First result").
    Reuses a local pretraining cache entry with the same key; shipped weights already there are
    ignored. Prints the keys, the files written and the folder's other (stale) entries."""
    import dataclasses

    from deepz_core.files import check_outputs
    from deepz_core.jobs.training_run import run_config
    from deepz_core.simulate import demo_catalog_path
    from deepz_core.training import finetuned, pretrained

    check_outputs({"--out": args.out}, {}, resumable=True)  # never inside a run folder
    catalog = args.catalog or str(demo_catalog_path())
    train = {"device": "cpu", "seed": args.seed}
    config = run_config(catalog, None, "auto", args.preset, None, None, train)
    if args.pretraining_only:  # fine-tuning plays no part in the pretraining key
        tune = dataclasses.replace(config.train, schedule=((0, 1e-3),))
        config = dataclasses.replace(config, train=tune)
    out = Path(args.out) if args.out else pretrained.SHIPPED
    with _shipping_run(config) as run:
        status = run.status()
        key, tuned = status.get("pretrain_key"), status.get("finetune_key")
        if status.get("state") != "finished" or not key or not tuned:
            raise ConfigError(f"the run did not finish: {status.get('message')}")
        paths = [pretrained.ship(key, out)]
        if not args.pretraining_only:
            paths.append(finetuned.ship(run, tuned, out))
    names = {p.stem for p in paths}
    stale = sorted({p.stem for p in out.glob("*.safetensors")} - names)
    doc = {
        "pretrain_key": key,
        "finetune_key": None if args.pretraining_only else tuned,
        "files": {str(p): p.stat().st_size for p in paths},
        "stale_entries": stale,
    }
    print(json.dumps(doc))
    return 0


@contextmanager
def _shipping_run(config: RunConfig) -> Iterator[RunDir]:
    """A finished run of ``config`` in a temporary folder, trained with the pretraining cache on
    and no shipped weights to restore (so it really trains)."""
    import os
    import tempfile

    from deepz_core.jobs.training_run import execute_run, open_run_folder

    names = ("DEEPZ_PRETRAIN_CACHE", "DEEPZ_SHIPPED_WEIGHTS")
    saved = {k: os.environ.get(k) for k in names}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(DEEPZ_PRETRAIN_CACHE="1", DEEPZ_SHIPPED_WEIGHTS=str(Path(tmp) / "none"))
        try:
            run, _ = open_run_folder(Path(tmp) / "run", config)
            execute_run(run)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        yield run
