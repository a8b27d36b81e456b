"""One bad cell far below the first chunks (fourteenth session): a streamed prediction read and
checked only its first 100 rows and every id before writing, so a spec-z code, an infinite mag,
a text cell of a CSV or a galaxy off the sky at row 300 failed it in its fourth chunk, after part
of the work (and, for a dataset, some parts on disk). Now each column kind has one rule, the
same read whole (``Run.predict``) and streamed (any chunk size, one file or a dataset):

- refused before any output in one line naming the column, the file row and the value (a text
  cell, a repeated id, a coordinate off the sky for a HATS output), or
- predicted, the row flagged as any missing value, or the value read as unknown, with one
  warning per prediction (a flux 1e30, NaN or -99, an error <= 0, a spec-z code, an infinite
  mag), and the same predictions and flags whatever the chunking.

The rows a flux column is judged on for AB magnitudes are the same for both paths, and a
dataset's parts share their notes: one per prediction, not one per part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import deepz_core as dz
from deepz_core.catalog import io, validation
from deepz_core.catalog.screen import PzFlag
from deepz_core.errors import CatalogError
from deepz_core.inference import stream
from tests.synthetic import synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")

ROW = 300  # in the fourth chunk of 100 rows
N = 400


@pytest.fixture(autouse=True)
def _small_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """The preflight reads rows [0, 50) and [350, 400) with every column (the magnitude
    judgement's blocks) and the rest a few columns at a time in chunks of 100: row 300 is seen
    by the whole-catalogue scan only, as in a survey file of millions of rows."""
    monkeypatch.setattr(validation, "CORRELATION_ROWS", 100)
    monkeypatch.setattr(validation, "CORRELATION_BLOCKS", 2)
    monkeypatch.setattr(io, "ID_CHUNK", 100)


def _columns() -> dict[str, np.ndarray]:
    """400 new galaxies of the tiny run's bands, with spec-z (30% unknown), mag and sky."""
    cat = synthetic_catalog(N, 5, exposures=False, missing_zspec=0.3, first_id=1001)
    cols = dict(cat.columns())
    cols["ra"] = np.linspace(150.0, 151.0, N)
    cols["dec"] = np.linspace(1.5, 2.5, N)
    return cols


def _write(path: Path, cols: dict[str, np.ndarray]) -> Path:
    """``cols`` as a catalogue file of ``path``'s format, without ``write_catalog``'s checks."""
    io.FORMATS[io.catalog_format(path)].write(path, [("galaxies", cols, {"FLUXZP": 23.9})])
    return path


def _streamed(run: Path, path: Path, out: Path, chunk: int) -> dict[str, np.ndarray]:
    """The predictions of ``path`` streamed into ``out`` (a file, or a dataset folder)."""
    if out.suffix:
        stream.predict_file(str(run), str(path), str(out), chunk_size=chunk)
    else:
        stream.predict_dataset(str(run), str(path), str(out), chunk_size=chunk)
    table = pq.read_table(out if out.suffix else stream.dataset_files(out))
    return {k: table[k].to_numpy() for k in ("ref_id", "zphot", "zspec", "pit", "flag")}


FLAGGED = {  # column, value at ROW -> what the row becomes
    "flux 1e30": ("flux_NB555", 1e30, PzFlag.BAND_IMPLAUSIBLE),
    "flux NaN": ("flux_NB555", np.nan, PzFlag.BAND_MISSING),
    "flux -99": ("flux_NB555", -99.0, PzFlag.BAND_MISSING),
    "error 0": ("flux_error_NB555", 0.0, PzFlag.BAND_MISSING),
    "error < 0": ("flux_error_NB555", -1.0, PzFlag.BAND_MISSING),
    "zspec 99": ("zspec", 99.0, None),
    "zspec -99": ("zspec", -99.0, None),
    "zspec inf": ("zspec", np.inf, None),
    "mag inf": ("mag", np.inf, None),
}


@pytest.mark.parametrize("case", list(FLAGGED))
def test_a_bad_value_in_a_late_chunk_is_predicted_as_in_memory(
    tiny_run, tmp_path, caplog, case
) -> None:
    """Before: a spec-z code or an infinite mag at row 300 failed the stream in its fourth chunk
    (and the catalogue read whole). Now the row is predicted, flagged as a missing band or with
    its value unknown (NaN), the predictions are those of the catalogue read whole for every
    chunking, file or dataset, and each prediction says so in at most one warning."""
    column, value, flag = FLAGGED[case]
    cols = _columns()
    cols[column] = cols[column].astype(np.float64)
    cols[column][ROW] = value
    path = _write(tmp_path / "cat.fits", cols)
    with caplog.at_level("WARNING", logger="deepz"):
        whole = dz.load_run(tiny_run).predict(str(path))
    notes = [r.getMessage() for r in caplog.records]
    want = {k: np.asarray(whole[k]) for k in ("ref_id", "zphot", "zspec", "pit", "flag")}
    if flag is None:  # a value read as unknown: named once, NaN in the predictions
        assert len(notes) == 1 and notes[0].startswith(f"column '{column}' has 1 "), notes
        assert f"; row {ROW}): read as unknown (NaN)" in notes[0]
        assert np.isnan(whole[column][ROW]) and np.isfinite(want["zphot"][ROW])
    else:  # a band missing or implausible: flagged, imputed
        assert want["flag"][ROW] & flag and np.isfinite(want["zphot"][ROW])
    for out, chunk in (("a.parquet", 100), ("b.parquet", 1000), ("ds", 100)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="deepz"):
            got = _streamed(tiny_run, path, tmp_path / out, chunk)
        assert [r.getMessage() for r in caplog.records] == notes, (out, caplog.text)
        for name, values in want.items():
            np.testing.assert_allclose(got[name], values, rtol=1e-5, err_msg=f"{out}: {name}")


def _csv_text(tmp_path: Path, column: str) -> Path:
    cols = _columns()
    values = cols[column].astype(object)
    values[ROW] = "abc"
    cols[column] = np.array([str(v) for v in values])
    return _write(tmp_path / "cat.csv", cols)


@pytest.mark.parametrize("column", ["flux_NB555", "flux_error_NB455", "zspec", "mag", "ra"])
def test_a_text_cell_of_a_csv_is_refused_before_any_output(tiny_run, tmp_path, column) -> None:
    """Before: 'abc' in row 300 of a CSV failed the stream in its fourth chunk; a dataset kept
    three parts. Now the file is refused before any output or Dask task exists, in the line the
    catalogue read whole gives: the column, the file row, the value."""
    path = _csv_text(tmp_path, column)
    with pytest.raises(CatalogError) as whole:
        dz.load_run(tiny_run).predict(str(path))
    assert str(whole.value) == f"{path}: column '{column}' is not numeric: 'abc' in row {ROW}"
    _refused_before_output(tiny_run, path, tmp_path, str(whole.value))


def _refused_before_output(run: Path, path: Path, tmp_path: Path, message: str) -> None:
    """Streamed into a file, a dataset (the mapper never called) and a HATS folder, ``path`` is
    refused with ``message`` and nothing is written."""
    tasks: list[tuple] = []

    def mapper(todo: list[tuple]):
        tasks.extend(todo)
        yield from stream.local_map(todo)

    calls = [
        lambda: stream.predict_file(str(run), str(path), str(tmp_path / "p.parquet"), 100),
        lambda: stream.predict_dataset(
            str(run), str(path), str(tmp_path / "ds"), 100, mapper=mapper
        ),
        lambda: stream.predict_file(
            str(run), str(path), str(tmp_path / "h"), 100, out_format="hats"
        ),
    ]
    for call in calls:
        with pytest.raises(CatalogError) as err:
            call()
        assert str(err.value) == message
    assert not tasks and not (tmp_path / "p.parquet").exists() and not (tmp_path / "h").exists()
    assert not list((tmp_path / "ds").glob("part-*")) if (tmp_path / "ds").exists() else True


@pytest.mark.parametrize(("column", "value"), [("dec", 95.0), ("ra", np.nan), ("dec", -np.inf)])
def test_a_galaxy_off_the_sky_is_refused_before_a_hats_output(
    tiny_run, tmp_path, column, value
) -> None:
    """Before: dec = 95 at row 300 gave a 40-line astropy traceback once every galaxy was
    predicted, NaN a ConfigError then. Now a HATS output refuses it first, naming column, row
    and value, read whole or streamed; other outputs carry the coordinates as they are."""
    cols = _columns()
    cols[column][ROW] = value
    path = _write(tmp_path / "sky.fits", cols)
    with pytest.raises(CatalogError) as whole:
        dz.load_run(tiny_run).predict(str(path), out=tmp_path / "w", out_format="hats")
    assert f"column '{column}' has 1 value off the sky ({value:g}; row {ROW})" in str(whole.value)
    out = tmp_path / "h"
    with pytest.raises(CatalogError) as err:
        stream.predict_file(str(tiny_run), str(path), str(out), 100, out_format="hats")
    assert str(err.value) == str(whole.value) and not out.exists()
    assert stream.predict_file(str(tiny_run), str(path), str(tmp_path / "p.parquet"), 100) == N


def test_a_repeated_id_in_a_late_chunk_is_refused_before_any_output(tiny_run, tmp_path) -> None:
    cols = _columns()
    cols["ref_id"][ROW] = cols["ref_id"][10]
    path = _write(tmp_path / "dup.h5", cols)
    with pytest.raises(CatalogError) as whole:
        dz.load_run(tiny_run).predict(str(path))
    assert str(whole.value) == f"{path}: column 'ref_id' has duplicates: 1011"
    _refused_before_output(tiny_run, path, tmp_path, str(whole.value))


def test_magnitudes_below_the_first_rows_are_judged_as_in_memory(tiny_run, tmp_path) -> None:
    """Before: the stream judged a flux column for AB magnitudes on its first 100 rows only; a
    band without values there (a first tract without it) and magnitudes below was predicted as
    fluxes, while the catalogue read whole was refused. Both now judge the same rows."""
    cols = _columns()
    flux, error = cols["flux_NB555"], cols["flux_error_NB555"]
    flux[:] = 23.9 - 2.5 * np.log10(np.abs(flux))  # AB magnitudes, as bright as the fluxes say
    error[:] = 0.05
    flux[:100], error[:100] = np.nan, np.nan  # not observed in the first rows
    path = _write(tmp_path / "mags.fits", cols)
    with pytest.raises(CatalogError) as whole:
        dz.load_run(tiny_run).predict(str(path))
    assert "column 'flux_NB555' looks like AB magnitudes" in str(whole.value)
    _refused_before_output(tiny_run, path, tmp_path, str(whole.value))


def test_a_dataset_names_a_band_without_values_once(tiny_run, tmp_path, caplog) -> None:
    """Before: each part of a dataset warned 'band NB455 has no values in rows 0 to 99 of ...',
    then '3 more warnings like those above' for the others. Now the dataset says it once for
    the catalogue, as one file does; a band empty in some parts only is flagged alone."""
    cols = _columns()
    cols["flux_NB455"][:] = np.nan
    cols["flux_NB655"][:200] = np.nan  # empty in the first two parts only
    path = _write(tmp_path / "gap.fits", cols)
    note = (
        "band NB455 has no values in this catalogue: imputed for every galaxy, flagged BAND_MISSING"
    )
    for out in ("one.parquet", "ds"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="deepz"):
            got = _streamed(tiny_run, path, tmp_path / out, 100)
        assert [r.getMessage() for r in caplog.records] == [note], caplog.text
        assert (got["flag"] & PzFlag.BAND_MISSING).all()
    caplog.clear()
    with caplog.at_level("WARNING", logger="deepz"):  # resumed: the finished parts still say it
        (tmp_path / "ds" / stream.SUCCESS).unlink()
        (tmp_path / "ds" / "part-00002.parquet").unlink()
        _streamed(tiny_run, path, tmp_path / "ds", 100)
    assert [r.getMessage() for r in caplog.records] == [note], caplog.text


def test_a_band_absent_from_a_dataset_is_named_once(tiny_run, tmp_path, caplog) -> None:
    """The preflight names a run band the file lacks, once; no part repeats it (on a Dask worker
    either: each task carries the notes given)."""
    cols = {k: v for k, v in _columns().items() if not k.endswith("NB655")}
    path = _write(tmp_path / "absent.fits", cols)
    with caplog.at_level("WARNING", logger="deepz"):
        _streamed(tiny_run, path, tmp_path / "ds", 100)
    messages = [r.getMessage() for r in caplog.records if "NB655" in r.getMessage()]
    assert messages == [
        "band NB655 is not in this catalogue (no flux column): imputed for every galaxy, "
        "flagged BAND_MISSING"
    ]


def test_the_apps_prediction_job_checks_the_file_first_and_names_a_code_once(
    tiny_run, tmp_path, caplog
) -> None:
    """The Predict page's job streamed chunks without any preflight: a text cell failed it in a
    late chunk, and each chunk gave its own notes. It now checks the file first (state failed,
    the one line, no output) and names a spec-z code once."""
    from deepz_core.jobs.prediction import (
        OUTPUT,
        create_prediction_job,
        read_job,
        run_prediction_job,
    )

    bad = create_prediction_job(tmp_path / "jobs", tiny_run, _csv_text(tmp_path, "zspec"))
    with pytest.raises(CatalogError, match=f"'zspec' is not numeric: 'abc' in row {ROW}$"):
        run_prediction_job(bad)
    assert read_job(bad)["state"] == "failed" and not (bad / OUTPUT).exists()
    cols = _columns()
    cols["zspec"][ROW] = 99.0
    good = create_prediction_job(tmp_path / "jobs", tiny_run, _write(tmp_path / "z.fits", cols))
    with caplog.at_level("WARNING", logger="deepz"):
        assert run_prediction_job(good) == N
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "column 'zspec' has 1 value outside [0, 1"
    ]


def test_a_kept_csv_column_has_the_whole_files_type_in_every_chunk(tiny_run, tmp_path) -> None:
    """pandas types a CSV chunk by its own cells: a --keep-columns column of integers with a
    blank cell, or a word, at row 300 came out int64 in the first parts and float or text in
    the fourth, and the Parquet writer stopped with a 40-line traceback ('Table schema does not
    match'). The preflight's scan finds each kept column's type over the whole file; every
    chunk is read so, as the catalogue read whole."""
    from deepz_core.inference.stream import ReadOptions

    cols = _columns()
    numbers = [str(i) for i in range(N)]
    cols["field"] = np.array(numbers[:ROW] + ["abc"] + numbers[ROW + 1 :])  # text at row 300
    cols["count"] = np.array(numbers[:ROW] + [""] + numbers[ROW + 1 :])  # one blank: floats
    cols["objid"] = np.array(numbers)  # integers throughout
    path = _write(tmp_path / "kept.csv", cols)
    keep = ("field", "count", "objid")
    whole = dz.load_run(tiny_run).predict(str(path), keep_columns=keep)
    assert [whole[n].dtype.kind for n in keep] == ["U", "f", "i"]
    read = ReadOptions(keep=keep)
    stream.predict_file(str(tiny_run), str(path), str(tmp_path / "k.parquet"), 100, read=read)
    stream.predict_dataset(str(tiny_run), str(path), str(tmp_path / "ds"), 100, read=read)
    for got in (
        pq.read_table(tmp_path / "k.parquet"),
        pq.read_table(stream.dataset_files(tmp_path / "ds")),
    ):
        assert [str(got.schema.field(n).type) for n in keep] == ["string", "double", "int64"]
        for name in keep:
            values = got[name].to_numpy(zero_copy_only=False).astype(str)
            np.testing.assert_array_equal(values, np.asarray(whole[name]).astype(str))
