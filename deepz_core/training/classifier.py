"""Train the photo-z classifier (E20 App. E) out of fold on a catalogue, as the MDN runs are trained.

The generic pieces are reused: ``DataBatches`` (randomised coadds E20 Sec. 5.1, outliers App. B),
optional ``SimulationBatches`` pretraining (Sec. 3.2), ``Phase`` learning-rate stages and
``train_epoch`` (the estimator owns its loss), ``heldout_nll`` validation and the R x K splits
(Sec. 5.2). Products are the MDN runs' columns (zphot = mode, zmean, zmedian, z_lo68, z_hi68, odds,
pit) from the out-of-fold ensemble p(z), so ``metrics.point_metrics`` compares the two directly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deepz_core.catalog.features import Features
from deepz_core.device import resolve_device
from deepz_core.errors import ConfigError
from deepz_core.nets.classifier import (
    Q16,
    Q84,
    BinnedRedshift,
    ClassifierConfig,
    DeepzClassifier,
    combine_binned,
)
from deepz_core.training.batches import Batch, DataBatches, SimulationBatches
from deepz_core.training.config import TrainConfig
from deepz_core.training.loop import (
    Phase,
    epoch_row,
    heldout_nll,
    phase_generators,
    set_epoch_lr,
    train_epoch,
    validation_due,
)
from deepz_core.training.splits import Splits

Validator = Callable[[DeepzClassifier], Tensor]  # model -> (E,) held-out NLL


@dataclass(frozen=True, eq=False)
class ClassifierResult:
    """A trained classifier ensemble and its out-of-fold predictions for the N catalogue galaxies."""

    model: DeepzClassifier
    products: dict[
        str, np.ndarray
    ]  # (N,) each: zphot, zmean, zmedian, z_lo68, z_hi68, odds, pit (NaN without zspec)
    probs: np.ndarray  # (N, G) float32 ensemble bin probabilities
    edges: np.ndarray  # (G + 1,) float64 bin edges
    history: list[dict[str, Any]]  # one row per epoch: phase, epoch, lr, loss, seconds[, val_nll]

    @property
    def zphot(self) -> np.ndarray:
        return self.products["zphot"]

    @property
    def pit(self) -> np.ndarray:
        return self.products["pit"]


def classifier_products(
    dist: BinnedRedshift, odds_window: float = 0.003, zspec: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-galaxy products (N,) of a batch-(N,) p(z), as ``pz.point_products`` (E20 Sec. 6)."""
    if not odds_window > 0:
        raise ConfigError(f"odds_window must be > 0, got {odds_window!r}")
    mode, half = dist.mode, 0.5 * odds_window
    out = {
        "zphot": mode,
        "zmean": dist.mean,
        "zmedian": dist.icdf(0.5),
        "z_lo68": dist.icdf(Q16),
        "z_hi68": dist.icdf(Q84),
        "odds": dist.cdf(mode + half) - dist.cdf(mode - half),
    }
    if zspec is not None:
        known = torch.isfinite(zspec)
        out["pit"] = torch.where(known, dist.cdf(torch.nan_to_num(zspec)), torch.nan)
    return out


@torch.no_grad()
def predict_classifier(
    model: DeepzClassifier,
    features: Features,
    member_mask: np.ndarray | None,
    odds_window: float = 0.003,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(products (N,), probs (N, G)) of the (masked) ensemble; products in float64 on the CPU."""
    model.eval()
    device = model.edges.device
    edges = model.config.edges()  # (G + 1,) exact float64
    e, g = model.members, model.config.n_bins
    chunk = max(16, (1 << 24) // (e * g))  # ~16M logits per forward pass
    parts: list[dict[str, np.ndarray]] = []
    for s in range(0, features.n, chunk):
        x = torch.as_tensor(features.ratio[s : s + chunk], device=device)  # (n, B)
        mask = None if member_mask is None else torch.as_tensor(member_mask[:, s : s + chunk])
        dist = combine_binned(model(x), None if mask is None else mask.to(device))  # (n,)
        dist = BinnedRedshift(edges, dist.logits.double().cpu())
        zs = torch.as_tensor(features.zspec[s : s + chunk], dtype=torch.float64)
        out = {k: v.numpy() for k, v in classifier_products(dist, odds_window, zs).items()}
        parts.append({**out, "probs": dist.probs.float().numpy()})
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    probs = merged.pop("probs")
    return merged, probs


def classifier_finetune_loss(model: DeepzClassifier, b: Batch) -> Tensor:
    return model.loss(b.x, b.z, b.weight)


def classifier_pretrain_loss(model: DeepzClassifier, b: Batch) -> Tensor:
    assert b.x_err is not None
    return model.pretrain_loss(b.x, b.z, b.x_err, b.target)


def train_classifier(
    features: Features,
    splits: Splits,
    model_cfg: ClassifierConfig,
    train_cfg: TrainConfig,
    device: torch.device | str = "cpu",
    pretrain: SimulationBatches | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    odds_window: float = 0.003,
) -> ClassifierResult:
    """Train E = splits.members classifiers (member e on ``splits.train[e]``) and predict out of fold.

    ``model_cfg``'s n_inputs/members are set from the features/splits. ``train_cfg`` gives schedules,
    batches, coadds, outliers, seed (its repetitions/folds are not used: the splits are). Optional
    ``pretrain`` (e.g. ``pipeline.simulation_batches``) runs ``pretrain_schedule`` first.
    ``on_epoch`` receives each history row as it is made. In memory only: no checkpoints.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    if splits.train.shape[1] != features.n:
        raise ConfigError(f"splits: cover {splits.train.shape[1]} galaxies, features {features.n}")
    cfg = dataclasses.replace(model_cfg, n_inputs=len(features.bands), members=splits.members)
    if pretrain is not None and pretrain.members != cfg.members:
        raise ConfigError(f"pretrain: has {pretrain.members} members, splits {cfg.members}")
    torch.manual_seed(train_cfg.seed)
    model = DeepzClassifier(cfg).to(device)
    t = train_cfg
    phases = classifier_phases(features, splits, t, device, pretrain)
    validate = _validator(features, splits, cfg, device)
    history: list[dict[str, Any]] = []
    for phase in phases:
        for row in _run_phase(model, phase, t, device, validate):
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
    products, probs = predict_classifier(model, features, splits.predict_mask(), odds_window)
    return ClassifierResult(model, products, probs, cfg.edges().numpy(), history)


def classifier_phases(
    features: Features,
    splits: Splits,
    t: TrainConfig,
    device: torch.device,
    pretrain: SimulationBatches | None,
) -> list[Phase]:
    """Pretraining on ``pretrain`` (when given and its schedule has epochs), then fine-tuning on
    each member's training galaxies with randomised coadds and outliers (E20 Sec. 5)."""
    phases = []
    if pretrain is not None and t.pretrain_epochs > 0:
        phases.append(
            Phase(
                "pretrain",
                t.pretrain_schedule,
                pretrain,
                classifier_pretrain_loss,
                t.pretrain_batch_size,
                t.min_batch,
            )
        )
    data = DataBatches(  # outliers as the MDN's (training_run): unit and amplitude too
        features,
        splits.train,
        device,
        t.alpha,
        t.keep_one,
        t.randomize_coadds,
        t.outlier_fraction,
        t.outlier_unit == "measurement",
        t.outlier_amplitude,
    )
    phases.append(
        Phase("finetune", t.schedule, data, classifier_finetune_loss, t.batch_size, t.min_batch)
    )
    return phases


def _run_phase(
    model: DeepzClassifier,
    phase: Phase,
    t: TrainConfig,
    device: torch.device,
    validate: Validator | None,
) -> Iterator[dict[str, Any]]:
    """Yield one history row per epoch; seeds and optimiser as ``training.PhaseRunner``.

    ``train_epoch``/``heldout_nll`` are annotated for DeepzModel but use only what the classifier
    also has (nn.Module, ``members``, the phase's loss, ``model(x).log_prob``)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=phase.lr(0), weight_decay=t.weight_decay)
    rng, gen = phase_generators(t.seed, phase, device)
    for epoch in range(phase.epochs):
        t0 = time.perf_counter()
        lr = set_epoch_lr(optimizer, phase, epoch)
        batches = phase.source.epoch(rng, gen, phase.batch_size, phase.min_batch)
        loss = train_epoch(model, phase.loss, batches, optimizer)
        row = epoch_row(phase, epoch, lr, loss, time.perf_counter() - t0)
        if validate is not None and validation_due(epoch, t.eval_every, phase.epochs):
            row["val_nll"] = [float(v) for v in validate(model)]
        yield row


def _validator(
    features: Features, splits: Splits, cfg: ClassifierConfig, device: torch.device
) -> Validator | None:
    """Held-out -log p(zspec) per member (labels clamped into [z_min, z_max]), or None."""
    heldout = ~splits.train & splits.labelled[None, :]  # (E, N)
    if not heldout.any():
        return None
    rows = np.flatnonzero(heldout.any(axis=0))
    x = torch.as_tensor(features.ratio[rows], device=device)
    z = np.clip(features.zspec[rows], cfg.z_min, cfg.z_max)
    z = torch.as_tensor(z, dtype=torch.float32, device=device)
    mask = torch.as_tensor(heldout[:, rows], dtype=torch.float32, device=device)
    chunk = max(16, (1 << 24) // (cfg.members * cfg.n_bins))  # bounds the (E, n, G) logits
    return lambda model: heldout_nll(model, x, z, mask, chunk).cpu()
