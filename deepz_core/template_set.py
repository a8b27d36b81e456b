"""The BCNZ2-like template set (E20 Appendix A) and its model-flux table T(z, band, template).

Continuum SEDs are BC03 stellar populations from bagpipes (``simulate.ssp``, stellar light only, no
nebular emission), built with the SFH shapes of ``simulate.population``:

====  ==============  ===============================================  =====================
 #    name            star-formation history                            log10 Z/Z_sun
====  ==============  ===============================================  =====================
 0    ssp_old         burst 6.5-7 Gyr ago (old elliptical)              +0.2
 1    ssp_2gyr        burst 2-2.2 Gyr ago (young elliptical / post-SB)   0.0
 2    exp_tau0.5      exponential, tau 0.5 Gyr, started 5 Gyr ago (S0)   0.0
 3    exp_tau2        exponential, tau 2 Gyr, 5 Gyr (Sa/Sb)              0.0
 4    exp_tau5        exponential, tau 5 Gyr, 5 Gyr (Sbc)                0.0
 5    const_3gyr      constant for 3 Gyr (Sc/Sd)                        -0.2
 6    const_300myr    constant for 300 Myr (irregular)                  -0.4
 7    burst_30myr     constant for 30 Myr (starburst)                   -0.4
====  ==============  ===============================================  =====================

Each is reddened by a Calzetti et al. (2000) screen with E(B-V) in ``EBV_VALUES`` = 0, 0.1, 0.2, 0.3,
0.5 (8 x 5 = 40 continuum templates), and attenuated by the IGM (Inoue et al. 2014, through bagpipes'
``igm`` model) at each redshift. Two emission-line templates follow (indices 40, 41), Gaussian lines
(sigma 300 km/s) with fixed ratios to [OII]3727 (``LINE_RATIOS``): ``lines_low`` with the Ilbert et al.
(2009) ratios (Hbeta 0.61, [OIII]5007 0.36, Halpha 1.77) plus [NII] and [SII] at typical metal-rich
values, and ``lines_high``, a high-excitation (low-metallicity, high-ionisation) variant with strong
[OIII] and weak [NII]/[SII]. Lines carry no dust: their free non-negative amplitudes absorb it.

A fit "run" (BCNZ2 fitted several template groups separately) is one E(B-V) value: its 8 continuum
templates plus the 2 line templates, so 5 runs of 10 templates; see ``run_members``.
Fluxes are photon-counting AB means through ``simulate.photometry.BandPhotometry``, in arbitrary but
consistent units per template (the fit normalises them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from deepz_core.bands import get_band
from deepz_core.errors import ConfigError
from deepz_core.paths import atomic_write, cache_dir
from deepz_core.simulate import population as pop
from deepz_core.simulate.photometry import BandPhotometry
from deepz_core.simulate.ssp import LAMBDA_MAX, LAMBDA_MIN, SSPLibrary, load_library

TEMPLATE_SET_VERSION = "bcnz2-like-v1"  # bump when any spectrum below changes
EBV_VALUES = (0.0, 0.1, 0.2, 0.3, 0.5)
LINE_SIGMA_KMS = 300.0
C_KMS = 299_792.458

# name: (kind, lookback start [yr], lookback stop or tau [yr], log10 Z/Z_sun)
CONTINUUM: dict[str, tuple[str, float, float, float]] = {
    "ssp_old": ("burst", 6.5e9, 0.5e9, 0.2),
    "ssp_2gyr": ("burst", 2.0e9, 0.2e9, 0.0),
    "exp_tau0.5": ("exp", 5.0e9, 0.5e9, 0.0),
    "exp_tau2": ("exp", 5.0e9, 2.0e9, 0.0),
    "exp_tau5": ("exp", 5.0e9, 5.0e9, 0.0),
    "const_3gyr": ("const", 3.0e9, 0.0, -0.2),
    "const_300myr": ("const", 3.0e8, 0.0, -0.4),
    "burst_30myr": ("const", 3.0e7, 0.0, -0.4),
}
# rest wavelength [A] (vacuum-ish, as in bagpipes' Cloudy list) -> flux relative to [OII]3727
_LINES_AT = {"OII": 3727.4, "Hb": 4861.3, "OIII4959": 4958.9, "OIII5007": 5006.8,
             "NII6548": 6548.1, "Ha": 6562.8, "NII6584": 6583.5, "SII6717": 6716.4,
             "SII6731": 6730.8}  # fmt: skip
LINE_RATIOS: dict[str, dict[str, float]] = {
    "lines_low": {"OII": 1.0, "Hb": 0.61, "OIII4959": 0.12, "OIII5007": 0.36, "NII6548": 0.18,
                  "Ha": 1.77, "NII6584": 0.53, "SII6717": 0.30, "SII6731": 0.22},
    "lines_high": {"OII": 1.0, "Hb": 0.80, "OIII4959": 0.67, "OIII5007": 2.0, "NII6548": 0.02,
                   "Ha": 2.29, "NII6584": 0.07, "SII6717": 0.12, "SII6731": 0.09},
}  # fmt: skip


@dataclass(frozen=True, eq=False)
class TemplateSet:
    """Rest-frame template spectra ``spectra`` (T, L) on ``wavelength`` (L,) [A], f_lambda units.

    ``names`` (T,), ``ebv`` (T,) Calzetti E(B-V) (NaN for line templates), ``is_line`` (T,).
    """

    wavelength: np.ndarray
    spectra: np.ndarray
    names: tuple[str, ...]
    ebv: np.ndarray
    is_line: np.ndarray
    version: str = TEMPLATE_SET_VERSION

    @property
    def n_templates(self) -> int:
        return len(self.names)

    def run_members(self) -> np.ndarray:
        """(R, T_r) template indices of each run: the continuum at one E(B-V) plus all lines."""
        lines = np.flatnonzero(self.is_line)
        runs = [np.concatenate([np.flatnonzero(self.ebv == e), lines]) for e in EBV_VALUES]
        return np.stack(runs)


def _stellar_only(lib: SSPLibrary, mass: np.ndarray, log_z: float) -> np.ndarray:
    """(L,) BC03 stellar spectrum of mass fractions (A,), linear in log Z between grid nodes."""
    nodes = np.log10(lib.metallicity)
    i = int(np.clip(np.searchsorted(nodes, log_z) - 1, 0, len(nodes) - 2))
    f = float(np.clip((log_z - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0))
    return (1 - f) * mass @ lib.stellar[i] + f * mass @ lib.stellar[i + 1]


def continuum_spectra(lib: SSPLibrary) -> np.ndarray:
    """(8, L) dust-free continuum SEDs of ``CONTINUUM``, each scaled to unit mean f_lambda at
    5000-5500 A (rest)."""
    edges = lib.age_edges
    out = []
    for kind, start, par, log_z in CONTINUUM.values():
        a = np.array([start])
        if kind == "burst":
            mass = pop.burst_sfh(edges, a, np.array([par]))
        elif kind == "exp":
            mass = pop.exponential_sfh(edges, a, np.array([par]))
        else:
            mass = pop.constant_sfh(edges, a)
        out.append(_stellar_only(lib, mass[0], log_z))
    spectra = np.asarray(out, dtype=np.float64)
    window = (lib.wavelength > 5000) & (lib.wavelength < 5500)
    return spectra / spectra[:, window].mean(axis=1, keepdims=True)


def line_spectra(wavelength: np.ndarray) -> np.ndarray:
    """(2, L) emission-line templates of ``LINE_RATIOS``: Gaussians of sigma LINE_SIGMA_KMS, each
    line's integral of f_lambda d lambda equal to its ratio to [OII] (so [OII] has unit flux)."""
    dlam = np.gradient(wavelength)
    out = np.zeros((len(LINE_RATIOS), len(wavelength)))
    for i, ratios in enumerate(LINE_RATIOS.values()):
        for line, ratio in ratios.items():
            centre = _LINES_AT[line]
            sigma = centre * LINE_SIGMA_KMS / C_KMS
            g = np.exp(-0.5 * ((wavelength - centre) / sigma) ** 2)
            out[i] += ratio * g / (g * dlam).sum()
    return out


@cache
def load_template_set() -> TemplateSet:
    """The template set of this module's docstring (continuum x E(B-V), then the line templates)."""
    lib = load_library()
    wav = lib.wavelength
    cont = continuum_spectra(lib)  # (8, L)
    k = pop.calzetti_k(wav)  # (L,)
    spectra, names, ebv = [], [], []
    for e in EBV_VALUES:
        spectra.append(cont * 10 ** (-0.4 * e * k)[None, :])
        names += [f"{n}_ebv{e:g}" for n in CONTINUUM]
        ebv += [e] * len(CONTINUUM)
    spectra.append(line_spectra(wav))
    names += list(LINE_RATIOS)
    ebv += [np.nan] * len(LINE_RATIOS)
    flat = np.concatenate(spectra).astype(np.float32)
    return TemplateSet(wavelength=wav, spectra=flat, names=tuple(names), ebv=np.array(ebv),
                       is_line=np.isnan(np.array(ebv)))  # fmt: skip


def _igm_model(wavelength: np.ndarray):
    with contextlib.redirect_stdout(io.StringIO()):  # bagpipes prints banners on import
        from bagpipes.models.igm_model import igm
    return igm(wavelength)


def check_bands_coverable(bands: Sequence[str], z_max: float) -> None:
    """ConfigError unless every band lies within the spectra's range at z = 0 .. z_max."""
    for name in bands:
        band = get_band(name)
        lo, hi = float(band.wavelength[0]), float(band.wavelength[-1])
        if hi > LAMBDA_MAX or lo / (1.0 + z_max) < LAMBDA_MIN:
            raise ConfigError(
                f"band {name!r} ({lo:.0f}-{hi:.0f} A) is outside the template wavelength range "
                f"{LAMBDA_MIN:.0f}-{LAMBDA_MAX:.0f} A (rest, up to z = {z_max})"
            )


def compute_flux_table(tset: TemplateSet, bands: Sequence[str], z: np.ndarray) -> np.ndarray:
    """(Z, B, T) float32 model fluxes of every template through ``bands`` at redshifts z (Z,),
    with IGM attenuation at each z."""
    check_bands_coverable(bands, float(np.max(z)))
    phot = BandPhotometry(bands, tset.wavelength)
    igm = _igm_model(tset.wavelength)
    n_t = tset.n_templates
    out = np.empty((len(z), len(bands), n_t), dtype=np.float32)
    step = max(1, 4000 // n_t)
    for s in range(0, len(z), step):
        zs = np.asarray(z[s : s + step], dtype=np.float64)
        trans = np.stack([igm.trans(float(zi)) for zi in zs]).astype(np.float32)  # (z, L)
        spec = (trans[:, None, :] * tset.spectra[None, :, :]).reshape(-1, len(tset.wavelength))
        flux = phot.fluxes(spec, np.repeat(zs, n_t))  # (z * T, B)
        out[s : s + step] = flux.reshape(len(zs), n_t, len(bands)).transpose(0, 2, 1)
    return out


def flux_table(bands: Sequence[str], z: np.ndarray) -> np.ndarray:
    """T(z, band, template) (Z, B, T), cached on disk as .npz keyed by bands + z grid + version."""
    tset = load_template_set()
    z = np.asarray(z, dtype=np.float64)
    blob = json.dumps([TEMPLATE_SET_VERSION, list(bands), np.round(z, 9).tolist()])
    path = cache_dir() / f"templates_{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["flux"]
    table = compute_flux_table(tset, bands, z)

    def write(tmp) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, flux=table, z=z, bands=np.array(bands), names=np.array(tset.names))

    atomic_write(path, write)
    return table
