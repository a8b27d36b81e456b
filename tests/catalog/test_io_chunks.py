"""Bounded-memory catalogue reading (deepz_core.catalog.io and its formats): partition plans, exact row ranges in
every format, column selection, HDF5 slices, the gzipped-FITS fallback."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.formats import hdf5_file, parquet_file
from deepz_core.catalog.io import (
    count_rows,
    iter_rows,
    plan_partitions,
    plan_warning,
    read_catalog,
    write_catalog,
)
from deepz_core.errors import ConfigError
from tests.synthetic import synthetic_catalog


def _catalog(n: int = 180) -> Catalog:
    cat = synthetic_catalog(n, 3, exposures=False, missing_zspec=0.2, first_id=11)
    cat.extra["ra"] = np.linspace(150.0, 151.0, n)
    return cat


def _parquet(cat: Catalog, path, sizes: list[int]):
    """The catalogue as Parquet with row groups of the given sizes."""
    write_catalog(cat, path)  # canonical columns and metadata
    table = pq.read_table(path)
    with pq.ParquetWriter(path, table.schema) as writer:
        start = 0
        for size in sizes:
            writer.write_table(table.slice(start, size))
            start += size
    assert pq.ParquetFile(path).metadata.num_row_groups == len(sizes)
    return path


def _ids(cats) -> np.ndarray:
    return np.concatenate([c.ref_id for c in cats])


def test_plan_merges_small_row_groups_and_splits_large_ones(tmp_path) -> None:
    path = _parquet(_catalog(), tmp_path / "c.parquet", [30, 30, 100, 10, 10])
    ranges = plan_partitions(path, 50)
    assert ranges == [(0, 30), (30, 60), (60, 110), (110, 160), (160, 180)]
    assert "row groups of up to 100 rows" in plan_warning(path, 50)  # said once, by predict
    assert plan_partitions(path, 1000) == [(0, 180)] and plan_warning(path, 1000) is None
    with pytest.raises(ConfigError, match="--chunk-size"):
        plan_partitions(path, 0)


@pytest.mark.parametrize("ext", ["parquet", "fits", "csv", "h5"])
def test_every_partition_reads_exactly_its_rows(tmp_path, ext) -> None:
    cat = _catalog()
    path = tmp_path / f"c.{ext}"
    if ext == "parquet":
        _parquet(cat, path, [70, 110])  # the second group is split into partitions
    else:
        write_catalog(cat, path)
    assert count_rows(path) == cat.n_galaxies
    got = []
    for rows in plan_partitions(path, 45):
        chunks = list(iter_rows(path, rows, 20))
        assert all(c.n_galaxies <= 20 for c in chunks)
        np.testing.assert_array_equal(_ids(chunks), cat.ref_id[rows[0] : rows[1]])
        got += chunks
    flux = np.concatenate([c.flux for c in got])
    np.testing.assert_allclose(flux, cat.flux, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([c.extra["ra"] for c in got]), cat.extra["ra"])
    zspec = np.concatenate([c.zspec for c in got])
    np.testing.assert_array_equal(np.isnan(zspec), np.isnan(cat.zspec))


@pytest.mark.parametrize("ext", ["parquet", "fits", "csv", "h5"])
def test_only_the_requested_columns_are_read(tmp_path, ext) -> None:
    cat = _catalog(40)
    path = write_catalog(cat, tmp_path / f"c.{ext}")
    wanted = {
        "ref_id",
        "flux_NB455",
        "flux_error_NB455",
        "flux_subaru_i",
        "flux_error_subaru_i",
        "zspec",
        "not_in_the_file",
    }
    (chunk,) = iter_rows(path, (0, 40), 100, wanted)
    assert chunk.bands == ("NB455", "subaru_i") and "ra" not in chunk.extra
    np.testing.assert_allclose(chunk.flux[:, 1], cat.flux[:, cat.band_index("subaru_i")])


def test_hdf5_is_sliced_not_read_whole(tmp_path, monkeypatch) -> None:
    cat = _catalog(90)
    path = write_catalog(cat, tmp_path / "c.h5")
    monkeypatch.setattr(hdf5_file, "read", lambda *a: pytest.fail("read whole"))
    chunks = list(iter_rows(path, (25, 90), 30))
    assert [c.n_galaxies for c in chunks] == [30, 30, 5]
    np.testing.assert_array_equal(_ids(chunks), cat.ref_id[25:])


def test_hdf5_group_of_columns_with_meta(tmp_path) -> None:
    cat = _catalog(30)
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("galaxies")
        for name, values in cat.columns().items():
            group.create_dataset(name, data=values)
        group.attrs["FLUXZP"] = 25.0
    assert count_rows(path) == 30
    (chunk,) = iter_rows(path, (10, 30), 50)
    assert chunk.fluxzp == 25.0
    for band in cat.bands:  # a group lists its datasets by name: band order may differ
        got = chunk.flux[:, chunk.band_index(band)]
        np.testing.assert_allclose(got, cat.flux[10:, cat.band_index(band)])


def test_gzipped_fits_is_read_whole_once_with_a_warning(tmp_path, caplog) -> None:
    cat = _catalog(60)
    path = write_catalog(cat, tmp_path / "c.fits.gz")
    with caplog.at_level(logging.WARNING, logger="deepz"):
        parts = [list(iter_rows(path, r, 25)) for r in plan_partitions(path, 30)]
    assert caplog.text.count("gzipped FITS") == 1  # read once for all partitions
    np.testing.assert_array_equal(_ids(c for p in parts for c in p), cat.ref_id)
    assert read_catalog(path).n_galaxies == 60  # the file itself is untouched


def test_rechunk_cuts_batches_into_equal_tables() -> None:
    batches = [pa.record_batch({"x": np.arange(a, b)}) for a, b in [(0, 7), (7, 8), (8, 30)]]
    tables = list(parquet_file.rechunk(iter(batches), 10))
    assert [t.num_rows for t in tables] == [10, 10, 10]
    np.testing.assert_array_equal(
        np.concatenate([t["x"].to_numpy() for t in tables]), np.arange(30)
    )


# ---------------------------------------------------------------- issue 19: damaged files in chunks


def test_a_fits_file_cut_at_a_block_boundary_fails_in_one_line(tmp_path) -> None:
    from deepz_core.errors import CatalogError

    whole = write_catalog(_catalog(), tmp_path / "whole.fits").read_bytes()
    path = tmp_path / "cut.fits"
    path.write_bytes(whole[: (len(whole) // 2880 - 1) * 2880])  # passes the size check
    with pytest.raises(CatalogError, match="cut.fits: .*truncated"):
        list(iter_rows(path, (0, 180), 50))


@pytest.mark.parametrize("ext", ["fits", "parquet", "csv"])
def test_repeated_column_names_are_named(tmp_path, ext) -> None:
    from astropy.io import fits

    from deepz_core.errors import CatalogError

    cat = _catalog(20)
    cols = {**cat.columns(), "flux_XXXXX": cat.flux[:, 0]}
    path = tmp_path / f"dup.{ext}"
    if ext == "fits":
        fits.BinTableHDU.from_columns(
            [
                fits.Column(name=k, format="D" if v.dtype.kind == "f" else "K", array=v)
                for k, v in cols.items()
                if v.ndim == 1
            ]
        ).writeto(path)
    elif ext == "parquet":
        pq.write_table(pa.table(cols), path)
    else:
        write_catalog(cat, path)
        path.write_text(path.read_text().replace(",zspec", ",flux_NB455", 1))
    first = cat.bands[0]
    path.write_bytes(path.read_bytes().replace(b"flux_XXXXX", f"flux_{first}".encode()))
    for read in (lambda: read_catalog(path), lambda: list(iter_rows(path, (0, 20), 10))):
        with pytest.raises(CatalogError, match="appear more than once"):
            read()


def test_a_semicolon_csv_says_the_delimiter_looks_wrong(tmp_path) -> None:
    from deepz_core.errors import CatalogError

    path = write_catalog(_catalog(20), tmp_path / "c.csv")
    path.write_text(path.read_text().replace(",", ";"))
    for read in (lambda: read_catalog(path), lambda: list(iter_rows(path, (0, 20), 10))):
        with pytest.raises(CatalogError, match="delimiter looks wrong"):
            read()


def test_hdf5_finds_the_table_after_other_objects(tmp_path) -> None:
    cat = _catalog(30)
    whole = write_catalog(cat, tmp_path / "whole.h5")
    path = tmp_path / "notes-first.h5"
    with h5py.File(path, "w") as f, h5py.File(whole) as g:
        f.create_dataset("aaa_notes", data=np.arange(5))  # not a table, and first
        f.create_dataset("photometry", data=g["galaxies"][()])
    assert read_catalog(path).n_galaxies == 30
    assert count_rows(path) == 30
    np.testing.assert_array_equal(_ids(iter_rows(path, (0, 30), 7)), cat.ref_id)


def test_a_fits_file_cut_inside_its_exposures_is_refused_by_every_reader(tmp_path) -> None:
    """Review: a FITS file truncated inside its EXPOSURES HDU was refused by read_catalog but
    streamed by predict (which reads the galaxies alone) after astropy's 'File may have been
    truncated' three times. Every reader now refuses it with the same line, and astropy says
    nothing."""
    import warnings

    from deepz_core.catalog.io import column_names
    from deepz_core.errors import CatalogError

    whole = write_catalog(synthetic_catalog(60, 3), tmp_path / "whole.fits").read_bytes()
    path = tmp_path / "cut.fits"
    path.write_bytes(whole[: (len(whole) // 2880 - 1) * 2880])  # inside the exposures' data
    readers = {
        "read_catalog": lambda: read_catalog(path),
        "iter_rows": lambda: list(iter_rows(path, (0, 60), 20)),
        "count_rows": lambda: count_rows(path),
        "column_names": lambda: column_names(path),
    }
    messages = set()
    for read in readers.values():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any astropy warning fails the test
            with pytest.raises(CatalogError, match=r"^.*cut.fits: truncated FITS file \(") as err:
                read()
        messages.add(str(err.value))
    assert len(messages) == 1, messages


@pytest.mark.parametrize("column", ["flux_NB555", "ref_id"])
def test_a_bad_cell_is_reported_at_its_file_row_in_any_chunk(tmp_path, column) -> None:
    """Review: 'n/a' at row 800 of a CSV read in chunks of 300 was reported as 'badcell.csv[600:
    900]: ... (e.g. rows 200)', counted from the chunk's start. Rows are now the file's."""
    from astropy.table import Table

    from deepz_core.errors import CatalogError

    cols = _catalog(180).columns()
    values = cols[column].astype(object if column != "ref_id" else float)
    values[130] = "n/a" if column != "ref_id" else 130.5  # text; a non-integer id
    table = Table({**{k: v for k, v in cols.items() if k != "ra"}, column: values})
    path = tmp_path / "bad.csv"
    table.write(path)
    for chunk in (50, 180):
        with pytest.raises(CatalogError, match=rf"{column}.* rows? 130\b"):
            list(iter_rows(path, (0, 180), chunk))


@pytest.mark.parametrize("ext", ["csv", "parquet", "fits", "h5"])
def test_a_sample_of_row_ranges_is_those_rows_in_any_format(tmp_path, ext) -> None:
    """``read_sample`` (the rows a streamed prediction judges for magnitudes: blocks spread over
    the file) gives exactly those rows, a CSV file in one pass over its text."""
    from deepz_core.catalog.io import read_sample

    cat = _catalog()
    path = write_catalog(cat, tmp_path / f"c.{ext}")
    ranges = [(0, 10), (50, 60), (170, 180)]
    got = read_sample(path, ranges)
    rows = np.concatenate([np.arange(s, e) for s, e in ranges])
    np.testing.assert_array_equal(got.ref_id, cat.ref_id[rows])
    np.testing.assert_allclose(got.flux, cat.flux[rows])
    assert got.bands == cat.bands
