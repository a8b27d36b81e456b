"""Whole-catalogue checks of a few columns read alone (deepz_core.catalog.scan): a bad cell far
beyond the first chunk is found and named (column, file row, value) whatever the chunking, with
the same line as the catalogue read whole gives; the values a prediction reads as unknown are
counted for its one warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepz_core.catalog import io
from deepz_core.catalog.formats import csv_file
from deepz_core.catalog.io import read_catalog, write_catalog
from deepz_core.catalog.scan import scan_catalog
from deepz_core.catalog.validation import unknown_cells, unknown_note
from deepz_core.errors import CatalogError
from tests.synthetic import synthetic_catalog

ROW = 300  # beyond the first chunks of 100 rows


@pytest.fixture(autouse=True)
def _chunks_of_100(monkeypatch: pytest.MonkeyPatch) -> None:
    """Columns read alone in chunks of 100 rows: the bad cell lies in the fourth."""
    monkeypatch.setattr(io, "ID_CHUNK", 100)


def _columns(n: int = 400) -> dict[str, np.ndarray]:
    cat = synthetic_catalog(n, 5, exposures=False, missing_zspec=0.3, first_id=1001)
    cols = dict(cat.columns())
    cols["ra"] = np.linspace(150.0, 151.0, n)
    cols["dec"] = np.linspace(1.5, 2.5, n)
    return cols


def _csv_with_text(path: Path, column: str, text: str = "abc") -> Path:
    """The catalogue as CSV with ``text`` in ``column`` at row ROW."""
    cols = _columns()
    values = cols[column].astype(object)
    values[ROW] = text
    cols[column] = np.array([str(v) for v in values])
    csv_file.write(path, [("galaxies", cols, {"FLUXZP": 23.9})])
    return path


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("flux_NB555", "numeric"),
        ("flux_error_subaru_i", "numeric"),
        ("zspec", "numeric"),
        ("mag", "numeric"),
        ("ra", "numeric"),
        ("ref_id", "integer"),
    ],
)
def test_a_text_cell_of_a_csv_is_named_with_its_row_and_value(tmp_path, column, kind) -> None:
    """Fourteenth session: 'abc' at row 300 of a CSV failed the streamed prediction in its
    fourth chunk (parts of a dataset already written). The scan finds it in one line naming
    column, file row and value, the line the catalogue read whole gives."""
    path = _csv_with_text(tmp_path / "bad.csv", column)
    with pytest.raises(CatalogError) as scanned:
        scan_catalog(path, needed=io.column_names(path))
    with pytest.raises(CatalogError) as whole:
        read_catalog(path, predicting=True)
    want = f"bad.csv: column '{column}' is not {kind}: 'abc' in row {ROW}"
    assert str(scanned.value).endswith(want)
    assert str(scanned.value) == str(whole.value)


def test_the_values_read_as_unknown_are_counted_over_every_chunk(tmp_path) -> None:
    """Spec-z codes and an infinite mag in three chunks: one count per column, the rows of the
    file, and the same note as the catalogue read whole."""
    cols = _columns()
    cols["zspec"][[5, 150, ROW]] = [99.0, -1.0, 99.0]
    cols["mag"][ROW] = np.inf
    path = tmp_path / "codes.parquet"
    io.FORMATS["parquet"].write(path, [("galaxies", cols, {"FLUXZP": 23.9})])
    scan = scan_catalog(path)
    np.testing.assert_array_equal(scan.ids, cols["ref_id"])
    cat = read_catalog(path, predicting=True)
    whole = [
        unknown_note(c, np.flatnonzero(b), getattr(cat, c)[b])
        for c, b in unknown_cells(cat).items()
    ]
    assert scan.notes() == whole
    assert whole[0].startswith(
        "column 'zspec' has 3 values outside [0, 10) (-1, 99; rows 5, 150, 300)"
    )
    assert whole[1].startswith("column 'mag' has 1 infinite value (inf; row 300): read as unknown")
    with pytest.raises(CatalogError, match="column 'zspec' has 3 value"):
        read_catalog(path)  # training: spec-z are labels, codes refused


@pytest.mark.parametrize(("column", "value"), [("dec", 95.0), ("ra", np.nan), ("dec", -np.inf)])
def test_a_hats_output_needs_every_galaxy_on_the_sky(tmp_path, column, value) -> None:
    cols = _columns()
    cols[column][ROW] = value
    path = write_catalog(synthetic_catalog(2, 0), tmp_path / "x.fits")  # any file of the kind
    io.FORMATS["fits"].write(path, [("galaxies", cols, {"FLUXZP": 23.9})])
    assert scan_catalog(path).ids.size == 400  # no HATS output: coordinates need only be numbers
    with pytest.raises(CatalogError) as err:
        scan_catalog(path, sky=("ra", "dec"))
    assert (
        f"column '{column}' has 1 value off the sky ({value:g}; row {ROW}): --out-format hats"
        in (str(err.value))
    )


def test_repeated_and_text_ids_are_found_in_any_chunk(tmp_path) -> None:
    cols = _columns()
    cols["ref_id"][ROW] = cols["ref_id"][10]
    path = tmp_path / "dup.parquet"
    io.FORMATS["parquet"].write(path, [("galaxies", cols, {"FLUXZP": 23.9})])
    ids = scan_catalog(path).ids
    assert np.count_nonzero(ids == cols["ref_id"][10]) == 2
    text = _csv_with_text(tmp_path / "ids.csv", "ref_id", "G1301")
    with pytest.raises(CatalogError, match=rf"'ref_id' is not integer: 'G1301' in row {ROW}$"):
        scan_catalog(text)


def test_a_csv_files_carried_columns_get_one_type_for_every_chunk(tmp_path) -> None:
    """pandas types each CSV chunk alone: the scan gives the passed-through columns the whole
    file's type (text once a cell is text, floats once a cell is missing or a fraction), and
    leaves integers alone (a 64-bit HEALPix index as float64 would lose its last digits)."""
    cols = _columns()
    cols["_healpix_29"] = np.arange(400, dtype=np.int64) + 3 * 10**18
    cols["ra"] = np.round(cols["ra"]).astype(np.int64).astype(object)  # integers up to row 300
    cols["ra"][ROW] = "150.5"
    cols["ra"] = np.array([str(v) for v in cols["ra"]])
    cols["field"] = np.array([str(i) for i in range(400)])
    cols["field"][ROW] = "M31"
    cols["count"] = np.array([str(i) for i in range(400)])
    path = tmp_path / "carried.csv"
    csv_file.write(path, [("galaxies", cols, {"FLUXZP": 23.9})])
    scan = scan_catalog(path, keep=("field", "count"))
    assert scan.csv_dtypes == {"ra": "float64", "dec": "float64", "field": "str"}
