"""Mini-batches for ensembles: every member gets its own shuffled batch each step, as (E, n, F).

``SimulationBatches`` draw fresh noise on noiseless simulated fluxes every batch (E20 Sec. 2.4);
``DataBatches`` rebuild randomised coadds from single exposures every batch (E20 Sec. 5.1), each member
from its own training set (E20 Sec. 5.2). All tensors live on the training device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deepz_core.coadds import randomized_coadds


@dataclass
class Batch:
    x: Tensor  # (E, n, B) flux ratios
    z: Tensor  # (E, n) redshift labels
    x_err: Tensor | None = None  # (E, n, B) ratio errors (pretraining autoencoder loss)
    target: Tensor | None = None  # (E, n, B) noiseless ratios the autoencoder should recover
    weight: Tensor | None = None  # (E, n) loss weights; 0 drops a galaxy from this batch's loss


def member_orders(pools: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(E, n) one shuffled order per member of its pool, trimmed to the smallest pool.

    Pools differ by at most a galaxy between folds; reshuffling every epoch means the trimmed ones
    change, so none is systematically left out.
    """
    n = min(len(p) for p in pools)
    return np.stack([rng.permutation(p)[:n] for p in pools])


def batch_slices(n: int, batch_size: int, min_batch: int) -> list[slice]:
    """Consecutive slices of size batch_size; a last batch smaller than min_batch is skipped."""
    return [slice(s, s + batch_size) for s in range(0, n, batch_size) if n - s >= min_batch]


class SimulationBatches:
    """Noisy batches from a noiseless simulation: flux (N, B), error (N, B), z (N,), ref index."""

    def __init__(self, flux: np.ndarray, error: np.ndarray, z: np.ndarray, ref: int, members: int,
                 device: torch.device) -> None:  # fmt: skip
        self.flux = torch.as_tensor(flux, dtype=torch.float32, device=device)  # (N, B)
        self.error = torch.as_tensor(error, dtype=torch.float32, device=device)  # (N, B)
        self.z = torch.as_tensor(z, dtype=torch.float32, device=device)  # (N,)
        self.ref = ref
        self.members = members

    def epoch(
        self, rng: np.random.Generator, gen: torch.Generator, batch_size: int, min_batch: int
    ) -> Iterator[Batch]:
        pool = np.arange(len(self.z))
        order = torch.as_tensor(member_orders([pool] * self.members, rng), device=self.z.device)
        for s in batch_slices(order.shape[1], batch_size, min_batch):
            idx = order[:, s]  # (E, n)
            clean, err = self.flux[idx], self.error[idx]  # (E, n, B)
            noisy = clean + err * torch.randn(clean.shape, generator=gen, device=clean.device)
            ref = noisy[..., self.ref : self.ref + 1].clamp_min(
                1e-3 * clean[..., self.ref : self.ref + 1]
            )
            yield Batch(x=noisy / ref, z=self.z[idx], x_err=err / ref, target=clean / ref)


class DataBatches:
    """Training batches from observed features, with randomised coadds where exposures exist."""

    def __init__(self, features, train: np.ndarray, device: torch.device, alpha: float,
                 keep_one: bool, randomize: bool) -> None:  # fmt: skip
        self.pools = [np.flatnonzero(row) for row in train]  # per-member training galaxies
        self.x = torch.as_tensor(features.ratio, device=device)  # (N, B)
        self.z = torch.as_tensor(features.zspec, dtype=torch.float32, device=device)  # (N,)
        self.alpha, self.keep_one = alpha, keep_one
        self.randomize = randomize and features.has_exposures and alpha < 1.0
        if self.randomize:
            self.exp_x = torch.as_tensor(features.exp_ratio, device=device)  # (N, B, X)
            self.exp_err = torch.as_tensor(features.exp_error, device=device)  # (N, B, X)
            self.exp_mask = torch.as_tensor(features.exp_mask, device=device)  # (N, B, X)

    def epoch(
        self, rng: np.random.Generator, gen: torch.Generator, batch_size: int, min_batch: int
    ) -> Iterator[Batch]:
        order = torch.as_tensor(member_orders(self.pools, rng), device=self.x.device)  # (E, n)
        for s in batch_slices(order.shape[1], batch_size, min_batch):
            idx = order[:, s]  # (E, n)
            x = self.x[idx]  # (E, n, B)
            weight = None
            if self.randomize:
                rebuilt = randomized_coadds(x, self.exp_x[idx], self.exp_err[idx], self.exp_mask[idx],
                                            self.alpha, gen, self.keep_one)  # fmt: skip
                if not self.keep_one:  # a galaxy that lost every exposure of a band leaves the loss
                    lost = torch.isnan(rebuilt).any(-1)  # (E, n)
                    rebuilt = torch.where(
                        lost.unsqueeze(-1), x, rebuilt
                    )  # keeps BatchNorm stats sane
                    weight = (~lost).float()
                x = rebuilt
            yield Batch(x=x, z=self.z[idx], weight=weight)
