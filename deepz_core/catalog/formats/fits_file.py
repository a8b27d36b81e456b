"""FITS catalogues (.fits .fit .fits.gz .fit.gz .fz): table HDU ``GALAXIES`` (else the first table
HDU) with header FLUXZP and the meta keys (HIERARCH for keys > 8 characters), optional table HDU
``EXPOSURES``. Read with memmap and sliced by rows; non-structural keys of the primary header also
count as meta. Gzipped FITS cannot be sliced: iterating over it reads it whole, once per process,
with a warning on the ``deepz`` logger."""

from __future__ import annotations

import gzip
import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.catalog import FITS_STRUCTURAL, native_array
from deepz_core.catalog.formats.common import (
    FITS_BLOCK,
    Chunk,
    Columns,
    Meta,
    Range,
    Tables,
    Wanted,
    Written,
    clean_meta,
    slices,
    unique_names,
    utf8,
    wanted,
)
from deepz_core.catalog.units import UNITS_KEY
from deepz_core.errors import CatalogError

LOG = logging.getLogger("deepz")


def is_gzipped(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _source(path: Path) -> Path | io.BytesIO:
    """The file itself, or its decompressed bytes when gzipped (decompressed strictly: a truncated
    or corrupt stream raises, where astropy may not)."""
    if not is_gzipped(path):
        return path
    raw = gzip.decompress(path.read_bytes())
    if not raw.startswith(b"SIMPLE  =") or len(raw) % FITS_BLOCK:
        raise CatalogError(f"{path}: gzip content is not a complete FITS file")
    return io.BytesIO(raw)


def read(path: Path, names: tuple[str, ...]) -> Tables:
    """Table HDUs named ``names`` (names[0] falls back to the first other table HDU)."""
    from astropy.io import fits

    source = _source(path)
    with (
        quiet_warnings(),
        fits.open(source, memmap=isinstance(source, Path), mode="readonly") as hdul,
    ):
        tables = [h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)]
        if not tables:
            raise CatalogError(
                f"{path} holds no table ({hdu_contents(hdul)}): deepz needs a FITS binary "
                f"table of {names[0]}"
            )
        by_name = {h.name.lower(): h for h in reversed(tables)}
        primary = header_meta(hdul[0].header)
        out: Tables = {}
        for name in names:
            hdu = by_name.get(name)
            if hdu is None and name == names[0]:
                hdu = next((h for h in tables if h.name.lower() not in names), None)
            if hdu is not None:
                label = f"{path} (HDU {hdu.name})" if hdu.name else str(path)
                unique_names([c.name for c in hdu.columns], label)
                size = len(source.getbuffer()) if isinstance(source, io.BytesIO) else None
                complete_file(path, hdul, size)
                cols = {c.name: native_array(_column(hdu, c.name)) for c in hdu.columns}
                out[name] = cols, {**primary, **header_meta(hdu.header), **units_of(hdu)}
    return out


def _column(hdu: Any, name: str) -> np.ndarray:
    """Column ``name`` of a table HDU. An ASCII text column of a binary table is decoded from its
    raw bytes by one cast (astropy's own decoding takes ~1 CPU s per million rows: the demo's
    2.2 million exposure band names); anything else, or text that is not ASCII, as astropy
    reads it."""
    from astropy.io import fits

    if isinstance(hdu, fits.BinTableHDU):
        raw = hdu.data.view(np.ndarray)[name]
        if raw.dtype.kind == "S":
            try:
                return raw.astype(f"U{raw.dtype.itemsize}")  # numpy decodes ASCII only
            except UnicodeDecodeError:
                pass
    return hdu.data[name]


def hdu_contents(hdul: Any) -> str:
    """What a FITS file without a table holds, for a message: 'only an image in HDU 0', 'only
    images in HDUs 0, 1', 'only an empty primary HDU'."""
    images = [i for i, h in enumerate(hdul) if getattr(h, "data", None) is not None]
    if not images:
        return "only an empty primary HDU"
    if len(images) == 1:
        return f"only an image in HDU {images[0]}"
    return f"only images in HDUs {', '.join(str(i) for i in images)}"


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """astropy's warnings while opening a file are silenced (e.g. non-ASCII header bytes
    replaced, the values still read; a truncated file, which ``complete_hdu`` reports as an
    error), so that a command prints its one-line message alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def complete_hdu(path: Path, hdul: Any, hdu: Any, size: int | None = None) -> Any:
    """``hdu`` when the file (``size`` bytes: the file's, or its decompressed content's) holds all
    of its data; CatalogError 'truncated' otherwise (a file cut at a 2880-byte boundary passes
    the size check and would fail deep inside astropy)."""
    with quiet_warnings():
        info = hdul.fileinfo(hdul.index(hdu))
    end = int(info["datLoc"]) + int(info["datSpan"])
    size = path.stat().st_size if size is None else size
    if end > size:
        raise CatalogError(
            f"{path}: truncated FITS file ({size} bytes; the table needs {end}): copy it again"
        )
    return hdu


def complete_file(path: Path, hdul: Any, size: int | None = None) -> None:
    """CatalogError 'truncated' (``complete_hdu``) unless the file holds the data of all its
    HDUs: a file cut inside its exposures is refused whichever of its tables a command reads
    (prediction reads the galaxies alone), in the same words."""
    with quiet_warnings():
        hdul.readall()
    complete_hdu(path, hdul, hdul[-1], size)


def galaxy_table(path: Path, hdul: Any) -> Any:
    """The galaxies' table HDU (``galaxy_hdu``) of a complete file (``complete_file``);
    CatalogError without one."""
    complete_file(path, hdul)
    hdu = galaxy_hdu(hdul)
    if hdu is None:
        raise CatalogError(f"{path}: no table HDU")
    return hdu


def header_meta(header: Any) -> Meta:
    """Non-structural header keys with simple values (compressed-table Z* keys dropped)."""
    zkeys = "ZTABLE" in header or "ZIMAGE" in header
    skip = {k for k in header if FITS_STRUCTURAL.match(k) or (zkeys and k.startswith("Z"))}
    return clean_meta({k: v for k, v in header.items() if k not in skip})


def units_of(hdu: Any) -> Meta:
    """``{UNITS_KEY: {column: TUNIT}}`` of a table HDU's columns that have a unit."""
    return {UNITS_KEY: {c.name: str(c.unit) for c in hdu.columns if c.unit}}


def column_names(path: Path) -> list[str]:
    """The galaxy table's column names, from the header."""
    from astropy.io import fits

    if is_gzipped(path):
        return list(_whole(path)[0])
    with quiet_warnings(), fits.open(path, memmap=True) as hdul:
        return [c.name for c in galaxy_table(path, hdul).columns]


def galaxy_hdu(hdul: Any) -> Any:
    """The galaxies' table HDU: ``GALAXIES``, else the first table that is not ``EXPOSURES``."""
    tables = [h for h in hdul if h.is_image is False]
    hdu = next((h for h in tables if h.name.lower() == "galaxies"), None)
    return hdu or next((h for h in tables if h.name.lower() != "exposures"), None)


def count_rows(path: Path) -> int:
    """Galaxies in the file, from the header (a gzipped file is read whole)."""
    from astropy.io import fits

    if is_gzipped(path):
        return len(next(iter(_whole(path)[0].values())))
    with quiet_warnings(), fits.open(path, memmap=True) as hdul:
        return int(galaxy_table(path, hdul).header["NAXIS2"])


def iter_rows(path: Path, rows: Range, chunk_size: int, columns: Wanted) -> Iterator[Chunk]:
    """Chunks of rows [start, stop): memory-mapped slices, or pieces of the whole gzipped file."""
    from astropy.io import fits

    if is_gzipped(path):
        cols, meta = _whole(path)
        names = wanted(list(cols), columns, path)
        for s, e in slices(rows, chunk_size):
            yield {n: cols[n][s:e] for n in names}, meta, f"{path}[{s}:{e}]"
        return
    with quiet_warnings():  # not around the yields: a paused generator must not hold filters
        hdul = fits.open(path, memmap=True)
        try:
            hdu = galaxy_table(path, hdul)
        except BaseException:
            hdul.close()
            raise
    with hdul:
        meta = {**header_meta(hdul[0].header), **header_meta(hdu.header), **units_of(hdu)}
        names = wanted([c.name for c in hdu.columns], columns, path)
        for s, e in slices(rows, chunk_size):
            data = hdu.data[s:e]
            yield {n: native_array(data[n]) for n in names}, meta, f"{path}[{s}:{e}]"


_WHOLE: dict[tuple[str, int, int], tuple[Columns, Meta]] = {}  # the last file read whole


def _whole(path: Path) -> tuple[Columns, Meta]:
    """The galaxy table of a gzipped FITS file, read once per process for all its partitions."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _WHOLE:
        tables = read(path, ("galaxies", "exposures"))  # a damaged file fails first, alone
        if "galaxies" not in tables:
            raise CatalogError(f"{path}: no table HDU")
        LOG.warning(
            "%s: gzipped FITS cannot be read in slices; read it whole into memory "
            "(gunzip it, or convert it to Parquet, for survey-scale catalogues)",
            path,
        )
        _WHOLE.clear()
        _WHOLE[key] = tables["galaxies"]
    return _WHOLE[key]


def write(tmp: Path, tables: Written) -> None:
    """One table HDU per table (EXTNAME upper-cased), meta in its header."""
    from astropy.io import fits
    from astropy.table import Table

    hdus: list[Any] = [fits.PrimaryHDU()]
    for name, cols, meta in tables:
        hdu = fits.table_to_hdu(Table(utf8(cols)))
        names = [c.name for c in hdu.columns]
        for column, unit in meta.get(UNITS_KEY, {}).items():
            hdu.header[f"TUNIT{names.index(column) + 1}"] = unit  # as written (nanomaggy too)
        hdu.header["EXTNAME"] = name.upper()
        for key, value in meta.items():
            if key != UNITS_KEY:
                hdu.header.append(_card(key, value))
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(tmp, overwrite=True)


def _card(key: str, value: Any) -> Any:
    """Header card; floats written with all 17 digits (astropy would round to 16)."""
    from astropy.io import fits

    name = key if len(key) <= 8 else f"HIERARCH {key}"
    if isinstance(value, float):
        text = repr(value).upper()
        return fits.Card.fromstring(
            f"{name:<8}= {text:>20}" if len(key) <= 8 else f"{name} = {text}"
        )
    return fits.Card(name, value)
