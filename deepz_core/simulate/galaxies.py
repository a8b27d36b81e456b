"""A realistic galaxy population for the observed mock (not the E20 Table 1 pretraining prior).

Magnitudes follow i-band number counts, redshifts a magnitude-dependent n(z) peaking near z ~ 0.6 for
iAB < 22.5 (zCOSMOS-bright-like), and physical properties are correlated through a stellar-mass proxy:
quiescent fraction, star-formation timescale, metallicity (mass-metallicity relation), ionisation
parameter and dust all depend on it. Histories are delayed-tau with recent bursts (another family than
E20's exponential + constant) and dust is Charlot & Fall (2000) with birth clouds (not Calzetti).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import numpy as np

from deepz_core.configs import Config, check_real
from deepz_core.errors import ConfigError
from deepz_core.sed import histories as pop
from deepz_core.simulate.sps import age_of_universe_yr


@dataclass(frozen=True)
class PopulationConfig(Config):
    """Population knobs (defaults give a zCOSMOS-bright-like sample)."""

    CONFIG_NAME: ClassVar[str] = "population"

    mag_min: float = 17.0
    mag_max: float = 22.5
    count_slope: float = 0.33  # d log10 N / dm of i-band counts
    z_max: float = 1.5
    burst_fraction: float = 0.15  # share of star-forming galaxies with a recent burst
    nz_z0: float = 0.56  # n(z | m) scale z0 at m = 22 (see sample_redshifts)
    nz_slope: float = 0.12  # d z0 / dm
    nz_alpha: float = 1.5  # exponent of the n(z | m) cut-off

    def __post_init__(self) -> None:
        for name in ("mag_min", "mag_max", "count_slope", "nz_slope"):
            check_real(name, getattr(self, name))
        if not self.mag_min < self.mag_max:
            raise ConfigError(
                f"mag_min must be below mag_max, got mag_min={self.mag_min}, mag_max={self.mag_max}"
            )
        check_real("z_max", self.z_max, 0.0, low_open=True)
        check_real("burst_fraction", self.burst_fraction, 0.0, 1.0)
        for name in ("nz_z0", "nz_alpha"):
            check_real(name, getattr(self, name), 0.0, low_open=True)


@cache
def _distmod_table() -> tuple[np.ndarray, np.ndarray]:
    from astropy.cosmology import Planck15

    grid = np.linspace(0.005, 3.0, 600)
    return grid, Planck15.distmod(grid).value


def _distance_modulus(z: np.ndarray) -> np.ndarray:
    return np.interp(z, *_distmod_table())


def sample_magnitudes(n: int, cfg: PopulationConfig, rng: np.random.Generator) -> np.ndarray:
    """(N,) i-band AB magnitudes with counts dN/dm ~ 10^(slope m) between mag_min and mag_max."""
    a = cfg.count_slope * np.log(10.0)
    u = rng.uniform(size=n)
    lo, hi = np.exp(a * cfg.mag_min), np.exp(a * cfg.mag_max)
    return np.log(lo + u * (hi - lo)) / a


def sample_redshifts(
    mag: np.ndarray, cfg: PopulationConfig, rng: np.random.Generator
) -> np.ndarray:
    """(N,) redshifts from p(z | m) ~ z^2 exp(-(z / z0(m))^alpha) on [0, z_max], with
    z0(m) = nz_z0 + nz_slope (m - 22) (at least 0.07) and alpha = nz_alpha (defaults: 1.5)."""
    z0 = np.clip(cfg.nz_z0 + cfg.nz_slope * (mag - 22.0), 0.07, None)
    grid = np.linspace(0.0, cfg.z_max, 1501)
    pdf = grid[None, :] ** 2 * np.exp(-((grid[None, :] / z0[:, None]) ** cfg.nz_alpha))  # (N, G)
    cdf = np.cumsum(pdf, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.uniform(size=len(mag))
    idx = np.argmax(cdf >= u[:, None], axis=1)
    z = grid[idx] - rng.uniform(0.0, grid[1], size=len(mag))
    return np.clip(z, 0.005, cfg.z_max)


def sample_properties(
    mag: np.ndarray, z: np.ndarray, cfg: PopulationConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Correlated physical properties (N,) driven by a stellar-mass proxy from the absolute magnitude."""
    n = len(z)
    abs_mag = mag - _distance_modulus(z)
    log_mass = 10.3 - 0.42 * (abs_mag + 21.5) + rng.normal(0.0, 0.2, n)
    p_quiescent = 1.0 / (1.0 + np.exp(-(log_mass - 10.7) / 0.25)) * np.clip(1.0 - 0.4 * z, 0.3, 1.0)
    quiescent = rng.uniform(size=n) < p_quiescent
    age = age_of_universe_yr(z)
    start = np.where(quiescent, rng.uniform(0.3, 1.5, n), rng.uniform(0.5, 4.0, n)) * pop.GYR
    tau_sf = np.exp(rng.normal(np.log(3.0) + 0.3 * (10.0 - log_mass), 0.35, n))
    tau = np.where(quiescent, rng.uniform(0.2, 0.9, n), tau_sf) * pop.GYR
    log_z = np.clip(-0.15 + 0.3 * (log_mass - 10.0) - 0.15 * z + rng.normal(0, 0.12, n), -1.3, 0.4)
    log_u = np.clip(-3.0 + 0.35 * (10.0 - log_mass) + rng.normal(0, 0.3, n), -4.0, -1.0)
    tau_v = np.where(
        quiescent,
        rng.uniform(0.0, 0.15, n),
        np.exp(rng.normal(np.log(0.35) + 0.35 * (log_mass - 10.0), 0.4, n)),
    )
    burst = (~quiescent) & (rng.uniform(size=n) < cfg.burst_fraction)
    return {
        "z": z,
        "mag": mag,
        "log_mass": log_mass,
        "quiescent": quiescent,
        "duration": np.maximum(age - start, 5e7),
        "tau": tau,
        "log_z": log_z,
        "log_u": log_u,
        "tau_v": tau_v,
        "burst": burst,
        "burst_mass": np.where(burst, rng.uniform(0.02, 0.1, n), 0.0),
        "burst_age": rng.uniform(5e6, 2e8, n),
    }


def mass_history(p: dict[str, np.ndarray], edges: np.ndarray) -> np.ndarray:
    """(N, A) mass fractions: delayed-tau plus an optional 50 Myr-long recent burst."""
    main = pop.delayed_sfh(edges, p["duration"], p["tau"])
    burst = pop.burst_sfh(edges, p["burst_age"], np.full_like(p["burst_age"], 5e7))
    f = p["burst_mass"][:, None]
    return (1.0 - f) * main + f * burst


def dust_transmissions(p: dict[str, np.ndarray], wavelength: np.ndarray) -> tuple[np.ndarray, ...]:
    """Charlot & Fall (2000): diffuse ISM (slope 0.7) for all light, birth clouds (slope 1.3) on top
    for stars younger than 10 Myr and their nebular emission, tau_BC = 2 tau_ISM."""
    ism = pop.power_law_transmission(wavelength, p["tau_v"], 0.7)
    clouds = pop.power_law_transmission(wavelength, 2.0 * p["tau_v"], 1.3)
    return ism, ism * clouds
