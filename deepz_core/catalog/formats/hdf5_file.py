"""HDF5 catalogues (.h5 .hdf5 .hdf): compound datasets ``galaxies`` and ``exposures`` (strings as
UTF-8 bytes), FLUXZP and meta as attributes of ``galaxies``; a group of 1-D column datasets is read
too. Chunks are h5py row slices of only the fields asked for. pandas HDFStore tables
(``DataFrame.to_hdf``, PyTables blocks) are refused, saying what to write instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.catalog import native_array
from deepz_core.catalog.formats.common import (
    Chunk,
    Meta,
    Range,
    Tables,
    Wanted,
    Written,
    clean_meta,
    slices,
    utf8,
    wanted,
)
from deepz_core.catalog.units import UNITS_KEY
from deepz_core.errors import CatalogError


def is_table(obj: Any) -> bool:
    """A compound dataset, or a group holding datasets (one per column)."""
    import h5py

    if isinstance(obj, h5py.Dataset):
        return bool(obj.dtype.names)
    return isinstance(obj, h5py.Group) and any(isinstance(obj[k], h5py.Dataset) for k in obj)


def first_table(f: Any, skip: tuple[str, ...]) -> Any:
    """The first object of file ``f`` that is a table (``is_table``) and not named in ``skip``:
    notes, images or arrays stored before the table are passed over."""
    return next((f[k] for k in f if k not in skip and is_table(f[k])), None)


def refuse_pandas(obj: Any, path: Path) -> Any:
    """``obj``, unless it is a group pandas wrote (``DataFrame.to_hdf``, format 'table' or 'fixed':
    PyTables blocks, not columns): CatalogError saying so and what to write instead."""
    kind = obj.attrs.get("pandas_type") if obj is not None else None
    if kind is None:
        return obj
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    raise CatalogError(
        f"{path}: HDF5 key '{obj.name.lstrip('/')}' is a pandas HDFStore table ({kind!r}, "
        "DataFrame.to_hdf), which deepz does not read: write it as Parquet "
        "(df.to_parquet('x.parquet')) or FITS, or as HDF5 columns with h5py"
    )


def read(path: Path, names: tuple[str, ...]) -> Tables:
    """Compound datasets (or groups of 1-D datasets) named ``names`` (the first, when absent: the
    first other table of the file); meta from attributes."""
    import h5py

    out: Tables = {}
    with h5py.File(path, "r") as f:
        for name in names:
            obj = f.get(name)
            if obj is None and name == names[0]:
                obj = first_table(f, names)
            refuse_pandas(obj, path)
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
            out[name] = cols, {**clean_meta(dict(obj.attrs)), **group_units(obj)}
    return out


def group_units(table: Any) -> Meta:
    """``{UNITS_KEY: {column: unit}}`` from the ``unit`` (or ``units``) attribute of each column
    dataset of a group (compound datasets carry none)."""
    import h5py

    units: dict[str, str] = {}
    if isinstance(table, h5py.Group):
        for key, obj in table.items():
            raw = obj.attrs.get("unit", obj.attrs.get("units")) if hasattr(obj, "attrs") else None
            if raw is not None:
                units[key] = raw.decode() if isinstance(raw, bytes) else str(raw)
    return {UNITS_KEY: units}


def column_names(path: Path) -> list[str]:
    """The galaxy table's column (field or dataset) names."""
    import h5py

    with galaxy_dataset(path) as (table, _):
        if isinstance(table, h5py.Dataset):
            return list(table.dtype.names)
        return [k for k in table if isinstance(table[k], h5py.Dataset)]


@contextmanager
def galaxy_dataset(path: Path) -> Iterator[tuple[Any, Meta]]:
    """(galaxy table, meta) as ``read`` finds it: the dataset or group 'galaxies', else the first
    other object that is not 'exposures'."""
    import h5py

    with h5py.File(path, "r") as f:
        obj = f.get("galaxies")
        if obj is None:
            obj = first_table(f, ("galaxies", "exposures"))
        refuse_pandas(obj, path)
        compound = isinstance(obj, h5py.Dataset) and obj.dtype.names
        if not (compound or isinstance(obj, h5py.Group)):
            raise CatalogError(f"{path}: no galaxy table (HDF5 'galaxies')")
        yield obj, {**clean_meta(dict(obj.attrs)), **group_units(obj)}


def _length(table: Any) -> int:
    import h5py

    if isinstance(table, h5py.Dataset):
        return int(table.shape[0])
    lengths = {int(table[k].shape[0]) for k in table if isinstance(table[k], h5py.Dataset)}
    if len(lengths) > 1:
        raise CatalogError(f"HDF5 group '{table.name}': columns have different lengths {lengths}")
    return lengths.pop() if lengths else 0


def count_rows(path: Path) -> int:
    with galaxy_dataset(path) as (table, _):
        return _length(table)


def iter_rows(path: Path, rows: Range, chunk_size: int, columns: Wanted) -> Iterator[Chunk]:
    """Chunks of rows [start, stop), reading only the fields asked for."""
    import h5py

    with galaxy_dataset(path) as (table, meta):
        compound = isinstance(table, h5py.Dataset)
        if compound:
            names = wanted(list(table.dtype.names), columns, path)
        else:
            names = wanted([k for k in table if isinstance(table[k], h5py.Dataset)], columns, path)
        for s, e in slices(rows, chunk_size):
            if compound and len(names) > 1:
                data = table.fields(names)[s:e]  # reads only these fields
                cols = {n: native_array(data[n]) for n in names}
            else:
                cols = {
                    n: native_array(table.fields(n)[s:e] if compound else table[n][s:e])
                    for n in names
                }
            yield cols, meta, f"{path}[{s}:{e}]"


def write(tmp: Path, tables: Written) -> None:
    """One compound dataset per table (str -> UTF-8 bytes), meta as its attributes."""
    import h5py

    with h5py.File(tmp, "w", libver="latest") as f:  # checksummed metadata
        for name, cols, meta in tables:
            arrays = utf8(cols)
            n = len(next(iter(arrays.values())))
            record = np.empty(n, dtype=[(k, v.dtype, v.shape[1:]) for k, v in arrays.items()])
            for key, value in arrays.items():
                record[key] = value
            dataset = f.create_dataset(name, data=record)
            for key, value in meta.items():
                if key == UNITS_KEY:
                    continue  # a compound dataset has no per-column attributes
                # fixed-length bytes: vlen strings live in the global heap, whose corruption
                # can hang libhdf5
                dataset.attrs[key] = np.bytes_(value.encode()) if isinstance(value, str) else value
