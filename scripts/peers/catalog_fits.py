"""Read, subset and write deepz-format FITS catalogues with astropy only (no deepz import).

deepz's canonical layout (README "Catalogue format"): table HDU ``GALAXIES`` (else the first
table HDU) with ``ref_id`` (int64), ``flux_<band>``, ``flux_error_<band>``, optional ``zspec``
(NaN when unknown) and ``mag``; header ``FLUXZP`` (AB zero-point, 23.9 = microJansky when absent);
optional table HDU ``EXPOSURES`` (``ref_id``, ``band``, ``exp_num``, ``flux``, ``flux_error``).
Both venvs of the benchmark (deepz's and the peers') can use this module.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

DEFAULT_FLUXZP = 23.9  # microJansky
FLUX, FLUX_ERR = "flux_", "flux_error_"


@dataclass(frozen=True)
class FitsCatalog:
    """A deepz FITS catalogue as HDUs: galaxies (N rows) and optional exposures (M rows)."""

    galaxies: fits.BinTableHDU
    exposures: fits.BinTableHDU | None

    @property
    def bands(self) -> list[str]:
        """Band names in column order, from the ``flux_<band>`` columns."""
        return bands_of(self.galaxies.columns.names)

    @property
    def fluxzp(self) -> float:
        """AB zero-point of the fluxes: mag = FLUXZP - 2.5 log10(flux)."""
        return float(self.galaxies.header.get("FLUXZP", DEFAULT_FLUXZP))

    def column(self, name: str) -> NDArray:
        """(N,) float64 copy of a galaxies column; KeyError naming the column when absent."""
        if name not in self.galaxies.columns.names:
            raise KeyError(
                f"column {name!r} not in the catalogue (has {self.galaxies.columns.names[:6]}...)"
            )
        return np.asarray(self.galaxies.data[name], dtype=np.float64)

    def fluxes(self) -> tuple[NDArray, NDArray]:
        """(N, B) fluxes and (N, B) flux errors in catalogue units, bands in ``self.bands`` order."""
        flux = np.column_stack([self.column(FLUX + b) for b in self.bands])
        err = np.column_stack([self.column(FLUX_ERR + b) for b in self.bands])
        return flux, err


def bands_of(colnames: list[str]) -> list[str]:
    """Bands from ``flux_<band>`` column names (``flux_error_*`` excluded), in column order."""
    return [c[len(FLUX) :] for c in colnames if c.startswith(FLUX) and not c.startswith(FLUX_ERR)]


def _table_hdu(hdul: fits.HDUList, name: str) -> fits.BinTableHDU | None:
    """The table HDU called ``name``, else None."""
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU) and hdu.name == name:
            return hdu
    return None


def read_catalog(path: Path | str) -> FitsCatalog:
    """Load a deepz FITS catalogue into memory (HDU GALAXIES else the first table; EXPOSURES)."""
    with fits.open(path, memmap=False) as hdul:
        gal = _table_hdu(hdul, "GALAXIES")
        if gal is None:
            tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
            if not tables:
                raise ValueError(f"{path}: no table HDU (a deepz catalogue has HDU GALAXIES)")
            gal = tables[0]
        exp = _table_hdu(hdul, "EXPOSURES")
        gal = fits.BinTableHDU(data=gal.data.copy(), header=gal.header.copy(), name="GALAXIES")
        if exp is not None:
            exp = fits.BinTableHDU(data=exp.data.copy(), header=exp.header.copy(), name="EXPOSURES")
    cat = FitsCatalog(gal, exp)
    if not cat.bands:
        raise ValueError(f"{path}: no flux_<band> columns (columns: {gal.columns.names[:8]})")
    return cat


def subset(cat: FitsCatalog, rows: NDArray) -> FitsCatalog:
    """The galaxies at integer ``rows`` (K,) in that order, with their exposures; header kept."""
    gal = fits.BinTableHDU(
        data=cat.galaxies.data[rows], header=cat.galaxies.header.copy(), name="GALAXIES"
    )
    exp = None
    if cat.exposures is not None:
        keep = np.isin(cat.exposures.data["ref_id"], gal.data["ref_id"])
        exp = fits.BinTableHDU(
            data=cat.exposures.data[keep], header=cat.exposures.header.copy(), name="EXPOSURES"
        )
    return FitsCatalog(gal, exp)


def _publish(tmp: str, path: Path) -> None:
    """Give a temporary file the usual permissions (0666 less the umask) and rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_catalog(cat: FitsCatalog, path: Path | str) -> None:
    """Write atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdus = [fits.PrimaryHDU(), cat.galaxies] + (
        [cat.exposures] if cat.exposures is not None else []
    )
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
        _publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_table(
    columns: dict[str, NDArray], path: Path | str, header: dict[str, object] | None = None
) -> None:
    """Write a flat table of (N,) columns as one FITS table HDU ``PREDICTIONS``, atomically."""
    cols = [
        fits.Column(name=k, array=np.asarray(v), format=_fits_format(np.asarray(v)))
        for k, v in columns.items()
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="PREDICTIONS")
    for key, value in (header or {}).items():
        hdu.header[key] = value
    write_catalog(FitsCatalog(hdu, None), path)


def _fits_format(arr: NDArray) -> str:
    """FITS TFORM of a 1-D int or float column."""
    if arr.ndim != 1:
        raise ValueError(f"only 1-D columns are written, got shape {arr.shape}")
    return "K" if np.issubdtype(arr.dtype, np.integer) else "D"


def json_safe(obj: Any) -> Any:
    """A copy of nested dicts/lists with numpy scalars as Python numbers and NaN/inf as None
    (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write ``json_safe(obj)`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=1) + "\n")


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    _publish(tmp, path)
