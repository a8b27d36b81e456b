"""Randomised coadds from single exposures (E20 Sec. 5.1), on the training device.

Every epoch each existing exposure is kept with probability alpha; with ``keep_one`` at least one
EXISTING exposure is kept per galaxy and band (the authors' code picked among all slots, empty ones
included, and so sometimes kept nothing). The coadd is the inverse-variance mean of the kept exposures.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_keep(mask: Tensor, alpha: float, generator: torch.Generator, keep_one: bool) -> Tensor:
    """Boolean (..., X): each existing exposure kept with probability alpha (and >= 1 if keep_one)."""
    u = torch.rand(mask.shape, generator=generator, device=mask.device)
    keep = (u < alpha) & mask
    if keep_one:
        empty = mask.any(-1) & ~keep.any(-1)  # (...,) cells that lost every exposure
        score = torch.rand(mask.shape, generator=generator, device=mask.device).masked_fill(
            ~mask, -1.0
        )
        pick = torch.zeros_like(mask).scatter_(-1, score.argmax(-1, keepdim=True), True)
        keep = keep | (pick & empty.unsqueeze(-1))
    return keep


def inverse_variance_coadd(flux: Tensor, error: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Coadd (...,) and its error of the kept exposures (..., X); NaN where none is kept."""
    # empty slots may hold NaN: select, never multiply, so 0 * NaN cannot leak in
    w = torch.where(keep, error.clamp_min(1e-30).pow(-2), torch.zeros_like(error))  # (..., X)
    total = w.sum(-1)
    coadd = (w * torch.where(keep, flux, torch.zeros_like(flux))).sum(-1) / total
    return coadd, total.rsqrt()


def randomized_coadds(
    coadd: Tensor,
    exp_flux: Tensor,
    exp_error: Tensor,
    exp_mask: Tensor,
    alpha: float,
    generator: torch.Generator,
    keep_one: bool = True,
) -> Tensor:
    """Input fluxes (..., B): bands with exposures get a fresh random coadd, others keep ``coadd``.

    coadd: (..., B); exp_*: (..., B, X). With keep_one False a band may lose all its exposures; it is
    then NaN, and the caller drops the galaxy (the alternative E20 Fig. 6 compares against).
    """
    keep = random_keep(exp_mask, alpha, generator, keep_one)
    rebuilt, _ = inverse_variance_coadd(exp_flux, exp_error, keep)
    return torch.where(exp_mask.any(-1), rebuilt, coadd)
