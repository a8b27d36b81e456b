"""Gaussian-mixture p(z) (E20 Sec. 2.3, Eq. 1; ensembles Sec. 5.2): the distribution the networks
return, with its CDF and grids, and the ensemble mixture of several members' p(z).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, Normal

from deepz_core.errors import ConfigError

_GRID_CHUNK_ELEMENTS = 1 << 24  # rows * G * M evaluated at once by pdf_grid


class GaussianMixture(MixtureSameFamily):
    """A 1-D Gaussian mixture with batch shape (...): ``MixtureSameFamily`` plus ``cdf``, grids.

    Build with :meth:`from_params`. ``log_prob``, ``mean``, ``variance`` and ``sample`` come from
    ``MixtureSameFamily``; ``cdf`` (the PIT, E20 Sec. 6) and ``pdf_grid`` are added here.
    """

    @classmethod
    def from_params(
        cls, logits: Tensor, loc: Tensor, scale: Tensor, validate_args: bool = False
    ) -> GaussianMixture:
        """Mixture from (..., M) weight logits (normalised here), means and standard deviations."""
        log_weights = torch.log_softmax(logits, dim=-1)  # (..., M)
        return cls(
            Categorical(logits=log_weights, validate_args=validate_args),
            Normal(loc, scale, validate_args=validate_args),
            validate_args=validate_args,
        )

    @property
    def log_weights(self) -> Tensor:
        """Normalised log weights, (..., M)."""
        return self.mixture_distribution.logits

    @property
    def weights(self) -> Tensor:
        """Weights summing to one, (..., M)."""
        return self.mixture_distribution.probs

    @property
    def loc(self) -> Tensor:
        """Component means, (..., M)."""
        return self.component_distribution.loc

    @property
    def scale(self) -> Tensor:
        """Component standard deviations, (..., M)."""
        return self.component_distribution.scale

    def cdf(self, value: Tensor) -> Tensor:
        """P(Z <= value) = sum_i w_i Phi((value - mu_i) / sigma_i); value broadcasts to (...)."""
        u = (value.unsqueeze(-1) - self.loc) / self.scale  # (..., M)
        return (self.weights * torch.special.ndtr(u)).sum(-1)  # (...)

    def pdf_grid(self, z_grid: Tensor) -> Tensor:
        """p(z) of every distribution on a shared grid, (G,) -> (..., G); chunked to bound memory."""
        batch, m = self.batch_shape, self._num_component

        def rows(t: Tensor) -> Tensor:
            return t.expand(*batch, m).reshape(-1, 1, m)  # (R, 1, M)

        log_w, loc, scale = rows(self.log_weights), rows(self.loc), rows(self.scale)
        z = z_grid.to(loc.dtype).reshape(1, -1, 1)  # (1, G, 1)
        step = max(1, _GRID_CHUNK_ELEMENTS // max(1, z.shape[1] * m))
        out = []
        for start in range(0, loc.shape[0], step):
            sl = slice(start, start + step)
            u = (z - loc[sl]) / scale[sl]  # (r, G, M)
            log_comp = -0.5 * u**2 - torch.log(scale[sl]) - 0.5 * math.log(2 * math.pi)
            out.append(torch.logsumexp(log_w[sl] + log_comp, dim=-1).exp())  # (r, G)
        return torch.cat(out, dim=0).reshape(*batch, z.shape[1])  # (..., G)


def combine_members(dist: GaussianMixture, member_mask: Tensor | None = None) -> GaussianMixture:
    """Ensemble p(z): the mean of member p(z), as one mixture of E*M components (E20 Sec. 5.2).

    ``dist`` has batch shape (E, N). ``member_mask`` (E, N), bool or non-negative weights, says
    which members may be used for each galaxy (out-of-fold averaging: only the members that never trained
    on it); weights are normalised per galaxy. Returns a mixture with batch shape (N,).
    """
    if len(dist.batch_shape) != 2:
        raise ConfigError(f"dist: expected batch shape (E, N), got {tuple(dist.batch_shape)}")
    e, n = dist.batch_shape
    log_w = dist.log_weights.expand(e, n, -1)  # (E, N, M)
    if member_mask is None:
        member_w = torch.full((e, n), 1.0 / e, dtype=log_w.dtype, device=log_w.device)  # (E, N)
    else:
        if tuple(member_mask.shape) != (e, n):
            raise ConfigError(
                f"member_mask: expected shape {(e, n)}, got {tuple(member_mask.shape)}"
            )
        mask = member_mask.to(log_w.dtype)  # (E, N)
        total = mask.sum(0)  # (N,)
        if bool((mask < 0).any()):
            raise ConfigError("member_mask: weights must be >= 0, got a negative value")
        empty = torch.nonzero(total <= 0).flatten()  # galaxies with no usable member
        if empty.numel() > 0:
            raise ConfigError(
                f"member_mask: galaxy index {int(empty[0])} has no usable member "
                f"({empty.numel()} such galaxies)"
            )
        member_w = mask / total  # (E, N)
    logits = log_w + torch.log(member_w).unsqueeze(-1)  # (E, N, M), -inf for excluded members
    loc = dist.loc.expand(e, n, -1)  # (E, N, M)
    scale = dist.scale.expand(e, n, -1)  # (E, N, M)

    def flat(t: Tensor) -> Tensor:
        return t.permute(1, 0, 2).reshape(n, -1)  # (N, E*M)

    return GaussianMixture.from_params(flat(logits), flat(loc), flat(scale))
