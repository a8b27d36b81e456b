"""A PAUS-COSMOS-like observed mock that stands in for real data (E20 Sec. 2.1).

The galaxy population (``galaxies.py``) differs from the pretraining prior in SFH family, dust law and
parameter correlations, so transfer learning is not tested against itself. Observation model:
- narrow bands: 3-10 single exposures (mostly 5) with PAUS-like per-exposure depths that vary with
  observing conditions, source shot noise, and a few per cent of outlier exposures (positive like
  scattered light, negative like cross-talk); the coadd is the inverse-variance mean of the exposures;
- broad bands: COSMOS-like 5 sigma depths plus a calibration floor, one coadd each;
- small per-band zero-point offsets (``zero_point_offsets``), applied to all measured fluxes;
- a spectroscopic subsample, less complete at the faint end, with zCOSMOS-like errors and a small
  fraction of wrong redshifts.
The galaxies' spectra come from an SED family (``families.py``): "sps" (the default, the demo's) or
"kcorrect" (random combinations of kcorrect's templates); the observation model is the same for both.
Fluxes are in microJansky (FLUXZP = 23.9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.features import resolve_ref_band
from deepz_core.configs import Config, check_real
from deepz_core.errors import ConfigError
from deepz_core.sed.bands import get_band
from deepz_core.simulate import families, galaxies

FLUXZP = 23.9
# COSMOS 5 sigma depths (3'' apertures, Capak et al. 2007 / Laigle et al. 2016 orders of magnitude)
BROAD_DEPTHS = {
    "cfht_u": 26.4,
    "subaru_B": 27.0,
    "subaru_V": 26.6,
    "subaru_r": 26.8,
    "subaru_i": 26.2,
    "subaru_z": 25.2,
}
DEFAULT_BROAD_DEPTH = 25.5
EXPOSURE_COUNTS = np.arange(3, 11)
EXPOSURE_PROBS = np.array([0.06, 0.12, 0.50, 0.12, 0.08, 0.05, 0.04, 0.03])


@dataclass(frozen=True)
class MockConfig(Config):
    """Observation knobs for the mock; defaults are PAUS-like (E20 Sec. 2.1, Padilla et al. 2019)."""

    CONFIG_NAME: ClassVar[str] = "mock"
    NESTED: ClassVar[dict[str, type[Config]]] = {
        "population": galaxies.PopulationConfig,
        "kcorrect_mix": families.KcorrectMix,
    }

    population: galaxies.PopulationConfig = field(default_factory=galaxies.PopulationConfig)
    nb_depth_blue: float = 22.9  # 5 sigma single-exposure-coadd depth [AB] of NB455 at 5 exposures
    nb_depth_red: float = 22.3  # ... of NB845 (red bands are shallower)
    exposure_depth_scatter: float = 0.25  # lognormal scatter of per-exposure noise (conditions)
    shot_noise: float = 0.08  # microJansky: variance term proportional to the source flux
    broad_floor: float = 0.025  # fractional calibration error floor of broad bands
    outlier_rate: float = 0.02  # fraction of single exposures that are photometric outliers
    outlier_positive: float = 0.6  # share of outliers that are positive (scattered light)
    zero_point_scatter: float = 0.02  # rms of per-band zero-point offsets
    spec_completeness_bright: float = 0.97
    spec_completeness_faint: float = 0.72  # at the magnitude limit
    spec_failure_rate: float = 0.005  # wrong spec-z among the 'secure' ones
    spec_error: float = 0.00036  # zCOSMOS ~110 km/s, times (1 + z)
    kcorrect_mix: families.KcorrectMix = field(default_factory=families.KcorrectMix)  # "kcorrect"

    def __post_init__(self) -> None:
        for name in ("outlier_rate", "outlier_positive", "spec_failure_rate"):
            check_real(name, getattr(self, name), 0.0, 1.0)
        for name in ("spec_completeness_bright", "spec_completeness_faint"):
            check_real(name, getattr(self, name), 0.0, 1.0, low_open=True)


def zero_point_offsets(bands: Sequence[str], seed: int, scatter: float) -> np.ndarray:
    """(B,) multiplicative zero-point offsets 1 + delta_b, deterministic per seed (for recovery tests)."""
    rng = np.random.default_rng([seed, 7])
    return 1.0 + rng.normal(0.0, scatter, len(bands))


def _mag_to_flux(mag: np.ndarray | float) -> np.ndarray:
    return 10 ** (-0.4 * (np.asarray(mag) - FLUXZP))


def _true_fluxes(
    p: dict[str, np.ndarray],
    bands: tuple[str, ...],
    ref: int,
    family: str,
    seed: int,
    cfg: MockConfig,
) -> np.ndarray:
    """(N, B) noiseless fluxes [microJansky] of SED family ``family`` (``families``) scaled to the
    drawn reference-band magnitudes p['mag'] (N,)."""
    flux = families.family_fluxes(family, p, bands, seed, cfg.kcorrect_mix)
    return flux * (_mag_to_flux(p["mag"]) / flux[:, ref])[:, None]


def _narrow_exposures(
    true: np.ndarray, bands: tuple[str, ...], cfg: MockConfig, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Single exposures of the narrow bands, long format: (gal, band, exp_num, flux, error)."""
    nb = np.array([b for b, name in enumerate(bands) if get_band(name).is_narrow], dtype=np.int64)
    n = len(true)
    counts = rng.choice(EXPOSURE_COUNTS, size=(n, len(nb)), p=EXPOSURE_PROBS)  # (N, NB)
    gal = np.repeat(np.repeat(np.arange(n), len(nb)), counts.ravel())
    band = np.repeat(np.tile(nb, n), counts.ravel())
    starts = np.repeat(np.cumsum(counts.ravel()) - counts.ravel(), counts.ravel())
    exp_num = np.arange(len(gal)) - starts + 1
    # sky noise such that a 5-exposure coadd reaches the 5 sigma depth; red bands shallower
    lam = np.array([get_band(b).effective_wavelength for b in bands])[band]
    frac = np.clip((lam - 4550.0) / 3900.0, 0.0, 1.0)
    depth = cfg.nb_depth_blue + frac * (cfg.nb_depth_red - cfg.nb_depth_blue)
    sky = _mag_to_flux(depth) / 5.0 * np.sqrt(5.0)
    sky *= np.exp(rng.normal(0.0, cfg.exposure_depth_scatter, len(gal)))
    f = true[gal, band]
    error = np.sqrt(sky**2 + cfg.shot_noise * np.clip(f, 0.0, None))
    flux = f + error * rng.standard_normal(len(gal))
    flux += _outliers(error, f, cfg, rng)
    return gal, band, exp_num, flux, error


def _outliers(
    error: np.ndarray, flux: np.ndarray, cfg: MockConfig, rng: np.random.Generator
) -> np.ndarray:
    """Additive outlier flux: scattered light (+3..15 sigma) or cross-talk (-3..10 sigma)."""
    hit = rng.uniform(size=len(error)) < cfg.outlier_rate
    positive = rng.uniform(size=len(error)) < cfg.outlier_positive
    size = np.where(
        positive,
        rng.uniform(3, 15, len(error)) * error + 0.1 * np.abs(flux),
        -rng.uniform(3, 10, len(error)) * error,
    )
    return np.where(hit, size, 0.0)


def _broad_coadds(
    true: np.ndarray, bands: tuple[str, ...], cfg: MockConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    depth = np.array([BROAD_DEPTHS.get(b, DEFAULT_BROAD_DEPTH) for b in bands])
    error = np.sqrt((_mag_to_flux(depth) / 5.0) ** 2 + (cfg.broad_floor * np.abs(true)) ** 2)
    return true + error * rng.standard_normal(true.shape), error


def _spec_z(
    z: np.ndarray,
    mag: np.ndarray,
    cfg: MockConfig,
    pcfg: galaxies.PopulationConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N,) spectroscopic redshifts, NaN outside the (magnitude-dependent) spectroscopic subsample:
    the bright completeness to iAB 20, falling to the faint one at the population's mag_max (a
    population no fainter than 20 has the bright completeness throughout)."""
    span = pcfg.mag_max - 20.0
    t = np.clip((mag - 20.0) / span, 0.0, 1.0) ** 1.5 if span > 0 else np.zeros_like(mag)
    completeness = cfg.spec_completeness_bright + t * (
        cfg.spec_completeness_faint - cfg.spec_completeness_bright
    )
    has = rng.uniform(size=len(z)) < completeness
    zs = z + cfg.spec_error * (1 + z) * rng.standard_normal(len(z))
    wrong = rng.uniform(size=len(z)) < cfg.spec_failure_rate
    zs = np.where(wrong, rng.uniform(0.05, pcfg.z_max, len(z)), zs)
    return np.where(has, np.round(np.clip(zs, 0.0, None), 5), np.nan)


def simulate_mock(
    n: int,
    bands: Sequence[str],
    seed: int,
    config: MockConfig | None = None,
    sed_family: str = families.DEFAULT_SED_FAMILY,
) -> Catalog:
    """Simulate an observed PAUS-COSMOS-like catalogue of n galaxies with single exposures, their
    spectra from SED family ``sed_family`` ("sps" or "kcorrect", see ``families``): fluxes (N, B)
    [microJansky], exposures, spec-z, extra columns ztrue, log_mass, quiescent (N,)."""
    cfg = config or MockConfig()
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    sed_family = families.check_sed_family(sed_family)
    bands = tuple(bands)
    ref = bands.index(resolve_ref_band(bands))
    rng = np.random.default_rng(seed)
    pcfg = cfg.population
    mag = galaxies.sample_magnitudes(n, pcfg, rng)
    z = galaxies.sample_redshifts(mag, pcfg, rng)
    props = galaxies.sample_properties(mag, z, pcfg, rng)
    true = _true_fluxes(props, bands, ref, sed_family, seed, cfg)
    zp = zero_point_offsets(bands, seed, cfg.zero_point_scatter)
    flux, error = _broad_coadds(true, bands, cfg, rng)
    gal, band, exp_num, e_flux, e_err = _narrow_exposures(true, bands, cfg, rng)
    e_flux = e_flux * zp[band]
    e_err = e_err * zp[band]
    flux, error = flux * zp, error * zp
    coadd, coadd_err = _inverse_variance_mean(gal, band, e_flux, e_err, flux.shape)
    has_exp = ~np.isnan(coadd)
    flux[has_exp], error[has_exp] = coadd[has_exp], coadd_err[has_exp]
    ref_id = np.arange(1, n + 1, dtype=np.int64)
    exposures = Exposures(
        ref_id=ref_id[gal],
        band=np.array(bands)[band],
        exp_num=exp_num.astype(np.int64),
        flux=e_flux,
        flux_error=e_err,
    )
    extra = {"ztrue": z, "log_mass": props["log_mass"], "quiescent": props["quiescent"]}
    return Catalog(
        ref_id=ref_id,
        bands=bands,
        flux=flux,
        flux_error=error,
        zspec=_spec_z(z, mag, cfg, pcfg, rng),
        mag=FLUXZP - 2.5 * np.log10(np.clip(flux[:, ref], 1e-6, None)),
        fluxzp=FLUXZP,
        exposures=exposures,
        extra=extra,
        meta=_meta(seed, sed_family),
    )


def _meta(seed: int, sed_family: str) -> dict[str, object]:
    """Header of a mock catalogue: kind, seed and, for a family other than the default, SEDFAM
    (the default's header is the one mocks had before there were families)."""
    meta: dict[str, object] = {"SIMKIND": "paus-mock", "SEED": int(seed)}
    if sed_family != families.DEFAULT_SED_FAMILY:
        meta["SEDFAM"] = sed_family
    return meta


def _inverse_variance_mean(
    gal: np.ndarray, band: np.ndarray, flux: np.ndarray, error: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(N, B) inverse-variance weighted coadd and its error from long-format exposures; NaN if none."""
    w = 1.0 / error**2
    cell = gal * shape[1] + band
    sw = np.bincount(cell, weights=w, minlength=shape[0] * shape[1]).reshape(shape)
    swf = np.bincount(cell, weights=w * flux, minlength=shape[0] * shape[1]).reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return swf / sw, 1.0 / np.sqrt(sw)
