"""A training run end to end: catalogue -> features -> splits -> pretrain -> fine-tune -> predictions.

``create_run`` writes the run folder's config; ``execute_run`` does the work and can be called again on
a killed run to resume from its last checkpoint. Everything the pages show is read from the folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import Features, build_features, resolve_ref_band
from deepz_core.catalog.io import read_catalog
from deepz_core.catalog.screen import (
    MAX_LISTED,
    REFERENCE_MAGNITUDES,
    Screen,
    fit_training_magnitudes,
    screen_line,
    screen_photometry,
    screened_rows,
)
from deepz_core.device import resolve_device
from deepz_core.errors import ConfigError, DeepzError, Terminated
from deepz_core.evaluation.profiles import profile_for_bands, run_profile
from deepz_core.files import atomic_write_json, check_writable, file_digest, refuse_run_folder
from deepz_core.nets.deepz import DeepzModel, ModelConfig, save_model
from deepz_core.progress import reporting
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir, load_checkpoint, load_checkpoint_meta
from deepz_core.training import finetuned, pretrained
from deepz_core.training.batches import DataBatches, SimulationBatches
from deepz_core.training.config import (
    PRETRAIN_CHOICES,
    RunConfig,
    TrainConfig,
    load_run_config,
    preset,
)
from deepz_core.training.fingerprints import Fingerprint, fingerprint
from deepz_core.training.loop import (
    NLL_CLIP,
    Cancelled,
    CancelWatch,
    Phase,
    PhaseRunner,
    check_cancel,
    finetune_loss,
    heldout_scores,
    heldout_summary,
    pretrain_loss,
)
from deepz_core.training.splits import (
    Z_LABEL_MAX,
    Splits,
    check_has_spec_z,
    check_labels,
    labelled_mask,
    make_splits,
    write_splits,
    zero_labels_note,
)

LOG = logging.getLogger("deepz")


def check_pretrain_bands(bands: Sequence[str]) -> None:
    """ConfigError when --pretrain auto cannot simulate ``bands`` (no filter curve), naming them
    and, for bands named by a filter letter (``u`` from ``mag_u``), the survey names to give
    them (``lsst_u``: columns ``flux_lsst_u`` or ``mag_u_lsst``)."""
    from deepz_core.catalog.mapping import band_names_hint
    from deepz_core.sed.bands import has_band

    missing = [b for b in bands if not has_band(b)]
    if not missing:
        return
    hint = band_names_hint(missing)
    raise ConfigError(
        f"--pretrain auto needs filter curves; unknown bands {missing}{hint}: "
        "rename the columns, or use --pretrain none or a simulation file"
    )


def create_run(out: Path | str, config: RunConfig) -> RunDir:
    """Write ``config.json`` (from ``run_config``) of a new run folder; nothing is trained yet."""
    run = RunDir(Path(out))
    if run.file("config.json").exists():
        raise ConfigError(f"--out {out} already holds a run; resume it or choose another folder")
    return run.create(config.to_dict())


MAGNITUDE_INPUT = True  # new runs read the reference magnitude (docs/benchmarks.md, issue 23)


def run_config(
    catalog: str,
    exposures: str | None = None,
    pretrain: str = "auto",
    preset_name: str = "quick",
    ref_band: str | None = None,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    pz: dict[str, Any] | None = None,
    calibrate: bool = True,
    templates: str | None = None,
) -> RunConfig:
    """The validated configuration of a new run from a preset and overrides; bad choices raise
    here, before a run folder exists: with ``templates``, a set that could not combine with the
    catalogue's bands over the run's grid too (``hybrid.runs.check_combinable``), not after
    hours of training. ``configured_run`` gives the catalogue read for it too."""
    args = (catalog, exposures, pretrain, preset_name, ref_band, model, train, pz)
    return configured_run(*args, calibrate=calibrate, templates=templates)[0]


def configured_run(
    catalog: str,
    exposures: str | None = None,
    pretrain: str = "auto",
    preset_name: str = "quick",
    ref_band: str | None = None,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    pz: dict[str, Any] | None = None,
    calibrate: bool = True,
    templates: str | None = None,
) -> tuple[RunConfig, Catalog | None]:
    """``run_config`` and the catalogue (with its exposures) it read to choose the grid and check
    the bands, or None when it needed none (``pz`` given, no ``templates``): hand it to
    ``execute_run`` so that the command reads the catalogue once and its warnings (non-detections
    without a limit, exposures left out) come once."""
    p = preset(preset_name)
    for flag, path in (("--catalog", catalog), ("--exposures", exposures)):
        if path is not None and not _catalogue_exists(Path(path), flag == "--catalog"):
            kind = "file or HATS catalogue folder" if flag == "--catalog" else "file"
            raise ConfigError(f"{flag} {str(path)!r}: no such {kind}")
    if pretrain not in PRETRAIN_CHOICES and not Path(pretrain).exists():
        raise ConfigError(
            f"--pretrain must be auto, none or an existing simulation file, got {pretrain!r}"
        )
    needed = pz is None or templates is not None
    cat = read_catalog(catalog, exposures) if needed else None
    if pretrain == "auto" and cat is not None:
        check_pretrain_bands(cat.bands)  # before a run folder exists
    grid = PzConfig.from_dict(pz) if pz is not None else grid_covering(cat.zspec, cat.bands)
    if templates is not None:
        from deepz_core.hybrid.runs import check_combinable

        check_combinable(tuple(cat.bands), grid, templates)
    config = RunConfig(
        catalog=str(Path(catalog).resolve()),
        exposures=None if exposures is None else str(Path(exposures).resolve()),
        pretrain=pretrain if pretrain in PRETRAIN_CHOICES else str(Path(pretrain).resolve()),
        preset=preset_name,
        ref_band=ref_band,
        model={
            "input_norm": ModelConfig.input_norm,
            "magnitude_input": MAGNITUDE_INPUT,
            **p.model,
            **(model or {}),
        },
        train=TrainConfig.from_dict({**p.train, **(train or {})}),
        pz=grid,
        calibrate=calibrate,
        templates=templates,
    )
    if cat is not None:  # before a run folder exists: a refused train leaves none behind
        resolve_ref_band(cat.bands, ref_band)
        check_has_spec_z(cat.zspec, config.train.folds)
    return config, cat


def _catalogue_exists(path: Path, hats: bool) -> bool:
    """``path`` is a file, or (``hats``) a HATS catalogue folder, which read_catalog reads too."""
    from deepz_core.catalog.formats.hats_dir import is_hats

    return path.is_file() or (hats and is_hats(path))


def grid_for(catalog: str | Path) -> PzConfig:
    """``grid_covering`` the spec-z and bands of the catalogue file ``catalog``."""
    cat = read_catalog(catalog)
    return grid_covering(cat.zspec, cat.bands)


def grid_covering(zspec: np.ndarray, bands: Sequence[str] | None = None) -> PzConfig:
    """The default p(z) grid (0 to 1.5, E20's), widened to the next multiple of 0.5 above 1.05 x
    the highest spec-z label of ``zspec`` (N,) (README: the redshift grid) (NaN: none; a deep broad-band catalogue reaches z ~ 3), with the ODDS
    window of the survey profile of ``bands`` (narrow-band 0.003, E20's; broad-band 0.1: a 0.003
    window holds ~3e-4 of a broad-band p(z), review of the ninth session; None: E20's)."""
    z = np.asarray(zspec, dtype=float)
    z = z[np.isfinite(z) & (z >= 0) & (z <= Z_LABEL_MAX)]
    top = float(z.max()) if len(z) else 0.0
    z_max = max(PzConfig.z_max, np.ceil(top * 1.05 / 0.5) * 0.5)
    window = PzConfig.odds_window if bands is None else profile_for_bands(bands).odds_window
    return PzConfig(z_max=float(z_max), odds_window=window)


def refuse_foreign_folder(out: Path, allowed: tuple[Path, ...] = ()) -> None:
    """ConfigError when ``out`` is a folder holding files but no run (a user's predictions,
    someone's model.json), or a folder inside another run: a run would overwrite them. Nothing in
    it is touched. ``allowed``: files that may be there already (the run's own catalogue)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: give the run a folder")
    check_writable(out, "--out")
    refuse_run_folder(out, "--out", below_only=True)
    foreign = RunDir(out).foreign_entries(allowed)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" (and {len(foreign) - 5} more)" if len(foreign) > 5 else ""
        )
        raise ConfigError(
            f"--out {out} holds files that are not a deepz run ({shown}); training would "
            "overwrite them: give a new or empty folder"
        )


@contextmanager
def training_folder(out: Path | str, allowed: tuple[Path, ...] = ()) -> Iterator[RunDir]:
    """Hold the exclusive lock of run folder ``out`` for the block (a second process training or
    resuming it gets an InUseError naming this one), after refusing, untouched, a folder that is
    not a run (``refuse_foreign_folder``)."""
    out = Path(out)
    refuse_foreign_folder(out, allowed)
    run = RunDir(out)
    with run.locked():
        yield run


REUSED = "reusing the finished run"  # open_run_folder's note for a finished run it hands back


def open_run_folder(
    out: Path, config: RunConfig, reuse: bool = False, reuse_option: str = ""
) -> tuple[RunDir, str]:
    """The run folder to train ``config`` in, and a note of what was done: a new or empty folder
    becomes a run; one holding a killed run with the same settings resumes (the device may
    change); one whose run never trained starts over with the new settings; any other run is
    refused, naming what differs, and so is a folder of other files, a damaged run file, a run
    queued in the app and a template-fit run. With ``reuse``, a finished run with the same
    settings whose catalogue file is unchanged since it started is handed back as it is (note
    ``REUSED``); ``reuse_option``: how the caller spells that switch (``reuse=True``), named in
    the refusal of a finished run with the same settings when it was not given. The folder stays
    locked while this runs; hold ``training_folder`` around it and ``execute_run`` to keep it for
    the whole command."""
    own = tuple(Path(p) for p in (config.catalog, config.exposures) if p is not None)
    with training_folder(out, own) as run:
        if not run.file("config.json").exists():
            return run.create(config.to_dict()), ""
        return _reopen(run, config, reuse, reuse_option)


def _reusable(run: RunDir, config: RunConfig) -> bool:
    """The finished run in ``run`` can stand for ``config``: its catalogue (and exposures) files
    were not modified after it started (same settings are checked by the caller)."""
    started = float(run.status().get("started", 0.0))
    inputs = [Path(p) for p in (config.catalog, config.exposures) if p is not None]
    return all(_catalogue_exists(p, True) and _modified(p) <= started for p in inputs)


def _modified(path: Path) -> float:
    """When the file ``path``, or the last of the files in the folder ``path``, was modified."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return max((p.stat().st_mtime for p in files), default=0.0)


def _reopen(
    run: RunDir, config: RunConfig, reuse: bool = False, reuse_option: str = ""
) -> tuple[RunDir, str]:
    """``open_run_folder`` for a folder that holds a run (locked by the caller)."""
    from deepz_core.jobs.status import pid_alive
    from deepz_core.rundir import run_kind

    out = run.path
    raw, status = run.config(), run.status()  # ConfigError naming a damaged file
    state, pid = status.get("state"), status.get("pid")
    if run_kind(raw) != "deepz":
        raise ConfigError(f"{out} holds a {run_kind(raw)} run; choose another folder")
    if state == "finished":
        changes = config_changes(
            load_run_config(run).full(), config.full(), ignore=("train.device",)
        )
        if reuse and not changes and _reusable(run, config):
            return run, f"{REUSED} in {out}"
        differs = f" (these settings differ: {'; '.join(changes)})" if changes else ""
        if reuse and not changes:
            differs = " (its catalogue file changed since it was trained)"
        hint = ""
        if reuse_option and not reuse and not changes:
            hint = f", or pass {reuse_option} to get it back as it is (same catalogue unchanged)"
        raise ConfigError(f"{out} holds a finished run{differs}; choose another folder{hint}")
    if state == "queued" and pid != os.getpid() and pid_alive(pid):
        raise ConfigError(
            f"{out} holds a run queued by process {pid} (the app): wait for it, or cancel it "
            f"first (create the file {out}/cancel)"
        )
    stored = load_run_config(run)
    changes = config_changes(stored.full(), config.full(), ignore=("train.device",))
    if load_checkpoint_meta(run) is not None and changes:
        raise ConfigError(
            f"{out} holds a {state} run trained with other settings "
            f"({'; '.join(changes)}): continue it as it was (deepz resume --run "
            f"{out}), or choose another folder"
        )
    run.file("cancel").unlink(missing_ok=True)
    if not changes:
        train = dataclasses.replace(stored.train, device=config.train.device)
        atomic_write_json(
            run.file("config.json"), dataclasses.replace(stored, train=train).to_dict()
        )
        return run, f"resuming run in {out} (state {state}) on device {config.train.device}"
    for name in ("metrics.jsonl", "splits.npz"):
        run.file(name).unlink(missing_ok=True)
    run.log(f"restarted with new settings: {'; '.join(changes)}")
    run.create(config.to_dict())
    return (
        run,
        f"starting the {state} run in {out} over with the new settings ({'; '.join(changes)})",
    )


def config_changes(old: Any, new: Any, key: str = "", ignore: tuple[str, ...] = ()) -> list[str]:
    """``"key: old -> new"`` for every leaf where two run configs differ (dotted keys; a key only
    one has counts as None in the other), except the ``ignore`` keys. Compare ``RunConfig.full``s."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        nested = ((k, f"{key}.{k}" if key else k) for k in keys)
        return [
            change
            for k, path in nested
            if path not in ignore
            for change in config_changes(old.get(k), new.get(k), path, ignore)
        ]
    return [] if old == new else [f"{key}: {old!r} -> {new!r}"]


def load_inputs(config: RunConfig, catalog: Catalog | None = None) -> tuple[Catalog, Features]:
    """The run's catalogue (``catalog``: as the command read it already, ``configured_run``;
    None: read now) and its features, screened against their own population (the statistics a
    new model is given: ``Features.input_stats``)."""
    cat = read_catalog(config.catalog, config.exposures) if catalog is None else catalog
    return cat, screened_features(cat, config.ref_band)


def screened_features(cat: Catalog, ref_band: str | None) -> Features:
    """``cat``'s features screened against their own population, as a run trains on them."""
    features = build_features(cat, ref_band)
    return features.against_population(features.input_stats())


def label_counts(catalog: Catalog, ref_band: str | None = None) -> dict[str, int]:
    """How many of ``catalog``'s spec-z galaxies a run with reference band ``ref_band`` (None:
    the default) trains on, by the rule training uses (``load_inputs``, ``labelled_mask``):
    ``zspec`` (finite spec-z), ``labelled`` (trained on and scored out of fold), ``flagged``
    (a usable spec-z but photometry the screen flags: left out of training and the score),
    ``unusable_label`` (negative or above Z_LABEL_MAX) and ``no_reference`` (rows without a
    usable reference flux, left out of the features)."""
    features = screened_features(catalog, ref_band)
    z = features.zspec
    finite = np.isfinite(z)
    usable = finite & (z >= 0) & (z <= Z_LABEL_MAX)
    labelled = labelled_mask(features)
    given = np.asarray(catalog.zspec if catalog.zspec is not None else [], float)
    all_finite = int(np.isfinite(given).sum())
    return {
        "zspec": all_finite,
        "labelled": int(labelled.sum()),
        "flagged": int((usable & ~labelled).sum()),
        "unusable_label": int((finite & ~usable).sum()),
        "no_reference": all_finite - int(finite.sum()),
    }


def flagged_rows(cat: Catalog, features: Features) -> tuple[np.ndarray, np.ndarray]:
    """ref_ids (K,) and ``PzFlag`` bits (K,) of every catalogue row left out of the training
    loss: the flagged galaxies among ``features`` and the rows ``build_features`` left out for
    an unusable reference flux (screened again from the catalogue: the features lack them)."""
    flagged = ~features.trainable
    excluded = np.setdiff1d(np.arange(cat.n_galaxies), features.rows)
    ref = features.bands.index(features.ref_band)
    screen = screen_photometry(cat.flux[excluded], cat.flux_error[excluded], ref, cat.fluxzp)
    ref_id = np.concatenate([features.ref_id[flagged], np.asarray(cat.ref_id)[excluded]])
    flags = np.concatenate([features.flags[flagged], screen.flags]).astype(np.int32)
    return ref_id, flags


def record_screen(run: RunDir, cat: Catalog, features: Features) -> None:
    """Write ``screen.json`` (counts and ref_ids per flag of every galaxy left out of the loss,
    those without a usable reference flux included) and log its line (``screen_line``, which
    ``train`` prints too): nothing is dropped silently."""
    ref_id, flags = flagged_rows(cat, features)
    counts = Screen(flags, np.ones((len(flags), 0), bool)).counts()
    doc = {
        "n_rows": features.n_rows,
        "no_reference_flux": features.n_excluded,
        "left_out_of_loss": len(flags),
        "counts": counts,
        "ref_ids": screened_rows(ref_id, flags),
        "ref_ids_max": MAX_LISTED,  # listed per flag; the counts are complete
    }
    atomic_write_json(run.file("screen.json"), doc)
    if features.n_excluded:
        run.log(features.exclusion_note())
    run.log(screen_summary(doc))


def screen_summary(doc: dict, where: str = "screen.json") -> str:
    """The one screen line of a run's ``screen.json`` document ``doc`` (the log and ``train``'s
    terminal output agree); ``where``: how the line names the file."""
    counts = {**doc.get("counts", {}), "left_out_of_loss": int(doc.get("left_out_of_loss", 0))}
    return screen_line(counts, int(doc.get("n_rows", 0)), where)


def pretraining_simulation_path(
    config: RunConfig, features: Features, simulate: bool = True
) -> Path:
    """The SPS simulation file to pretrain on: simulated through the catalogue's bands ('auto',
    cached; with ``simulate=False`` only its path, nothing simulated) or the user's file."""
    if config.pretrain != "auto":
        return Path(config.pretrain)
    from deepz_core.simulate import cached_simulation, cached_simulation_path

    check_pretrain_bands(features.bands)
    train = config.train
    where = cached_simulation if simulate else cached_simulation_path
    return where("sps", train.pretrain_n, features.bands, train.seed + 1)


def pretraining_simulation(config: RunConfig, features: Features) -> Catalog:
    """The simulation of ``pretraining_simulation_path``, its bands checked against the catalogue's."""
    sim = read_catalog(pretraining_simulation_path(config, features))
    if tuple(sim.bands) != tuple(features.bands):
        raise ConfigError(
            f"pretraining file bands {list(sim.bands)} differ from the catalogue's "
            f"{list(features.bands)}"
        )
    return sim


def simulation_batches(
    sim: Catalog, features: Features, members: int, device, magnitude: bool = False
) -> SimulationBatches:
    ref = sim.bands.index(features.ref_band)
    noiseless = bool(sim.meta.get("NOISELESS", False))
    error = sim.flux_error if noiseless else np.zeros_like(sim.flux_error)
    z = np.asarray(sim.zspec, dtype=np.float64)
    good = np.isfinite(z) & (sim.flux[:, ref] > 0)
    zp = sim.fluxzp if magnitude else None
    return SimulationBatches(sim.flux[good], error[good], z[good], ref, members, device, zp)


def build_model(config: RunConfig, n_inputs: int, members: int, device) -> DeepzModel:
    return DeepzModel(config.model_config(n_inputs, members)).to(device)


def execute_run(run: RunDir, catalog: Catalog | None = None) -> None:
    """Train (or resume) the run in ``run`` and write its model, predictions and summary, holding
    the run folder's lock (InUseError, before anything is written, when another process holds
    it). ``catalog``: the run's catalogue as this command read it already (``configured_run``),
    not read again; None: read from the run's config."""
    with run.locked():
        config = load_run_config(run)  # damaged run files fail before the status changes
        load_checkpoint_meta(run)
        record_outcome(run, lambda: _train(run, config, catalog))


def record_outcome(run: RunDir, work: Callable[[], None]) -> None:
    """Run ``work`` with the run marked running; a cancel or a failure is written to its status
    (a failure is re-raised). SIGTERM and Ctrl-C (KeyboardInterrupt: a notebook's interrupt, a
    terminal's Ctrl-C) mark it cancelled, resumable, and are re-raised: a run whose process still
    lives (a notebook kernel) never stays 'running' after it stopped."""
    try:
        run.set_status("running", phase="setup", epoch=0, started=time.time())
        with reporting(status_listener(run)):
            work()
    except Cancelled as exc:
        run.log(str(exc))
        run.set_status("cancelled", message=str(exc))
    except (Terminated, KeyboardInterrupt) as exc:
        cause = "received SIGTERM" if isinstance(exc, Terminated) else "was interrupted (Ctrl-C)"
        message = f"stopped: the process {cause}; resume continues from the last checkpoint"
        run.log(message)
        run.set_status("cancelled", message=message)
        raise
    except Exception as exc:
        run.log(f"failed: {type(exc).__name__}: {exc}")
        run.set_status("failed", message=f"{type(exc).__name__}: {exc}")
        raise


def status_listener(run: RunDir, every: float = 1.0) -> Callable[[str, int, int], None]:
    """A progress listener (``deepz_core.progress.reporting``) that writes the current step of a
    run (e.g. 'simulating sps galaxies', done, total, its start time) to its status, at most once
    per ``every`` seconds between a step's first and last update; the Train page shows it."""
    last, started = [0.0], {}

    def listen(desc: str, done: int, total: int) -> None:
        now = time.time()
        if done == 0 or desc not in started:
            started[desc] = now
        if 0 < done < total and now - last[0] < every:
            return
        last[0] = now
        fields = dict(step=desc, step_done=done, step_total=total, step_started=started[desc])
        run.set_status("running", **fields)

    return listen


def _train(run: RunDir, config: RunConfig, catalog: Catalog | None = None) -> None:
    from deepz_core.inference.predict import write_run_predictions

    train = config.train
    cat, features = load_inputs(config, catalog)
    for note in cat.notes:  # what reading left out, e.g. single exposures without information
        run.log(note)
    record_screen(run, cat, features)
    labelled = labelled_mask(features)
    check_labels(features, labelled, train.folds)
    zeros = zero_labels_note(features, labelled)
    if zeros:
        LOG.warning(zeros)
        run.log(f"warning: {zeros}")
    splits = make_splits(labelled, train.repetitions, train.folds, train.seed)
    write_splits(run.file("splits.npz"), splits, features)
    check_cancel(run, "setup")
    device = resolve_device(train.device)
    torch.manual_seed(train.seed)
    magnitude = config.model_config(1, 1).magnitude_input
    model = build_model(config, len(features.bands) + magnitude, train.members, device)
    stats = features.input_stats(magnitude)
    model.set_input_stats(stats.loc, stats.scale)
    run.log(
        f"device {device}, {train.members} members, {features.n} galaxies, "
        f"{int(splits.labelled.sum())} with zspec, exposures: {features.has_exposures}"
    )
    phases = _phases(config, features, splits, device)
    check_cancel(run, "setup")  # simulating the pretraining set can take minutes
    runner = PhaseRunner(
        run,
        model,
        train.weight_decay,
        train.seed,
        train.checkpoint_every,
        train.eval_every,
        _validator(features, splits, device, magnitude),
    )
    pretraining = _pretraining(config, features, model)
    cached = pretraining if pretraining and pretrained.cache_enabled() else None
    tuned = _finetune_key(config, cat, features, splits, model, pretraining)
    keys = {
        "pretrain_key": cached and cached.digest(),
        "finetune_key": tuned and tuned.digest(),
        "key_sums": {  # what pretrain-weights ships beside the keys
            **({"pretrain": cached.sums()} if cached else {}),
            **({"finetune": tuned.sums()} if tuned else {}),
        },
    }
    run.set_status("running", **{k: v for k, v in keys.items() if v})
    _run_phases(run, runner, phases, cached, tuned)
    save_model(model, run.path, "model", metadata=model_metadata(features, splits))
    outlier = run_profile(run.card(), features.bands).outlier  # as evaluate and the pages judge
    summary = write_run_predictions(
        run, model, cat, features, splits, config.pz, calibrate=config.calibrate, outlier=outlier
    )
    summary["heldout"] = judged_heldout(heldout_summary(run.metrics()), features, splits)
    if config.templates is not None:
        check_cancel(run, "the combination with the template fit")
        summary["combined"] = combination_step(run, config, cat)
    if "warning" in summary["heldout"]:
        run.log(f"warning: {summary['heldout']['warning']}")
    run.set_status("finished", phase="done", summary=summary)
    run.log("finished")


def model_metadata(features: Features, splits: Splits) -> dict[str, Any]:
    """The metadata of the run's ``model.json``: its bands, reference band and the reference
    magnitudes of the galaxies the loss saw (``screen.TrainingMagnitudes``: the unit check of
    every prediction, whatever the networks read). Not in any fingerprint of the shipped
    weights (``training.finetuned``): a run restored from them writes it as any other."""
    meta: dict[str, Any] = {"bands": list(features.bands), "ref_band": features.ref_band}
    mags = fit_training_magnitudes(features.ref_mag, splits.train.any(axis=0))
    if mags is not None:
        meta[REFERENCE_MAGNITUDES] = mags.to_dict()
    return meta


def judged_heldout(heldout: dict[str, Any], features: Features, splits: Splits) -> dict[str, Any]:
    """``heldout`` (``heldout_summary``) with ``nz_nll``: per member, the held-out NLL of the
    spec-z distribution of its training galaxies given to every galaxy as its p(z)
    (``evaluation.baselines.redshift_distribution_nll``, clipped as the watched NLL is); and a
    ``warning`` naming the members whose best held-out NLL is not below it: networks that
    learned nothing from the fluxes (a smoke-preset run on 1,500 deep broad-band galaxies:
    1.29-1.33 nats against 0.57, catastrophic outliers 90%, and it ended 'finished' in silence).
    """
    from deepz_core.evaluation.baselines import redshift_distribution_nll

    if "best_val_nll" not in heldout:
        return heldout
    z, nz = features.zspec, []
    for trained in splits.train:
        fit, test = trained & splits.labelled, ~trained & splits.labelled
        nz.append(redshift_distribution_nll(z[fit], z[test], NLL_CLIP) if test.any() else np.nan)
    worse = [i for i, (v, b) in enumerate(zip(heldout["best_val_nll"], nz, strict=True)) if v >= b]
    out = {**heldout, "nz_nll": [float(v) for v in nz]}
    if worse:
        i = max(worse, key=lambda k: heldout["best_val_nll"][k] - nz[k])  # the furthest behind
        note = (
            f"member(s) {worse} predict no better than the spec-z distribution alone (member "
            f"{i}: best held-out NLL {heldout['best_val_nll'][i]:.3g} nats, the n(z) as every "
            f"galaxy's p(z) {nz[i]:.3g}): train longer (preset quick or paper), with "
            "pretraining, or on more spec-z"
        )
        out["warning"] = "; ".join(filter(None, [heldout.get("warning"), note]))
    return out


def combination_step(
    run: RunDir, config: RunConfig, catalog: Catalog | None = None
) -> dict[str, Any]:
    """Fit the run's combination with the template fit (``hybrid.runs.fit_hybrid``) on the
    training catalogue ``catalog`` as training read it (None: read again); its overall
    comparison, or {"error": ...} (logged) when it cannot be fitted: the trained networks and
    their predictions stand, and ``deepz combine`` can try again. A cancel stops it within a few
    seconds (looked for between the template fit's chunks), before it writes anything: the run
    is cancelled, and resume fits the combination again from the finished networks."""
    from deepz_core.hybrid.runs import fit_hybrid

    watch = CancelWatch(run, "the combination's template fit")
    try:
        return fit_hybrid(
            run.path,
            config.templates,
            calibrate=config.calibrate,
            log=run.log,
            stop=watch,
            catalog=catalog,
        ).summary["overall"]
    except DeepzError as exc:
        run.log(f"warning: no combination with the template fit: {exc}")
        return {"error": str(exc)}


class LazySimulationBatches:
    """Pretraining batches made on first use: a run that restores its pretraining from the cache
    or the shipped weights never simulates (or reads) the pretraining set."""

    def __init__(
        self, config: RunConfig, features: Features, members: int, device, magnitude: bool
    ) -> None:
        self.args, self.batches = (config, features, members, device, magnitude), None

    def epoch(self, *args, **kwargs):
        if self.batches is None:
            config, features, members, device, magnitude = self.args
            sim = pretraining_simulation(config, features)
            self.batches = simulation_batches(sim, features, members, device, magnitude)
        return self.batches.epoch(*args, **kwargs)


def _phases(config: RunConfig, features: Features, splits: Splits, device) -> list[Phase]:
    train, phases = config.train, []
    if config.pretrains:
        magnitude = config.model_config(1, 1).magnitude_input
        if config.pretrain == "auto":  # bands without filter curves fail now, not at epoch 1
            pretraining_simulation_path(config, features, simulate=False)
            source = LazySimulationBatches(config, features, train.members, device, magnitude)
        else:
            sim = pretraining_simulation(config, features)  # a file in other bands fails now
            source = simulation_batches(sim, features, train.members, device, magnitude)
        phases.append(
            Phase(
                "pretrain",
                train.pretrain_schedule,
                source,
                pretrain_loss,
                train.pretrain_batch_size,
                train.min_batch,
            )
        )
    data = DataBatches(
        features,
        splits.train,
        device,
        train.alpha,
        train.keep_one,
        train.randomize_coadds,
        train.outlier_fraction,
        train.outlier_unit == "measurement",
        train.outlier_amplitude,
        config.model_config(1, 1).magnitude_input,
    )
    phases.append(
        Phase("finetune", train.schedule, data, finetune_loss, train.batch_size, train.min_batch)
    )
    return phases


def _pretraining(
    config: RunConfig, features: Features, model: DeepzModel
) -> pretrained.PretrainKey | None:
    """Key of this run's pretraining (``deepz_core.training.pretrained``); None without one."""
    if not config.pretrains:
        return None
    path = pretraining_simulation_path(config, features, simulate=False)
    ident = path.name if config.pretrain == "auto" else file_digest(path)
    return pretrained.PretrainKey(
        model.config.to_dict(),
        config.train,
        features.bands,
        features.ref_band,
        ident,
        _device_type(model),
        _stats_fingerprint(model),
    )


def _device_type(model: DeepzModel) -> str:
    return next(model.parameters()).device.type


def _stats_fingerprint(model: DeepzModel) -> Fingerprint:
    """Fingerprint of the model's input statistics (loc, scale), (F,) each."""
    loc, scale = (t.cpu().numpy() for t in model.input_stats())
    return fingerprint({"loc": loc, "scale": scale})


def _finetune_key(
    config: RunConfig,
    cat: Catalog,
    features: Features,
    splits: Splits,
    model: DeepzModel,
    pretraining: pretrained.PretrainKey | None,
) -> finetuned.FinetuneKey | None:
    """Key of this run's end of fine-tuning (``deepz_core.training.finetuned``); None with the
    lookup off (``DEEPZ_PRETRAIN_CACHE=0``)."""
    if not pretrained.cache_enabled():
        return None
    return finetuned.FinetuneKey(
        None if pretraining is None else pretraining.digest(),
        model.config.to_dict(),
        config.train,
        features.bands,
        features.ref_band,
        finetuned.catalog_fingerprint(cat),
        finetuned.features_fingerprint(features),
        finetuned.splits_digest(splits),
        _stats_fingerprint(model),
        _device_type(model),
    )


def _run_phases(
    run: RunDir,
    runner: PhaseRunner,
    phases: list[Phase],
    pretrain_key: pretrained.PretrainKey | None = None,
    finetune_key: finetuned.FinetuneKey | None = None,
) -> None:
    ckpt = load_checkpoint(run)
    names = [p.name for p in phases]
    tuned, cached = finetune_key, pretrain_key
    if ckpt is None and tuned and finetuned.restore(run, tuned.digest(), tuned.sums()):
        ckpt = load_checkpoint(run)  # exactly a resume from the last fine-tuning epoch
    elif ckpt is None and cached and pretrained.restore(run, cached.digest(), cached.sums()):
        ckpt = load_checkpoint(run)  # from here on, exactly a resume from the end of pretraining
    elif ckpt is not None:
        tensors, meta = ckpt
        run.truncate_metrics(meta["phase"], meta["epoch"])
        run.log(f"resuming from {meta['phase']} epoch {meta['epoch']}")
    else:  # killed before its first checkpoint: every epoch is redone, so its rows go too
        run.truncate_metrics("pretrain", 0)
    for phase in phases:
        resume = None
        if ckpt is not None:
            done_index = names.index(ckpt[1]["phase"])
            if names.index(phase.name) < done_index:
                continue  # finished before the checkpoint; its weights are in the checkpoint
            if phase.name == ckpt[1]["phase"]:
                resume = {"tensors": ckpt[0], "meta": ckpt[1]}
        done = resume is not None and resume["meta"]["epoch"] >= phase.epochs
        run.log(f"{phase.name}: {phase.epochs} epochs" + (", all done: nothing to train" * done))
        runner.execute(phase, resume)
        if phase.name == "pretrain" and cached and not pretrained.has(cached.digest()):
            pretrained.store(run, cached.digest(), cached.sums())


def _validator(features: Features, splits: Splits, device, magnitude: bool = False):
    """Held-out NLL per member on the labelled galaxies it never trained on (None without hold-out)."""
    heldout = ~splits.train & splits.labelled[None, :]  # (E, N)
    if not heldout.any():
        return None
    rows = np.flatnonzero(heldout.any(axis=0))
    x = torch.as_tensor(features.inputs(magnitude)[rows], device=device)
    z = torch.as_tensor(features.zspec[rows], dtype=torch.float32, device=device)
    mask = torch.as_tensor(heldout[:, rows], dtype=torch.float32, device=device)
    return lambda model: {k: v.cpu() for k, v in heldout_scores(model, x, z, mask).items()}
