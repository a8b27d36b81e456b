"""Read a catalogue in bounded-memory chunks for survey-scale inference (deepz_core.inference.stream).

A catalogue is cut into partitions (row ranges) and each partition is read in chunks of at most
``chunk_size`` rows: FITS tables memory-mapped and sliced, Parquet with ``ParquetFile.iter_batches``
(pages streamed, not whole row groups), HDF5 by h5py row slices, CSV with pandas ``chunksize``.
Only the columns a caller asks for are converted. Gzipped FITS cannot be sliced: it is read whole,
with a warning on the ``deepz`` logger. Exposures are not read: prediction uses the coadds only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from deepz_core.catalog.catalog import FLUX_PREFIX, Catalog, catalog_from_columns, few, native_array
from deepz_core.catalog.io import (
    _CSV_META,
    _check_file,
    _clean,
    _header_meta,
    _parse_meta_value,
    catalog_format,
    read_catalog,
)
from deepz_core.catalog.validation import validate
from deepz_core.errors import CatalogError, ConfigError

Range = tuple[int, int]
Columns = Collection[str] | None  # column names to read (None: all)
LOG = logging.getLogger("deepz")
_PARQUET_BUFFER = 1 << 20  # bytes: stream column pages instead of loading whole row groups


def _galaxy_hdu(hdul: Any) -> Any:
    tables = [h for h in hdul if h.is_image is False]
    hdu = next((h for h in tables if h.name.lower() == "galaxies"), None)
    return hdu or next((h for h in tables if h.name.lower() != "exposures"), None)


def _fits_gzipped(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _parquet_meta(path: Path) -> Any:
    """The footer of a Parquet file, parsed once per process and file version (a survey file's
    footer describes hundreds of row groups x columns: re-parsing it for every partition adds up)."""
    stat = path.stat()
    return _parquet_footer(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _parquet_footer(path: str, size: int, mtime_ns: int) -> Any:
    return pq.read_metadata(path)


def _parquet_groups(path: Path) -> list[int]:
    """Rows per row group of a Parquet file."""
    meta = _parquet_meta(path)
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def plan(path: Path | str, chunk_size: int) -> list[Range]:
    """Partitions of the catalogue as row ranges [start, stop) of at most ``chunk_size`` rows.

    Parquet: consecutive small row groups are merged up to ``chunk_size`` rows and a larger row
    group is split into ``chunk_size`` pieces from its start (a piece re-decodes the rows of its
    group before it, so row groups <= chunk size are fastest; a warning says so)."""
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    path = Path(path)
    fmt = catalog_format(path)
    _check_file(path, fmt)
    if fmt != "parquet":
        n = count_rows(path)
        return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    sizes = _parquet_groups(path)
    if max(sizes, default=0) > chunk_size:
        LOG.warning("%s: row groups of up to %d rows are split into partitions of %d rows; each "
                    "partition decodes its row group up to its start (rewrite the file with "
                    "row groups <= --chunk-size to avoid that)", path, max(sizes), chunk_size)  # fmt: skip
    ranges, start, stop = [], 0, 0
    for size in sizes:
        if stop > start and stop - start + size > chunk_size:
            ranges.append((start, stop))
            start = stop
        if size > chunk_size:  # split a big group: aligned pieces, the last one may be short
            ranges += [(s, min(s + chunk_size, stop + size)) for s in range(stop, stop + size, chunk_size)]  # fmt: skip
            start = stop = stop + size
            continue
        stop += size
    return ranges + ([(start, stop)] if stop > start else [])


def count_rows(path: Path | str) -> int:
    """Galaxies in a catalogue without reading its columns (gzipped FITS: read whole)."""
    path = Path(path)
    fmt = catalog_format(path)
    _check_file(path, fmt)
    if fmt == "parquet":
        return sum(_parquet_groups(path))
    if fmt == "fits" and not _fits_gzipped(path):
        from astropy.io import fits

        with fits.open(path, memmap=True) as hdul:
            hdu = _galaxy_hdu(hdul)
            if hdu is None:
                raise CatalogError(f"{path}: no table HDU")
            return int(hdu.header["NAXIS2"])
    if fmt == "csv":
        with open(path, encoding="utf-8") as fh:
            lines = sum(1 for line in fh if line.strip() and not line.startswith("#"))
        return max(lines - 1, 0)
    if fmt == "hdf5":
        with _hdf5_table(path) as (table, _):
            return _hdf5_len(table)
    return read_catalog(path).n_galaxies


def _to_catalog(cols: dict[str, np.ndarray], meta: dict[str, Any], source: str) -> Catalog:
    return validate(catalog_from_columns(cols, meta, source), source)


def _column(values: np.ndarray) -> np.ndarray:
    """Native numeric arrays as they are (no copy: the catalogue copies what it keeps); strings
    and foreign byte orders through catalog.native_array."""
    if values.dtype.kind in "fiub" and values.dtype.isnative:
        return values
    return native_array(values)


def _wanted(names: list[str], columns: Columns, source: Path) -> list[str]:
    """The file's columns among ``columns`` (all without); a file with none of the flux columns
    asked for fails here, listing its own columns (not just the few that matched)."""
    if columns is None:
        return names
    needed = sorted(c for c in columns if c.startswith(FLUX_PREFIX))
    if needed and not any(n in columns for n in names if n.startswith(FLUX_PREFIX)):
        raise CatalogError(f"{source}: none of the flux columns asked for ({few(needed, 4)}) is "
                           f"in the file; its columns: {few(names, 8)}")  # fmt: skip
    return [n for n in names if n in columns]


def iter_rows(path: Path | str, rows: Range, chunk_size: int, columns: Columns = None) -> Iterator[Catalog]:  # fmt: skip
    """Catalogs of at most ``chunk_size`` galaxies covering rows [start, stop) of the file, with
    only ``columns`` (those the file has) when given."""
    path = Path(path)
    fmt = catalog_format(path)
    if fmt == "parquet":
        yield from _iter_parquet(path, rows, chunk_size, columns)
    elif fmt == "hdf5":
        yield from _iter_hdf5(path, rows, chunk_size, columns)
    elif fmt == "fits" and not _fits_gzipped(path):
        yield from _iter_fits(path, rows, chunk_size, columns)
    elif fmt == "fits":
        cat = _read_whole(path)
        for s in range(rows[0], rows[1], chunk_size):
            yield cat.select(np.arange(s, min(s + chunk_size, rows[1])))
    else:
        yield from _iter_csv(path, rows, chunk_size, columns)


_WHOLE: dict[tuple[str, int, int], Catalog] = {}  # the last file read whole (one entry)


def _read_whole(path: Path) -> Catalog:
    """A gzipped FITS catalogue, read once per process for all its partitions, with a warning."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _WHOLE:
        LOG.warning("%s: gzipped FITS cannot be read in slices; reading it whole into memory "
                    "(gunzip it, or convert it to Parquet, for survey-scale catalogues)", path)  # fmt: skip
        _WHOLE.clear()
        _WHOLE[key] = dataclasses.replace(read_catalog(path), exposures=None)
    return _WHOLE[key]


def _rechunk(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Tables of exactly ``size`` rows (the last may be shorter) from batches of any size."""
    buf: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - n, batch.num_rows)
            buf.append(batch.slice(0, take))
            n, batch = n + take, batch.slice(take)
            if n == size:
                yield pa.Table.from_batches(buf)
                buf, n = [], 0
    if n:
        yield pa.Table.from_batches(buf)


def _iter_parquet(path: Path, rows: Range, chunk_size: int, columns: Columns) -> Iterator[Catalog]:  # fmt: skip
    start, stop = rows
    pf = pq.ParquetFile(path, buffer_size=_PARQUET_BUFFER, metadata=_parquet_meta(path))
    raw = (pf.schema_arrow.metadata or {}).get(b"deepz")
    meta = json.loads(raw) if raw else {}
    bounds = np.cumsum([0, *_parquet_groups(path)])
    groups = [i for i in range(len(bounds) - 1) if bounds[i] < stop and bounds[i + 1] > start]
    if not groups:
        return

    def batches() -> Iterator[pa.RecordBatch]:
        pos = int(bounds[groups[0]])
        names = _wanted(pf.schema_arrow.names, columns, path)
        for batch in pf.iter_batches(batch_size=chunk_size, row_groups=groups, columns=names):
            lo, hi = max(start - pos, 0), min(stop - pos, batch.num_rows)
            pos += batch.num_rows
            if hi > lo:
                yield batch.slice(lo, hi - lo)
            if pos >= stop:
                return

    first = start
    for table in _rechunk(batches(), chunk_size):
        cols = {n: _column(table.column(n).to_numpy()) for n in table.column_names}
        yield _to_catalog(cols, meta, f"{path}[{first}:{first + table.num_rows}]")
        first += table.num_rows


def _iter_fits(path: Path, rows: Range, chunk_size: int, columns: Columns) -> Iterator[Catalog]:
    from astropy.io import fits

    start, stop = rows
    with fits.open(path, memmap=True) as hdul:
        hdu = _galaxy_hdu(hdul)
        meta = {**_header_meta(hdul[0].header), **_header_meta(hdu.header)}
        names = _wanted([c.name for c in hdu.columns], columns, path)
        for s in range(start, stop, chunk_size):
            e = min(s + chunk_size, stop)
            data = hdu.data[s:e]
            yield _to_catalog({n: native_array(data[n]) for n in names}, meta, f"{path}[{s}:{e}]")


@contextmanager
def _hdf5_table(path: Path) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(galaxy table, meta) of an HDF5 catalogue as catalog_io finds it: the dataset or group
    'galaxies', else the first other object that is not 'exposures'."""
    import h5py

    with h5py.File(path, "r") as f:
        obj = f.get("galaxies")
        if obj is None:
            obj = next((f[k] for k in f if k not in ("galaxies", "exposures")), None)
        compound = isinstance(obj, h5py.Dataset) and obj.dtype.names
        if not (compound or isinstance(obj, h5py.Group)):
            raise CatalogError(f"{path}: no galaxy table (HDF5 'galaxies')")
        yield obj, _clean(dict(obj.attrs))


def _hdf5_len(table: Any) -> int:
    import h5py

    if isinstance(table, h5py.Dataset):
        return int(table.shape[0])
    lengths = {int(table[k].shape[0]) for k in table if isinstance(table[k], h5py.Dataset)}
    if len(lengths) > 1:
        raise CatalogError(f"HDF5 group '{table.name}': columns have different lengths {lengths}")
    return lengths.pop() if lengths else 0


def _iter_hdf5(path: Path, rows: Range, chunk_size: int, columns: Columns) -> Iterator[Catalog]:
    import h5py

    start, stop = rows
    with _hdf5_table(path) as (table, meta):
        compound = isinstance(table, h5py.Dataset)
        if compound:
            names = _wanted(list(table.dtype.names), columns, path)
        else:
            names = _wanted([k for k in table if isinstance(table[k], h5py.Dataset)], columns, path)
        for s in range(start, stop, chunk_size):
            e = min(s + chunk_size, stop)
            if compound and len(names) > 1:
                data = table.fields(names)[s:e]  # reads only these fields
                cols = {n: native_array(data[n]) for n in names}
            else:
                cols = {n: native_array(table.fields(n)[s:e] if compound else table[n][s:e])
                        for n in names}  # fmt: skip
            yield _to_catalog(cols, meta, f"{path}[{s}:{e}]")


def _iter_csv(path: Path, rows: Range, chunk_size: int, columns: Columns) -> Iterator[Catalog]:
    import pandas as pd

    start, stop = rows
    with open(path, encoding="utf-8") as fh:
        head = "".join(line for line, _ in zip(fh, range(10_000), strict=False))
    skip = next(i for i, line in enumerate(head.splitlines()) if not line.startswith("#"))
    meta = _read_csv_meta(path, skip)
    reader = pd.read_csv(path, skiprows=lambda i: i < skip or skip < i <= skip + start,
                         nrows=stop - start, chunksize=chunk_size, keep_default_na=False,
                         na_values=["", "nan", "NaN"],
                         usecols=None if columns is None else lambda c: c in columns)  # fmt: skip
    for k, frame in enumerate(reader):
        cols = {str(c): native_array(frame[c].to_numpy()) for c in frame.columns}
        s = start + k * chunk_size
        yield _to_catalog(cols, meta, f"{path}[{s}:{s + len(frame)}]")


def _read_csv_meta(path: Path, skip: int) -> dict[str, Any]:
    """The leading '# KEY = value' lines of a CSV catalogue as meta (as catalog_io reads them)."""
    meta: dict[str, Any] = {}
    with open(path, encoding="utf-8") as fh:
        for line, _ in zip(fh, range(skip), strict=False):
            match = _CSV_META.match(line)
            if match:
                meta[match[1]] = _parse_meta_value(match[2])
    return meta
