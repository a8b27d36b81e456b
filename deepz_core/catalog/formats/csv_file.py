"""CSV catalogues (.csv): leading comment lines ``# KEY = <JSON value>`` (FLUXZP first; other '#'
lines are free comments), then a header row; NaN written as an empty field; exposures in
``<stem>.exposures.csv``. Chunks are pandas ``chunksize`` reads. Limits: string columns that look
numeric or are all empty come back as numbers."""

from __future__ import annotations

import bisect
import csv
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from deepz_core.catalog.catalog import native_array
from deepz_core.catalog.formats.common import (
    Chunk,
    Columns,
    Meta,
    Range,
    Tables,
    Wanted,
    Written,
    clean_meta,
    scalar,
    unique_names,
)
from deepz_core.catalog.units import UNITS_KEY
from deepz_core.errors import CatalogError

_META_LINE = re.compile(r"^#\s*([A-Za-z0-9_\-]+)\s*=\s*(.*?)\s*$")
_NA = ["", "nan", "NaN"]


def _meta_value(text: str) -> Any:
    """JSON value, else T/True/F/False, else the raw text."""
    try:
        value = json.loads(text)
    except ValueError:
        value = {"T": True, "TRUE": True, "F": False, "FALSE": False}.get(text.upper(), text)
    return value if scalar(value) is not None else text


def _head(path: Path) -> tuple[Meta, str | None, int]:
    """(meta from the leading '# KEY = value' lines, the header row or None, comment lines)."""
    meta: Meta = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for skip, line in enumerate(fh):
            if not line.startswith("#"):
                return clean_meta(meta), line, skip
            match = _META_LINE.match(line)
            if match:
                meta[match[1]] = _meta_value(match[2])
    return clean_meta(meta), None, 0


def read(path: Path, names: tuple[str, ...]) -> Tables:
    """Leading '# KEY = value' lines -> meta, then a header row and the data."""
    import pandas as pd

    meta, header, skip = _head(path)
    if header is None:
        raise CatalogError(f"{path}: no header row (only comment lines)")
    check_header(path, header)
    _check_end(path, header)
    frame = pd.read_csv(
        path,
        skiprows=skip,
        encoding="utf-8",
        keep_default_na=False,
        na_values=_NA,
        dtype={"band": str},
    )
    cols: Columns = {}
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
            series = series.fillna("").astype(str)
        cols[str(name)] = native_array(series.to_numpy())
    return {names[0]: (cols, meta)}


OTHER_DELIMITERS = (";", "\t", "|")


def check_header(path: Path, header: str) -> None:
    """The header row splits into uniquely named columns at commas: a header that is one column
    holding ';', a tab or '|' means another delimiter (CatalogError saying so)."""
    fields = next(csv.reader([header.rstrip("\r\n")]), [])
    if len(fields) == 1:
        found = [d for d in OTHER_DELIMITERS if d in fields[0]]
        if found:
            shown = {"\t": "a tab"}.get(found[0], repr(found[0]))
            raise CatalogError(
                f"{path}: the header row is one column holding {shown}: the delimiter looks "
                "wrong; deepz reads comma-separated files (replace the delimiter by ',')"
            )
    unique_names([f.strip() for f in fields], path)


def _check_end(path: Path, header: str) -> None:
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


def column_names(path: Path) -> list[str]:
    """The header row's column names."""
    _, header, _ = _head(path)
    if header is None:
        raise CatalogError(f"{path}: no header row (only comment lines)")
    check_header(path, header)
    return next(csv.reader([header]))


def count_rows(path: Path) -> int:
    with open(path, encoding="utf-8") as fh:
        lines = sum(1 for line in fh if line.strip() and not line.startswith("#"))
    return max(lines - 1, 0)


def iter_rows(
    path: Path,
    rows: Range,
    chunk_size: int,
    columns: Wanted,
    dtypes: Mapping[str, str] | None = None,
) -> Iterator[Chunk]:
    """Chunks of rows [start, stop) read by pandas, skipping the rows before ``start``; the
    columns of ``dtypes`` ('str' or 'float64', the whole column's type: ``catalog.scan``) are
    read so in every chunk, text as ``read`` gives it (missing cells ''), where pandas would
    guess each chunk's type from its own cells."""
    import pandas as pd

    start, stop = rows
    meta, header, skip = _head(path)
    if header is None:
        raise CatalogError(f"{path}: no header row (only comment lines)")
    check_header(path, header)
    with pd.read_csv(
        path,
        skiprows=lambda i: i < skip or skip < i <= skip + start,
        nrows=stop - start,
        chunksize=chunk_size,
        keep_default_na=False,
        na_values=_NA,
        usecols=None if columns is None else lambda c: c in columns,
        dtype=dict(dtypes or {}),
    ) as reader:  # closed even when a chunk fails to parse
        text = [c for c, t in (dtypes or {}).items() if t == "str"]
        for k, frame in enumerate(reader):
            for c in (c for c in text if c in frame.columns):
                frame[c] = frame[c].fillna("").astype(str)
            cols = {str(c): native_array(frame[c].to_numpy()) for c in frame.columns}
            s = start + k * chunk_size
            yield cols, meta, f"{path}[{s}:{s + len(frame)}]"


def read_ranges(path: Path, ranges: list[Range], columns: Wanted) -> Chunk:
    """The rows of several ranges [start, stop) as one chunk, read in one pass over the text
    (``iter_rows`` per range would tokenize the file up to each start again); labelled with the
    file alone (its rows are not one range)."""
    import pandas as pd

    meta, header, skip = _head(path)
    if header is None:
        raise CatalogError(f"{path}: no header row (only comment lines)")
    check_header(path, header)
    starts, stops = [s for s, _ in ranges], [e for _, e in ranges]

    def skipped(line: int) -> bool:
        if line <= skip:
            return line < skip  # comments, then the header
        k = bisect.bisect_right(starts, line - skip - 1) - 1  # the range this data row may be in
        return k < 0 or line - skip - 1 >= stops[k]

    frame = pd.read_csv(
        path,
        skiprows=skipped,
        nrows=sum(e - s for s, e in ranges),
        keep_default_na=False,
        na_values=_NA,
        usecols=None if columns is None else lambda c: c in columns,
    )
    return {str(c): native_array(frame[c].to_numpy()) for c in frame.columns}, meta, str(path)


def write(tmp: Path, tables: Written) -> None:
    """The first table; meta as leading '# KEY = <JSON>' lines."""
    import pandas as pd

    _, cols, meta = tables[0]
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        for key, value in meta.items():
            if key != UNITS_KEY:  # CSV has no column units; FLUXZP says it
                fh.write(f"# {key} = {json.dumps(value)}\n")
        pd.DataFrame(cols).to_csv(fh, index=False, lineterminator="\n")
