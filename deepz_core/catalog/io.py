"""Read and write canonical catalogues as FITS, Parquet, CSV or HDF5 (docs/design.md, Catalogue).

Layouts (same column names everywhere; fluxes in units fixed by FLUXZP, 23.9 = microJansky):

- FITS (.fits .fit .fits.gz .fit.gz .fz): table HDU ``GALAXIES`` (else the first table HDU) with
  header FLUXZP and the meta keys (HIERARCH for keys > 8 characters); optional table HDU
  ``EXPOSURES``. Read with memmap; non-structural keys of the primary header also count as meta.
- Parquet (.parquet .pq): schema metadata key ``deepz`` = JSON object {"FLUXZP": .., meta...};
  exposures in the sidecar ``<stem>.exposures.parquet`` (or ``.pq``).
- CSV (.csv): leading comment lines ``# KEY = <JSON value>`` (FLUXZP first; other '#' lines are
  free comments), then a header row; NaN written as an empty field; exposures in
  ``<stem>.exposures.csv``. Limits: string columns that look numeric or are all empty come back
  as numbers.
- HDF5 (.h5 .hdf5 .hdf): compound datasets ``galaxies`` and ``exposures`` (strings as UTF-8
  bytes), FLUXZP and meta as attributes of ``galaxies``; a group of 1-D column datasets is read too.

Writing replaces files atomically; a stale exposures sidecar is removed when the catalogue has no
exposures. Every library error (OSError, astropy, pyarrow, h5py, pandas) becomes a CatalogError
naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.catalog import (
    EXPOSURE_COLUMNS,
    FITS_STRUCTURAL,
    Catalog,
    catalog_from_columns,
    exposures_from_columns,
    native_array,
)
from deepz_core.catalog.validation import validate
from deepz_core.errors import CatalogError
from deepz_core.files import atomic_write

Columns = dict[str, np.ndarray]
Tables = dict[str, tuple[Columns, dict[str, Any]]]  # table name -> (columns, meta)

_EXTENSIONS = {"fits": ".fits.gz .fit.gz .fits .fit .fz", "parquet": ".parquet .pq", "csv": ".csv"}
SUFFIXES = {
    s: f for f, ext in {**_EXTENSIONS, "hdf5": ".h5 .hdf5 .hdf"}.items() for s in ext.split()
}
SIDECAR_FORMATS = ("csv", "parquet")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAGIC = {"fits": (b"SIMPLE  =", b"\x1f\x8b"), "parquet": (b"PAR1",), "hdf5": (_HDF5_MAGIC,)}
_FITS_BLOCK = 2880
_CSV_META = re.compile(r"^#\s*([A-Za-z0-9_\-]+)\s*=\s*(.*?)\s*$")


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


@contextmanager
def _wrapped(path: Path, action: str) -> Iterator[None]:
    """Turn any library exception into a one-line CatalogError naming ``path``."""
    try:
        yield
    except CatalogError:
        raise
    except Exception as err:  # astropy/pyarrow/h5py/pandas raise many unrelated types
        text = (str(err).strip().splitlines() or [""])[0][:200]
        raise CatalogError(f"{path}: cannot {action}: {type(err).__name__}: {text}") from err


def _sniff(head: bytes) -> str | None:
    """Format named by the magic bytes at the start of a file, if any."""
    for fmt, magics in _MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return fmt
    if any(head[k : k + 8] == _HDF5_MAGIC for k in (512, 1024, 2048)):
        return "hdf5"
    return None


def _check_file(path: Path, fmt: str) -> None:
    """Exists, is not empty, and its bytes match the extension (magic numbers, FITS size)."""
    if not path.is_file():
        raise CatalogError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise CatalogError(f"{path}: empty file")
    with _wrapped(path, "read"), open(path, "rb") as fh:
        head = fh.read(2056)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    found = _sniff(head)
    if fmt == "csv":
        if found is not None or b"\x00" in head:
            raise CatalogError(f"{path}: not a CSV text file (looks like {found or 'binary data'})")
        return
    if found != fmt:
        looks = f"looks like {found}" if found else "starts with " + repr(head[:12])
        raise CatalogError(f"{path}: not a {fmt.upper()} file ({looks})")
    if fmt == "parquet" and (size < 12 or tail != b"PAR1"):
        raise CatalogError(f"{path}: truncated Parquet file (no footer)")
    if fmt == "fits" and head.startswith(b"SIMPLE") and size % _FITS_BLOCK:
        raise CatalogError(f"{path}: truncated FITS file ({size} bytes, not a multiple of 2880)")


def _scalar(value: Any) -> bool | int | float | str | None:
    """A plain meta value (bool/int/finite float/str) or None for anything else."""
    if isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if isinstance(value, bool | int | float | str) else None


def _clean(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in ((k, _scalar(v)) for k, v in meta.items()) if v is not None}


def _read_fits(path: Path, names: tuple[str, ...]) -> Tables:
    """Table HDUs named ``names`` (names[0] falls back to the first other table HDU)."""
    from astropy.io import fits

    source: Path | io.BytesIO = path
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    if gzipped:  # decompress strictly: a truncated/corrupt stream raises (astropy may not)
        raw = gzip.decompress(path.read_bytes())
        if not raw.startswith(b"SIMPLE  =") or len(raw) % _FITS_BLOCK:
            raise CatalogError(f"{path}: gzip content is not a complete FITS file")
        source = io.BytesIO(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. non-ASCII header bytes replaced; values still read
        warnings.filterwarnings("error", message=".*truncat.*")
        with fits.open(source, memmap=not gzipped, mode="readonly") as hdul:
            tables = [h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)]
            by_name = {h.name.lower(): h for h in reversed(tables)}
            primary = _header_meta(hdul[0].header)
            out: Tables = {}
            for name in names:
                hdu = by_name.get(name)
                if hdu is None and name == names[0]:
                    hdu = next((h for h in tables if h.name.lower() not in names), None)
                if hdu is not None:
                    data = hdu.data
                    cols = {c.name: native_array(data[c.name]) for c in hdu.columns}
                    out[name] = cols, {**primary, **_header_meta(hdu.header)}
    return out


def _header_meta(header: Any) -> dict[str, Any]:
    """Non-structural header keys with simple values (compressed-table Z* keys dropped)."""
    zkeys = "ZTABLE" in header or "ZIMAGE" in header
    skip = {k for k in header if FITS_STRUCTURAL.match(k) or (zkeys and k.startswith("Z"))}
    return _clean({k: v for k, v in header.items() if k not in skip})


def _read_parquet(path: Path, names: tuple[str, ...]) -> Tables:
    """The one table of a Parquet file, meta from the ``deepz`` schema metadata."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"deepz")
    meta = json.loads(raw) if raw else {}
    if not isinstance(meta, dict):
        raise CatalogError(f"{path}: schema metadata 'deepz' is not a JSON object")
    cols = {n: native_array(table.column(n).to_numpy()) for n in table.column_names}
    return {names[0]: (cols, _clean(meta))}


def _parse_meta_value(text: str) -> Any:
    """JSON value, else T/True/F/False, else the raw text."""
    try:
        value = json.loads(text)
    except ValueError:
        value = {"T": True, "TRUE": True, "F": False, "FALSE": False}.get(text.upper(), text)
    return value if _scalar(value) is not None else text


def _read_csv(path: Path, names: tuple[str, ...]) -> Tables:
    """Leading '# KEY = value' lines -> meta, then a header row and the data."""
    import pandas as pd

    meta: dict[str, Any] = {}
    header, skip = None, 0
    with open(path, encoding="utf-8", newline="") as fh:
        for skip, line in enumerate(fh):  # noqa: B007 (skip = number of comment lines)
            if not line.startswith("#"):
                header = line
                break
            match = _CSV_META.match(line)
            if match:
                meta[match[1]] = _parse_meta_value(match[2])
    if header is None:
        raise CatalogError(f"{path}: no header row (only comment lines)")
    _check_csv_end(path, header)
    frame = pd.read_csv(
        path,
        skiprows=skip,
        encoding="utf-8",
        keep_default_na=False,
        na_values=["", "nan", "NaN"],
        dtype={"band": str},
    )
    cols: Columns = {}
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
            series = series.fillna("").astype(str)
        cols[str(name)] = native_array(series.to_numpy())
    return {names[0]: (cols, _clean(meta))}


def _check_csv_end(path: Path, header: str) -> None:
    """A file not ending in a newline whose last row has fewer fields than the header is
    truncated (a cut inside the last field of a row cannot be detected)."""
    with open(path, "rb") as fh:
        fh.seek(max(path.stat().st_size - 65536, 0))
        tail = fh.read()
    if tail.endswith(b"\n"):
        return
    width = len(next(csv.reader([header])))
    last = next(csv.reader([tail.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")]), [])
    if 0 < len(last) < width:
        raise CatalogError(
            f"{path}: truncated CSV file (last row has {len(last)} of {width} fields)"
        )


def _read_hdf5(path: Path, names: tuple[str, ...]) -> Tables:
    """Compound datasets (or groups of 1-D datasets) named ``names``; meta from attributes."""
    import h5py

    out: Tables = {}
    with h5py.File(path, "r") as f:
        for name in names:
            obj = f.get(name)
            if obj is None and name == names[0]:
                obj = next((f[k] for k in f if k not in names), None)
            if isinstance(obj, h5py.Dataset) and obj.dtype.names:
                data = obj[()]
                cols = {n: native_array(data[n]) for n in obj.dtype.names}
            elif isinstance(obj, h5py.Group):
                cols = {
                    k: native_array(obj[k][()]) for k in obj if isinstance(obj[k], h5py.Dataset)
                }
            elif obj is None:
                continue
            else:
                raise CatalogError(f"{path}: HDF5 object '{obj.name}' is not a table")
            out[name] = cols, _clean(dict(obj.attrs))
    return out


_READERS = {"fits": _read_fits, "parquet": _read_parquet, "csv": _read_csv, "hdf5": _read_hdf5}


def _read_tables(path: Path, names: tuple[str, ...]) -> Tables:
    """Check the file, then read tables ``names`` with the reader for its extension."""
    fmt = catalog_format(path)
    _check_file(path, fmt)
    with _wrapped(path, f"read as {fmt.upper()}"):
        tables = _READERS[fmt](path, names)
    if names[0] not in tables:
        raise CatalogError(f"{path}: no table found (expected '{names[0]}')")
    return tables


def read_catalog(path: Path | str, exposures_path: Path | str | None = None) -> Catalog:
    """Read and ``validate`` a canonical catalogue; exposures come from ``exposures_path``, else
    the same FITS/HDF5 file, else the ``<stem>.exposures.<ext>`` sidecar if it exists."""
    path = Path(path)
    tables = _read_tables(path, ("galaxies", "exposures"))
    exp_path = None if exposures_path is None else Path(exposures_path)
    if exp_path is None and catalog_format(path) in SIDECAR_FORMATS:
        exp_path = exposures_sidecar(path) if exposures_sidecar(path).is_file() else None
    if exp_path is not None:
        tables["exposures"] = _read_tables(exp_path, ("exposures",))["exposures"]
    exp_source = str(exp_path or path)
    with _wrapped(path, "parse"):
        exposures = None
        if "exposures" in tables:
            exposures = exposures_from_columns(tables["exposures"][0], exp_source)
        cat = catalog_from_columns(*tables["galaxies"], str(path), exposures)
    return validate(cat, str(path), exp_source)


def _write_fits(tmp: Path, tables: list[tuple[str, Columns, dict[str, Any]]]) -> None:
    """One table HDU per table (EXTNAME upper-cased), meta in its header."""
    from astropy.io import fits
    from astropy.table import Table

    hdus: list[Any] = [fits.PrimaryHDU()]
    for name, cols, meta in tables:
        hdu = fits.table_to_hdu(Table(_utf8(cols)))
        hdu.header["EXTNAME"] = name.upper()
        for key, value in meta.items():
            hdu.header.append(_fits_card(key, value))
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(tmp, overwrite=True)


def _fits_card(key: str, value: Any) -> Any:
    """Header card; floats written with all 17 digits (astropy would round to 16)."""
    from astropy.io import fits

    name = key if len(key) <= 8 else f"HIERARCH {key}"
    if isinstance(value, float):
        text = repr(value).upper()
        return fits.Card.fromstring(
            f"{name:<8}= {text:>20}" if len(key) <= 8 else f"{name} = {text}"
        )
    return fits.Card(name, value)


def _write_parquet(tmp: Path, tables: list[tuple[str, Columns, dict[str, Any]]]) -> None:
    """The first table; meta as JSON under schema metadata key 'deepz'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, cols, meta = tables[0]
    table = pa.table({k: pa.array(v) for k, v in cols.items()})
    pq.write_table(table.replace_schema_metadata({"deepz": json.dumps(meta)}), tmp)


def _write_csv(tmp: Path, tables: list[tuple[str, Columns, dict[str, Any]]]) -> None:
    """The first table; meta as leading '# KEY = <JSON>' lines."""
    import pandas as pd

    _, cols, meta = tables[0]
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        for key, value in meta.items():
            fh.write(f"# {key} = {json.dumps(value)}\n")
        frame = pd.DataFrame(cols)
        frame.to_csv(fh, index=False, lineterminator="\n")


def _write_hdf5(tmp: Path, tables: list[tuple[str, Columns, dict[str, Any]]]) -> None:
    """One compound dataset per table (str -> UTF-8 bytes), meta as its attributes."""
    import h5py

    with h5py.File(tmp, "w", libver="latest") as f:  # checksummed metadata
        for name, cols, meta in tables:
            arrays = _utf8(cols)
            n = len(next(iter(arrays.values())))
            record = np.empty(n, dtype=[(k, v.dtype, v.shape[1:]) for k, v in arrays.items()])
            for key, value in arrays.items():
                record[key] = value
            dataset = f.create_dataset(name, data=record)
            for key, value in meta.items():
                # fixed-length bytes: vlen strings live in the global heap, whose corruption
                # can hang libhdf5
                dataset.attrs[key] = np.bytes_(value.encode()) if isinstance(value, str) else value


def _utf8(cols: Columns) -> Columns:
    """Unicode columns as UTF-8 bytes (FITS and HDF5 store bytes; readers decode UTF-8)."""
    return {k: np.char.encode(v, "utf-8") if v.dtype.kind == "U" else v for k, v in cols.items()}


_WRITERS = {"fits": _write_fits, "parquet": _write_parquet, "csv": _write_csv, "hdf5": _write_hdf5}


def write_catalog(cat: Catalog, path: Path | str) -> Path:
    """Validate and write ``cat`` atomically in the format named by the extension; returns path.

    CSV/Parquet exposures go to ``exposures_sidecar(path)`` (removed if ``cat`` has none).
    """
    path = Path(path)
    fmt = catalog_format(path)
    validate(cat, str(path))
    writer = _WRITERS[fmt]
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
        with _wrapped(side, f"write {fmt.upper()}"):
            if exposures is None:
                side.unlink(missing_ok=True)
            else:
                atomic_write(side, lambda tmp: writer(tmp, [exposures]))
        tables = [galaxies]
    else:
        tables = [galaxies] + ([exposures] if exposures is not None else [])
    with _wrapped(path, f"write {fmt.upper()}"):
        atomic_write(path, lambda tmp: writer(tmp, tables))
    return path
