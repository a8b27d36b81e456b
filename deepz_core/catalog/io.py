"""Read and write canonical catalogues as FITS, Parquet, CSV or HDF5 (docs/design.md, Catalogue):
whole files (``read_catalog``, ``write_catalog``) or row ranges in bounded-memory chunks for
survey-scale inference (``plan``, ``count_rows``, ``iter_rows``). The format is chosen by the
file extension; each lives in its own module of ``deepz_core.catalog.formats``.

Writing replaces files atomically; a stale exposures sidecar is removed when the catalogue has no
exposures. Every library error (OSError, astropy, pyarrow, h5py, pandas) becomes a CatalogError
naming the file. Chunks carry only the columns asked for and no exposures (prediction uses the
coadds).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from deepz_core.catalog.catalog import (
    EXPOSURE_COLUMNS,
    Catalog,
    catalog_from_columns,
    exposures_from_columns,
)
from deepz_core.catalog.formats import csv_file, fits_file, hdf5_file, parquet_file
from deepz_core.catalog.formats.common import Range, Tables, Wanted, check_file, library_errors
from deepz_core.catalog.validation import validate
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import atomic_write

FORMATS: dict[str, ModuleType] = {
    "fits": fits_file,
    "parquet": parquet_file,
    "csv": csv_file,
    "hdf5": hdf5_file,
}
_EXTENSIONS = {
    "fits": ".fits.gz .fit.gz .fits .fit .fz",
    "parquet": ".parquet .pq",
    "csv": ".csv",
    "hdf5": ".h5 .hdf5 .hdf",
}
SUFFIXES = {s: f for f, ext in _EXTENSIONS.items() for s in ext.split()}
SIDECAR_FORMATS = ("csv", "parquet")


def _split_suffix(path: Path) -> tuple[str, str]:
    """(stem, suffix) with the catalogue suffix matched case-insensitively (longest first)."""
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    known = " ".join(SUFFIXES)
    raise CatalogError(f"{path}: unknown catalogue file extension (expected one of {known})")


def catalog_format(path: Path | str) -> str:
    """'fits', 'parquet', 'csv' or 'hdf5' from the file extension."""
    return SUFFIXES[_split_suffix(Path(path))[1].lower()]


def exposures_sidecar(path: Path | str) -> Path:
    """Where the exposures of a CSV/Parquet catalogue live: ``<stem>.exposures.<ext>``."""
    path = Path(path)
    stem, suffix = _split_suffix(path)
    return path.with_name(f"{stem}.exposures{suffix}")


def read_tables(path: Path | str, names: tuple[str, ...] = ("galaxies", "exposures")) -> Tables:
    """Raw tables of any catalogue file, canonical or not: ``{name: (columns, meta)}`` (the first
    name is required). Raises CatalogError naming the file when it is unreadable, truncated or of
    another format than its extension says."""
    path = Path(path)
    fmt = catalog_format(path)
    check_file(path, fmt)
    with library_errors(path, f"read as {fmt.upper()}"):
        tables = FORMATS[fmt].read(path, names)
    if names[0] not in tables:
        raise CatalogError(f"{path}: no table found (expected '{names[0]}')")
    return tables


def read_catalog(path: Path | str, exposures_path: Path | str | None = None) -> Catalog:
    """Read and ``validate`` a canonical catalogue; exposures come from ``exposures_path``, else
    the same FITS/HDF5 file, else the ``<stem>.exposures.<ext>`` sidecar if it exists."""
    path = Path(path)
    tables = read_tables(path, ("galaxies", "exposures"))
    exp_path = None if exposures_path is None else Path(exposures_path)
    if exp_path is None and catalog_format(path) in SIDECAR_FORMATS:
        exp_path = exposures_sidecar(path) if exposures_sidecar(path).is_file() else None
    if exp_path is not None:
        tables["exposures"] = read_tables(exp_path, ("exposures",))["exposures"]
    exp_source = str(exp_path or path)
    with library_errors(path, "parse"):
        exposures = None
        if "exposures" in tables:
            exposures = exposures_from_columns(tables["exposures"][0], exp_source)
        cat = catalog_from_columns(*tables["galaxies"], str(path), exposures)
    return validate(cat, str(path), exp_source)


def write_catalog(cat: Catalog, path: Path | str) -> Path:
    """Validate and write ``cat`` atomically in the format named by the extension; returns path.

    CSV/Parquet exposures go to ``exposures_sidecar(path)`` (removed if ``cat`` has none).
    """
    path = Path(path)
    fmt = catalog_format(path)
    validate(cat, str(path))
    writer = FORMATS[fmt].write
    galaxies = ("galaxies", cat.columns(), {"FLUXZP": cat.fluxzp, **cat.meta})
    exp = cat.exposures
    exposures = None
    if exp is not None:
        exposures = ("exposures", {c: getattr(exp, c) for c in EXPOSURE_COLUMNS}, {})
    if fmt in SIDECAR_FORMATS:
        multi = [k for k, v in cat.extra.items() if v.ndim != 1]
        if multi:
            raise CatalogError(f"{path}: extra column '{multi[0]}' is not 1-D; use FITS or HDF5")
        side = exposures_sidecar(path)
        with library_errors(side, f"write {fmt.upper()}"):
            if exposures is None:
                side.unlink(missing_ok=True)
            else:
                atomic_write(side, lambda tmp: writer(tmp, [exposures]))
        tables = [galaxies]
    else:
        tables = [galaxies] + ([exposures] if exposures is not None else [])
    with library_errors(path, f"write {fmt.upper()}"):
        atomic_write(path, lambda tmp: writer(tmp, tables))
    return path


# ---------------------------------------------------------------- row ranges in chunks


def count_rows(path: Path | str) -> int:
    """Galaxies in a catalogue without reading its columns (gzipped FITS: read whole)."""
    path = Path(path)
    fmt = catalog_format(path)
    check_file(path, fmt)
    with library_errors(path, f"read as {fmt.upper()}"):
        return FORMATS[fmt].count_rows(path)


def plan(path: Path | str, chunk_size: int) -> list[Range]:
    """Partitions of the catalogue as row ranges [start, stop) of at most ``chunk_size`` rows
    (Parquet: along its row groups, ``parquet_file.partitions``)."""
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    path = Path(path)
    fmt = catalog_format(path)
    check_file(path, fmt)
    if fmt == "parquet":
        with library_errors(path, "read as PARQUET"):
            return parquet_file.partitions(path, chunk_size)
    n = count_rows(path)
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def plan_warning(path: Path | str, chunk_size: int) -> str | None:
    """Advice about a slow ``plan`` (Parquet row groups larger than ``chunk_size``), else None."""
    path = Path(path)
    if catalog_format(path) != "parquet":
        return None
    with library_errors(path, "read as PARQUET"):
        return parquet_file.split_warning(path, chunk_size)


def iter_rows(
    path: Path | str, rows: Range, chunk_size: int, columns: Wanted = None
) -> Iterator[Catalog]:
    """Validated catalogues of at most ``chunk_size`` galaxies covering rows [start, stop) of the
    file, with only ``columns`` (those the file has) when given."""
    path = Path(path)
    fmt = catalog_format(path)
    check_file(path, fmt)
    chunks = FORMATS[fmt].iter_rows(path, rows, chunk_size, columns)
    while True:
        with library_errors(path, f"read as {fmt.upper()}"):  # a file damaged inside its data
            chunk = next(chunks, None)
        if chunk is None:
            return
        cols, meta, source = chunk
        with library_errors(path, "parse"):
            cat = catalog_from_columns(cols, meta, source)
        yield validate(cat, source)
