"""Filter bands: transmission curves, effective wavelengths and the named band sets.

The PAUS narrow bands NB455..NB845 (Eriksen et al. 2020) are modelled as 130 A FWHM top-hats;
the COSMOS broad bands are the Capak curves shipped with ``kcorrect``; SDSS, LSST, Euclid and HSC
come from ``speclite``. Curves load lazily on first use and are cached.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from deepz_core.errors import ConfigError

NARROW_FWHM_A = 300.0  # a band with FWHM below this [A] counts as narrow
PAUS_CENTRES_A = tuple(range(4550, 8451, 100))  # 40 narrow-band centres [A]
PAUS_FWHM_A, PAUS_RAMP_A, PAUS_PEAK = 130.0, 15.0, 0.85  # top-hat model of a PAUS filter

_CAPAK_FILES = {
    "cfht_u": "capak_cfht_megaprime_sagem_u.dat",
    "subaru_B": "capak_subaru_suprimecam_B.dat",
    "subaru_V": "capak_subaru_suprimecam_V.dat",
    "subaru_r": "capak_subaru_suprimecam_r.dat",
    "subaru_i": "capak_subaru_suprimecam_i.dat",
    "subaru_z": "capak_subaru_suprimecam_z.dat",
}
# deepz name -> speclite filter name
_SPECLITE_NAMES = {
    **{f"sdss_{b}": f"sdss2010-{b}" for b in "ugriz"},
    **{f"lsst_{b}": f"lsst2016-{b}" for b in "ugrizy"},
    **{f"euclid_{b.lower()}": f"Euclid-{b}" for b in ("VIS", "Y", "J", "H")},
    **{f"hsc_{b}": f"hsc2017-{b}" for b in "grizy"},
}

PAUS_BANDS: tuple[str, ...] = tuple(f"NB{c // 10}" for c in PAUS_CENTRES_A)
BAND_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "paus": PAUS_BANDS,
        "cosmos": tuple(_CAPAK_FILES),
        "paus_cosmos": PAUS_BANDS + tuple(_CAPAK_FILES),
        "sdss": tuple(n for n in _SPECLITE_NAMES if n.startswith("sdss_")),
        "lsst": tuple(n for n in _SPECLITE_NAMES if n.startswith("lsst_")),
        "euclid": tuple(n for n in _SPECLITE_NAMES if n.startswith("euclid_")),
        "hsc": tuple(n for n in _SPECLITE_NAMES if n.startswith("hsc_")),
    }
)


@dataclass(frozen=True, eq=False)
class Band:
    """One filter: ``wavelength`` (L,) [A], strictly increasing; ``transmission`` (L,) in [0, 1].

    Transmission is the photon-counting response (fraction of photons detected) on that grid.
    """

    name: str
    wavelength: np.ndarray
    transmission: np.ndarray

    def __post_init__(self) -> None:
        wave = np.array(self.wavelength, dtype=np.float64)
        trans = np.array(self.transmission, dtype=np.float64)
        problem = None
        if wave.ndim != 1 or trans.shape != wave.shape:
            problem = (
                f"wavelength {wave.shape} and transmission {trans.shape} must be 1-D, same length"
            )
        elif wave.size < 2 or not np.all(np.isfinite(wave)) or not np.all(np.isfinite(trans)):
            problem = f"needs >= 2 finite samples, got {wave.size}"
        elif wave[0] <= 0 or not np.all(np.diff(wave) > 0):
            problem = "wavelength must be positive and strictly increasing"
        elif trans.min() < 0 or trans.max() > 1 or trans.max() == 0:
            problem = "transmission must lie in [0, 1] and not be all zero, got range "
            problem += f"[{trans.min():g}, {trans.max():g}]"
        if problem is not None:
            raise ConfigError(f"band {self.name!r}: {problem}")
        wave.flags.writeable = False
        trans.flags.writeable = False
        object.__setattr__(self, "wavelength", wave)
        object.__setattr__(self, "transmission", trans)

    @property
    def effective_wavelength(self) -> float:
        """Mean wavelength [A]: integral(lambda T dlambda) / integral(T dlambda).

        This definition reproduces the COSMOS (Capak) values to 0.01%; the pivot wavelength is
        ~0.2% lower and the photon-weighted one ~0.3% higher.
        """
        w, t = self.wavelength, self.transmission
        return float(np.trapezoid(w * t, w) / np.trapezoid(t, w))

    @property
    def fwhm(self) -> float:
        """Full width [A] between the outermost points at half the peak transmission."""
        w, t = self.wavelength, self.transmission
        above = np.flatnonzero(t >= 0.5 * t.max())
        lo, hi = above[0], above[-1]
        return _half_crossing(w, t, hi, hi + 1) - _half_crossing(w, t, lo, lo - 1)

    @property
    def is_narrow(self) -> bool:
        """True when the FWHM is below 300 A (PAUS-like narrow band)."""
        return self.fwhm < NARROW_FWHM_A


def _half_crossing(w: np.ndarray, t: np.ndarray, inside: int, outside: int) -> float:
    """Wavelength [A] where T crosses half its peak between samples ``inside`` and ``outside``."""
    if outside < 0 or outside >= w.size:
        return float(w[inside])
    half = 0.5 * t.max()
    frac = (t[inside] - half) / (t[inside] - t[outside])
    return float(w[inside] + frac * (w[outside] - w[inside]))


def paus_band(centre: float) -> Band:
    """PAUS narrow band at ``centre`` [A]: 130 A FWHM top-hat, 15 A ramps, peak 0.85, 1 A grid."""
    half_width = 0.5 * (PAUS_FWHM_A + PAUS_RAMP_A)  # where the ramp reaches zero [A]
    offset = np.arange(-half_width - 5.0, half_width + 5.0 + 0.5, 1.0)
    trans = PAUS_PEAK * np.clip((half_width - np.abs(offset)) / PAUS_RAMP_A, 0.0, 1.0)
    return Band(f"NB{int(round(centre)) // 10}", centre + offset, trans)


@functools.cache
def kcorrect_data() -> Path:
    """kcorrect's data folder, found without importing kcorrect (its import costs ~3 CPU s, which
    every page that reads a COSMOS band's curve used to pay)."""
    spec = importlib.util.find_spec("kcorrect")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the COSMOS filter curves need the kcorrect package (pip install kcorrect)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _capak_band(name: str) -> Band:
    """COSMOS broad band from the Capak curve in kcorrect (fixed-width table: | lambda | pass |)."""
    path = kcorrect_data() / "responses" / _CAPAK_FILES[name]
    rows = [line.strip().strip("|").split("|") for line in path.read_text().splitlines()]
    table = [row for row in rows if len(row) == 2]
    header = [h.strip() for h in table[0]]
    if header != ["lambda", "pass"]:
        raise ConfigError(f"band {name!r}: unexpected columns {header} in {path}")
    data = np.array(table[1:], dtype=np.float64)  # (L, 2)
    order = np.argsort(data[:, 0])
    return Band(name, data[order, 0], data[order, 1])


def _speclite_band(name: str) -> Band:
    """Band from a speclite filter curve (wavelength in Angstrom)."""
    import speclite.filters

    curve = speclite.filters.load_filter(_SPECLITE_NAMES[name])
    return Band(name, np.asarray(curve.wavelength), np.asarray(curve.response))


@functools.cache
def _loaders() -> dict[str, Callable[[], Band]]:
    """Registry: band name -> zero-argument loader."""
    loaders: dict[str, Callable[[], Band]] = {
        name: functools.partial(paus_band, float(c))
        for name, c in zip(PAUS_BANDS, PAUS_CENTRES_A, strict=True)
    }
    loaders.update({n: functools.partial(_capak_band, n) for n in _CAPAK_FILES})
    loaders.update({n: functools.partial(_speclite_band, n) for n in _SPECLITE_NAMES})
    return loaders


def band_names() -> tuple[str, ...]:
    """All known band names (PAUS, COSMOS, then speclite sets)."""
    return tuple(_loaders())


def has_band(name: str) -> bool:
    """True when ``name`` is a known band."""
    return name in _loaders()


@functools.cache
def get_band(name: str) -> Band:
    """The band called ``name`` (loaded once, then cached); ConfigError if unknown."""
    loader = _loaders().get(name)
    if loader is None:
        examples = ", ".join((*PAUS_BANDS[:2], "...", *BAND_SETS["cosmos"], "sdss_u", "lsst_y"))
        raise ConfigError(f"unknown band {name!r}; known bands include {examples}")
    return loader()


def band_set(name: str) -> tuple[str, ...]:
    """Ordered band names of the set ``name`` (e.g. ``paus_cosmos``: NB455..NB845 + 6 broad)."""
    if name not in BAND_SETS:
        raise ConfigError(f"unknown band set {name!r}; choose one of {', '.join(BAND_SETS)}")
    return BAND_SETS[name]
