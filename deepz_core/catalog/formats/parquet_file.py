"""Parquet catalogues (.parquet .pq): one table; meta as JSON under the schema metadata key
``deepz`` ({"FLUXZP": .., meta...}); exposures in the sidecar ``<stem>.exposures.parquet``.
Chunks stream column pages with ``ParquetFile.iter_batches`` instead of whole row groups, and
partitions follow the row groups."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
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
    chunk_column,
    clean_meta,
    unique_names,
    wanted,
)
from deepz_core.catalog.units import UNITS_KEY
from deepz_core.errors import CatalogError

_BUFFER = 1 << 20  # bytes: stream column pages instead of loading whole row groups


def _schema_meta(schema: Any, path: Path) -> Meta:
    raw = (schema.metadata or {}).get(b"deepz")
    meta = json.loads(raw) if raw else {}
    if not isinstance(meta, dict):
        raise CatalogError(f"{path}: schema metadata 'deepz' is not a JSON object")
    return clean_meta(meta)


def schema_units(schema: Any) -> Meta:
    """``{UNITS_KEY: {column: unit}}`` from the fields' ``unit`` metadata, or the units astropy
    writes (``table_meta_yaml``)."""
    units: dict[str, str] = {}
    raw = (schema.metadata or {}).get(b"table_meta_yaml")
    if raw:
        from astropy.table.meta import get_header_from_yaml

        try:
            header = get_header_from_yaml(raw.decode().splitlines())
        except Exception:  # not astropy's: no units from it
            header = {}
        units.update({d["name"]: str(d["unit"]) for d in header.get("datatype", []) if "unit" in d})
    for field in schema:
        unit = (field.metadata or {}).get(b"unit")
        if unit:
            units[field.name] = unit.decode()
    return {UNITS_KEY: units}


def read(path: Path, names: tuple[str, ...]) -> Tables:
    """The one table of a Parquet file, meta from the ``deepz`` schema metadata."""
    import pyarrow.parquet as pq

    unique_names(pq.read_schema(path).names, path)
    table = pq.read_table(path)
    cols = {n: native_array(table.column(n).to_numpy()) for n in table.column_names}
    return {names[0]: (cols, {**_schema_meta(table.schema, path), **schema_units(table.schema)})}


def column_names(path: Path) -> list[str]:
    """The file's column names, from its footer."""
    return list(footer(path).schema.to_arrow_schema().names)


def footer(path: Path) -> Any:
    """The footer of a Parquet file, parsed once per process and file version (a survey file's
    footer describes hundreds of row groups x columns: re-parsing it for every partition adds up)."""
    stat = path.stat()
    return _footer(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _footer(path: str, size: int, mtime_ns: int) -> Any:
    import pyarrow.parquet as pq

    return pq.read_metadata(path)


def row_groups(path: Path) -> list[int]:
    """Rows per row group."""
    meta = footer(path)
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def count_rows(path: Path) -> int:
    return sum(row_groups(path))


def partitions(path: Path, chunk_size: int) -> list[Range]:
    """Row ranges of at most ``chunk_size`` rows along the row groups: consecutive small groups
    are merged, a larger group is split into ``chunk_size`` pieces from its start (a piece
    re-decodes the rows of its group before it, so groups <= chunk size are fastest;
    ``split_warning`` says so)."""
    sizes = row_groups(path)
    ranges, start, stop = [], 0, 0
    for size in sizes:
        if stop > start and stop - start + size > chunk_size:
            ranges.append((start, stop))
            start = stop
        if size > chunk_size:  # split a big group: aligned pieces, the last one may be short
            ranges += [
                (s, min(s + chunk_size, stop + size)) for s in range(stop, stop + size, chunk_size)
            ]
            start = stop = stop + size
            continue
        stop += size
    return ranges + ([(start, stop)] if stop > start else [])


def split_warning(path: Path, chunk_size: int) -> str | None:
    """The advice to give when row groups are larger than ``chunk_size`` (``partitions`` splits
    them, and each piece decodes its group up to its start), else None."""
    biggest = max(row_groups(path), default=0)
    if biggest <= chunk_size:
        return None
    return (
        f"{path}: row groups of up to {biggest} rows are split into partitions of {chunk_size} "
        "rows; each partition decodes its row group up to its start (rewrite the file with row "
        "groups <= --chunk-size to avoid that)"
    )


def rechunk(batches: Iterator[Any], size: int) -> Iterator[Any]:
    """Arrow tables of exactly ``size`` rows (the last may be shorter) from record batches of any
    size."""
    import pyarrow as pa

    buf: list[Any] = []
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


def iter_rows(path: Path, rows: Range, chunk_size: int, columns: Wanted) -> Iterator[Chunk]:
    """Chunks of rows [start, stop) from the row groups that hold them, pages streamed."""
    import pyarrow.parquet as pq

    start, stop = rows
    pf = pq.ParquetFile(path, buffer_size=_BUFFER, metadata=footer(path))
    meta = {**_schema_meta(pf.schema_arrow, path), **schema_units(pf.schema_arrow)}
    bounds = np.cumsum([0, *row_groups(path)])
    groups = [i for i in range(len(bounds) - 1) if bounds[i] < stop and bounds[i + 1] > start]
    if not groups:
        return

    def batches() -> Iterator[Any]:
        pos = int(bounds[groups[0]])
        names = wanted(pf.schema_arrow.names, columns, path)
        for batch in pf.iter_batches(batch_size=chunk_size, row_groups=groups, columns=names):
            lo, hi = max(start - pos, 0), min(stop - pos, batch.num_rows)
            pos += batch.num_rows
            if hi > lo:
                yield batch.slice(lo, hi - lo)
            if pos >= stop:
                return

    first = start
    for table in rechunk(batches(), chunk_size):
        cols = {n: chunk_column(table.column(n).to_numpy()) for n in table.column_names}
        yield cols, meta, f"{path}[{first}:{first + table.num_rows}]"
        first += table.num_rows


def write(tmp: Path, tables: Written) -> None:
    """The first table; meta as JSON under schema metadata key 'deepz'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, cols, meta = tables[0]
    units = meta.get(UNITS_KEY, {})
    arrays = {k: pa.array(v) for k, v in cols.items()}
    fields = [
        pa.field(k, a.type, metadata={"unit": units[k]} if k in units else None)
        for k, a in arrays.items()
    ]
    table = pa.table(arrays, schema=pa.schema(fields))
    plain = {k: v for k, v in meta.items() if k != UNITS_KEY}
    pq.write_table(table.replace_schema_metadata({"deepz": json.dumps(plain)}), tmp)
