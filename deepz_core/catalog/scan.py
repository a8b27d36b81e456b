"""Whole-catalogue checks of a few columns read alone (``io.read_columns``, 8 bytes per row and
column): what a streamed prediction must know of every row before it writes anything, while it
reads the other columns chunk by chunk (deepz_core.inference.stream's preflight).

- the identifier: integers (``as_int64``), and unique (``ScanResult.ids``, checked by the caller);
- ``zspec`` and ``mag``: numbers; a spec-z outside [0, ZSPEC_MAX) or an infinite mag is read as
  unknown by the prediction, counted here for its one warning (``validation.unknown_note``);
- the coordinates: numbers, and with a HATS output a finite ra and dec on the sky
  (``validation.check_sky``);
- in a CSV file, whose cells carry no type, every other numeric column the prediction reads
  (fluxes, errors, magnitudes): a text cell fails here, naming its column, row and value, not
  in the chunk that holds it; and the type of each column it passes through (coordinates,
  ``--keep-columns``), which pandas would guess chunk by chunk (integers in one, floats or text
  in another: parts of one file with two schemas), is the whole column's, as read whole
  (``ScanResult.csv_dtypes``).

Each failure is a CatalogError naming the file, the column, the file rows and the values, the
same line as the catalogue read whole gives (``columns.as_float64``, ``validation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepz_core.catalog.columns import FLUX_PREFIX, as_float64, as_int64, file_rows, text_cells
from deepz_core.catalog.conventions import (
    COORDINATE_COLUMNS,
    InputConventions,
    identifier,
    rename_columns,
)
from deepz_core.catalog.io import catalog_format, column_names, read_columns
from deepz_core.catalog.validation import (
    UNKNOWN_CELLS,
    bad_zspec,
    check_sky,
    unknown_note,
)


@dataclass
class ScanResult:
    """What ``scan_catalog`` found in every row: the (N,) int64 identifiers (empty without an
    identifier column), per column of ``validation.UNKNOWN_CELLS`` that has some, the file rows
    (K,) and values (K,) a prediction reads as unknown, and the pandas dtypes ('str',
    'float64') that a CSV file's passed-through columns must be read with in every chunk."""

    ids: np.ndarray
    unknown: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    csv_dtypes: dict[str, str] = field(default_factory=dict)

    def notes(self) -> list[str]:
        """The prediction's warnings about the values it reads as unknown, one per column."""
        return [unknown_note(c, rows, values) for c, (rows, values) in self.unknown.items()]


def scanned_columns(
    names: Sequence[str],
    conventions: InputConventions,
    needed: Sequence[str] | None,
    keep: Sequence[str] = (),
    csv: bool = False,
) -> dict[str, str]:
    """``{file column: canonical name}`` of the columns ``scan_catalog`` reads: the identifier
    (canonical 'ref_id'), zspec, mag and the coordinates (after ``conventions.rename``), and in
    a CSV file (``csv``) every other column of ``needed`` (the prediction's columns; None: the
    flux and error columns), the ``keep`` columns, which may hold text, as KEPT."""
    canonical = rename_columns(names, conventions.rename, "") if conventions.rename else {}
    out: dict[str, str] = {}
    ident = identifier(names, conventions)
    if ident is not None and ident in names:
        out[ident] = "ref_id"
    for name in names:
        new = canonical.get(name, name)
        numeric = needed is None and new.startswith(FLUX_PREFIX)
        numeric |= needed is not None and name in needed and name not in keep
        if new in ("zspec", "mag", *COORDINATE_COLUMNS) or (csv and numeric):
            out.setdefault(name, new)
        elif csv and name in keep:
            out.setdefault(name, KEPT)
    return out


KEPT = ""  # the canonical name ``scanned_columns`` gives a kept column of any type


def scan_catalog(
    path: Path | str,
    conventions: InputConventions | None = None,
    needed: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    sky: tuple[str, str] | None = None,
) -> ScanResult:
    """Read the ``scanned_columns`` of every row of the catalogue and check them (module doc);
    ``sky``: the canonical (ra, dec) columns a HATS output places the galaxies by (None: no HATS
    output). CatalogError at the first bad cell, naming its file row."""
    conventions = conventions or InputConventions()
    names = column_names(path)
    csv = catalog_format(path) == "csv"
    columns = scanned_columns(names, conventions, needed, keep, csv)
    axes = {} if sky is None else {sky[0]: "ra", sky[1]: "dec"}
    ids: list[np.ndarray] = [np.zeros(0, np.int64)]
    found: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    dtypes: dict[str, str] = {}
    for cols, source in read_columns(path, list(columns)):
        for name, values in cols.items():
            kind = columns[name]
            if kind == "ref_id":
                ids.append(as_int64(values, name, source))
                continue
            if kind == KEPT:
                dtypes[name] = _wider(dtypes.get(name), values)
                continue
            numbers = as_float64(values, name, source)
            if kind in axes:
                check_sky(numbers, name, axes[kind], source)
            if csv and kind in COORDINATE_COLUMNS:  # carried: one type (ints, else floats)
                dtypes[name] = _wider(dtypes.get(name), values)
            bad = _unknown(kind, numbers)
            if bad is not None and bad.any():
                rows = file_rows(np.flatnonzero(bad), source)
                found.setdefault(kind, []).append((rows, numbers[bad]))
    unknown = {k: _joined(found[k]) for k in UNKNOWN_CELLS if k in found}
    forced = {n: t for n, t in dtypes.items() if t in ("str", "float64")}
    return ScanResult(np.concatenate(ids), unknown, forced)


def _wider(dtype: str | None, values: np.ndarray) -> str:
    """The type a kept CSV column must be read with, given the one of its chunks so far
    (``dtype``; None: none yet) and another chunk's ``values``: 'str' once a cell is text,
    else 'float64' once a chunk is not all integers (a missing value, a fraction), else the
    chunk's own kind ('int' or 'other': left to pandas, the same in every chunk)."""
    if dtype == "str" or text_cells(values).any():
        return "str"
    kind = np.asarray(values).dtype.kind
    if dtype == "float64" or kind in "fO":
        return "float64"
    return "int" if kind in "iu" else (dtype or "other")


def _unknown(kind: str, values: np.ndarray) -> np.ndarray | None:
    """(n,) bool: the values of a chunk of canonical column ``kind`` that a prediction reads as
    unknown (``validation.unknown_cells``); None for other columns."""
    if kind == "zspec":
        return bad_zspec(values)
    if kind == "mag":
        return np.isinf(values)
    return None


def _joined(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, values) of every chunk, in file order."""
    return np.concatenate([r for r, _ in parts]), np.concatenate([v for _, v in parts])
