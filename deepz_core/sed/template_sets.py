"""Template sets by name: the BCNZ2-like set (E20 Appendix A, the default) and kcorrect's NMF set,
and their model-flux tables T(z, band, template).

The ``"bcnz2"`` set (the default). Continuum SEDs are BC03 stellar populations from bagpipes
(``simulate.ssp``, stellar light only, no nebular emission), built with the SFH shapes of
``simulate.population``:

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

The bcnz2 set is built from the same bagpipes BC03 grids the demo mock is simulated from, so on the
mock it knows the galaxies' SED family, which real templates never do for real galaxies. The
``"kcorrect"`` set is an SED family independent of the mock: the 5 templates of kcorrect v4
(Blanton & Roweis 2007, AJ 133, 734; ``kcorrect-default-v4.fits``, HDU 'FLUX', shipped in the
kcorrect PyPI package, BSD-3 licence), found by non-negative matrix factorisation of fits to SDSS
spectra and UV-to-near-IR galaxy photometry, on a basis of BC03 populations with dust and nebular
emission lines (their own mixtures, dust and lines, not the mock's). All 5 form one run (a galaxy is a non-negative combination of all of them, as kcorrect uses
them); there is no Calzetti grid (``ebv`` is NaN) and no separate line template. They are rebinned
(flux-conserving) onto the log grid of ``simulate.photometry`` (R = 1000) over 601-50000 A rest,
and the IGM is applied as for bcnz2.

Sets are chosen by name (``TEMPLATE_SETS``; ``SetInfo`` holds each one's version and rest-frame
range). Fluxes are photon-counting AB means through ``simulate.photometry.BandPhotometry``, in
arbitrary but consistent units per template (the fit normalises them).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np

from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write, cache_dir
from deepz_core.sed import histories as pop
from deepz_core.sed.bands import get_band
from deepz_core.sed.photometry import BandPhotometry
from deepz_core.sed.ssp import LAMBDA_MAX, LAMBDA_MIN, R_GRID, SSPLibrary, load_library

TEMPLATE_SET_VERSION = "bcnz2-like-v1"  # bump when any spectrum below changes
KCORRECT_VERSION = "kcorrect-default-v4-r1000"  # bump when the kcorrect resampling changes
KCORRECT_FILE = ("data", "templates", "kcorrect-default-v4.fits")  # inside the kcorrect package
KCORRECT_RANGE = (601.0, 50000.0)  # rest [A]: inside the file's 600-3.2e6 A, past Euclid H
DEFAULT_SET = "bcnz2"
LYMAN_LIMIT = 912.0  # rest [A]: blueward of it a galaxy's light is absorbed (IGM, own HI)
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
_LINES_AT = {
    "OII": 3727.4,
    "Hb": 4861.3,
    "OIII4959": 4958.9,
    "OIII5007": 5006.8,
    "NII6548": 6548.1,
    "Ha": 6562.8,
    "NII6584": 6583.5,
    "SII6717": 6716.4,
    "SII6731": 6730.8,
}
LINE_RATIOS: dict[str, dict[str, float]] = {
    "lines_low": {
        "OII": 1.0,
        "Hb": 0.61,
        "OIII4959": 0.12,
        "OIII5007": 0.36,
        "NII6548": 0.18,
        "Ha": 1.77,
        "NII6584": 0.53,
        "SII6717": 0.30,
        "SII6731": 0.22,
    },
    "lines_high": {
        "OII": 1.0,
        "Hb": 0.80,
        "OIII4959": 0.67,
        "OIII5007": 2.0,
        "NII6548": 0.02,
        "Ha": 2.29,
        "NII6584": 0.07,
        "SII6717": 0.12,
        "SII6731": 0.09,
    },
}


@dataclass(frozen=True)
class SetInfo:
    """A template set without its spectra: ``version`` (starts with ``name``, so the cache keys
    built from it name the set), the rest-frame range [A] its spectra cover, a one-line summary,
    and ``fit_cost``: the template fit's wall seconds per galaxy and redshift of its grid with two
    worker processes on a 2-core CPU (measured, docs/benchmarks.md "The template fit's time")."""

    name: str
    version: str
    lambda_min: float
    lambda_max: float
    description: str
    fit_cost: float

    def __post_init__(self) -> None:
        if not self.version.startswith(self.name):
            raise ConfigError(
                f"version must start with the set name {self.name!r}, got {self.version!r}"
            )
        if not 0 < self.lambda_min < self.lambda_max:
            raise ConfigError(
                f"lambda_min/lambda_max must satisfy 0 < min < max, got "
                f"{self.lambda_min}, {self.lambda_max}"
            )

    def check_bands_coverable(self, bands: Sequence[str], z_max: float) -> None:
        """ConfigError (naming the band, its range and a way out) unless every band's flux is known
        at z = 0 .. z_max: its red end inside the spectra at z = 0, and its blue end at z_max
        inside them or blueward of the Lyman limit, where the IGM and the galaxy's own neutral
        gas absorb (nearly) everything and the spectra count as dark (``BandPhotometry`` adds 0
        there). The second demanded 900 A rest of lsst_u's 3053 A at z = 3.5 (z <= 2.39)
        although the flux there is absorbed: a set that starts at or below the limit now covers
        any band blueward."""
        for name in bands:
            band = get_band(name)
            lo, hi = float(band.wavelength[0]), float(band.wavelength[-1])
            if not self.covers(lo, hi, z_max):
                raise ConfigError(
                    f"band {name!r} ({lo:.0f}-{hi:.0f} A) is outside the template wavelength range "
                    f"{self.lambda_min:.0f}-{self.lambda_max:.0f} A (rest, up to z = {z_max}) of "
                    f"template set {self.name!r}: {self._way_out(lo, hi, z_max)}"
                )

    def _way_out(self, lo: float, hi: float, z_max: float) -> str:
        """What would fit a band [lo, hi] A observed: a set that covers it, else the z range this
        set covers it over (blue end), else leaving the band out."""
        others = [s.name for s in SETS.values() if s.name != self.name and s.covers(lo, hi, z_max)]
        ways = [f"template set {o!r} covers it" for o in others]
        if hi <= self.lambda_max:  # only the blue end is short
            ways.append(f"this set covers it up to z = {lo / self.lambda_min - 1.0:.2f}")
        ways.append("or leave the band out of the catalogue")
        return "; ".join(ways)

    def covers(self, lo: float, hi: float, z_max: float) -> bool:
        """Whether a band [lo, hi] A observed is covered at z = 0 .. z_max (the check above)."""
        dark = self.lambda_min <= LYMAN_LIMIT
        return hi <= self.lambda_max and (dark or lo / (1.0 + z_max) >= self.lambda_min)


SETS: dict[str, SetInfo] = {
    "bcnz2": SetInfo(
        "bcnz2",
        TEMPLATE_SET_VERSION,
        LAMBDA_MIN,
        LAMBDA_MAX,
        "BCNZ2-like: 8 BC03 continua x 5 Calzetti E(B-V) values (40 templates) with IGM, "
        "plus 2 emission-line templates (the demo mock's own SED family)",
        7e-6,
    ),
    "kcorrect": SetInfo(
        "kcorrect",
        KCORRECT_VERSION,
        *KCORRECT_RANGE,
        "kcorrect v4: 5 NMF templates with dust and lines built in (Blanton & "
        "Roweis 2007), fitted as one non-negative combination; independent of the mock",
        1.5e-6,
    ),
}
TEMPLATE_SETS = tuple(SETS)


def set_info(name: str, arg: str = "template_set") -> SetInfo:
    """The ``SetInfo`` of set ``name``; ConfigError naming ``arg`` for an unknown name."""
    if not isinstance(name, str) or name not in SETS:
        raise ConfigError(f"{arg} must be one of {list(TEMPLATE_SETS)}, got {name!r}")
    return SETS[name]


@dataclass(frozen=True, eq=False)
class TemplateSet:
    """Rest-frame template spectra ``spectra`` (T, L) on ``wavelength`` (L,) [A], f_lambda units.

    ``names`` (T,), ``ebv`` (T,) Calzetti E(B-V) (NaN where a template has no Calzetti screen: line
    templates, kcorrect's), ``is_line`` (T,), ``runs`` (R, T_r) template indices fitted together.
    """

    info: SetInfo
    wavelength: np.ndarray
    spectra: np.ndarray
    names: tuple[str, ...]
    ebv: np.ndarray
    is_line: np.ndarray
    runs: np.ndarray

    def __post_init__(self) -> None:
        t = len(self.names)
        if self.spectra.shape != (t, len(self.wavelength)) or self.ebv.shape != (t,):
            raise ConfigError(
                f"template set {self.info.name!r}: spectra {self.spectra.shape}, "
                f"ebv {self.ebv.shape} do not match {t} names"
            )
        if self.runs.ndim != 2 or self.runs.min() < 0 or self.runs.max() >= t:
            raise ConfigError(
                f"template set {self.info.name!r}: runs must be (R, T_r) indices "
                f"below {t}, got {self.runs.tolist()}"
            )

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def n_templates(self) -> int:
        return len(self.names)

    def run_members(self) -> np.ndarray:
        """(R, T_r) template indices of each run (the set's own grouping, see the module docstring)."""
        return self.runs


def _stellar_only(lib: SSPLibrary, mass: np.ndarray, log_z: float) -> np.ndarray:
    """(L,) BC03 stellar spectrum of mass fractions (A,), linear in log Z between grid nodes."""
    nodes = np.log10(lib.metallicity)
    i = int(np.clip(np.searchsorted(nodes, log_z) - 1, 0, len(nodes) - 2))
    f = float(np.clip((log_z - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0))
    return (1 - f) * mass @ lib.stellar[i] + f * mass @ lib.stellar[i + 1]


def _unit_at_5000(wavelength: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """spectra (T, L) each scaled to unit mean f_lambda at 5000-5500 A (rest)."""
    window = (wavelength > 5000) & (wavelength < 5500)
    return spectra / spectra[:, window].mean(axis=1, keepdims=True)


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
    return _unit_at_5000(lib.wavelength, np.asarray(out, dtype=np.float64))


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
def load_template_set(name: str = DEFAULT_SET) -> TemplateSet:
    """The template set ``name`` (one of ``TEMPLATE_SETS``; see the module docstring)."""
    info = set_info(name)
    return _kcorrect_set(info) if name == "kcorrect" else _bcnz2_set(info)


def _bcnz2_set(info: SetInfo) -> TemplateSet:
    """Continuum x E(B-V), then the line templates; one run per E(B-V) (its continua + all lines)."""
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
    ebv_a = np.array(ebv)
    lines = np.flatnonzero(np.isnan(ebv_a))
    runs = np.stack([np.concatenate([np.flatnonzero(ebv_a == e), lines]) for e in EBV_VALUES])
    return TemplateSet(
        info=info,
        wavelength=wav,
        spectra=flat,
        names=tuple(names),
        ebv=ebv_a,
        is_line=np.isnan(ebv_a),
        runs=runs,
    )


def kcorrect_file() -> Traversable:
    """The kcorrect v4 default-template FITS file inside the installed kcorrect package."""
    return importlib.resources.files("kcorrect").joinpath(*KCORRECT_FILE)


def read_kcorrect() -> tuple[np.ndarray, np.ndarray]:
    """Wavelength (L,) [A] and f_lambda (5, L) of kcorrect's default v4 templates (HDU 'FLUX')."""
    from astropy.io import fits

    path = kcorrect_file()
    try:
        with importlib.resources.as_file(path) as local, fits.open(local) as hdul:
            row = hdul["FLUX"].data[0]
            wave, flux = np.asarray(row["wave"], np.float64), np.asarray(row["flux"], np.float64)
    except (OSError, KeyError) as exc:
        raise ConfigError(f"template set 'kcorrect': cannot read {path} ({exc})") from exc
    return wave, flux


def rebin_mean(wave: np.ndarray, flux: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(T, G) mean of f_lambda (T, L) on ``wave`` (L,) over each pixel of the log grid (G,) (edges
    at geometric midpoints): integrals are kept, so emission lines keep their flux on a coarser grid."""
    edges = np.sqrt(grid[:-1] * grid[1:])
    edges = np.concatenate([[grid[0] ** 2 / edges[0]], edges, [grid[-1] ** 2 / edges[-1]]])
    if edges[0] < wave[0] or edges[-1] > wave[-1]:
        raise ConfigError(
            f"rebin_mean: grid {edges[0]:.1f}-{edges[-1]:.1f} A is outside the "
            f"spectra's {wave[0]:.1f}-{wave[-1]:.1f} A"
        )
    steps = 0.5 * (flux[:, 1:] + flux[:, :-1]) * np.diff(wave)  # (T, L - 1) trapezoids
    cum = np.concatenate([np.zeros((len(flux), 1)), np.cumsum(steps, axis=1)], axis=1)
    at = np.stack([np.interp(edges, wave, c) for c in cum])  # (T, G + 1)
    return np.diff(at, axis=1) / np.diff(edges)


def _kcorrect_set(info: SetInfo) -> TemplateSet:
    """kcorrect's 5 templates on the R_GRID log grid, unit mean at 5000-5500 A, all in one run."""
    wave, flux = read_kcorrect()
    n = int(np.floor(np.log(info.lambda_max / info.lambda_min) * R_GRID)) + 1
    grid = info.lambda_min * np.exp(np.arange(n) / R_GRID)
    spectra = _unit_at_5000(grid, rebin_mean(wave, flux, grid)).astype(np.float32)
    t = len(spectra)
    return TemplateSet(
        info=info,
        wavelength=grid,
        spectra=spectra,
        names=tuple(f"kcorrect_nmf{i}" for i in range(t)),
        ebv=np.full(t, np.nan),
        is_line=np.zeros(t, dtype=bool),
        runs=np.arange(t)[None, :],
    )


def _igm_model(wavelength: np.ndarray) -> Any:
    """bagpipes' IGM transmission model on ``wavelength`` (L,) [A] (its banner silenced)."""
    with contextlib.redirect_stdout(io.StringIO()):  # bagpipes prints banners on import
        from bagpipes.models.igm_model import igm
    return igm(wavelength)


def check_bands_coverable(bands: Sequence[str], z_max: float, name: str = DEFAULT_SET) -> None:
    """ConfigError unless every band lies within set ``name``'s range at z = 0 .. z_max."""
    set_info(name).check_bands_coverable(bands, z_max)


def compute_flux_table(tset: TemplateSet, bands: Sequence[str], z: np.ndarray) -> np.ndarray:
    """(Z, B, T) float32 model fluxes of every template through ``bands`` at redshifts z (Z,),
    with IGM attenuation at each z."""
    tset.info.check_bands_coverable(bands, float(np.max(z)))
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


def flux_table(bands: Sequence[str], z: np.ndarray, name: str = DEFAULT_SET) -> np.ndarray:
    """T(z, band, template) (Z, B, T) of set ``name``, cached on disk as .npz keyed by the set's
    version (which names the set) + bands + z grid."""
    info = set_info(name)
    z = np.asarray(z, dtype=np.float64)
    blob = json.dumps([info.version, list(bands), np.round(z, 9).tolist()])
    path = cache_dir() / f"templates_{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["flux"]
    tset = load_template_set(name)
    table = compute_flux_table(tset, bands, z)

    def write(tmp) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, flux=table, z=z, bands=np.array(bands), names=np.array(tset.names))

    atomic_write(path, write)
    return table
