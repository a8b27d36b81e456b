"""Training runs of the experiments: one run folder each under ``DIR/runs/<name>``, resumable.

A finished run is reused, an interrupted one resumes from its checkpoint, so a killed
``experiments`` command picks up where it stopped. Each run yields a single-network and an ensemble
out-of-fold p(z) (E20 Sec. 5.2): ``predictions_single.fits`` (repetition 0 only) and
``predictions.fits`` (all repetitions).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.features import Features
from deepz_core.experiments.plan import ExperimentPlan
from deepz_core.inference.predict import predict_features, predictions_table, write_table
from deepz_core.jobs.training_run import (
    create_run,
    execute_run,
    load_inputs,
    load_run_config,
    run_config,
)
from deepz_core.nets.deepz import load_model, load_model_json
from deepz_core.rundir import RunDir
from deepz_core.training.splits import Splits


def train_run(
    root: Path,
    name: str,
    catalog: Path | str,
    plan: ExperimentPlan,
    pretrain: str = "auto",
    train: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> RunDir:
    """Train (or reuse, or resume) run ``name`` with the plan's preset and overrides."""
    run = RunDir(root / "runs" / name)
    if run.file("config.json").exists():
        if run.status().get("state") == "finished":
            return run
        log(f"[experiments] resuming run {name}")
    else:
        overrides = {
            "repetitions": plan.repetitions,
            "alpha": plan.alpha,
            "seed": plan.seed,
            **plan.train,
            **(train or {}),
        }
        create_run(
            run.path,
            run_config(
                str(catalog),
                pretrain=pretrain,
                preset_name=plan.train_preset,
                model={**plan.model, **(model or {})},
                train=overrides,
            ),
        )
        log(f"[experiments] training run {name}")
    execute_run(run)
    if run.status().get("state") != "finished":
        raise RuntimeError(f"run {name} ended {run.status().get('state')}: {run.status()}")
    return run


def run_splits(run: RunDir) -> Splits:
    """The run's partitions (``splits.npz``) with its repetitions and folds."""
    train = load_run_config(run).train
    with np.load(run.file("splits.npz")) as s:
        return Splits(
            train=s["train"],
            labelled=s["labelled"],
            repetitions=train.repetitions,
            folds=train.folds,
        )


def single_network_mask(splits: Splits) -> np.ndarray:
    """(E, N) the predict mask restricted to repetition 0: one network per training galaxy."""
    mask = splits.predict_mask().copy()
    mask[splits.folds :] = False
    return mask


def single_predictions(run: RunDir) -> Path:
    """Out-of-fold predictions from repetition 0 only, written once to predictions_single.fits."""
    path = run.file("predictions_single.fits")
    if path.exists():
        return path
    config = load_run_config(run)
    _, features = load_inputs(config)
    splits = run_splits(run)
    model = load_model(run.path, device="cpu")
    assert tuple(load_model_json(run.path)["metadata"]["bands"]) == features.bands
    products = predict_features(model, features, single_network_mask(splits), config.pz)
    oof = splits.out_of_fold()
    write_table(predictions_table(features, products, {"out_of_fold": oof}), path)
    return path


def predict_single_network(
    run: RunDir, features: Features, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Products for ``features`` from repetition 0's networks only; training galaxies of the run get
    the one network that never saw them (out-of-fold)."""
    from deepz_core.inference.predict import member_mask

    model = load_model(run.path, device=device)
    splits = run_splits(run)
    mask, _ = member_mask(run, features, model.members, by_photometry=False)
    mask[splits.folds :] = False
    return predict_features(model, features, mask, load_run_config(run).pz)
