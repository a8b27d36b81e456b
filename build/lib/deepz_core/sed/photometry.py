"""Synthetic photometry: rest-frame spectra on the log grid -> AB band fluxes at redshift z.

On a grid uniform in u = ln(lambda), redshifting is a shift by s = ln(1 + z): the observed spectrum at
u_j is the rest spectrum at u_j - s. A band flux is then a sum over the band's few support pixels of
the shifted spectrum (linearly interpolated between pixels), so each galaxy costs ~sum_b(support_b)
operations instead of a full resampling. Fluxes are photon-counting AB means of f_nu,
    F_b = int f_lambda T lambda dlambda / int T c / lambda dlambda,
up to one constant common to all bands (distance dimming and c), since callers normalise to a magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepz_core.sed.bands import get_band
from deepz_core.sed.ssp import R_GRID


class BandPhotometry:
    """Band fluxes for spectra sampled on ``wavelength`` (L,), the start of the shared log grid."""

    def __init__(self, bands: Sequence[str], wavelength: np.ndarray) -> None:
        self.bands = tuple(bands)
        self.n_rest = len(wavelength)
        u0 = np.log(wavelength[0])
        index, weight, owner = [], [], []
        for b, name in enumerate(self.bands):
            band = get_band(name)
            lo, hi = np.log(band.wavelength[0]), np.log(band.wavelength[-1])
            j = np.arange(int(np.floor((lo - u0) * R_GRID)), int(np.ceil((hi - u0) * R_GRID)) + 1)
            lam = np.exp(u0 + j / R_GRID)
            t = np.interp(lam, band.wavelength, band.transmission, left=0.0, right=0.0)
            # numerator weight T lambda^2 du (dlambda = lambda du); denominator sum T du
            index.append(j)
            weight.append(t * lam**2 / t.sum())
            owner.append(np.full(len(j), b))
        self._index = np.concatenate(index)  # (S,) observed-grid pixel of each support point
        self._weight = np.concatenate(weight).astype(np.float32)  # (S,)
        self._starts = np.cumsum([0] + [len(j) for j in index[:-1]])  # (B,) segment starts

    def fluxes(self, spectra: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Band fluxes (N, B) of rest-frame spectra (N, L) observed at redshifts z (N,)."""
        shift = np.log1p(z) * R_GRID  # (N,) shift in pixels
        whole = np.floor(shift).astype(np.int64)
        frac = (shift - whole).astype(np.float32)[:, None]
        left = self._index[None, :] - whole[:, None] - 1  # (N, S) rest pixel left of u_j - s
        valid = (left >= 0) & (left < self.n_rest - 1)
        flat = np.clip(left, 0, self.n_rest - 2) + (np.arange(len(z)) * self.n_rest)[:, None]
        spec = spectra.ravel()
        # u_j - s = u_left + (1 - frac) pixels: linear interpolation between left and left + 1
        values = frac * spec[flat] + (1.0 - frac) * spec[flat + 1]  # (N, S)
        values = np.where(valid, values, 0.0) * self._weight
        return np.add.reduceat(values, self._starts, axis=1) / (1.0 + z)[:, None]  # (N, B)
