"""Canonical named columns -> ``Catalog`` / ``Exposures``: the one place file readers, the chunked
reader and the column-mapping step turn plain (N,) arrays into validated catalogue objects
(docs/design.md, Catalogue)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deepz_core.catalog import (
    DEFAULT_FLUXZP,
    ERROR_PREFIX,
    EXPOSURE_COLUMNS,
    FLUX_PREFIX,
    Catalog,
    Exposures,
    as_float64,
    as_int64,
    check_band_names,
    few,
    native_array,
)
from deepz_core.errors import CatalogError


def _column(columns: Mapping[str, np.ndarray], name: str, n: int, source: str) -> np.ndarray:
    """Float64 (n,) column ``name``; CatalogError if not numeric or not 1-D of length n."""
    values = as_float64(columns[name], name, source)
    if values.shape != (n,):
        raise CatalogError(f"{source}: column '{name}' has shape {values.shape}, expected ({n},)")
    return values


def discover_bands(names: list[str], source: str) -> tuple[str, ...]:
    """Bands from the ``flux_<band>`` columns in column order; each needs ``flux_error_<band>``."""
    fluxes = [c[len(FLUX_PREFIX) :] for c in names if c.startswith(FLUX_PREFIX)]
    fluxes = [b for b in fluxes if not b.startswith("error_")]
    errors = [c[len(ERROR_PREFIX) :] for c in names if c.startswith(ERROR_PREFIX)]
    if not fluxes and not errors:
        raise CatalogError(
            f"{source}: no bands: no 'flux_<band>'/'flux_error_<band>' columns "
            f"(columns: {few(names, 8)})"
        )
    for band in fluxes:
        if band not in errors:
            raise CatalogError(
                f"{source}: column 'flux_{band}' has no matching 'flux_error_{band}'"
            )
    for band in errors:
        if band not in fluxes:
            raise CatalogError(
                f"{source}: column 'flux_error_{band}' has no matching 'flux_{band}'"
            )
    try:
        check_band_names(tuple(fluxes))
    except CatalogError as err:
        raise CatalogError(f"{source}: {err}") from None
    return tuple(fluxes)


def catalog_from_columns(
    columns: Mapping[str, np.ndarray],
    meta: Mapping[str, Any] | None = None,
    source: str = "columns",
    exposures: Exposures | None = None,
) -> Catalog:
    """Catalog from named (N,) columns in file order and header ``meta`` (FLUXZP -> fluxzp)."""
    names = list(columns)
    if "ref_id" not in names:
        near = [c for c in names if c.lower() == "ref_id"]
        hint = f" (found {near[0]!r}; names are case-sensitive)" if near else ""
        raise CatalogError(f"{source}: missing required column 'ref_id'{hint}")
    bands = discover_bands(names, source)
    ref_id = as_int64(columns["ref_id"], "ref_id", source).reshape(-1)
    n = len(ref_id)
    fluxes = [_column(columns, FLUX_PREFIX + b, n, source) for b in bands]
    errors = [_column(columns, ERROR_PREFIX + b, n, source) for b in bands]
    opt = {k: _column(columns, k, n, source) for k in ("zspec", "mag") if k in columns}
    used = {"ref_id", "zspec", "mag"} | {p + b for b in bands for p in (FLUX_PREFIX, ERROR_PREFIX)}
    meta = {str(k).upper(): v for k, v in (meta or {}).items()}
    fluxzp = meta.pop("FLUXZP", DEFAULT_FLUXZP)
    if isinstance(fluxzp, bool) or not isinstance(fluxzp, int | float | np.number):
        raise CatalogError(f"{source}: header FLUXZP = {fluxzp!r} is not a number")
    try:
        return Catalog(
            ref_id=ref_id,
            bands=bands,
            flux=np.stack(fluxes, axis=1),  # (N, B)
            flux_error=np.stack(errors, axis=1),  # (N, B)
            zspec=opt.get("zspec"),
            mag=opt.get("mag"),
            fluxzp=float(fluxzp),
            exposures=exposures,
            extra={k: native_array(columns[k]) for k in names if k not in used},
            meta=meta,
        )
    except CatalogError as err:
        raise CatalogError(f"{source}: {err}") from None


def exposures_from_columns(columns: Mapping[str, np.ndarray], source: str) -> Exposures:
    """Exposures from (M,) columns ref_id, band, exp_num, flux, flux_error (others ignored)."""
    missing = [c for c in EXPOSURE_COLUMNS if c not in columns]
    if missing:
        raise CatalogError(f"{source}: exposures lack required column(s) {', '.join(missing)}")
    band = native_array(columns["band"])
    if band.dtype.kind not in "UiuO":
        raise CatalogError(f"{source}: exposures column 'band' holds {band.dtype}, not band names")
    return Exposures(
        ref_id=as_int64(columns["ref_id"], "ref_id", source),
        band=band.astype(str),
        exp_num=as_int64(columns["exp_num"], "exp_num", source),
        flux=as_float64(columns["flux"], "flux", source),
        flux_error=as_float64(columns["flux_error"], "flux_error", source),
    )
