"""AB magnitudes as input: ``mag_<band>`` with ``magerr_<band>`` (or ``mag_err_<band>``, RAIL's
spelling) become the fluxes ``flux_<band>``, ``flux_error_<band>`` the networks read.

A detection m +- dm gives f = 10^(-0.4 (m - FLUXZP)) and sigma_f = 0.4 ln(10) f dm (first order).
A non-detection (m = ``nondetect``, 99 by default, or NaN/inf) gives f = 0 +- the flux of the
limiting magnitude / ``limit_nsigma``, the limit taken per row from ``maglim_<band>`` (or
``mag_lim_<band>``, ``limmag_<band>``) when finite, else from the configured limits; without a
limit, and for m = ``unobserved`` (-99: not observed, RAIL's convention), flux and error are NaN
and the photometric screen treats the band as unusable for that galaxy (deepz_core.catalog.screen).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deepz_core.catalog.columns import ERROR_PREFIX, FLUX_PREFIX, as_float64
from deepz_core.catalog.mapping import canonical_band
from deepz_core.errors import CatalogError, ConfigError

LOG = logging.getLogger("deepz")

_MAG = re.compile(r"^mag_(?P<band>.+)$", re.IGNORECASE)
_NOT_A_BAND = re.compile(r"^(err|lim|limit)(_|$)", re.IGNORECASE)
ERROR_FORMS = ("magerr_{}", "mag_err_{}", "mag_{}_err")
LIMIT_FORMS = ("maglim_{}", "mag_lim_{}", "limmag_{}", "mag_limit_{}")
LN10_04 = 0.4 * np.log(10.0)  # d flux / flux per magnitude


@dataclass(frozen=True)
class MagnitudeColumns:
    """The columns of one band given in magnitudes: magnitude, error, optional per-row limit."""

    band: str
    mag: str
    error: str
    limit: str | None = None


def band_name(text: str) -> str:
    """The deepz band named by the text after ``mag_``: a known filter case-insensitively
    ('I' -> 'i' if known), RAIL's ``u_lsst`` as deepz's ``lsst_u``, else ``text`` itself."""
    from deepz_core.sed.bands import has_band

    name = canonical_band(text)
    if has_band(name) or "_" not in text:
        return name
    head, tail = text.rsplit("_", 1)
    swapped = canonical_band(f"{tail}_{head}")
    return swapped if has_band(swapped) else name


def magnitude_columns(names: Sequence[str]) -> list[MagnitudeColumns]:
    """Bands given as ``mag_<band>`` with an error column, in column order (a ``mag_<x>`` without
    one, e.g. ``mag_true``, is not a band)."""
    present = set(names)
    out = []
    for name in names:
        match = _MAG.match(name)
        if match is None or _NOT_A_BAND.match(match["band"]):
            continue
        text = match["band"]
        error = next((f.format(text) for f in ERROR_FORMS if f.format(text) in present), None)
        if error is None:
            continue
        limit = next((f.format(text) for f in LIMIT_FORMS if f.format(text) in present), None)
        out.append(MagnitudeColumns(band_name(text), name, error, limit))
    return out


def resolve_limits(
    limits: Mapping[str, float], bands: Sequence[MagnitudeColumns], option: str = "--mag-limits"
) -> dict[str, float]:
    """``limits`` keyed by the magnitude column of the band each key names (``limit_band``);
    ConfigError for a key that names none of ``bands`` or several, listing them (``option``:
    how the message names the setting, e.g. RAIL's ``mag_limits``)."""
    return {limit_band(key, bands, option).mag: value for key, value in limits.items()}


def limit_band(
    key: str, bands: Sequence[MagnitudeColumns], option: str = "--mag-limits"
) -> MagnitudeColumns:
    """The band of ``bands`` a limit's key names, as band names are matched elsewhere: the band or
    its magnitude column exactly, else case-insensitively or in RAIL's spelling (``I``, ``u_lsst``),
    else by its filter letter after the last '_' when one band alone has it (``u`` -> ``lsst_u``).
    ConfigError, naming ``option`` and listing the bands and their columns, for a key that names
    none or several: the one rule of the CLI, the Python API and the RAIL stages."""
    tests = (
        lambda b: key in (b.band, b.mag),
        lambda b: key.lower() in (b.band.lower(), b.mag.lower()) or band_name(key) == b.band,
        lambda b: key.lower() == b.band.rsplit("_", 1)[-1].lower(),
    )
    for test in tests:
        found = [b for b in bands if test(b)]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(b.band for b in found)
            raise ConfigError(f"{option}: {key!r} could be any of the bands {names}: name one")
    known = ", ".join(b.band for b in bands) or "none"
    columns = ", ".join(b.mag for b in bands) or "none"
    raise ConfigError(
        f"{option}: {key!r} names no band given in magnitudes (mag_<band>); bands: {known} "
        f"(or their columns: {columns})"
    )


def fluxes_from_magnitudes(
    mag: np.ndarray,
    error: np.ndarray,
    fluxzp: float,
    limit: np.ndarray | float = np.nan,
    limit_nsigma: float = 1.0,
    nondetect: float = 99.0,
    unobserved: float = -99.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(flux, flux_error) (N,) in the unit of ``fluxzp`` from AB magnitudes and errors (N,).

    Detections: f = 10^(-0.4 (m - fluxzp)), sigma_f = 0.4 ln10 f dm (NaN where dm is not > 0).
    Non-detections (m == nondetect, NaN, inf): f = 0, sigma_f = 10^(-0.4 (limit - fluxzp)) /
    limit_nsigma where ``limit`` (N,) or scalar is finite, else NaN. m == unobserved: NaN."""
    mag = np.asarray(mag, dtype=np.float64)
    error = np.asarray(error, dtype=np.float64)
    limit = np.broadcast_to(np.asarray(limit, dtype=np.float64), mag.shape)
    missing = np.isclose(mag, unobserved, rtol=0, atol=1e-6)
    absent = ~missing & (~np.isfinite(mag) | np.isclose(mag, nondetect, rtol=0, atol=1e-6))
    detected = ~missing & ~absent
    with np.errstate(over="ignore", invalid="ignore"):
        flux = np.where(detected, 10.0 ** (-0.4 * (mag - fluxzp)), np.nan)
        flux_error = np.where(detected & (error > 0), LN10_04 * flux * error, np.nan)
        bound = absent & np.isfinite(limit)
        flux[bound] = 0.0
        flux_error[bound] = 10.0 ** (-0.4 * (limit[bound] - fluxzp)) / limit_nsigma
    return flux, flux_error


def convert_magnitudes(
    columns: Mapping[str, np.ndarray],
    fluxzp: float,
    limits: Mapping[str, float],
    limit_nsigma: float,
    nondetect: float,
    unobserved: float,
    source: str,
) -> dict[str, np.ndarray]:
    """``columns`` with every band given only in magnitudes (``magnitude_columns``) replaced by
    ``flux_<band>``/``flux_error_<band>`` in the unit of ``fluxzp``; ``limits`` by band name or
    magnitude column, or short names that ``limit_band`` resolves (ConfigError for a name that
    is no band). Bands that also have flux columns keep them (the magnitudes stay extras)."""
    out = dict(columns)
    bands = magnitude_columns(list(columns))
    by_column = resolve_limits(limits, bands)
    lost = 0
    for band in bands:
        if FLUX_PREFIX + band.band in columns or ERROR_PREFIX + band.band in columns:
            continue
        mag = as_float64(columns[band.mag], band.mag, source)
        error = as_float64(columns[band.error], band.error, source)
        limit = np.full(mag.shape, by_column.get(band.mag, np.nan), float)
        if band.limit is not None:
            row_limit = as_float64(columns[band.limit], band.limit, source)
            limit = np.where(np.isfinite(row_limit), row_limit, limit)
        if mag.shape != error.shape:
            raise CatalogError(f"{source}: columns '{band.mag}' and '{band.error}' differ in shape")
        flux, flux_error = fluxes_from_magnitudes(
            mag, error, fluxzp, limit, limit_nsigma, nondetect, unobserved
        )
        observed = ~np.isclose(mag, unobserved, rtol=0, atol=1e-6)
        lost += int((observed & ~np.isfinite(flux)).sum())
        for name in (band.mag, band.error, band.limit):
            out.pop(name or "", None)
        out[FLUX_PREFIX + band.band] = flux
        out[ERROR_PREFIX + band.band] = flux_error
    if lost:
        _note_unlimited(bands, by_column, columns, source, nondetect)
    return out


PER_READ = {"per_read": True}  # a log record's extra: the same line for every chunk of a read
_SLICE = re.compile(r"\[\d+:\d+\]$")  # a chunk's row range after the file name


def _note_unlimited(
    bands: Sequence[MagnitudeColumns],
    limits: Mapping[str, float],
    columns: Mapping[str, np.ndarray],
    source: str,
    nondetect: float,
) -> None:
    """One warning when non-detections had no limiting magnitude (their band is unusable for
    those galaxies), naming every band given in magnitudes that has none (no configured limit,
    no limit column) and the setting that gives them: the same line for every chunk of a read
    (the file named without the chunk's rows, ``PER_READ``), which ``repeats_held_back`` shows
    once; the ``flag`` column marks the galaxies concerned."""
    converted = [
        b
        for b in bands
        if b.mag not in limits
        and FLUX_PREFIX + b.band not in columns
        and ERROR_PREFIX + b.band not in columns
    ]
    unlimited = [b.band for b in converted if b.limit is None]
    partly = [b.band for b in converted if b.limit is not None]
    where = (
        f"{len(unlimited)} band(s) without a limit ({few_names(unlimited)})" if unlimited else ""
    )
    if partly:
        where += "; " if where else ""
        where += f"rows whose maglim_<band> is not finite in {few_names(partly)}"
    LOG.warning(
        "%s: non-detections (magnitude %g or NaN) have no limiting magnitude in %s: that band "
        "is unusable for the galaxies not detected in it (flag BAND_MISSING); give the limits "
        "with --mag-limits BAND=MAG,... (mag_limits in Python and RAIL) or maglim_<band> columns",
        _SLICE.sub("", source),
        nondetect,
        where,
        extra=PER_READ,
    )


def few_names(names: Sequence[str], shown: int = 8) -> str:
    """``"a, b, c"``, or the first ``shown`` and ``"... (N more)"``."""
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head}, ... ({len(names) - shown} more)"
