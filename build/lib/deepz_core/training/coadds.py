"""Randomised coadds from single exposures (E20 Sec. 5.1), on the training device.

Every epoch each existing exposure is kept with probability alpha; with ``keep_one`` at least one
EXISTING exposure is kept per galaxy and band (the authors' code picked among all slots, empty ones
included, and so sometimes kept nothing). The coadd is the inverse-variance mean of the kept exposures.

``ExposureStack`` is the training-time form: inverse variances and weighted fluxes prepared once, with
the exposure axis before the band axis, (N, X, B), because reductions over a short innermost axis are
slow on CPU (measured 4x slower per batch for X = 10, B = 46).
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_keep(
    mask: Tensor, alpha: float, generator: torch.Generator, keep_one: bool, dim: int = -1
) -> Tensor:
    """Boolean like ``mask``: each existing exposure kept with probability alpha (and >= 1 per cell
    if keep_one). ``dim`` is the exposure axis."""
    u = torch.rand(mask.shape, generator=generator, device=mask.device)
    keep = (u < alpha).logical_and_(mask)
    if keep_one:
        empty = mask.any(dim) & ~keep.any(dim)  # cells that lost every exposure: few, so only
        cells = list(empty.nonzero(as_tuple=True))  # those draw the exposure they keep
        if cells[0].numel():
            d = dim % mask.dim()
            sub = mask.movedim(d, -1)[tuple(cells)]  # (k, X)
            score = torch.rand(sub.shape, generator=generator, device=mask.device)
            cells.insert(d, score.masked_fill(~sub, -1.0).argmax(-1))
            keep[tuple(cells)] = True
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


class ExposureStack:
    """Single exposures of N galaxies prepared for randomized coadds: from dense (N, B, X) arrays."""

    def __init__(self, flux: Tensor, error: Tensor, mask: Tensor) -> None:
        mask = mask.transpose(1, 2).contiguous()  # (N, X, B)
        inv_var = error.transpose(1, 2).clamp_min(1e-30).pow(-2)  # (N, X, B)
        self.mask = mask
        self.w = torch.where(mask, inv_var, torch.zeros_like(inv_var)).contiguous()  # (N, X, B)
        self.wf = torch.where(mask, self.w * flux.transpose(1, 2), torch.zeros_like(inv_var))
        self.has = mask.any(1)  # (N, B) bands with at least one exposure

    def coadds(
        self, idx: Tensor, coadd: Tensor, alpha: float, generator: torch.Generator, keep_one: bool
    ) -> Tensor:
        """Fresh random coadds (E, n, B) for galaxies ``idx`` (E, n) whose full coadds are ``coadd``
        (E, n, B); NaN where keep_one is False and a band lost every exposure."""
        keep = random_keep(self.mask[idx], alpha, generator, keep_one, dim=-2)  # (E, n, X, B)
        rebuilt = (self.wf[idx] * keep).sum(-2) / (self.w[idx] * keep).sum(-2)  # (E, n, B)
        return torch.where(self.has[idx], rebuilt, coadd)
