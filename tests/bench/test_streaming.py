"""The survey-scale benchmark tool (deepz_core.bench.streaming): configuration checks, the streamed
simulated catalogue, the measurement of one process tree, and a small end-to-end run."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from deepz_core.bench import streaming as bench_stream
from deepz_core.bench.streaming import StreamBench, bench_catalog, measure, parse_ints
from deepz_core.catalog.io import read_catalog
from deepz_core.cli.main import main
from deepz_core.errors import ConfigError
from deepz_core.jobs.training_run import create_run, execute_run, run_config

TINY_MODEL = dict(
    n_latent=2,
    width=12,
    encoder_layers=1,
    decoder_layers=1,
    photoz_layers=1,
    photoz_first_width=0,
    n_components=2,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"n": 10}, "--n"),
        ({"unique": 10**9}, "--unique"),
        ({"chunk_sizes": (0,)}, "--chunk-sizes"),
        ({"workers": (0,)}, "--workers"),
        ({"preset": "huge"}, "--model-preset"),
        ({"members": 0}, "--members"),
        ({"run": "/nowhere"}, "--run"),
        ({"threads": (), "workers": ()}, "--threads"),
    ],
)
def test_bad_settings_name_the_flag(kwargs, flag) -> None:
    with pytest.raises(ConfigError, match=flag):
        StreamBench(**kwargs)


def test_parse_ints() -> None:
    assert parse_ints("25000, 100000", "--x") == (25000, 100000) and parse_ints("", "--x") == ()
    with pytest.raises(ConfigError, match="--x"):
        parse_ints("1,a", "--x")


def test_cli_reports_bad_settings(capsys) -> None:
    assert main(["bench-stream", "--n", "5"]) == 2
    assert "--n" in capsys.readouterr().err


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    cfg = StreamBench(n=3000, unique=300, work_dir=str(tmp_path_factory.mktemp("bench")))
    path, info = bench_catalog(cfg, row_group=1000)
    return cfg, path, info


def test_catalogue_rows_are_fresh_noisy_copies_of_the_unique_galaxies(catalog) -> None:
    cfg, path, info = catalog
    assert info["n"] == 3000 and not info["cached"] and info["row_group"] == 1000
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 3000 and meta.num_row_groups == 3
    cat = read_catalog(path)  # a valid canonical catalogue
    np.testing.assert_array_equal(cat.ref_id, np.arange(1, 3001))
    assert len(cat.bands) == 46 and {"ra", "dec", "ztrue"} <= set(cat.extra)
    # rows i and i + 300 observe the same galaxy: their difference is N(0, 2 sigma^2) and the
    # stored error is sigma * sqrt(2)
    pull = (cat.flux[300:] - cat.flux[:-300]) / cat.flux_error[300:]
    assert np.std(pull) == pytest.approx(1.0, abs=0.05)
    assert abs(np.mean(pull)) < 0.02
    np.testing.assert_array_equal(cat.extra["ztrue"][300:], cat.extra["ztrue"][:-300])
    again, info2 = bench_catalog(cfg, row_group=1000)
    assert again == path and info2["cached"]


def test_measure_a_process_tree(tmp_path) -> None:
    code = (
        "import time, numpy as np; a = np.ones(40_000_000); time.sleep(0.6); "
        "print('wrote 7 predictions')"
    )
    got = measure([sys.executable, "-c", code], {}, tmp_path / "log.txt")
    assert got["rows_out"] == 7 and got["wall_s"] >= 0.6 and got["cpu_s"] > 0
    assert got["peak_tree_rss_mb"] is None or got["peak_tree_rss_mb"] >= 300  # 320 MB array
    with pytest.raises(ConfigError, match="failed"):
        measure([sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "log.txt")


def _small_bench(catalog, tmp_path, **kwargs) -> dict:
    cfg, path, _ = catalog
    run = create_run(
        tmp_path / "run",
        run_config(
            str(path),
            pretrain="none",
            model=TINY_MODEL,
            train=dict(schedule=((1, 1e-3),), batch_size=200, folds=1, device="cpu"),
        ),
    )
    execute_run(run)
    cfg = dataclasses.replace(cfg, run=str(run.path), chunk_sizes=(1000,), **kwargs)
    return bench_stream.run_stream_bench(cfg)


def test_end_to_end_single_process(catalog, tmp_path) -> None:
    result = _small_bench(catalog, tmp_path, threads=(1,), workers=())
    (row,) = result["results"]
    assert row["rows_out"] > 2900  # galaxies with a positive reference flux
    assert (
        row["gal_per_s"] > 0 and row["startup_wall_s"] > 0 and "--chunk-size 1000" in row["command"]
    )
    assert result["run"]["members"] == 1 and result["catalog"]["cached"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_end_to_end_with_dask_workers(catalog, tmp_path) -> None:
    result = _small_bench(catalog, tmp_path, threads=(), workers=(2,))
    (row,) = result["results"]
    assert row["mode"] == "dask local:2" and row["rows_out"] > 2900
    assert row["peak_tree_rss_mb"] is None or row["peak_tree_rss_mb"] > 300  # three processes
