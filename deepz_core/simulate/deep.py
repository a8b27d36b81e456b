"""An LSST-like deep broad-band mock: ugrizy coadds of galaxies to iAB ~ 25 and z up to 3.

The PAUS-COSMOS-like mock (``mock.py``) stops at iAB 22.5 and z 1.5 and every galaxy is detected in
every band; this one tests what a deep broad-band survey brings instead:
- population: the correlated population of ``galaxies.py`` drawn to fainter magnitudes, with a
  broader n(z | m) (a Smail-like cut-off, alpha = 1) that gives a median z ~ 0.9, 8% at z > 2 and a
  tail to z = 3 for iAB < 25, near the LSST Science Book (2009, Ch. 3) n(z) ~ z^2 exp(-z / z0),
  z0 = 0.0417 i - 0.744, of a "gold" sample (median z 0.8 at i < 25);
- histories whose start of star formation would lie after the epoch of observation (z > 1.5) are
  redrawn (see ``_redraw_unborn_histories``), so high-z galaxies are not all 50 Myr old;
- IGM absorption (Inoue et al. 2014, bagpipes' grid) of the redshifted spectra: the band-averaged u
  transmission falls from 0.95 at z = 2 to 0.84 at z = 2.5 and 0.46 at z = 3 (g: 0.87 at z = 3), so u
  is dimmed, not yet dropped, below z = 3 (the u drop-out proper lies at z > 3);
- noise: coadds only (no single exposures), Gaussian in flux with LSST-like 5 sigma depths plus a
  calibration floor, so faint fluxes (u of z > 2.5 and of red galaxies, g of a few quiescent
  ones) scatter around zero, negative included, with the limiting error (forced photometry). Optionally a fraction of the S/N < 1
  measurements is reported catalogue-style as flux 0 with its (1 sigma limit) error;
- selection: on the OBSERVED reference-band magnitude (iAB < mag_limit), so the faint edge has
  Eddington scatter as a real detection cut;
- a spectroscopic subsample like the deep spec-z samples used for training: completeness falling
  with magnitude, a hole in the 1.4 < z < 2.4 "redshift desert", and a few per cent of wrong
  redshifts (line confusions) growing at the faint end.
Fluxes are in microJansky (FLUXZP = 23.9); extra columns ztrue, mag_true, log_mass, quiescent.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

import numpy as np

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import resolve_ref_band
from deepz_core.configs import Config, check_real
from deepz_core.errors import ConfigError
from deepz_core.progress import progress_bar
from deepz_core.sed.photometry import BandPhotometry
from deepz_core.sed.ssp import load_library
from deepz_core.simulate import galaxies
from deepz_core.simulate.mock import zero_point_offsets

KIND = "lsst-deep"
FLUXZP = 23.9
# LSST 10-year coadded 5 sigma point-source depths [AB] (Ivezic et al. 2019, ApJ 873, 111, Table 1:
# single-visit m5 + 1.25 log10 of the 10-year visit counts), made EXTENDED_SOURCE_LOSS shallower
# for galaxy photometry (larger apertures than a point source, worse-than-median conditions).
LSST_10YR_POINT_DEPTHS = {
    "lsst_u": 26.1,
    "lsst_g": 27.4,
    "lsst_r": 27.5,
    "lsst_i": 26.8,
    "lsst_z": 26.1,
    "lsst_y": 24.9,
}
EXTENDED_SOURCE_LOSS = 0.4  # mag; gives u 25.7, g 27.0, r 27.1, i 26.4, z 25.7, y 24.5
# rest-frame wavelengths [A] of lines a wrong spec-z confuses: Lya, [OII], Hbeta, [OIII], Halpha
CONFUSED_LINES = np.array([1215.67, 3727.4, 4861.3, 5006.8, 6562.8])
IGM_LYA = 1215.67  # Angstrom: redward of Lyman alpha the IGM transmits everything
SED_CHUNK = 2000  # galaxies per spectral chunk (2000 x 2671 float32 spectra ~ 21 MB)
Z_TABLE_MAX = 3.0  # the distance-modulus table of galaxies.py ends here


def _default_depths() -> dict[str, float]:
    return {b: round(m - EXTENDED_SOURCE_LOSS, 3) for b, m in LSST_10YR_POINT_DEPTHS.items()}


def _default_population() -> galaxies.PopulationConfig:
    """i-band counts to 25.4 (0.4 mag below the cut, for Eddington scatter), z to 3, Smail-like n(z)."""
    return galaxies.PopulationConfig(
        mag_min=17.0, mag_max=25.4, z_max=3.0, nz_z0=0.23, nz_slope=0.07, nz_alpha=1.0
    )


@dataclass(frozen=True)
class DeepMockConfig(Config):
    """Observation and spectroscopy knobs of the deep mock; defaults are LSST-10-year-like."""

    CONFIG_NAME: ClassVar[str] = "deep mock"
    NESTED: ClassVar[dict[str, type[Config]]] = {"population": galaxies.PopulationConfig}

    population: galaxies.PopulationConfig = field(default_factory=_default_population)
    depths: Mapping[str, float] = field(default_factory=_default_depths)  # 5 sigma [AB] per band
    mag_limit: float = 25.0  # selection: observed reference-band magnitude below this
    calibration_floor: float = 0.01  # fractional flux error added in quadrature (all bands)
    zero_point_scatter: float = 0.01  # rms of per-band zero-point offsets
    zeroed_nondetections: float = 0.5  # share of S/N < 1 fluxes reported as 0 (catalogue style)
    spec_completeness_bright: float = 0.8  # spec-z completeness of bright galaxies
    spec_mag_half: float = 23.5  # magnitude where completeness is half the bright value
    spec_mag_width: float = 0.4  # [mag] width of the logistic fall-off
    spec_desert: tuple[float, float] = (1.4, 2.4)  # redshift desert (few optical lines)
    spec_desert_factor: float = 0.3  # completeness multiplier inside the desert
    spec_failure_bright: float = 0.01  # wrong spec-z share at iAB 20 ...
    spec_failure_faint: float = 0.04  # ... rising linearly to this at mag_limit
    spec_error: float = 0.0005  # spec-z error / (1 + z) (~150 km/s)

    def __post_init__(self) -> None:
        fractions = (
            "zeroed_nondetections",
            "spec_desert_factor",
            "spec_failure_bright",
            "spec_failure_faint",
            "calibration_floor",
        )
        for name in fractions:
            check_real(name, getattr(self, name), 0.0, 1.0)
        check_real(
            "spec_completeness_bright", self.spec_completeness_bright, 0.0, 1.0, low_open=True
        )
        pop = self.population
        if not pop.mag_min < self.mag_limit <= pop.mag_max:
            raise ConfigError(
                f"mag_limit must lie in (population.mag_min, population.mag_max] = "
                f"({pop.mag_min}, {pop.mag_max}], got {self.mag_limit}"
            )
        if not 0.0 < pop.z_max <= Z_TABLE_MAX:
            raise ConfigError(f"population.z_max must be in (0, {Z_TABLE_MAX}], got {pop.z_max}")
        bad = {b: m for b, m in self.depths.items() if not (np.isfinite(m) and 15.0 < m < 35.0)}
        if bad:
            raise ConfigError(f"depths must be finite AB magnitudes in (15, 35), got {bad}")
        check_real("spec_mag_width", self.spec_mag_width, 0.0, low_open=True)
        check_real("spec_error", self.spec_error, 0.0)


def _mag_to_flux(mag: np.ndarray | float) -> np.ndarray:
    """Flux [microJansky] of AB magnitudes."""
    return 10 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - FLUXZP))


def sky_sigma(bands: Sequence[str], cfg: DeepMockConfig) -> np.ndarray:
    """(B,) 1 sigma background flux error [microJansky]: the 5 sigma depth flux / 5.

    Raises ConfigError naming the first band without a depth in ``cfg.depths``.
    """
    missing = [b for b in bands if b not in cfg.depths]
    if missing:
        raise ConfigError(
            f"band {missing[0]!r} has no 5 sigma depth in the {KIND} config (depths for "
            f"{sorted(cfg.depths)}); simulate it with --bands lsst or give depths"
        )
    return _mag_to_flux(np.array([cfg.depths[b] for b in bands])) / 5.0


def observe(
    true: np.ndarray, sky: np.ndarray, floor: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Measured coadd fluxes and errors (N, B) of true fluxes (N, B) [microJansky].

    error = sqrt(sky^2 + (floor * true)^2) with sky (B,) the 1 sigma depth; flux = true + error * N(0,
    1), so a faint source scatters around zero with the limiting error (negative fluxes included).
    """
    error = np.sqrt(sky[None, :] ** 2 + (floor * np.abs(true)) ** 2)
    return true + error * rng.standard_normal(true.shape), error


def _detected_sample(
    n: int, sky_ref: float, zp_ref: float, cfg: DeepMockConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True magnitudes, measured reference fluxes and errors (n,) of n galaxies whose measured
    (zero-point offset) reference magnitude is below cfg.mag_limit; draws until n are found."""
    limit = _mag_to_flux(cfg.mag_limit)
    mags, fluxes, errors, have = [], [], [], 0
    while have < n:
        mag = galaxies.sample_magnitudes(int(1.5 * (n - have)) + 64, cfg.population, rng)
        flux, error = observe(
            _mag_to_flux(mag)[:, None], np.array([sky_ref]), cfg.calibration_floor, rng
        )
        keep = flux[:, 0] * zp_ref > limit
        mags.append(mag[keep])
        fluxes.append(flux[keep, 0])
        errors.append(error[keep, 0])
        have += int(keep.sum())
    return np.concatenate(mags)[:n], np.concatenate(fluxes)[:n], np.concatenate(errors)[:n]


def sample_deep_redshifts(
    mag: np.ndarray, pcfg: galaxies.PopulationConfig, rng: np.random.Generator
) -> np.ndarray:
    """(N,) redshifts from ``galaxies.sample_redshifts``, in chunks (its (N, 1501) grid is large)."""
    chunk = 4000
    parts = [
        galaxies.sample_redshifts(mag[s : s + chunk], pcfg, rng) for s in range(0, len(mag), chunk)
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def _redraw_unborn_histories(p: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """In place: galaxies.sample_properties starts star formation 0.5-4 Gyr after the Big Bang
    (tuned for z < 1.5); where that lies after the epoch of observation the history is pinned to
    its 50 Myr minimum. Redraw those durations log-uniformly between 0.1 Gyr and the age at z."""
    from deepz_core.simulate.sps import age_of_universe_yr

    pinned = p["duration"] <= 5e7 * (1 + 1e-9)
    age = age_of_universe_yr(p["z"][pinned])
    lo = np.log(1e8)
    p["duration"][pinned] = np.exp(lo + rng.uniform(size=pinned.sum()) * (np.log(age) - lo))


@cache
def _igm_table() -> tuple[np.ndarray, np.ndarray, int]:
    """bagpipes' Inoue (2014) IGM transmission resampled to the SSP rest grid: redshift nodes (Z,),
    transmission (Z, K) of the first K rest pixels (those blueward of Lyman alpha) and K."""
    with contextlib.redirect_stdout(io.StringIO()):  # bagpipes prints banners on import
        from bagpipes import config
        from bagpipes.models.igm_model import igm
    wav = load_library().wavelength
    k = int(np.searchsorted(wav, IGM_LYA)) + 1  # include the pixel holding Lyman alpha
    grid = igm(wav[:k]).grid  # (K, Z)
    return np.asarray(config.igm_redshifts, dtype=np.float64), grid.T.astype(np.float32), k


def igm_transmission(z: np.ndarray) -> tuple[np.ndarray, int]:
    """IGM transmission (N, K) at source redshifts z (N,) of the first K pixels of the SSP rest
    grid (``load_library().wavelength``), linear in z between bagpipes' nodes; pixels beyond K
    (redward of Lyman alpha) transmit 1."""
    nodes, table, k = _igm_table()
    idx = np.clip(np.searchsorted(nodes, z, side="right") - 1, 0, len(nodes) - 2)
    frac = ((z - nodes[idx]) / (nodes[idx + 1] - nodes[idx])).astype(np.float32)[:, None]
    return (1.0 - frac) * table[idx] + frac * table[idx + 1], k


def _true_fluxes(p: dict[str, np.ndarray], bands: tuple[str, ...], ref: int) -> np.ndarray:
    """(N, B) noiseless fluxes [microJansky] with IGM absorption, scaled to p['mag'] in band ref."""
    lib = load_library()
    phot = BandPhotometry(bands, lib.wavelength)
    out = np.empty((len(p["z"]), len(bands)))
    with progress_bar(len(p["z"]), f"simulating {KIND} galaxies") as bar:
        for s in range(0, len(p["z"]), SED_CHUNK):
            q = {key: v[s : s + SED_CHUNK] for key, v in p.items()}
            mass = galaxies.mass_history(q, lib.age_edges)
            old, young = galaxies.dust_transmissions(q, lib.wavelength)
            spec = lib.spectra(mass, q["log_z"], q["log_u"], old, young)
            igm, k = igm_transmission(q["z"])
            spec[:, :k] *= igm
            flux = phot.fluxes(spec, q["z"])
            out[s : s + SED_CHUNK] = flux * (_mag_to_flux(q["mag"]) / flux[:, ref])[:, None]
            bar.update(len(q["z"]))
    return out


def _zero_nondetections(
    flux: np.ndarray, error: np.ndarray, share: float, rng: np.random.Generator
) -> np.ndarray:
    """Flux (N, B) with a random ``share`` of the S/N < 1 measurements set to 0 (catalogue-style
    non-detections: flux 0, error kept, which is then the 1 sigma limit)."""
    hit = (flux < error) & (rng.uniform(size=flux.shape) < share)
    return np.where(hit, 0.0, flux)


def spec_completeness(z: np.ndarray, mag: np.ndarray, cfg: DeepMockConfig) -> np.ndarray:
    """(N,) probability of a spec-z: logistic fall-off with magnitude, times the desert factor."""
    c = cfg.spec_completeness_bright / (
        1.0 + np.exp((mag - cfg.spec_mag_half) / cfg.spec_mag_width)
    )
    lo, hi = cfg.spec_desert
    return np.where((z > lo) & (z < hi), c * cfg.spec_desert_factor, c)


def _wrong_redshifts(z: np.ndarray, z_max: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) wrong spec-z: one line taken for another, (1 + z) lambda_true / lambda_assumed - 1;
    where that falls outside (0.01, z_max), uniform in (0.05, z_max)."""
    true_line = rng.choice(CONFUSED_LINES, len(z))
    assumed = rng.choice(CONFUSED_LINES, len(z))
    wrong = (1.0 + z) * true_line / assumed - 1.0
    bad = (wrong < 0.01) | (wrong > z_max) | (true_line == assumed)
    return np.where(bad, rng.uniform(0.05, z_max, len(z)), wrong)


def _spec_z(
    z: np.ndarray, mag: np.ndarray, cfg: DeepMockConfig, rng: np.random.Generator
) -> np.ndarray:
    """(N,) spectroscopic redshifts: NaN outside the subsample, a few wrong, errors spec_error(1+z)."""
    has = rng.uniform(size=len(z)) < spec_completeness(z, mag, cfg)
    t = np.clip((mag - 20.0) / (cfg.mag_limit - 20.0), 0.0, 1.0)
    rate = cfg.spec_failure_bright + t * (cfg.spec_failure_faint - cfg.spec_failure_bright)
    zs = z + cfg.spec_error * (1.0 + z) * rng.standard_normal(len(z))
    wrong = rng.uniform(size=len(z)) < rate
    zs = np.where(wrong, _wrong_redshifts(z, cfg.population.z_max, rng), zs)
    return np.where(has, np.round(np.clip(zs, 0.0, None), 5), np.nan)


def simulate_deep(
    n: int, bands: Sequence[str], seed: int, config: DeepMockConfig | None = None
) -> Catalog:
    """Simulate an LSST-like deep catalogue of n galaxies with observed iAB < mag_limit (coadds only).

    bands: each needs a depth in ``config.depths`` (defaults: lsst_u..lsst_y); the reference band
    (``features.resolve_ref_band``, lsst_i for LSST) is the one selected on. Deterministic per seed.
    """
    cfg = config or DeepMockConfig()
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    bands = tuple(bands)
    ref = bands.index(resolve_ref_band(bands))
    sky = sky_sigma(bands, cfg)
    rng = np.random.default_rng(seed)
    zp = zero_point_offsets(bands, seed, cfg.zero_point_scatter)
    mag, ref_flux, ref_error = _detected_sample(n, sky[ref], zp[ref], cfg, rng)
    z = sample_deep_redshifts(mag, cfg.population, rng)
    props = galaxies.sample_properties(mag, z, cfg.population, rng)
    _redraw_unborn_histories(props, rng)
    true = _true_fluxes(props, bands, ref)
    flux, error = observe(true, sky, cfg.calibration_floor, rng)
    flux[:, ref], error[:, ref] = ref_flux, ref_error
    flux = _zero_nondetections(flux * zp, error * zp, cfg.zeroed_nondetections, rng)
    error = error * zp
    observed_mag = FLUXZP - 2.5 * np.log10(flux[:, ref])  # > 0 by the selection
    extra = {
        "ztrue": z,
        "mag_true": mag,
        "log_mass": props["log_mass"],
        "quiescent": props["quiescent"],
    }
    return Catalog(
        ref_id=np.arange(1, n + 1, dtype=np.int64),
        bands=bands,
        flux=flux,
        flux_error=error,
        zspec=_spec_z(z, observed_mag, cfg, rng),
        mag=observed_mag,
        fluxzp=FLUXZP,
        exposures=None,
        extra=extra,
        meta={"SIMKIND": KIND, "SEED": int(seed), "MAGLIM": float(cfg.mag_limit)},
    )
