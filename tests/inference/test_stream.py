"""Streaming and partitioned prediction: same numbers as in-memory predict_catalog, atomic outputs,
resuming, and the Dask path (deepz_core.inference.stream, deepz_core.inference.scaleout)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.cli.main import main
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.inference import stream
from deepz_core.inference.predict import mixture_from_arrays, predict_catalog
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir
from tests.synthetic import TINY_MODEL, synthetic_catalog

TRAIN = dict(schedule=((1, 1e-3),), batch_size=40, repetitions=1, folds=2, device="cpu", seed=2)
_synthetic = partial(synthetic_catalog, exposures=False, missing_zspec=0.2)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[RunDir, Catalog, dict]:
    """A tiny run trained on galaxies 1..60 and a 150-galaxy catalogue (ids 31..180: the second
    half of the training set, so some rows get out-of-fold p(z), then 120 new galaxies) in every
    streamed format."""
    root = tmp_path_factory.mktemp("stream")
    train = _synthetic(60, 0)
    write_catalog(train, root / "train.fits")
    run = create_run(
        root / "run",
        run_config(str(root / "train.fits"), pretrain="none", model=TINY_MODEL, train=TRAIN),
    )
    execute_run(run)
    seen, new = train.select(np.arange(30, 60)), _synthetic(120, 1, first_id=61)
    cat = Catalog(
        ref_id=np.r_[seen.ref_id, new.ref_id],
        bands=new.bands,
        flux=np.r_[seen.flux, new.flux],
        flux_error=np.r_[seen.flux_error, new.flux_error],
        zspec=np.r_[seen.zspec, new.zspec],
        mag=np.r_[seen.mag, new.mag],
    )
    cat.extra["ra"] = np.linspace(150, 151, 150)
    files = {}
    for ext in ("fits", "parquet", "csv", "h5"):
        files[ext] = write_catalog(cat, root / f"cat.{ext}")
    return run, cat, files


def _read(path) -> Table:
    return stream.astropy_table(pq.read_table(path))


def _same(a: Table, b: Table) -> None:
    for name in (
        "ref_id",
        "zphot",
        "zmean",
        "zmedian",
        "odds",
        "pit",
        "out_of_fold",
        "weights",
        "means",
        "stds",
    ):
        np.testing.assert_allclose(
            np.asarray(a[name], float),
            np.asarray(b[name], float),
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


@pytest.mark.parametrize("ext", ["fits", "parquet", "csv", "h5"])
def test_chunked_prediction_matches_in_memory(trained, tmp_path, ext) -> None:
    run, cat, files = trained
    expected = predict_catalog(run.path, cat, tmp_path / "mem.fits")
    assert np.asarray(expected["out_of_fold"]).any()
    n = stream.predict_file(
        str(run.path), str(files[ext]), str(tmp_path / "s.parquet"), chunk_size=40, grid=True
    )
    got = _read(tmp_path / "s.parquet")
    assert n == len(got) == cat.n_galaxies
    _same(got, expected)
    np.testing.assert_allclose(got["ra"], cat.extra["ra"])
    cfg = PzConfig(**run.config().get("pz", {}))
    mix = mixture_from_arrays(*(np.asarray(got[k]) for k in ("weights", "means", "stds")))
    inside = (mix.cdf(torch.tensor(cfg.z_max)) - mix.cdf(torch.tensor(cfg.z_min))).numpy()
    pz = np.asarray(got["pz"])  # (N, G) densities on the grid
    assert pz.shape == (cat.n_galaxies, len(cfg.grid()))
    np.testing.assert_allclose(pz.sum(1) * cfg.dz, inside, atol=0.01)


def test_fits_output_and_dataset_match(trained, tmp_path) -> None:
    run, cat, files = trained
    stream.predict_file(str(run.path), str(files["fits"]), str(tmp_path / "s.fits"), chunk_size=64)
    rows = stream.predict_dataset(
        str(run.path), str(files["parquet"]), str(tmp_path / "ds"), chunk_size=64
    )
    assert rows == cat.n_galaxies and (tmp_path / "ds" / stream.SUCCESS).exists()
    _same(_read(tmp_path / "ds"), Table.read(tmp_path / "s.fits", hdu="PREDICTIONS"))


def test_killed_prediction_leaves_no_finished_output(trained, tmp_path, monkeypatch) -> None:
    run, _, files = trained
    real, calls = stream._write_chunks, []

    def dying(tables, tmp, *metadata):
        calls.append(tmp)
        if len(calls) > 1:
            raise KeyboardInterrupt("killed")
        return real(tables, tmp, *metadata)

    monkeypatch.setattr(stream, "_write_chunks", dying)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        stream.predict_dataset(str(run.path), str(files["fits"]), str(out), chunk_size=50)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "_plan.json", "part-00000.parquet"]

    def first_then_die(tables, tmp, *metadata):
        real(iter([next(tables)]), tmp, *metadata)  # one chunk reaches the temporary file
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(stream, "_write_chunks", first_then_die)
    with pytest.raises(KeyboardInterrupt):
        stream.predict_file(
            str(run.path), str(files["fits"]), str(tmp_path / "one.parquet"), chunk_size=50
        )
    assert list(tmp_path.glob("one*")) == [] and list(tmp_path.glob(".one*")) == []


def test_resume_skips_finished_parts(trained, tmp_path, monkeypatch) -> None:
    run, cat, files = trained
    out = tmp_path / "ds"
    stream.predict_dataset(str(run.path), str(files["csv"]), str(out), chunk_size=50)
    (out / "part-00001.parquet").unlink()
    (out / stream.SUCCESS).unlink()
    real, done = stream.predict_part, []
    monkeypatch.setattr(stream, "predict_part", lambda *t: done.append(t[2]) or real(*t))
    assert stream.predict_dataset(str(run.path), str(files["csv"]), str(out), chunk_size=50) == 150
    assert done == [(50, 100)] and (out / stream.SUCCESS).exists()
    with pytest.raises(ConfigError, match="another --chunk-size"):
        stream.predict_dataset(str(run.path), str(files["csv"]), str(out), chunk_size=30)


def test_cli_errors(trained, tmp_path, capsys) -> None:
    run, _, files = trained
    base = ["predict", "--run", str(run.path), "--catalog", str(files["fits"])]
    assert main([*base, "--out", str(tmp_path / "p.parquet"), "--dask", "local"]) == 2
    assert "without a suffix" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "d"), "--dask", "nowhere"]) == 2
    assert "tcp://" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # argparse: counts below 1 never reach the code
        main([*base, "--out", str(tmp_path / "d"), "--chunk-size", "0"])
    assert "argument --chunk-size: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_dask_matches_single_process(trained, tmp_path) -> None:
    from distributed import Client, LocalCluster

    from deepz_core.inference.scaleout import dask_map

    run, _, files = trained
    single = stream.predict_dataset(
        str(run.path), str(files["fits"]), str(tmp_path / "a"), chunk_size=40
    )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        rows = stream.predict_dataset(
            str(run.path),
            str(files["fits"]),
            str(tmp_path / "b"),
            chunk_size=40,
            mapper=dask_map(client),
        )
    assert rows == single
    assert sorted(p.name for p in (tmp_path / "b").glob("part-*")) == [
        f"part-{i:05d}.parquet" for i in range(4)
    ]
    _same(_read(tmp_path / "b"), _read(tmp_path / "a"))


def test_cli_writes_a_dataset_and_resumes(trained, tmp_path, capsys) -> None:
    run, cat, files = trained
    argv = [
        "predict",
        "--run",
        str(run.path),
        "--catalog",
        str(files["parquet"]),
        "--out",
        str(tmp_path / "ds"),
        "--chunk-size",
        "64",
    ]
    assert main(argv) == 0 and main(argv) == 0
    assert f"wrote {cat.n_galaxies} predictions" in capsys.readouterr().out
    assert len(Table.read(tmp_path / "ds" / "part-00000.parquet")) > 0


@pytest.mark.slow
def test_cli_dask_local_processes(trained, tmp_path, capsys) -> None:
    run, cat, files = trained
    argv = [
        "predict",
        "--run",
        str(run.path),
        "--catalog",
        str(files["fits"]),
        "--out",
        str(tmp_path / "ds"),
        "--chunk-size",
        "64",
        "--dask",
        "local",
    ]
    assert main(argv) == 0
    assert f"wrote {cat.n_galaxies} predictions" in capsys.readouterr().out
    assert len(list((tmp_path / "ds").glob("part-*.parquet"))) == 3


def test_every_row_is_answered_in_order_with_flags_and_one_schema(trained, tmp_path) -> None:
    """A partition whose galaxies all lack a positive reference flux still gives one row per
    catalogue row, in order, with NaN products and the flag column (a dataset has one schema);
    a NaN band in another galaxy does not abort the prediction: that band is imputed."""
    from deepz_core.catalog.screen import PzFlag

    run, cat, _ = trained
    flux = cat.flux.copy()
    flux[:50, cat.band_index("subaru_i")] = -1.0  # the reference band
    flux[60, 0] = np.nan  # one band of one galaxy
    bad = Catalog(
        ref_id=cat.ref_id,
        bands=cat.bands,
        flux=flux,
        flux_error=cat.flux_error,
        zspec=cat.zspec,
        extra=cat.extra,
    )
    path = write_catalog(bad, tmp_path / "bad.fits")
    assert (
        stream.predict_dataset(str(run.path), str(path), str(tmp_path / "ds"), chunk_size=50) == 150
    )
    parts = [pq.read_table(tmp_path / "ds" / f"part-{i:05d}.parquet") for i in range(3)]
    assert [p.num_rows for p in parts] == [50, 50, 50]
    assert parts[0].schema == parts[1].schema
    table = pq.read_table(tmp_path / "ds")
    np.testing.assert_array_equal(table["ref_id"].to_numpy(), cat.ref_id)
    flag = table["flag"].to_numpy()
    zphot = table["zphot"].to_numpy()
    assert (flag[:50] == PzFlag.NO_PZ | PzFlag.REF_UNUSABLE).all() and np.isnan(zphot[:50]).all()
    assert flag[60] == PzFlag.BAND_MISSING and np.isfinite(zphot[60])
    assert not np.delete(flag[50:], 10).any() and np.isfinite(zphot[50:]).all()


def test_one_big_row_group_is_still_split_into_partitions(trained, tmp_path) -> None:
    """Parquet written with one row group (pyarrow's default up to 1M rows) still gives one part
    per --chunk-size rows, so Dask workers share the work."""
    run, cat, files = trained
    assert pq.ParquetFile(files["parquet"]).metadata.num_row_groups == 1
    rows = stream.predict_dataset(
        str(run.path), str(files["parquet"]), str(tmp_path / "ds"), chunk_size=40
    )
    assert rows == cat.n_galaxies and len(list((tmp_path / "ds").glob("part-*"))) == 4
    stream.predict_file(str(run.path), str(files["fits"]), str(tmp_path / "f.parquet"))
    _same(_read(tmp_path / "ds"), _read(tmp_path / "f.parquet"))


def test_dask_specs() -> None:
    from deepz_core.inference.scaleout import dask_client, local_workers

    assert local_workers("local:3") == 3 and local_workers("local") >= 1
    assert local_workers("tcp://host:8786") is None
    for bad in ("local:0", "local:x"):
        with pytest.raises(ConfigError, match="local:N"), dask_client(bad):
            pass


# ---------------------------------------------------------------- issue 19: datasets nothing mixes


def test_a_folder_of_other_files_is_not_a_dataset(trained, tmp_path) -> None:
    run, _, files = trained
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a deepz predictions dataset"):
        stream.predict_dataset(str(run.path), str(files["fits"]), str(out), chunk_size=50)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_plan_without_parts_starts_over(trained, tmp_path) -> None:
    """Nothing is lost when no part exists yet, so another run or catalogue simply starts over."""
    run, _, files = trained
    out = tmp_path / "ds"
    out.mkdir()
    (out / stream.PLAN).write_text(json.dumps({"version": 2, "run": {}, "catalog": {}}))
    assert stream.predict_dataset(str(run.path), str(files["fits"]), str(out), chunk_size=50) > 0
    key = json.loads((out / stream.PLAN).read_text())
    assert key["run"]["model_sha256"] and key["catalog"]["fingerprint"]


def test_a_bad_catalogue_fails_before_any_output_exists(trained, tmp_path) -> None:
    from deepz_core.errors import CatalogError

    run, cat, _ = trained
    bad = tmp_path / "bad.csv"
    write_catalog(cat, bad)
    bad.write_text(bad.read_text().replace("ref_id", "objid", 1))
    for out in (tmp_path / "ds", tmp_path / "p.parquet"):
        predict = stream.predict_dataset if out.suffix == "" else stream.predict_file
        with pytest.raises(CatalogError, match="missing required column 'ref_id'"):
            predict(str(run.path), str(bad), str(out), chunk_size=50)
        assert not out.exists()


def _with_ids(cat: Catalog, ids: np.ndarray, path) -> str:
    """``cat``'s columns with ``ids`` as ``ref_id``, written as the file ``path`` (any format)."""
    table = Table({**cat.columns(), "ref_id": ids})
    if str(path).endswith(".h5"):
        table.write(path, path="galaxies")
    else:
        table.write(path)
    return str(path)


@pytest.mark.parametrize("ext", ["fits", "parquet", "csv", "h5"])
def test_streamed_uint64_ids_are_exact_or_refused(trained, tmp_path, ext) -> None:
    """Chunked reading converts uint64 ids through the same check as whole files: exact when they
    fit int64, refused in one line (before any output) when they do not, never wrapped."""
    from deepz_core.errors import CatalogError

    run, cat, _ = trained
    top = np.iinfo(np.int64).max
    fits = np.arange(top - cat.n_galaxies + 1, top + 1, dtype=np.int64).astype(np.uint64)
    path = _with_ids(cat, fits, tmp_path / f"ok.{ext}")
    stream.predict_file(str(run.path), path, str(tmp_path / "pz.parquet"), chunk_size=40)
    assert pq.read_table(tmp_path / "pz.parquet")["ref_id"].to_pylist() == fits.tolist()
    big = np.arange(cat.n_galaxies, dtype=np.uint64) + np.uint64(18446744073709551000)
    path = _with_ids(cat, big, tmp_path / f"big.{ext}")
    for out in (tmp_path / "ds", tmp_path / "pz_big.parquet"):
        predict = stream.predict_dataset if out.suffix == "" else stream.predict_file
        with pytest.raises(CatalogError, match=r"'ref_id' .*int64 range \(e.g. 18446744073709551"):
            predict(str(run.path), path, str(out), chunk_size=40)
        assert not out.exists()


@pytest.mark.parametrize("ext", ["fits", "parquet", "csv", "h5"])
def test_an_id_repeated_across_partitions_is_refused_whatever_the_chunking(
    trained, tmp_path, ext
) -> None:
    """Ids repeated at rows 20 and 130 are refused as by read_catalog, by one file and by a
    partitioned dataset of 50-row parts alike (the preflight reads every id, nothing else), before
    any output exists."""
    from deepz_core.catalog.io import read_catalog
    from deepz_core.errors import CatalogError

    run, cat, _ = trained
    ids = cat.ref_id.copy()
    ids[130] = ids[20]
    path = _with_ids(cat, ids, tmp_path / f"dup.{ext}")
    match = rf"column 'ref_id' has duplicates: {ids[20]}$"
    with pytest.raises(CatalogError, match=match):
        read_catalog(path)
    for out in (tmp_path / "ds", tmp_path / "pz.parquet"):
        predict = stream.predict_dataset if out.suffix == "" else stream.predict_file
        for chunk_size in (50, 1000):
            with pytest.raises(CatalogError, match=match):
                predict(str(run.path), path, str(out), chunk_size=chunk_size)
        assert not out.exists()


def test_a_warning_repeated_by_every_chunk_is_shown_once(tiny_run, tmp_path, caplog) -> None:
    """Review, tenth session: predict logged the same warning (non-detections without a limit,
    ids of training galaxies with other photometry) once per chunk: hundreds of lines for a
    survey. The first chunk's is shown, then one line counts the others."""
    from dataclasses import replace

    from deepz_core.catalog.io import read_catalog

    cat = read_catalog(tiny_run.parent / "train.fits")
    moved = replace(cat, flux=cat.flux * 1.01)  # the training ids, other photometry
    write_catalog(moved, tmp_path / "moved.parquet")
    with caplog.at_level("WARNING", logger="deepz"):
        for out in ("a.parquet", "ds"):
            caplog.clear()
            predict = stream.predict_file if out.endswith(".parquet") else stream.predict_dataset
            predict(str(tiny_run), str(tmp_path / "moved.parquet"), str(tmp_path / out), 20)
            shared = [
                r for r in caplog.records if "have the ref_id of a galaxy run" in r.getMessage()
            ]
            assert len(shared) == 1, caplog.text
            assert "more warnings like those above" in caplog.records[-1].getMessage()


def test_another_catalogue_numbered_like_the_training_one_is_not_warned(
    tiny_run, tmp_path, caplog
) -> None:
    """Review: every fresh mock (ids 1..N) predicted with another run warned that its galaxies
    'share a ref_id with a galaxy run ... trained on'; other galaxies with the same ids are
    predicted as new galaxies quietly (a note), re-measured training galaxies still warn."""
    other = synthetic_catalog(80, 5, exposures=False)  # ids 1..80 as the training catalogue's
    write_catalog(other, tmp_path / "other.parquet")
    with caplog.at_level("INFO", logger="deepz"):
        stream.predict_file(
            str(tiny_run), str(tmp_path / "other.parquet"), str(tmp_path / "p.parquet")
        )
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "ref_id" in r.getMessage()]
    assert said and all(level == "INFO" and "(ids only)" in m for level, m in said), said
    table = pq.read_table(tmp_path / "p.parquet")
    assert not np.asarray(table["out_of_fold"]).any()


def _scaled(cat: Catalog, factor: float, rows: slice = slice(None)) -> Catalog:
    """``cat`` with the fluxes and errors of ``rows`` times ``factor`` (1000: nJy declared uJy)."""
    from dataclasses import replace

    flux, error = cat.flux.copy(), cat.flux_error.copy()
    flux[rows] *= factor
    error[rows] *= factor
    return replace(cat, flux=flux, flux_error=error)


UNIT_LINE = r"column 'flux_subaru_i' \(declared uJy\) gives reference magnitudes a median 7\.\d mag"


def test_a_streamed_catalogue_a_unit_off_is_refused_before_any_output(trained, tmp_path) -> None:
    """Fourteenth session: a catalogue with fluxes x1000 off (nJy declared uJy) was streamed
    into predictions with one warning and flag 0. The preflight now judges the reference
    magnitudes of all its rows (the first 70 rows here are right, the 80 after them not: the
    first 100 rows' median is right, the whole catalogue's off) and refuses it in one line
    before any file, part or folder exists."""
    run, cat, _ = trained
    off = write_catalog(_scaled(cat, 1000, slice(70, None)), tmp_path / "off.parquet")
    write_catalog(_scaled(cat, 1000), tmp_path / "all.parquet")
    for out in ("p.parquet", "p.fits", "p.hdf5", "ds"):
        with pytest.raises(CatalogError, match=UNIT_LINE):
            predict = stream.predict_file if "." in out else stream.predict_dataset
            predict(str(run.path), str(tmp_path / "all.parquet"), str(tmp_path / out), 40)
        assert not (tmp_path / out).exists(), out
    with pytest.raises(CatalogError, match=r"'flux_subaru_i' .* median \d\.\d mag brighter") as err:
        stream.predict_file(str(run.path), str(off), str(tmp_path / "p.parquet"), 40)
    assert str(err.value).startswith(f"{off}: ")
    assert not (tmp_path / "p.parquet").exists()


def test_a_streamed_prediction_allowed_to_shift_flags_every_chunk_and_part(
    trained, tmp_path, caplog
) -> None:
    """With the override a shifted catalogue is predicted with one warning, each chunk and part
    carrying the preflight's verdict: every row outside the training magnitudes flagged, the
    same rows whatever the chunking and in memory."""
    import deepz_core as dz

    run, cat, _ = trained
    off = _scaled(cat, 1000)
    path = write_catalog(off, tmp_path / "off.parquet")
    whole = dz.load_run(run.path).predict(off, allow_magnitude_shift=True)
    flagged = np.asarray(whole["flag"]) & 32
    assert flagged.all()
    with caplog.at_level("WARNING", logger="deepz"):
        for out in ("a.parquet", "ds"):
            caplog.clear()
            predict = stream.predict_file if out.endswith(".parquet") else stream.predict_dataset
            predict(str(run.path), str(path), str(tmp_path / out), 40, allow_magnitude_shift=True)
            assert caplog.text.count("predicted as asked (--allow-magnitude-shift") == 1
            got = Table.read(tmp_path / out) if "." in out else _read(tmp_path / out)
            np.testing.assert_array_equal(np.asarray(got["flag"]) & 32, flagged)


def test_dask_parts_carry_the_preflights_verdict(trained, tmp_path) -> None:
    """The Dask scale-out: refused in the preflight before any task, and with the override every
    part, predicted by a worker, flags its rows as the preflight judged the whole catalogue."""
    from distributed import Client, LocalCluster

    from deepz_core.inference.scaleout import dask_map

    run, cat, _ = trained
    path = write_catalog(_scaled(cat, 1000), tmp_path / "off.parquet")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        args = (str(run.path), str(path), str(tmp_path / "ds"), 40)
        with pytest.raises(CatalogError, match=UNIT_LINE):
            stream.predict_dataset(*args, mapper=dask_map(client))
        assert not (tmp_path / "ds").exists()
        stream.predict_dataset(*args, mapper=dask_map(client), allow_magnitude_shift=True)
    assert (np.asarray(_read(tmp_path / "ds")["flag"]) & 32).all()


def test_run_predict_refuses_a_catalogue_a_unit_off(tiny_run, tmp_path) -> None:
    """``Run.predict`` refuses it (and writes nothing) as ``deepz predict`` does; a catalogue
    1.5 mag fainter (a deeper sample of the same survey) is predicted."""
    import deepz_core as dz
    from deepz_core.catalog.io import read_catalog

    cat = read_catalog(tiny_run.parent / "train.fits")
    run = dz.load_run(tiny_run)
    with pytest.raises(CatalogError, match=r"^the catalogue: " + UNIT_LINE):
        run.predict(_scaled(cat, 1000), out=tmp_path / "p.fits")
    assert not (tmp_path / "p.fits").exists()
    assert len(run.predict(_scaled(cat, 0.25), out=tmp_path / "p.fits")) == cat.n_galaxies


# ---------------------------------------------------------------- bands without values (review)


def _gap_catalog(cat: Catalog, band: str, rows: slice) -> Catalog:
    """``cat`` with ``band``'s flux and error NaN in ``rows``."""
    flux, error = cat.flux.copy(), cat.flux_error.copy()
    j = cat.band_index(band)
    flux[rows, j] = np.nan
    error[rows, j] = np.nan
    return Catalog(ref_id=cat.ref_id, bands=cat.bands, flux=flux, flux_error=error, zspec=cat.zspec)


def _write_unvalidated(cat: Catalog, path) -> str:
    """``cat``'s columns as a FITS file, without ``write_catalog``'s checks (which refuse a band
    without values, as training does)."""
    Table(cat.columns()).write(path)
    return str(path)


def test_a_band_missing_from_a_whole_chunk_gives_the_same_predictions_whatever_the_chunks(
    trained, tmp_path
) -> None:
    """Review: a band NaN in every row of one chunk (a survey sorted by tract, one tract without
    the band) aborted the streamed predict ('has NaN/inf values for every galaxy') while the
    whole-file API predicted those rows flagged BAND_MISSING. Now every chunking gives the same
    predictions and flags as the whole file."""
    import deepz_core as dz
    from deepz_core.catalog.screen import PzFlag

    run, cat, _ = trained
    path = write_catalog(_gap_catalog(cat, "NB455", slice(0, 40)), tmp_path / "gap.fits")
    whole = dz.load_run(run.path).predict(str(path))
    for chunk in (40, 90, 1000):
        out = tmp_path / f"c{chunk}.parquet"
        assert stream.predict_file(str(run.path), str(path), str(out), chunk_size=chunk) == 150
        got = _read(out)
        _same(got, whole)
        np.testing.assert_array_equal(got["flag"], whole["flag"])
    flag = np.asarray(whole["flag"])
    assert (flag[:40] & PzFlag.BAND_MISSING).all() and np.isfinite(whole["zphot"][:40]).all()
    assert not (flag[40:] & PzFlag.BAND_MISSING).any()


def test_a_band_without_values_or_absent_is_imputed_for_every_galaxy(
    trained, tmp_path, caplog
) -> None:
    """Review: a catalogue whose band NB455 is NaN for every row was refused ('remove band ...
    or fill it in'), and without the band it was refused again ('lacks bands ... the run was
    trained on'). Prediction now imputes it, flags every row BAND_MISSING and says so in one
    warning, whether the band is NaN or absent, streamed or whole."""
    import deepz_core as dz
    from deepz_core.catalog.screen import PzFlag

    run, cat, _ = trained
    nan = _write_unvalidated(_gap_catalog(cat, "NB455", slice(None)), tmp_path / "nan.fits")
    absent = tmp_path / "absent.fits"
    Table(cat.columns()).write(absent)
    t = Table.read(absent)
    t.remove_columns(["flux_NB455", "flux_error_NB455"])
    t.write(absent, overwrite=True)
    expected = {
        nan: "band NB455 has no values in this catalogue: imputed for every galaxy, flagged "
        "BAND_MISSING",
        str(absent): "band NB455 is not in this catalogue (no flux column): imputed for every "
        "galaxy, flagged BAND_MISSING",
    }
    reference = None
    for path, note in expected.items():
        for how in ("api", "stream"):
            caplog.clear()
            with caplog.at_level("WARNING", logger="deepz"):
                if how == "api":
                    got = dz.load_run(run.path).predict(path)
                else:
                    out = tmp_path / f"{Path(path).stem}.parquet"
                    stream.predict_file(str(run.path), path, str(out), chunk_size=40)
                    got = _read(out)
            assert [r.getMessage() for r in caplog.records].count(note) == 1, caplog.text
            assert (np.asarray(got["flag"]) & PzFlag.BAND_MISSING).all()
            assert np.isfinite(np.asarray(got["zphot"])).all()
            reference = got if reference is None else reference
            _same(got, reference)


def test_a_run_band_absent_is_refused_when_nothing_could_be_predicted(trained, tmp_path) -> None:
    """Without the reference band, or without more than half the other bands, no galaxy could
    get a p(z): refused, naming the bands and the way out."""
    import deepz_core as dz

    run, cat, _ = trained
    for drop in (("subaru_i",), ("NB455", "NB555", "NB655")):
        t = Table(cat.columns())
        t.remove_columns([f"{p}{b}" for b in drop for p in ("flux_", "flux_error_")])
        with pytest.raises(ConfigError, match=r"lacks bands .*no galaxy could get a p\(z\)"):
            dz.load_run(run.path).predict(t)


def test_a_reference_band_without_values_is_refused_before_any_output(trained, tmp_path) -> None:
    """Fourteenth session: a catalogue whose reference band is NaN in every row was predicted
    into a table of NaN (every row REF_UNUSABLE, NO_PZ) with one warning, by the CLI and the
    API, while the Predict page refused it. Now every path refuses it in one line naming the
    column, before any output, as for a catalogue without the reference band."""
    import deepz_core as dz

    run, cat, _ = trained
    nan = _write_unvalidated(_gap_catalog(cat, "subaru_i", slice(None)), tmp_path / "nan.fits")
    line = r"column 'flux_subaru_i', the run's reference band, has no positive value in any"
    with pytest.raises(CatalogError, match=line):
        dz.load_run(run.path).predict(nan)
    for out in ("p.parquet", "p.fits", "ds"):
        predict = stream.predict_file if "." in out else stream.predict_dataset
        with pytest.raises(CatalogError, match=line):
            predict(str(run.path), nan, str(tmp_path / out), 40)
        assert not (tmp_path / out).exists(), out


def test_training_still_refuses_a_band_without_values(trained, tmp_path) -> None:
    """Training has nothing to learn from a band NaN in every row: refused, saying both ways out
    (remove or fill it to train; predicting the file imputes it)."""
    from deepz_core.catalog.io import read_catalog
    from deepz_core.errors import CatalogError

    _, cat, _ = trained
    path = _write_unvalidated(_gap_catalog(cat, "NB455", slice(None)), tmp_path / "nan.fits")
    with pytest.raises(CatalogError, match="fill it in to train on it; predicting the file"):
        read_catalog(path)
    assert read_catalog(path, measured_bands=False).n_galaxies == 150


def test_a_row_without_any_flux_keeps_its_true_flags(trained, tmp_path) -> None:
    """Review: a row whose fluxes are all NaN got flag 3 (REF_UNUSABLE | NO_PZ) only; its
    BAND_MISSING and TOO_FEW_BANDS bits were lost when rows without features were filled in."""
    import deepz_core as dz
    from deepz_core.catalog.screen import PzFlag

    run, cat, _ = trained
    blank = _gap_catalog(cat, "NB455", slice(5, 6))
    blank.flux[5] = np.nan
    got = dz.load_run(run.path).predict(blank)
    want = PzFlag.NO_PZ | PzFlag.REF_UNUSABLE | PzFlag.BAND_MISSING | PzFlag.TOO_FEW_BANDS
    assert got["flag"][5] == want and np.isnan(got["zphot"][5])
    assert (np.delete(np.asarray(got["flag"]), 5) & PzFlag.NO_PZ == 0).all()


def test_predict_refuses_a_fits_file_cut_inside_its_exposures(trained, tmp_path, capsys) -> None:
    """Review: `predict` wrote 1000 predictions (exit 0) from a FITS file truncated inside its
    EXPOSURES HDU, after astropy's 'File may have been truncated' three times, while `train`
    refused it. Now predict refuses it with the same one line, and writes nothing."""
    run, _, _ = trained
    whole = write_catalog(synthetic_catalog(60, 3), tmp_path / "whole.fits").read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(whole[: (len(whole) // 2880 - 1) * 2880])
    out = tmp_path / "p.parquet"
    argv = ["predict", "--run", str(run.path), "--catalog", str(cut), "--out", str(out)]
    assert main([*argv, "--chunk-size", "20"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.fits: truncated FITS file (" in err[0], err
    assert not out.exists()
