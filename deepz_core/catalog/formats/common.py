"""What the format modules share: table types, meta values, library errors as CatalogErrors, and
the sanity check of a file's bytes against its extension."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.catalog import FLUX_PREFIX, few, native_array
from deepz_core.errors import CatalogError

Columns = dict[str, np.ndarray]
Meta = dict[str, Any]
Tables = dict[str, tuple[Columns, Meta]]  # table name -> (columns, meta)
Written = list[tuple[str, Columns, Meta]]  # (table name, columns, meta) in file order
Range = tuple[int, int]  # rows [start, stop)
Wanted = Collection[str] | None  # column names to read (None: all)
Chunk = tuple[Columns, Meta, str]  # columns, meta and a source label 'file[start:stop]'

FITS_BLOCK = 2880
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAGIC = {"fits": (b"SIMPLE  =", b"\x1f\x8b"), "parquet": (b"PAR1",), "hdf5": (HDF5_MAGIC,)}


@contextmanager
def library_errors(path: Path, action: str) -> Iterator[None]:
    """Turn any library exception into a one-line CatalogError naming ``path``."""
    try:
        yield
    except CatalogError:
        raise
    except Exception as err:  # astropy/pyarrow/h5py/pandas raise many unrelated types
        text = (str(err).strip().splitlines() or [""])[0][:200]
        raise CatalogError(f"{path}: cannot {action}: {type(err).__name__}: {text}") from err


def sniff(head: bytes) -> str | None:
    """Format named by the magic bytes at the start of a file, if any."""
    for fmt, magics in _MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return fmt
    if any(head[k : k + 8] == HDF5_MAGIC for k in (512, 1024, 2048)):
        return "hdf5"
    return None


def check_file(path: Path, fmt: str) -> None:
    """Exists, is not empty, and its bytes match the extension (magic numbers, FITS size)."""
    if not path.is_file():
        raise CatalogError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise CatalogError(f"{path}: empty file")
    with library_errors(path, "read"), open(path, "rb") as fh:
        head = fh.read(2056)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    found = sniff(head)
    if fmt == "csv":
        if found is not None or b"\x00" in head:
            raise CatalogError(f"{path}: not a CSV text file (looks like {found or 'binary data'})")
        return
    if found != fmt:
        looks = f"looks like {found}" if found else "starts with " + repr(head[:12])
        raise CatalogError(f"{path}: not a {fmt.upper()} file ({looks})")
    if fmt == "parquet" and (size < 12 or tail != b"PAR1"):
        raise CatalogError(f"{path}: truncated Parquet file (no footer)")
    if fmt == "fits" and head.startswith(b"SIMPLE") and size % FITS_BLOCK:
        raise CatalogError(f"{path}: truncated FITS file ({size} bytes, not a multiple of 2880)")


def scalar(value: Any) -> bool | int | float | str | None:
    """A plain meta value (bool/int/finite float/str) or None for anything else."""
    if isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if isinstance(value, bool | int | float | str) else None


def clean_meta(meta: Mapping[str, Any]) -> Meta:
    """The simple values of ``meta`` (see ``scalar``), keys as strings."""
    return {str(k): v for k, v in ((k, scalar(v)) for k, v in meta.items()) if v is not None}


def utf8(cols: Columns) -> Columns:
    """Unicode columns as UTF-8 bytes (FITS and HDF5 store bytes; readers decode UTF-8)."""
    return {k: np.char.encode(v, "utf-8") if v.dtype.kind == "U" else v for k, v in cols.items()}


def chunk_column(values: np.ndarray) -> np.ndarray:
    """Native numeric arrays as they are (no copy: the catalogue copies what it keeps); strings
    and foreign byte orders through ``native_array``."""
    if values.dtype.kind in "fiub" and values.dtype.isnative:
        return values
    return native_array(values)


def unique_names(names: list[str], source: Path | str) -> list[str]:
    """``names`` when no column name repeats; CatalogError naming the repeated ones otherwise (a
    reader would keep one of them silently, or fail deep inside its library)."""
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise CatalogError(
            f"{source}: column name(s) {few(repeated, 4)} appear more than once; give every "
            "column its own name"
        )
    return names


def wanted(names: list[str], columns: Wanted, source: Path) -> list[str]:
    """The file's columns among ``columns`` (all without); a file with none of the flux columns
    asked for fails here, listing its own columns (not just the few that matched). Repeated
    column names fail too (``unique_names``)."""
    unique_names(names, source)
    if columns is None:
        return names
    needed = sorted(c for c in columns if c.startswith(FLUX_PREFIX))
    if needed and not any(n in columns for n in names if n.startswith(FLUX_PREFIX)):
        raise CatalogError(
            f"{source}: none of the flux columns asked for ({few(needed, 4)}) is "
            f"in the file; its columns: {few(names, 8)}"
        )
    return [n for n in names if n in columns]


def slices(rows: Range, chunk_size: int) -> Iterator[Range]:
    """Consecutive [s, e) pieces of at most ``chunk_size`` rows covering ``rows``."""
    start, stop = rows
    for s in range(start, stop, chunk_size):
        yield s, min(s + chunk_size, stop)
