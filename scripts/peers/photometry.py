"""Asinh magnitudes and colour features for the peer methods (issue 23, sec. 4).

The peers see the photometry as RAIL's estimators do: magnitudes with errors, here asinh
magnitudes (Lupton, Gunn & Szalay 1999, AJ 118, 1406), which stay finite for faint, zero or
negative fluxes, so a non-detection needs no placeholder:

    m = ZP - a (asinh(f / 2b) + ln b),  a = 2.5 log10(e) = 1.0857,
    sigma_m = a sigma_f / sqrt(f^2 + 4 b^2),

with f, sigma_f, b in the catalogue's flux units and ZP its FLUXZP; for f >> b this is the Pogson
magnitude ZP - 2.5 log10 f. The softening b of each band is Lupton et al.'s choice
b = sqrt(a) sigma = 1.042 sigma with sigma the band's median flux error over the training set, so
the same b serves training and test galaxies.

Features (FlexZBoost's make_color_data, and the gradient-boosting baseline): the reference band's
asinh magnitude and the B - 1 colours of neighbouring bands in catalogue column order, (N, B).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

POGSON_A = 2.5 * np.log10(np.e)  # 1.0857
LUPTON_B = np.sqrt(POGSON_A)  # b = 1.042 sigma minimises the asinh magnitude's error at f ~ 0


def softening(flux_error: NDArray) -> NDArray:
    """(B,) softening b = 1.042 median(sigma_f) per band from training errors (N, B) > 0."""
    b = LUPTON_B * np.nanmedian(np.where(flux_error > 0, flux_error, np.nan), axis=0)
    if not np.all(np.isfinite(b) & (b > 0)):
        raise ValueError(f"softening must be finite and > 0 per band, got {b.tolist()}")
    return b


def asinh_mag(flux: NDArray, flux_error: NDArray, b: NDArray, zp: float) -> tuple[NDArray, NDArray]:
    """Asinh magnitudes and errors (N, B) from fluxes and errors (N, B), softening b (B,)."""
    mag = zp - POGSON_A * (np.arcsinh(flux / (2.0 * b)) + np.log(b))
    mag_err = POGSON_A * flux_error / np.sqrt(flux**2 + 4.0 * b**2)
    return mag, mag_err


def colour_features(mag: NDArray, ref_index: int) -> NDArray:
    """(N, B): the reference magnitude mag[:, ref_index], then mag[:, k] - mag[:, k + 1]."""
    if not 0 <= ref_index < mag.shape[1]:
        raise ValueError(f"ref_index {ref_index} outside 0..{mag.shape[1] - 1}")
    return np.column_stack([mag[:, ref_index], mag[:, :-1] - mag[:, 1:]])


def reference_band(bands: list[str], ref_band: str | None = None) -> str:
    """deepz's choice of reference band: ``ref_band`` if given, else subaru_i, else the first
    band whose name ends in _i (deepz_core.catalog.features.resolve_ref_band)."""
    if ref_band is not None:
        if ref_band not in bands:
            raise ValueError(f"ref_band {ref_band!r} is not among the bands {bands}")
        return ref_band
    if "subaru_i" in bands:
        return "subaru_i"
    for band in bands:
        if band.endswith("_i"):
            return band
    raise ValueError(f"no i band among {bands}: pass --ref-band")
