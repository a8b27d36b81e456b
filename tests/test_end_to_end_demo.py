"""A small end-to-end run on the demo mock (E20 Sec. 3.3): pretraining + fine-tuning beats fine-tuning
alone, and both beat a kNN regressor, on sigma68 of out-of-fold predictions (fixed seed, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from deepz_core.catalog.features import build_features
from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.evaluation.baselines import knn_photoz
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.pz.metrics import dz, sigma68
from deepz_core.simulate import demo_catalog_path

pytestmark = pytest.mark.slow

# 2,000 spec-z galaxies in 2 folds: 1,000 to train each network, where pretraining matters (E20 Fig. 3)
N_GALAXIES = 2000
TRAIN = {
    "schedule": ((25, 1e-3), (5, 1e-4)),
    "pretrain_n": 20_000,
    "pretrain_schedule": ((3, 1e-3),),
    "folds": 2,
    "batch_size": 100,
    "seed": 0,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def demo_subset(tmp_path_factory) -> str:
    cat = read_catalog(demo_catalog_path())
    path = tmp_path_factory.mktemp("demo") / "demo_specz.fits"
    write_catalog(cat.select(np.flatnonzero(np.isfinite(cat.zspec))[:N_GALAXIES]), path)
    return str(path)


def _run_sigma68(tmp_path, catalog: str, pretrain: str) -> tuple[float, np.ndarray]:
    run = create_run(
        tmp_path / pretrain,
        run_config(catalog, pretrain=pretrain, preset_name="quick", train=TRAIN),
    )
    execute_run(run)
    assert run.status()["state"] == "finished"
    pred = Table.read(run.file("predictions.fits"))
    assert np.asarray(pred["out_of_fold"]).all()
    score = sigma68(dz(np.asarray(pred["zphot"]), np.asarray(pred["zspec"])))
    return score, np.load(run.file("splits.npz"))["train"]


def _knn_out_of_fold(catalog: str, train_mask: np.ndarray) -> float:
    """kNN on the same flux ratios and the same folds as the networks."""
    features = build_features(read_catalog(catalog))
    zk = np.empty(features.n)
    for fold in train_mask:  # (E, N): each member's training set; predict the rest
        zk[~fold] = knn_photoz(features.subset(fold), features.subset(~fold))
    return sigma68(dz(zk, features.zspec))


def test_pretraining_beats_finetuning_alone_and_knn(tmp_path, demo_subset) -> None:
    alone, train_mask = _run_sigma68(tmp_path, demo_subset, "none")
    pretrained, _ = _run_sigma68(tmp_path, demo_subset, "auto")
    knn = _knn_out_of_fold(demo_subset, train_mask)
    assert pretrained < alone, f"pretraining {pretrained:.4f} vs fine-tuning alone {alone:.4f}"
    assert pretrained < knn, f"deepz {pretrained:.4f} vs kNN {knn:.4f}"
