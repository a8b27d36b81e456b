"""Read and write canonical catalogues as FITS, Parquet, CSV or HDF5 (docs/design.md, Catalogue):
whole files (``read_catalog``, ``write_catalog``) or row ranges in bounded-memory chunks for
survey-scale inference (``plan``, ``count_rows``, ``iter_rows``; ``read_columns``: a few
columns of every row, ``read_sample``: some row ranges). The format is chosen by the
file extension (a folder is a HATS catalogue, read only); each lives in its own module of
``deepz_core.catalog.formats``. Survey spellings (``objectId``, ``mag_<band>``...) and column
units are read through ``deepz_core.catalog.conventions``.

Writing replaces files atomically; a stale exposures sidecar is removed when the catalogue has no
exposures. Every library error (OSError, astropy, pyarrow, h5py, pandas) becomes a CatalogError
naming the file. Chunks carry only the columns asked for and no exposures (prediction uses the
coadds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

import numpy as np

from deepz_core.catalog.catalog import (
    ERROR_PREFIX,
    EXPOSURE_COLUMNS,
    FLUX_PREFIX,
    Catalog,
    catalog_from_columns,
    exposures_from_columns,
)
from deepz_core.catalog.conventions import InputConventions, canonical_columns
from deepz_core.catalog.formats import csv_file, fits_file, hats_dir, hdf5_file, parquet_file
from deepz_core.catalog.formats.common import Range, Tables, Wanted, check_file, library_errors
from deepz_core.catalog.units import UNITS_KEY, zeropoint_unit
from deepz_core.catalog.validation import check_not_magnitudes, validate
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import atomic_write, refuse_existing

FORMATS: dict[str, ModuleType] = {
    "fits": fits_file,
    "parquet": parquet_file,
    "csv": csv_file,
    "hdf5": hdf5_file,
    "hats": hats_dir,
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
    """'fits', 'parquet', 'csv' or 'hdf5' from the file extension; 'hats' for a HATS folder."""
    path = Path(path)
    if path.is_dir():
        if hats_dir.is_hats(path):
            return "hats"
        raise CatalogError(f"{path}: a folder, but not a HATS catalogue (no hats.properties)")
    return SUFFIXES[_split_suffix(path)[1].lower()]


def _check(path: Path, fmt: str) -> None:
    """The file's bytes match its extension (a HATS folder was recognised by its properties)."""
    if fmt != "hats":
        check_file(path, fmt)


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
    _check(path, fmt)
    with library_errors(path, f"read as {fmt.upper()}"):
        tables = FORMATS[fmt].read(path, names)
    if names[0] not in tables:
        raise CatalogError(f"{path}: no table found (expected '{names[0]}')")
    return tables


def read_catalog(
    path: Path | str,
    exposures_path: Path | str | None = None,
    conventions: InputConventions | None = None,
    measured_bands: bool = True,
    *,
    predicting: bool = False,
    with_exposures: bool = True,
) -> Catalog:
    """Read and ``validate`` a catalogue (``measured_bands``: refuse a band without any value,
    as training must; False for a catalogue a trained run predicts, which imputes it;
    ``predicting``: that, and a spec-z or mag out of range is unknown rather than an error, as
    ``validate`` says); exposures come from ``exposures_path``, else the same FITS/HDF5 file,
    else the ``<stem>.exposures.<ext>`` sidecar if it exists (none with ``with_exposures``
    False: the networks predict from the coadds, as a streamed prediction reads them). Survey
    spellings
    (``objectId``, ``mag_<band>``/``magerr_<band>``...) follow ``conventions`` (default:
    ``InputConventions()``); column units (TUNIT) set the flux zero-point. A flux column holding
    AB magnitudes is refused (``validation.check_not_magnitudes``).

    >>> import deepz_core as dz
    >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
    >>> path = dz.write_catalog(dz.simulate_catalog("paus-mock", 50, "sdss", seed=1), tmp / "m.csv")
    >>> dz.read_catalog(path).bands
    ('sdss_u', 'sdss_g', 'sdss_r', 'sdss_i', 'sdss_z')
    >>> _ = (tmp / "survey.csv").write_text("objectId,mag_i,magerr_i\\n11,22.5,0.1\\n12,99,99\\n")
    >>> dz.read_catalog(tmp / "survey.csv", conventions=dz.InputConventions(mag_limits={"i": 25}))
    Catalog(2 galaxies x 1 bands i; 0 with a spec-z; fluxzp 23.9; extra columns objectId)
    """
    path = Path(path)
    tables = read_tables(path, ("galaxies", "exposures"))
    exp_path = None if exposures_path is None else Path(exposures_path)
    if exp_path is None and catalog_format(path) in SIDECAR_FORMATS:
        exp_path = exposures_sidecar(path) if exposures_sidecar(path).is_file() else None
    if not with_exposures:
        tables.pop("exposures", None)
        exp_path = None
    if exp_path is not None:
        tables["exposures"] = read_tables(exp_path, ("exposures",))["exposures"]
    exp_source = str(exp_path or path)
    with library_errors(path, "parse"):
        exposures = None
        if "exposures" in tables:
            exposures = exposures_from_columns(tables["exposures"][0], exp_source)
        columns, meta = canonical_columns(*tables["galaxies"], str(path), conventions)
        cat = catalog_from_columns(columns, meta, str(path), exposures)
    cat = validate(cat, str(path), exp_source, measured_bands, predicting=predicting)
    check_not_magnitudes(cat, str(path), list(tables["galaxies"][0]))
    return cat


def write_catalog(
    cat: Catalog, path: Path | str, overwrite: bool = False, measured_bands: bool = True
) -> Path:
    """Validate and write ``cat`` atomically in the format named by the extension; returns path.

    CSV/Parquet exposures go to ``exposures_sidecar(path)`` (removed if ``cat`` has none). An
    existing file (or exposures sidecar) is an ``OutputExistsError`` unless ``overwrite``.
    ``measured_bands``: refuse a band without any value, as ``read_catalog`` does (False: a
    catalogue to predict, which imputes it).

    >>> import deepz_core as dz
    >>> cat = dz.simulate_catalog("paus-mock", 50, "sdss", seed=1)
    >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
    >>> out = tmp / "mock.fits"
    >>> dz.write_catalog(cat, out).name
    'mock.fits'
    >>> dz.write_catalog(cat, out)
    Traceback (most recent call last):
    ...
    deepz_core.errors.OutputExistsError: path '...mock.fits' is an existing file: pass overwrite=True to replace it
    >>> dz.write_catalog(cat, out, overwrite=True).name
    'mock.fits'
    """
    path = Path(path)
    fmt = catalog_format(path)
    if not overwrite:
        refuse_existing(path, "path")
        if fmt in SIDECAR_FORMATS:
            refuse_existing(exposures_sidecar(path), "path (its exposures sidecar)")
    validate(cat, str(path), measured_bands=measured_bands)
    writer = FORMATS[fmt].write
    galaxies = ("galaxies", cat.columns(), {"FLUXZP": cat.fluxzp, **cat.meta, **_units(cat)})
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


def _units(cat: Catalog) -> dict[str, dict[str, str]]:
    """``{UNITS_KEY: {column: unit}}``: the flux unit of FLUXZP on the flux and error columns
    (none for a zero-point that is no named unit), 'mag' on ``mag``."""
    unit = zeropoint_unit(cat.fluxzp)
    fluxes = [p + b for b in cat.bands for p in (FLUX_PREFIX, ERROR_PREFIX)] if unit else []
    units = {c: str(unit) for c in fluxes} | ({"mag": "mag"} if cat.mag is not None else {})
    return {UNITS_KEY: units}


# ---------------------------------------------------------------- row ranges in chunks


def count_rows(path: Path | str) -> int:
    """Galaxies in a catalogue without reading its columns (gzipped FITS: read whole)."""
    path = Path(path)
    fmt = catalog_format(path)
    _check(path, fmt)
    with library_errors(path, f"read as {fmt.upper()}"):
        return FORMATS[fmt].count_rows(path)


def column_names(path: Path | str) -> list[str]:
    """The galaxy table's column names, without reading its rows."""
    path = Path(path)
    fmt = catalog_format(path)
    _check(path, fmt)
    with library_errors(path, f"read as {fmt.upper()}"):
        return FORMATS[fmt].column_names(path)


ID_CHUNK = 1_000_000  # at most these rows of the columns read alone at once (``read_columns``)
SCAN_BYTES = 64 << 20  # bytes of columns read alone at once (``read_columns``)


def read_columns(path: Path | str, names: list[str]) -> Iterator[tuple[dict[str, np.ndarray], str]]:
    """The file columns ``names`` (those the file has) of every row, read alone in chunks of
    about SCAN_BYTES (at most ID_CHUNK rows) as (columns, chunk label 'file[start:stop]'): a few
    columns of a catalogue too large to read at once, for checks across its partitions. Nothing
    without such columns."""
    path = Path(path)
    fmt = catalog_format(path)
    _check(path, fmt)
    wanted = [n for n in names if n in column_names(path)]
    if not wanted:
        return
    rows = min(ID_CHUNK, max(1_000, SCAN_BYTES // (8 * len(wanted))))
    chunks = FORMATS[fmt].iter_rows(path, (0, count_rows(path)), rows, wanted)
    while True:
        with library_errors(path, f"read as {fmt.upper()}"):
            chunk = next(chunks, None)
        if chunk is None:
            return
        cols, _, source = chunk
        yield cols, source


def plan_partitions(path: Path | str, chunk_size: int) -> list[Range]:
    """Partitions of the catalogue as row ranges [start, stop) of at most ``chunk_size`` rows
    (Parquet: along its row groups, ``parquet_file.partitions``)."""
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    path = Path(path)
    fmt = catalog_format(path)
    _check(path, fmt)
    if fmt in ("parquet", "hats"):
        with library_errors(path, f"read as {fmt.upper()}"):
            return FORMATS[fmt].partitions(path, chunk_size)
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
    path: Path | str,
    rows: Range,
    chunk_size: int,
    columns: Wanted = None,
    conventions: InputConventions | None = None,
    csv_dtypes: Mapping[str, str] | None = None,
) -> Iterator[Catalog]:
    """Validated catalogues of at most ``chunk_size`` galaxies covering rows [start, stop) of the
    file, with only ``columns`` (those the file has) when given, read with ``conventions``, each
    validated as a catalogue a trained run predicts (``validate``'s ``predicting``): a band
    without values in every row of a chunk is no error (the chunk's rows are flagged as any
    other row without it, whatever the chunk size), nor is a spec-z code (unknown).
    ``csv_dtypes``: a CSV file's column types (``catalog.scan``), the same in every chunk."""
    path = Path(path)
    fmt = catalog_format(path)
    _check(path, fmt)
    if fmt == "csv" and csv_dtypes:
        chunks = csv_file.iter_rows(path, rows, chunk_size, columns, csv_dtypes)
    else:
        chunks = FORMATS[fmt].iter_rows(path, rows, chunk_size, columns)
    while True:
        with library_errors(path, f"read as {fmt.upper()}"):  # a file damaged inside its data
            chunk = next(chunks, None)
        if chunk is None:
            return
        cols, meta, source = chunk
        with library_errors(path, "parse"):
            cols, meta = canonical_columns(cols, meta, source, conventions)
            cat = catalog_from_columns(cols, meta, source)
        yield validate(cat, source, predicting=True)


def read_sample(
    path: Path | str,
    ranges: list[Range],
    columns: Wanted = None,
    conventions: InputConventions | None = None,
) -> Catalog:
    """The rows of ``ranges`` (sorted, disjoint) of the file, with only ``columns``, as one
    catalogue read and validated as ``iter_rows`` does (a catalogue a trained run predicts):
    e.g. the rows ``validation.judged_ranges`` names, which the streamed preflight judges. A CSV
    file is read in one pass over its text (``csv_file.read_ranges``), the ranges in one Parquet
    row group with one decoding of it (``sample_spans``)."""
    path = Path(path)
    fmt = catalog_format(path)
    if fmt == "csv" and len(ranges) > 1:
        _check(path, fmt)
        with library_errors(path, "read as CSV"):
            cols, meta, source = csv_file.read_ranges(path, ranges, columns)
        with library_errors(path, "parse"):
            cols, meta = canonical_columns(cols, meta, source, conventions)
            cat = catalog_from_columns(cols, meta, source)
        return validate(cat, source, predicting=True)
    parts = []
    for span in sample_spans(path, ranges):
        start, stop = span[0][0], span[-1][1]
        read = _joined(list(iter_rows(path, (start, stop), stop - start, columns, conventions)))
        rows = np.concatenate([np.arange(s - start, e - start) for s, e in span])
        parts.append(read if len(span) == 1 else read.select(rows))
    return _joined(parts)


def sample_spans(path: Path, ranges: list[Range]) -> list[list[Range]]:
    """``ranges`` in groups read at once: those starting in the same Parquet row group together
    (reading a range decodes its row group from its start), every other range alone."""
    if catalog_format(path) != "parquet" or len(ranges) < 2:
        return [[r] for r in ranges]
    with library_errors(path, "read as PARQUET"):
        bounds = np.cumsum([0, *parquet_file.row_groups(path)])
    groups = np.searchsorted(bounds, [s for s, _ in ranges], side="right")
    spans: list[list[Range]] = []
    for k, r in enumerate(ranges):
        if k and groups[k] == groups[k - 1]:
            spans[-1].append(r)
        else:
            spans.append([r])
    return spans


def _joined(parts: list[Catalog]) -> Catalog:
    """Catalogues of consecutive rows of one file (same bands) as one: ids, fluxes and errors
    (what a sample is judged on); a single one as it is."""
    if len(parts) == 1:
        return parts[0]
    return Catalog(
        ref_id=np.concatenate([c.ref_id for c in parts]),
        bands=parts[0].bands,
        flux=np.concatenate([c.flux for c in parts]),
        flux_error=np.concatenate([c.flux_error for c in parts]),
        fluxzp=parts[0].fluxzp,
    )
