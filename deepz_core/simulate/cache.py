"""Simulations by kind, and a disk cache keyed by everything that determines the result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from deepz_core.catalog.catalog import Catalog
from deepz_core.errors import ConfigError
from deepz_core.files import cache_dir
from deepz_core.sed.bands import band_set
from deepz_core.simulate.families import (
    DEFAULT_SED_FAMILY,
    FAMILY_VERSIONS,
    check_family_for_kind,
)

KINDS = ("sps", "paus-mock", "templates", "lsst-deep")
DEFAULT_BAND_SETS = {"lsst-deep": "lsst"}  # band set of a kind when none is given, else paus_cosmos
CACHE_VERSION = 1  # bump when a simulator's output changes for the same arguments
DEMO = {"kind": "paus-mock", "n": 10_000, "bands": "paus_cosmos", "seed": 42}


def simulate(
    kind: str,
    n: int,
    bands: Sequence[str] | str | None = None,
    seed: int = 0,
    config: object = None,
    sed_family: str = DEFAULT_SED_FAMILY,
) -> Catalog:
    """Run simulator ``kind`` ('sps' pretraining prior, 'paus-mock' observed mock, 'templates',
    the template-based pretraining set of E20 Sec. 3.3, or 'lsst-deep', the deep broad-band mock)
    for ``n`` galaxies in ``bands`` (band names or a band-set name; default the kind's own set:
    lsst for lsst-deep, else paus_cosmos). Same seed, same catalogue. ``sed_family`` chooses the
    paus-mock's spectra: 'sps' (default) or 'kcorrect' (``simulate.families``); other kinds
    have only 'sps' (ConfigError naming sed_family otherwise).

    >>> import deepz_core as dz
    >>> cat = dz.simulate_catalog("lsst-deep", 200, seed=1)
    >>> cat.bands
    ('lsst_u', 'lsst_g', 'lsst_r', 'lsst_i', 'lsst_z', 'lsst_y')
    """
    sed_family = check_family_for_kind(kind, sed_family)
    if bands is None or isinstance(bands, str):
        from deepz_core.sed.bands import band_set

        bands = band_set(bands or DEFAULT_BAND_SETS.get(kind, "paus_cosmos"))
    if kind == "sps":
        from deepz_core.simulate.sps import simulate_sps

        return simulate_sps(n, bands, seed, config)
    if kind == "paus-mock":
        from deepz_core.simulate.mock import simulate_mock

        return simulate_mock(n, bands, seed, config, sed_family)
    if kind == "templates":
        from deepz_core.simulate.templates import simulate_templates

        return simulate_templates(n, bands, seed, config)
    if kind == "lsst-deep":
        from deepz_core.simulate.deep import simulate_deep

        return simulate_deep(n, bands, seed, config)
    raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")


def _key(
    kind: str, n: int, bands: Sequence[str], seed: int, config: object, sed_family: str
) -> str:
    """16 hex digits of a hash of everything that determines a simulation; the SED family and its
    version enter only when not the default, so caches made before there were families stay valid."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None
    parts: list[object] = [CACHE_VERSION, kind, n, list(bands), seed, cfg]
    if sed_family != DEFAULT_SED_FAMILY:
        parts.append([sed_family, FAMILY_VERSIONS[sed_family]])
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_simulation_path(
    kind: str,
    n: int,
    bands: Sequence[str],
    seed: int,
    config: object = None,
    sed_family: str = DEFAULT_SED_FAMILY,
) -> Path:
    """Where ``cached_simulation`` keeps this simulation (its name is a hash of everything that
    determines it, and names a non-default SED family); nothing is simulated here."""
    sed_family = check_family_for_kind(kind, sed_family)
    stem = kind if sed_family == DEFAULT_SED_FAMILY else f"{kind}-{sed_family}"
    key = _key(kind, n, bands, seed, config, sed_family)
    return cache_dir() / "sims" / f"{stem}_n{n}_s{seed}_{key}.fits"


def cached_simulation(
    kind: str,
    n: int,
    bands: Sequence[str],
    seed: int,
    config: object = None,
    sed_family: str = DEFAULT_SED_FAMILY,
) -> Path:
    """Path of a FITS file holding this simulation, simulating and writing it on first use."""
    from deepz_core.catalog.io import write_catalog

    path = cached_simulation_path(kind, n, bands, seed, config, sed_family)
    if not path.exists():
        # overwrite: a concurrent run may have written the same galaxies (the key fixes them)
        write_catalog(simulate(kind, n, bands, seed, config, sed_family), path, overwrite=True)
    return path


def demo_catalog_path() -> Path:
    """The demo catalogue: a 10,000-galaxy PAUS-COSMOS-like mock, generated once then cached."""
    return cached_simulation(DEMO["kind"], DEMO["n"], band_set(DEMO["bands"]), DEMO["seed"])
