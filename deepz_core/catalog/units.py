"""Flux units of catalogue columns: FITS ``TUNIT`` / astropy units (Jy, mJy, uJy, nJy, maggies,
nanomaggies) and the ``FLUXZP`` header, resolved to the one AB zero-point a catalogue's fluxes
share (mag = FLUXZP - 2.5 log10 flux; 23.9 = microJansky).

Format readers hand each column's unit over in the meta under ``UNITS_KEY`` ({column: unit}); the
catalogue takes its zero-point from the units of its flux and flux-error columns, checked against
a FLUXZP header when there is one (counts need one). Mixed or unknown units are refused, naming
the columns: a catalogue in nJy read as microJansky would be 7.5 magnitudes off without a word.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from deepz_core.errors import CatalogError

RELATIVE_UNITS = ("ct", "count", "counts", "adu", "dn", "electron", "electrons", "e-")
UNITS_KEY = "_units"  # meta key of the {column: unit string} a format reader found
ZP_TOLERANCE = 0.01  # mag: a FLUXZP header and a column unit agree within this
# AB zero-points of the usual flux units: AB = -2.5 log10(f_nu / 1 erg s^-1 cm^-2 Hz^-1) - 48.60,
# so 1 Jy -> 8.90 and 1 maggy (SDSS, 3631 Jy) -> 0
UNIT_ZEROPOINTS = {
    "Jy": 8.9,
    "mJy": 16.4,
    "uJy": 23.9,
    "nJy": 31.4,
    "maggy": 0.0,
    "nanomaggy": 22.5,
}
_SPELLINGS = {  # normalised spelling (lower case, no spaces) -> the names above
    "jy": "Jy",
    "jansky": "Jy",
    "mjy": "mJy",
    "millijansky": "mJy",
    "ujy": "uJy",
    "µjy": "uJy",
    "μjy": "uJy",
    "microjy": "uJy",
    "microjansky": "uJy",
    "njy": "nJy",
    "nanojy": "nJy",
    "nanojansky": "nJy",
    "maggy": "maggy",
    "maggies": "maggy",
    "mgy": "maggy",
    "nanomaggy": "nanomaggy",
    "nanomaggies": "nanomaggy",
    "nmgy": "nanomaggy",
}


def unit_zeropoint(unit: str) -> float | None:
    """AB zero-point of fluxes in ``unit`` ('nJy' -> 31.4, 'nanomaggy' -> 22.5, '1e-9 Jy' ->
    31.4, 'erg/s/cm2/Hz' -> -48.6); None when ``unit`` is not a flux-density unit."""
    text = unit.strip().replace(" ", "")
    mega = "MJ" in text or "Mj" in text  # megajansky (or an all-caps MJY): not mJy
    name = None if mega else _SPELLINGS.get(text.lower())
    if name is not None:
        return UNIT_ZEROPOINTS[name]
    import warnings

    import astropy.units as u

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            parsed = u.Unit(unit.strip(), parse_strict="silent")
    except (ValueError, TypeError):
        return None
    for base, zp in ((u.Jy, 8.9), (u.mgy, 0.0)):
        if isinstance(parsed, u.UnitBase) and parsed.is_equivalent(base):
            scale = float(parsed.to(base))
            if scale > 0:
                return round(zp - 2.5 * math.log10(scale), 9)
    return None


# Rubin Science Pipelines (DP0, DP1, the data releases) name fluxes <band>_<measurement>Flux and
# <band>_<measurement>FluxErr (u_cModelFlux, g_psfFlux, r_gaap1p0Flux, i_free_cModelFlux), always
# in nanojansky; a Parquet or CSV export of such a table carries no unit.
RUBIN_FLUX_COLUMN = re.compile(r"^[ugrizy]_[A-Za-z0-9_]*Flux(?:Err)?$")


def name_zeropoint(columns: Iterable[str]) -> float | None:
    """31.4 (nJy) when every column of ``columns`` is a Rubin pipelines flux column
    (``RUBIN_FLUX_COLUMN``: u_cModelFlux, u_cModelFluxErr...), whose unit is nanojansky by
    definition; None otherwise (no columns, or any other name)."""
    names = list(columns)
    if names and all(RUBIN_FLUX_COLUMN.match(c) for c in names):
        return UNIT_ZEROPOINTS["nJy"]
    return None


def zeropoint_unit(fluxzp: float) -> str | None:
    """The unit name of the zero-point ``fluxzp`` (23.9 -> 'uJy'), None for any other value: the
    ``TUNIT`` written on flux columns."""
    for name, zp in UNIT_ZEROPOINTS.items():
        if abs(fluxzp - zp) < 1e-9:
            return name
    return None


def column_units(meta: Mapping[str, Any]) -> dict[str, str]:
    """The {column: unit} a reader left in ``meta`` (empty when none)."""
    units = meta.get(UNITS_KEY) or {}
    return {str(k): str(v) for k, v in units.items() if str(v).strip()}


def is_relative(unit: str) -> bool:
    """Counts and other units without a flux scale (ct, ADU, DN, electrons): a FLUXZP header
    calibrates them."""
    return unit.strip().lower() in RELATIVE_UNITS


def resolve_fluxzp(
    units: Mapping[str, str],
    flux_columns: Iterable[str],
    header_zp: Any,
    source: str,
) -> float | None:
    """The zero-point of the fluxes in ``flux_columns``: from their units (all the same; columns
    without a unit share it) and the FLUXZP header ``header_zp`` (None when absent), which must
    agree; counts (``is_relative``) need the header. None when neither says. Raises CatalogError
    for mixed or unknown units, or a unit and a FLUXZP that disagree."""
    if header_zp is not None and (
        isinstance(header_zp, bool) or not isinstance(header_zp, int | float)
    ):
        raise CatalogError(f"{source}: header FLUXZP = {header_zp!r} is not a number")
    found: dict[str, list[str]] = {}
    for column in flux_columns:
        unit = units.get(column)
        if unit is None:
            continue
        zp = "relative" if is_relative(unit) else unit_zeropoint(unit)
        if zp is None:
            known = ", ".join(UNIT_ZEROPOINTS)
            raise CatalogError(
                f"{source}: column '{column}' has unit {unit!r}, not a flux density "
                f"(known: {known}, or any astropy unit of Jy); fix its TUNIT or remove it"
            )
        found.setdefault(zp if isinstance(zp, str) else f"{zp:.6g}", []).append(
            f"{column} [{unit}]"
        )
    if len(found) > 1:
        shown = "; ".join(", ".join(cols[:2]) for cols in found.values())
        raise CatalogError(f"{source}: flux columns in mixed units ({shown}); convert to one unit")
    if "relative" in found:
        if header_zp is None:
            raise CatalogError(
                f"{source}: {found['relative'][0]} holds counts, which give no AB zero-point: "
                "set the FLUXZP header (mag = FLUXZP - 2.5 log10 flux)"
            )
        return float(header_zp)
    zp = float(next(iter(found))) if found else None
    if header_zp is None:
        return zp
    if zp is not None and abs(zp - float(header_zp)) > ZP_TOLERANCE:
        column = next(iter(found.values()))[0]
        raise CatalogError(
            f"{source}: header FLUXZP = {header_zp} disagrees with the unit of {column} "
            f"(zero-point {zp:g}); remove one of them"
        )
    return float(header_zp)
