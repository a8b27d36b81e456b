"""Read a catalogue in bounded-memory chunks for survey-scale inference (deepz_core.stream).

A catalogue is cut into partitions (row ranges; for Parquet whole row groups) and each partition is
read in chunks of at most ``chunk_size`` rows: FITS tables memory-mapped and sliced, Parquet with
``ParquetFile.iter_batches``, CSV with pandas ``chunksize``. HDF5 and gzipped FITS are read whole
(convert them for survey-scale work). Exposures are not read: prediction uses the coadds only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from deepz_core.catalog import Catalog, native_array, validate
from deepz_core.catalog_io import (  # private helpers shared with the whole-file readers
    _CSV_META,
    _check_file,
    _header_meta,
    _parse_meta_value,
    catalog_format,
    catalog_from_columns,
    read_catalog,
)
from deepz_core.errors import CatalogError, ConfigError

Range = tuple[int, int]


def _galaxy_hdu(hdul: Any) -> Any:
    tables = [h for h in hdul if h.is_image is False]
    hdu = next((h for h in tables if h.name.lower() == "galaxies"), None)
    return hdu or next((h for h in tables if h.name.lower() != "exposures"), None)


def _fits_gzipped(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _whole_file(path: Path) -> bool:
    """Formats read entirely into memory (no row slicing): HDF5, gzipped FITS."""
    fmt = catalog_format(path)
    return fmt == "hdf5" or (fmt == "fits" and _fits_gzipped(path))


def plan(path: Path | str, chunk_size: int) -> list[Range]:
    """Partitions of the catalogue as row ranges [start, stop); Parquet ranges are whole row groups
    (consecutive groups merged up to ``chunk_size`` rows)."""
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    path = Path(path)
    fmt = catalog_format(path)
    _check_file(path, fmt)
    if fmt == "parquet":
        meta = pq.ParquetFile(path).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        ranges, start, stop = [], 0, 0
        for size in sizes:
            if stop > start and stop - start + size > chunk_size:
                ranges.append((start, stop))
                start = stop
            stop += size
        return ranges + ([(start, stop)] if stop > start else [])
    n = count_rows(path)
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def count_rows(path: Path) -> int:
    """Galaxies in a FITS, CSV or HDF5 catalogue without reading its columns (HDF5: read)."""
    fmt = catalog_format(path)
    if fmt == "fits" and not _fits_gzipped(path):
        from astropy.io import fits

        with fits.open(path, memmap=True) as hdul:
            hdu = _galaxy_hdu(hdul)
            if hdu is None:
                raise CatalogError(f"{path}: no table HDU")
            return int(hdu.header["NAXIS2"])
    if fmt == "csv":
        with open(path, encoding="utf-8") as fh:
            lines = [0 for line in fh if line.strip() and not line.startswith("#")]
        return max(len(lines) - 1, 0)
    return read_catalog(path).n_galaxies


def _to_catalog(cols: dict[str, np.ndarray], meta: dict[str, Any], source: str) -> Catalog:
    return validate(catalog_from_columns(cols, meta, source), source)


def iter_rows(path: Path | str, rows: Range, chunk_size: int) -> Iterator[Catalog]:
    """Catalogs of at most ``chunk_size`` galaxies covering rows [start, stop) of the file."""
    path = Path(path)
    start, stop = rows
    src = f"{path}[{start}:{stop}]"
    fmt = catalog_format(path)
    if _whole_file(path):
        cat = read_catalog(path)
        for s in range(start, stop, chunk_size):
            yield cat.select(np.arange(s, min(s + chunk_size, stop)))
    elif fmt == "parquet":
        pf = pq.ParquetFile(path)
        raw = (pf.schema_arrow.metadata or {}).get(b"deepz")
        meta = json.loads(raw) if raw else {}
        sizes = np.cumsum(
            [0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        )
        groups = [i for i in range(pf.num_row_groups) if start <= sizes[i] < stop]
        for batch in pf.iter_batches(batch_size=chunk_size, row_groups=groups):
            cols = {n: native_array(batch.column(n).to_numpy(zero_copy_only=False))
                    for n in batch.schema.names}  # fmt: skip
            yield _to_catalog(cols, meta, src)
    elif fmt == "fits":
        from astropy.io import fits

        with fits.open(path, memmap=True) as hdul:
            hdu = _galaxy_hdu(hdul)
            meta = {**_header_meta(hdul[0].header), **_header_meta(hdu.header)}
            for s in range(start, stop, chunk_size):
                data = hdu.data[s : min(s + chunk_size, stop)]
                cols = {c.name: native_array(np.array(data[c.name])) for c in hdu.columns}
                yield _to_catalog(cols, meta, src)
    else:
        yield from _iter_csv(path, rows, chunk_size)


def _iter_csv(path: Path, rows: Range, chunk_size: int) -> Iterator[Catalog]:
    import pandas as pd

    start, stop = rows
    with open(path, encoding="utf-8") as fh:
        head = "".join(line for line, _ in zip(fh, range(10_000), strict=False))
    skip = next(i for i, line in enumerate(head.splitlines()) if not line.startswith("#"))
    meta = _read_csv_meta(path, skip)
    reader = pd.read_csv(path, skiprows=lambda i: i < skip or skip < i <= skip + start,
                         nrows=stop - start, chunksize=chunk_size, keep_default_na=False,
                         na_values=["", "nan", "NaN"])  # fmt: skip
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
