"""The mixture density head (E20 Sec. 2.3, Eq. 1): raw network outputs -> a Gaussian mixture.

The photo-z network ends in 3M numbers per galaxy: mixture logits, means and log-sigmas. They become
``p(z) = sum_i w_i N(z; mu_i, sigma_i)`` with ``w = softmax(logits)`` and
``sigma = sigma_floor + exp(log_sigma)`` (the authors' code used exp without a floor).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepz_core.pz.mixture import GaussianMixture

_LOG_SIGMA_MAX = 20.0  # exp(20) ~ 5e8: keeps sigma finite for a wild initial output


class MixtureDensityHead(nn.Module):
    """Turns raw network outputs (..., 3M) into a :class:`GaussianMixture` (E20 Sec. 2.3).

    Output layout: ``[logits (M), means (M), log_sigmas (M)]``. Has no parameters of its own:
    the last linear layer of the photo-z network produces the 3M numbers.
    """

    def __init__(self, n_components: int, sigma_floor: float) -> None:
        super().__init__()
        self.n_components = n_components
        self.sigma_floor = sigma_floor

    def forward(self, raw: Tensor) -> GaussianMixture:
        """(..., 3M) -> mixture with batch shape (...)."""
        logits, loc, log_sigma = raw.split(self.n_components, dim=-1)  # 3 x (..., M)
        scale = self.sigma_floor + torch.exp(log_sigma.clamp(max=_LOG_SIGMA_MAX))  # (..., M)
        return GaussianMixture.from_params(logits, loc, scale)

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, sigma_floor={self.sigma_floor}"
