"""Time the streamed prediction's preflight (``inference.stream.preflight``) on a large catalogue.

The preflight reads a few columns of every row before any output exists (ids; zspec, mag and the
coordinates; every numeric column of a CSV file; the reference flux for the unit check) so that a
bad cell anywhere fails in one line instead of a late chunk. This script measures what that costs
per format against the prediction itself::

    PYTHONPATH=$PWD python scripts/preflight_bench.py --root /tmp/preflight --rows 1000000

It writes a synthetic catalogue (``tests.synthetic``: 5 bands, half the rows with a spec-z, ra and
dec) as Parquet, FITS and CSV under ``--root`` (kept there for the next call), trains a tiny run
once (1 epoch, 2 folds: its predictions are not the point, only the reading), and prints the best
of ``--repeat`` preflights per format and one whole ``predict_file`` of the Parquet file. Run it
with another checkout first on PYTHONPATH to time that version's preflight on the same files.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepz_core.catalog import io
from deepz_core.inference import stream
from deepz_core.jobs.training_run import create_run, execute_run, run_config
from tests.synthetic import TINY_MODEL, synthetic_catalog

FORMATS = ("parquet", "fits", "csv")


def write_catalogues(root: Path, rows: int) -> dict[str, Path]:
    """The catalogue of ``rows`` galaxies in each of FORMATS under ``root`` (written once)."""
    paths = {ext: root / f"big{rows}.{ext}" for ext in FORMATS}
    if all(p.exists() for p in paths.values()):
        return paths
    cat = synthetic_catalog(rows, 5, exposures=False, first_id=1, missing_zspec=0.5)
    columns = dict(cat.columns())
    rng = np.random.default_rng(1)
    columns["ra"], columns["dec"] = rng.uniform(0, 360, rows), rng.uniform(-60, 60, rows)
    for ext, path in paths.items():
        io.FORMATS[ext].write(path, [("galaxies", columns, {"FLUXZP": 23.9})])
    return paths


def tiny_run(root: Path) -> Path:
    """A run trained once on 80 synthetic galaxies (as the tests' tiny run)."""
    folder = root / "run"
    if (folder / "model.safetensors").exists():
        return folder
    train = io.write_catalog(
        synthetic_catalog(80, 0, exposures=False), root / "train.fits", overwrite=True
    )
    schedule = dict(schedule=((1, 1e-3),), batch_size=40, repetitions=1, folds=2, seed=2)
    config = run_config(str(train), pretrain="none", model=TINY_MODEL, train=schedule)
    execute_run(create_run(folder, config))
    return folder


def best_of(repeat: int, call) -> float:
    """The shortest wall time (s) of ``repeat`` calls of ``call()``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    paths, run = write_catalogues(args.root, args.rows), str(tiny_run(args.root))
    for ext, path in paths.items():
        seconds = best_of(args.repeat, lambda p=path: stream.preflight(run, str(p)))
        print(f"preflight {ext:8s} {args.rows:,} rows: {seconds:.2f} s", flush=True)
    out = args.root / "out.parquet"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    stream.predict_file(run, str(paths["parquet"]), str(out))
    print(f"predict_file parquet {args.rows:,} rows: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
