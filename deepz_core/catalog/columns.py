"""The canonical catalogue's column names (``flux_<band>``, ``flux_error_<band>``, the galaxy and
exposure columns), its default flux zero-point (23.9: microJansky), and the checks that turn a
file's column into numbers (``as_int64`` for identifiers, ``as_float64`` for values), each
CatalogError naming the column and echoing the bad values. The ground under the Catalog model
(``catalog.catalog``), the survey conventions, the magnitudes and the column mapping."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from deepz_core.errors import CatalogError

DEFAULT_FLUXZP = 23.9
FLUX_PREFIX = "flux_"
ERROR_PREFIX = "flux_error_"
GALAXY_COLUMNS = ("ref_id", "zspec", "mag")
EXPOSURE_COLUMNS = ("ref_id", "band", "exp_num", "flux", "flux_error")


def few(labels: np.ndarray | list[Any], n: int = 3) -> str:
    """'3, 17, 18 (and 5 more)': the first ``n`` labels and how many were left out."""
    labels = list(np.asarray(labels).tolist())
    shown = ", ".join(str(x) for x in labels[:n])
    return shown + (f" (and {len(labels) - n} more)" if len(labels) > n else "")


def file_rows_text(rows: np.ndarray | list[int]) -> str:
    """'row 300' or 'rows 300, 512, 900 (and 2 more)': the rows of a file that a message names."""
    return f"{'row' if len(rows) == 1 else 'rows'} {few(rows)}"


def plural(n: int, one: str, many: str) -> str:
    """'1 galaxy', '2,000 galaxies': a count with thousands separators and its noun."""
    return f"{n:,} {one if n == 1 else many}"


def check_unique_ids(ids: np.ndarray, source: str, column: str = "ref_id") -> None:
    """CatalogError naming ``column`` and a few repeated values when ``ids`` (N,) repeat: the
    whole catalogue's, whether it is read at once or in chunks (the streamed preflight)."""
    ordered = np.sort(ids)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise CatalogError(
            f"{source}: column '{column}' has duplicates: {few(np.unique(repeated))}"
        )


INT64_RANGE = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))


def as_int64(values: Any, column: str, source: str) -> np.ndarray:
    """1-D int64 copy of ``values``; unsigned or Python integers must fit int64, floats must be
    finite and integral. Raises CatalogError (every reader's ids come through here)."""
    arr = np.asarray(values)
    if arr.size:
        _check_int64_range(arr, column, source)
    if arr.dtype.kind in "iu" or arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        _check_float_ids(arr, column, source)
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if not bad.any():
            return arr.astype(np.int64)
        rows = file_rows(np.flatnonzero(bad), source)
        raise CatalogError(
            f"{source}: column '{column}' has non-integer values in rows {few(rows)}"
        )
    raise _not_numeric(arr, column, source, "integer")


def _check_int64_range(arr: np.ndarray, column: str, source: str) -> None:
    """CatalogError naming ``column`` and one value when integers do not fit int64: uint64 ids
    above 2**63 - 1 (which ``astype`` would wrap to negative numbers), or integers too large for
    any integer type that a reader kept as Python ints or text."""
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        big = arr > np.uint64(INT64_RANGE[1])
        example = int(arr[big][0]) if big.any() else None
    elif arr.dtype.kind in "OU":
        example = next((v for v in map(_integer, arr.reshape(-1).tolist()) if _outside(v)), None)
    else:
        return
    if example is not None:
        raise CatalogError(
            f"{source}: column '{column}' holds integers outside the int64 range (e.g. "
            f"{example}); deepz stores ids as int64 (at most {INT64_RANGE[1]}): give ids that "
            "fit, or name another id column (--id-column)"
        )


def _integer(value: Any) -> int | None:
    """``value`` as an int when it is a Python int or the text of one (not a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.lstrip("+-").isdigit() else None


def _outside(value: int | None) -> bool:
    return value is not None and not INT64_RANGE[0] <= value <= INT64_RANGE[1]


def _check_float_ids(arr: np.ndarray, column: str, source: str) -> None:
    """CatalogError when float ids are too large for their type to hold every integer (beyond
    2**53 for float64): 19-digit survey ids stored as floats have lost their last digits."""
    limit = 2.0 ** (np.finfo(arr.dtype).nmant + 1)
    with np.errstate(invalid="ignore"):
        big = np.isfinite(arr) & (np.abs(arr) > limit)
    if big.any():
        digits = np.finfo(arr.dtype).precision
        raise CatalogError(
            f"{source}: column '{column}' holds ids as {arr.dtype} numbers (e.g. "
            f"{arr[big][0]:.0f}), which keep only about {digits} digits: ids above {limit:.0f} "
            "such as 19-digit survey ids have lost their last digits (and may collide); write "
            "the ids as 64-bit integers (int64) or text and import again"
        )


def as_float64(values: Any, column: str, source: str) -> np.ndarray:
    """float64 copy/view of numeric ``values`` (bool and strings rejected). Raises CatalogError."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf" or arr.size == 0:
        return np.ascontiguousarray(arr, dtype=np.float64)
    raise _not_numeric(arr, column, source, "numeric")


def _not_numeric(arr: np.ndarray, column: str, source: str, kind: str) -> CatalogError:
    """A CatalogError naming the file (a chunk's label 'file[start:stop]' without its range: the
    rows are the file's), the column, the first cells that are not numbers and their file rows,
    e.g. "column 'zspec' is not numeric: 'abc' in row 300" (its dtype when no cell is text).
    Empty and NaN cells are missing values, not text (a CSV column with one text cell holds ''
    for them)."""
    values = arr.reshape(-1).tolist()
    bad = np.flatnonzero(text_cells(arr)).tolist()
    shown = few([repr(values[i]) for i in bad])
    rows = file_rows(np.asarray(bad, np.int64), source)
    where = f": {shown} in {file_rows_text(rows)}" if bad else f" (dtype {arr.dtype})"
    return CatalogError(f"{file_label(source)}: column '{column}' is not {kind}{where}")


def text_cells(values: np.ndarray) -> np.ndarray:
    """(N,) bool over the cells of ``values`` (N, ...) flattened: those that are neither a number
    nor a missing value (empty text, NaN), i.e. text where a number could stand. All False for a
    numeric array."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iufb":
        return np.zeros(arr.size, dtype=bool)
    cells = arr.reshape(-1).tolist()
    return np.array([not _is_number(v) and not _is_missing(v) for v in cells], dtype=bool)


def _is_missing(value: Any) -> bool:
    """An empty text cell or a float NaN: a missing value, which a numeric column may hold."""
    if isinstance(value, str | bytes):
        return not value.strip()
    return isinstance(value, float) and value != value


CHUNK_LABEL = re.compile(r"\[(\d+):\d+\]$")  # 'file[start:stop]': a chunk's source label


def file_label(source: str) -> str:
    """``source`` without a chunk's row range: 'cat.csv[300:400]' -> 'cat.csv'."""
    return CHUNK_LABEL.sub("", source)


def file_rows(rows: np.ndarray, source: str) -> np.ndarray:
    """``rows`` of a chunk counted from the file's first row: offset by the chunk's start when
    ``source`` is a chunk label 'file[start:stop]' (``formats.common.Chunk``), else as they are."""
    match = CHUNK_LABEL.search(source)
    return rows + int(match.group(1)) if match else rows


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
