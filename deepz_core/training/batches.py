"""Mini-batches for ensembles: every member gets its own shuffled batch each step, as (E, n, F).

``SimulationBatches`` draw fresh noise on noiseless simulated fluxes every batch (E20 Sec. 2.4);
``DataBatches`` rebuild randomised coadds from single exposures every batch (E20 Sec. 5.1), each member
from its own training set (E20 Sec. 5.2), and can add photometric outliers (E20 App. B). All tensors
live on the training device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from deepz_core.errors import ConfigError
from deepz_core.training.coadds import ExposureStack

if TYPE_CHECKING:
    from deepz_core.catalog.features import Features


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


def add_outliers(
    x: Tensor,
    coadd: Tensor,
    fraction: float,
    bands: Tensor,
    gen: torch.Generator,
    per_measurement: bool = False,
    amplitude: float = 1.0,
) -> Tensor:
    """Photometric outliers in the training inputs (E20 App. B, Fig. B1), (E, n, B) -> (E, n, B).

    An outlier adds U(0, ``amplitude``) x |the coadd flux| to one band of one galaxy (Fig. B1
    adds a percentage of the band's own flux). Either each galaxy is hit with probability
    ``fraction``, in ONE band drawn uniformly from ``bands`` (indices), or, ``per_measurement``, each
    (galaxy, band in ``bands``) independently with probability ``fraction``. ``x`` and ``coadd`` are
    ratios to the reference flux, so this is the same flux change; the reference band is never in
    ``bands`` (an outlier there would rescale every ratio instead). Unhit values are unchanged.
    """
    e, n, n_bands = x.shape
    if per_measurement:
        allowed = torch.zeros(n_bands, dtype=torch.bool, device=x.device).index_fill_(
            0, bands, True
        )
        hit = (torch.rand((e, n, n_bands), generator=gen, device=x.device) < fraction) & allowed
        amp = amplitude * torch.rand((e, n, n_bands), generator=gen, device=x.device)
        return torch.where(hit, x + amp * coadd.abs(), x)  # (E, n, B)
    hit = torch.rand((e, n), generator=gen, device=x.device) < fraction  # (E, n)
    pick = torch.randint(len(bands), (e, n), generator=gen, device=x.device)  # (E, n)
    band = bands[pick].unsqueeze(-1)  # (E, n, 1)
    amp = amplitude * torch.rand((e, n, 1), generator=gen, device=x.device)
    extra = amp * coadd.gather(-1, band).abs()  # (E, n, 1)
    delta = torch.zeros_like(x).scatter_(-1, band, extra)  # (E, n, B), one non-zero band
    return torch.where(hit.unsqueeze(-1), x + delta, x)  # (E, n, B)


def batch_slices(n: int, batch_size: int, min_batch: int) -> list[slice]:
    """Consecutive slices of size batch_size; a last batch smaller than min_batch is skipped."""
    return [slice(s, s + batch_size) for s in range(0, n, batch_size) if n - s >= min_batch]


class SimulationBatches:
    """Noisy batches from a noiseless simulation: flux (N, B), error (N, B), z (N,), ref index.
    With ``fluxzp`` (the simulation's AB zero-point) the reference band's magnitude of the noisy
    flux is a last input column (``ModelConfig.magnitude_input``)."""

    def __init__(
        self,
        flux: np.ndarray,
        error: np.ndarray,
        z: np.ndarray,
        ref: int,
        members: int,
        device: torch.device,
        fluxzp: float | None = None,
    ) -> None:
        self.flux = torch.as_tensor(flux, dtype=torch.float32, device=device)  # (N, B)
        self.error = torch.as_tensor(error, dtype=torch.float32, device=device)  # (N, B)
        self.z = torch.as_tensor(z, dtype=torch.float32, device=device)  # (N,)
        self.ref = ref
        self.members = members
        self.fluxzp = fluxzp

    def epoch(
        self, rng: np.random.Generator, gen: torch.Generator, batch_size: int, min_batch: int
    ) -> Iterator[Batch]:
        """One epoch of batches of simulated galaxies, every member in its own order: noise drawn
        afresh from ``gen`` (E20 Sec. 2.4), the clean ratios as the autoencoder's target; the last
        batch dropped when smaller than ``min_batch``."""
        pool = np.arange(len(self.z))
        order = torch.as_tensor(member_orders([pool] * self.members, rng), device=self.z.device)
        for s in batch_slices(order.shape[1], batch_size, min_batch):
            idx = order[:, s]  # (E, n)
            clean, err = self.flux[idx], self.error[idx]  # (E, n, B)
            noisy = clean + err * torch.randn(clean.shape, generator=gen, device=clean.device)
            ref = noisy[..., self.ref : self.ref + 1].clamp_min(
                1e-3 * clean[..., self.ref : self.ref + 1]
            )
            x, x_err, target = noisy / ref, err / ref, clean / ref  # (E, n, B)
            if self.fluxzp is not None:  # the reference magnitude as a last input column
                true_ref = clean[..., self.ref : self.ref + 1]
                x = torch.cat([x, self.fluxzp - 2.5 * torch.log10(ref)], -1)
                x_err = torch.cat([x_err, 1.0857 * err[..., self.ref : self.ref + 1] / ref], -1)
                target = torch.cat([target, self.fluxzp - 2.5 * torch.log10(true_ref)], -1)
            yield Batch(x=x, z=self.z[idx], x_err=x_err, target=target)


class DataBatches:
    """Training batches from observed features, with randomised coadds where exposures exist and,
    when ``outlier_fraction`` > 0, photometric outliers drawn afresh every epoch (E20 App. B);
    ``magnitude``: the reference band's magnitude is a last input column."""

    def __init__(
        self,
        features: Features,
        train: np.ndarray,
        device: torch.device,
        alpha: float,
        keep_one: bool,
        randomize: bool,
        outlier_fraction: float = 0.0,
        outliers_per_measurement: bool = False,
        outlier_amplitude: float = 1.0,
        magnitude: bool = False,
    ) -> None:
        self.pools = [np.flatnonzero(row) for row in train]  # per-member training galaxies
        self.mag = torch.as_tensor(features.ref_mag, device=device) if magnitude else None
        self.outlier_fraction = outlier_fraction
        self.outliers_per_measurement = outliers_per_measurement
        self.outlier_amplitude = outlier_amplitude
        ref = features.bands.index(features.ref_band)
        others = [j for j in range(len(features.bands)) if j != ref]
        if outlier_fraction > 0 and not others:
            raise ConfigError(
                f"outlier_fraction {outlier_fraction!r} needs a band besides the "
                f"reference band {features.ref_band!r}"
            )
        self.outlier_bands = torch.as_tensor(others, dtype=torch.long, device=device)  # (B - 1,)
        self.x = torch.as_tensor(features.ratio, device=device)  # (N, B)
        self.z = torch.as_tensor(features.zspec, dtype=torch.float32, device=device)  # (N,)
        self.alpha, self.keep_one = alpha, keep_one
        self.randomize = randomize and features.has_exposures and alpha < 1.0
        if self.randomize:
            self.exposures = ExposureStack(
                torch.as_tensor(features.exp_ratio, device=device),  # (N, B, X)
                torch.as_tensor(features.exp_error, device=device),  # (N, B, X)
                torch.as_tensor(features.exp_mask, device=device),  # (N, B, X)
            )

    def epoch(
        self, rng: np.random.Generator, gen: torch.Generator, batch_size: int, min_batch: int
    ) -> Iterator[Batch]:
        """One epoch of batches of each member's training galaxies in the order ``rng`` draws:
        randomised coadds (E20 Sec. 5.1) and outliers (E20 App. B) from ``gen``; the last batch
        dropped when smaller than ``min_batch``."""
        order = torch.as_tensor(member_orders(self.pools, rng), device=self.x.device)  # (E, n)
        for s in batch_slices(order.shape[1], batch_size, min_batch):
            idx = order[:, s]  # (E, n)
            x = self.x[idx]  # (E, n, B)
            weight = None
            if self.randomize:
                rebuilt = self.exposures.coadds(idx, x, self.alpha, gen, self.keep_one)
                if not self.keep_one:  # a galaxy that lost every exposure of a band leaves the loss
                    lost = torch.isnan(rebuilt).any(-1)  # (E, n)
                    rebuilt = torch.where(
                        lost.unsqueeze(-1), x, rebuilt
                    )  # keeps BatchNorm stats sane
                    weight = (~lost).float()
                x = rebuilt
            if self.outlier_fraction > 0:  # after the coadds: outliers hit the final photometry
                x = add_outliers(
                    x,
                    self.x[idx],
                    self.outlier_fraction,
                    self.outlier_bands,
                    gen,
                    self.outliers_per_measurement,
                    self.outlier_amplitude,
                )
            if self.mag is not None:
                x = torch.cat([x, self.mag[idx].unsqueeze(-1)], -1)  # (E, n, B + 1)
            yield Batch(x=x, z=self.z[idx], weight=weight)
