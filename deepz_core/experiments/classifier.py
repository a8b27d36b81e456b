"""Appendix E: a photo-z classifier over dz = 0.001 bins, with and without label smoothing, against
the MDN. All three train on the same folds (repetition 0 of the ``no_pretrain`` run), without
pretraining, so the head is the only difference."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from astropy.table import Table

from deepz_core.experiments import figures
from deepz_core.experiments.context import Context
from deepz_core.experiments.scoring import Scored, read_scored
from deepz_core.experiments.trained import run_splits
from deepz_core.inference.predict import write_table
from deepz_core.jobs.training_run import load_inputs, load_run_config
from deepz_core.nets.classifier import ClassifierConfig
from deepz_core.pz.metrics import pit_histogram
from deepz_core.rundir import RunDir
from deepz_core.training.classifier import train_classifier
from deepz_core.training.splits import Splits

VARIANTS = {"classifier, label smoothing 0.15": 0.15, "classifier, no smoothing": 0.0}


def _first_repetition(splits: Splits) -> Splits:
    return Splits(
        train=splits.train[: splits.folds],
        labelled=splits.labelled,
        repetitions=1,
        folds=splits.folds,
    )


def classifier_predictions(ctx: Context, run: RunDir, smoothing: float) -> Scored:
    """Train (once; cached as a FITS file in the report folder) and score one classifier variant."""
    path = ctx.root / f"classifier_smoothing{smoothing:.2f}.fits"
    if not path.exists():
        config = load_run_config(run)
        _, features = load_inputs(config)
        splits = _first_repetition(run_splits(run))
        cfg = ClassifierConfig.from_model_config({**config.model, "smoothing": smoothing})
        train = dataclasses.replace(config.train, device=ctx.device)
        ctx.log(f"[experiments] Appendix E: training the classifier (smoothing {smoothing})")
        result = train_classifier(features, splits, cfg, train, train.device)
        t = Table(
            {
                "ref_id": features.ref_id,
                **result.products,
                "zspec": features.zspec,
                "out_of_fold": splits.out_of_fold(),
            }
        )
        if features.mag is not None:
            t["mag"] = features.mag
        write_table(t, path)
    return read_scored(path)


def appendix_e(ctx: Context, mdn_run: RunDir, mdn_single: Scored) -> dict[str, Any]:
    """E20 App. E: PIT histograms and summaries of the MDN (no pretraining) and the classifier
    variants."""
    lines = {"MDN (no pretraining)": mdn_single}
    for label, smoothing in VARIANTS.items():
        lines[label] = classifier_predictions(ctx, mdn_run, smoothing)
    hists = {label: _pit_histogram(s) for label, s in lines.items()}
    fig = figures.pit_histograms(
        ctx.figure("appE_classifier_pit.png"), hists, "MDN vs classifier: PIT (E20 App. E)"
    )
    return {"summary": {label: s.summary() for label, s in lines.items()}, "figure": fig}


def _pit_histogram(s: Scored, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    return pit_histogram(np.clip(s.pit[np.isfinite(s.pit)], 0, 1), bins)
