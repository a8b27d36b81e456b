"""HATS catalogues (a folder with ``hats.properties``, or a collection with
``collection.properties``; LSDB's format): the pixel files ``dataset/Norder=K/Dir=D/Npix=P.parquet``
listed by the ``hats`` library, read as one table in pixel order with the Parquet reader. Every
pixel file holds ``_healpix_29`` (the order-29 NESTED HEALPix index of ra, dec) as a column, which
comes along like any other. Read-only: deepz writes HATS through lsdb
(deepz_core.inference.hats_out)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deepz_core.catalog.formats import parquet_file
from deepz_core.catalog.formats.common import Chunk, Range, Tables, Wanted
from deepz_core.errors import CatalogError

PROPERTIES = ("hats.properties", "properties", "collection.properties")


def is_hats(path: Path) -> bool:
    """A folder holding a HATS catalogue or collection."""
    return path.is_dir() and any((path / name).is_file() for name in PROPERTIES)


def pixel_files(path: Path) -> list[Path]:
    """The catalogue's pixel files in the order of its HEALPix pixels (hats lists them)."""
    import hats
    from hats.io import paths

    catalog = hats.read_hats(path)
    catalog = getattr(catalog, "main_catalog", catalog)  # a collection: its main catalogue
    files = [
        Path(str(paths.pixel_catalog_file(catalog.catalog_base_dir, pixel)))
        for pixel in catalog.get_healpix_pixels()
    ]
    if not files:
        raise CatalogError(f"{path}: HATS catalogue without pixel files")
    return files


def _bounds(files: list[Path]) -> np.ndarray:
    """(F + 1,) first row of each pixel file in the concatenation, and the total."""
    return np.cumsum([0, *(parquet_file.count_rows(f) for f in files)])


def count_rows(path: Path) -> int:
    return int(_bounds(pixel_files(path))[-1])


def column_names(path: Path) -> list[str]:
    return parquet_file.column_names(pixel_files(path)[0])


def read(path: Path, names: tuple[str, ...]) -> Tables:
    """All pixel files as one table (meta and units of the first)."""
    parts = [parquet_file.read(f, names)[names[0]] for f in pixel_files(path)]
    columns = {k: np.concatenate([cols[k] for cols, _ in parts]) for k in parts[0][0]}
    return {names[0]: (columns, parts[0][1])}


def partitions(path: Path, chunk_size: int) -> list[Range]:
    """Row ranges of at most ``chunk_size`` rows that never span two pixel files."""
    bounds = _bounds(pixel_files(path))
    return [
        (int(s), int(min(s + chunk_size, stop)))
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
        for s in range(int(start), int(stop), chunk_size)
    ]


def iter_rows(path: Path, rows: Range, chunk_size: int, columns: Wanted) -> Iterator[Chunk]:
    """Chunks of rows [start, stop) of the concatenated pixel files (a chunk stays in one file)."""
    files = pixel_files(path)
    bounds = _bounds(files)
    start, stop = rows
    for f, first, last in zip(files, bounds[:-1], bounds[1:], strict=True):
        lo, hi = max(start, int(first)), min(stop, int(last))
        if hi <= lo:
            continue
        local = (lo - int(first), hi - int(first))
        for cols, meta, _ in parquet_file.iter_rows(f, local, chunk_size, columns):
            n = len(next(iter(cols.values()))) if cols else 0
            yield cols, meta, f"{path}[{lo}:{lo + n}]"
            lo += n
