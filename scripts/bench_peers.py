"""deepz side by side with RAIL FlexZBoost and a gradient-boosting baseline (issue 23, sec. 4).

For one dataset: build the deepz catalogue, split it once (scripts/peers/split.py: 80/20 of the
spec-z galaxies, fixed seed), train deepz on train.fits through its CLI (``train --pretrain none``,
``--preset quick`` by default, same seed), predict and evaluate test.fits, run the peers on the
same two files in their own environment (scripts/peers/run_peers.py), and score the three methods
with one metrics module (scripts/peers/pzmetrics.py, deepz's definitions). Writes
``results.json`` and ``results.md`` (one table: sigma68, NMAD, strict |dz| > 0.02 and catastrophic
|dz| > 0.15 outlier rates, PIT KS) into the output folder and prints the table.

Datasets (``--dataset``):
- ``real``: SDSS Main Galaxy Sample, 10,000 galaxies u g r i z with spec-z, from the MLZ 1.2 sdist
  on PyPI (scripts/peers/mlz_sdss.py; fetched with pip into ~/.cache/deepz-peers when absent).
- ``demo``: deepz's PAUS-like demo mock (``python -m deepz_core demo --quiet``), 46 bands.
- ``deep``: the deep LSST-like mock (``deepz simulate --kind lsst-deep``: i to ~25, z to ~3, u/g
  non-detections as flux 0 with the limiting error), ``--deep-n`` galaxies.

Run with deepz's venv from the repository root; the peers' interpreter comes from
``--peers-python`` or $DEEPZ_PEERS_PYTHON (default ``.cache/peers-venv/bin/python``; build it as
scripts/peers/README.md says). On a shared CPU, run it niced:

    OMP_WAIT_POLICY=PASSIVE DEEPZ_QUIET=1 nice -n 10 .venv/bin/python scripts/bench_peers.py \
        --dataset real                          # deepz quick preset + FlexZBoost + GBM
    ... --dataset real --methods flexzboost,gbm # the peers only (minutes)
    ... --dataset real --preset smoke           # checks the pipe in seconds (no science)
    ... --catalog my.fits --name my-survey      # any deepz catalogue with spec-z

Outputs go to ``runs/bench-peers/<name>/`` (``--out-dir``): catalog.fits (built datasets),
train.fits, test.fits, split.json, deepz-<preset>-s<seed>/ (the run folder; a finished one is
reused, a killed one resumed), deepz.predictions.fits, deepz.evaluate.json, peers/, results.*.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))

import pzmetrics  # noqa: E402
from catalog_fits import atomic_write_json, atomic_write_text, read_catalog  # noqa: E402

METHODS = ("deepz", "flexzboost", "gbm")
DATASETS = ("real", "demo", "deep")
DEFAULT_PEERS_PYTHON = Path(".cache/peers-venv/bin/python")
CHILD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "DEEPZ_QUIET": "1"}
SCRIPTS = Path(__file__).resolve().parent


def child_env() -> dict[str, str]:
    """This process's environment with OMP_WAIT_POLICY=PASSIVE and DEEPZ_QUIET=1 unless set."""
    return {**CHILD_ENV, **os.environ}


def call(cmd: list[str], log: Path) -> str:
    """Run a command (stdout + stderr appended to ``log``); its stdout; RuntimeError on failure."""
    print("$ " + " ".join(cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}\n")
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"exit {res.returncode} from {cmd[:4]}...: " + " | ".join(tail))
    return res.stdout


# ---------------------------------------------------------------- datasets
def real_catalog(out_dir: Path) -> Path:
    """The SDSS MGS catalogue from MLZ's sdist (scripts/peers/mlz_sdss.py), built once."""
    path = out_dir / "catalog.fits"
    if not path.exists():
        import mlz_sdss

        mlz_sdss.main(["--out", str(path)])
    return path


def demo_catalog(log: Path) -> Path:
    """deepz's demo mock (built once and cached by deepz)."""
    out = call(deepz_cli("demo", "--quiet"), log)
    return Path(out.strip().splitlines()[-1])


def deep_catalog(out_dir: Path, kind: str, n: int, seed: int, log: Path) -> Path:
    """The deep LSST-like mock (i to ~25, z to ~3, u/g non-detections) from ``simulate --kind
    KIND`` (``--deep-kind``, default lsst-deep), ``n`` galaxies, written once into ``out_dir``."""
    path = out_dir / "catalog.fits"
    if not path.exists():
        call(deepz_cli("simulate", "--kind", kind, "--n", n, "--seed", seed, "--out", path), log)
    return path


def dataset_catalog(args: argparse.Namespace, out_dir: Path, log: Path) -> Path:
    """The catalogue to benchmark: --catalog, else the named --dataset."""
    if args.catalog is not None:
        return args.catalog
    if args.dataset == "real":
        return real_catalog(out_dir)
    if args.dataset == "demo":
        return demo_catalog(log)
    return deep_catalog(out_dir, args.deep_kind, args.deep_n, args.seed, log)


def make_split(catalog: Path, out_dir: Path, seed: int, test_fraction: float) -> dict[str, Any]:
    """train.fits / test.fits / split.json in ``out_dir``; an existing split with the same seed,
    fraction and catalogue size is kept, so a deepz run folder trained on it stays valid."""
    import split

    cat = read_catalog(catalog)
    record_path = out_dir / "split.json"
    if (
        record_path.exists()
        and (out_dir / "train.fits").exists()
        and (out_dir / "test.fits").exists()
    ):
        old = json.loads(record_path.read_text())
        same = (old["seed"], old["test_fraction"], old["n_catalog"])
        if same == (seed, test_fraction, len(cat.galaxies.data)):
            return old
        raise RuntimeError(f"{out_dir} holds another split {same}: choose another --out-dir")
    return split.write_split(cat, out_dir, seed, test_fraction)


# ---------------------------------------------------------------- deepz through its CLI
def deepz_cli(*args: str | Path | int) -> list[str]:
    """``python -m deepz_core ARGS`` with this interpreter (deepz's venv)."""
    return [sys.executable, "-m", "deepz_core", *map(str, args)]


def run_state(run: Path) -> str | None:
    """The state in a deepz run folder's status.json ('finished', ...), None without one."""
    status = run / "status.json"
    return json.loads(status.read_text()).get("state") if status.exists() else None


def train_deepz(args: argparse.Namespace, out_dir: Path, log: Path) -> tuple[Path, float]:
    """Train deepz on train.fits; the run folder and the seconds (NaN: a finished run reused)."""
    run = out_dir / f"deepz-{args.preset}-s{args.seed}"
    if run_state(run) == "finished":
        print(f"reusing the finished run {run}")
        return run, float("nan")
    cmd = deepz_cli("train", "--catalog", out_dir / "train.fits", "--pretrain", args.pretrain)
    cmd += ["--preset", args.preset, "--seed", str(args.seed), "--out", str(run)]
    cmd += args.deepz_args.split()
    start = time.perf_counter()
    call(cmd, log)
    return run, time.perf_counter() - start


def predict_deepz(run: Path, out_dir: Path, log: Path) -> float:
    """Predict and evaluate test.fits with a run: deepz.predictions.fits, deepz.evaluate.json."""
    pred, test = out_dir / "deepz.predictions.fits", out_dir / "test.fits"
    pred.unlink(missing_ok=True)
    start = time.perf_counter()
    call(deepz_cli("predict", "--run", run, "--catalog", test, "--out", pred), log)
    seconds = time.perf_counter() - start
    report = out_dir / "deepz.evaluate.json"  # replaced on every call of this script
    call(deepz_cli("evaluate", "--pred", pred, "--out", report, "--overwrite"), log)
    return seconds


# ---------------------------------------------------------------- peers in their environment
def peers_python(option: Path | None) -> Path:
    """The peers' interpreter: --peers-python, else $DEEPZ_PEERS_PYTHON, else the default."""
    path = option or Path(os.environ.get("DEEPZ_PEERS_PYTHON", DEFAULT_PEERS_PYTHON))
    if not path.exists():
        raise FileNotFoundError(
            f"peers interpreter {path} not found: build the peers venv "
            "(scripts/peers/README.md) or pass --peers-python"
        )
    return path


def run_peers(python: Path, methods: list[str], out_dir: Path, seed: int, log: Path) -> None:
    """scripts/peers/run_peers.py on train.fits / test.fits into ``out_dir``/peers."""
    cmd = [str(python), str(SCRIPTS / "peers" / "run_peers.py"), "--seed", str(seed)]
    cmd += ["--train", str(out_dir / "train.fits"), "--test", str(out_dir / "test.fits")]
    cmd += ["--out-dir", str(out_dir / "peers"), "--methods", ",".join(methods)]
    call(cmd, log)


# ---------------------------------------------------------------- scoring
def read_predictions(path: Path, ref_id: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """zphot and pit (N,) of a predictions file, aligned on the test galaxies' ref_id (N,);
    a galaxy with no row gets NaN (a failure). pit is None when the file has none."""
    from astropy.table import Table

    # hdu 1: deepz's table (qp's META, DATA, ANCIL HDUs follow it in deepz's FITS outputs)
    t = Table.read(path, hdu=1) if path.suffix == ".fits" else Table.read(path)
    rows = {int(r): i for i, r in enumerate(np.asarray(t["ref_id"]))}
    index = np.array([rows.get(int(r), -1) for r in ref_id])
    found = index >= 0

    def column(name: str) -> np.ndarray:
        out = np.full(ref_id.shape, np.nan)
        out[found] = np.asarray(t[name], dtype=float)[index[found]]
        return out

    return column("zphot"), (column("pit") if "pit" in t.colnames else None)


def score(out_dir: Path, methods: list[str]) -> dict[str, dict[str, Any]]:
    """pzmetrics.summary of each method's predictions on the test galaxies, and the same on the
    galaxies that every method answered (``common``) when some method failed on some."""
    test = read_catalog(out_dir / "test.fits")
    ref_id = np.asarray(test.galaxies.data["ref_id"], dtype=np.int64)
    zspec = test.column("zspec")
    preds = {m: read_predictions(prediction_path(out_dir, m), ref_id) for m in methods}
    scores = {m: pzmetrics.summary(zp, zspec, pit) for m, (zp, pit) in preds.items()}
    answered = np.logical_and.reduce([np.isfinite(zp) for zp, _ in preds.values()])
    if not answered.all():
        for m, (zp, pit) in preds.items():
            pit_c = None if pit is None else pit[answered]
            scores[m]["common"] = pzmetrics.summary(zp[answered], zspec[answered], pit_c)
    return scores


def prediction_path(out_dir: Path, method: str) -> Path:
    """Where a method's predictions file is."""
    if method == "deepz":
        return out_dir / "deepz.predictions.fits"
    return out_dir / "peers" / f"{method}.predictions.fits"


def deepz_agreement(out_dir: Path, mine: dict[str, Any]) -> dict[str, Any]:
    """deepz's own ``evaluate`` report next to pzmetrics' numbers for deepz (they must agree)."""
    overall = json.loads((out_dir / "deepz.evaluate.json").read_text())["overall"]
    pairs = {
        "n": "n",
        "sigma68": "sigma68",
        "outlier_strict": "outlier_fraction",
        "nmad": "nmad",
        "bias": "bias",
        "pit_ks": "pit_ks",
    }
    diffs = {
        k: abs(float(mine[k]) - float(overall[v]))
        for k, v in pairs.items()
        if overall.get(v) is not None
    }
    return {
        "evaluate": overall,
        "max_abs_diff": max(diffs.values()),
        "agrees": max(diffs.values()) < 1e-9,
    }


def fmt(value: Any, digits: int = 4) -> str:
    """A metric for the table: N/A for None (no p(z)), fixed digits otherwise."""
    if value is None:
        return "N/A"
    if isinstance(value, int):
        return str(value)
    return "nan" if not np.isfinite(value) else f"{value:.{digits}f}"


def seconds_cell(value: float | None) -> str:
    """Train + predict seconds for the table; 'reused' for a finished deepz run used again."""
    if value is None:
        return "N/A"
    return "reused" if not np.isfinite(value) else f"{value:.0f}"


def markdown(title: str, scores: dict[str, dict[str, Any]], seconds: dict[str, float]) -> str:
    """One markdown table of the methods' metrics on the test galaxies."""
    lines = [
        f"### {title}",
        "",
        "| method | n | failed | sigma68 | NMAD | bias | strict \\|dz\\|>0.02 | catastrophic \\|dz\\|>0.15 | PIT KS | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, m in scores.items():
        cells = [
            method,
            fmt(m["n"]),
            fmt(m["n_failed"]),
            fmt(m["sigma68"]),
            fmt(m["nmad"]),
            fmt(m["bias"]),
            fmt(m["outlier_strict"]),
            fmt(m["outlier_catastrophic"]),
            fmt(m["pit_ks"], 3),
            seconds_cell(seconds.get(method)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=DATASETS, help="a named dataset (or --catalog)")
    p.add_argument("--catalog", type=Path, help="any deepz FITS catalogue with spec-z")
    p.add_argument("--name", help="output name (default: the dataset, or the catalogue's stem)")
    p.add_argument("--out-dir", type=Path, help="default runs/bench-peers/<name>")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {METHODS}")
    p.add_argument("--seed", type=int, default=23, help="split, deepz and peers seed (23)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--preset", default="quick", help="deepz train --preset (quick)")
    p.add_argument("--pretrain", default="none", help="deepz train --pretrain (none)")
    p.add_argument("--deepz-args", default="", help="more deepz train options, one string")
    p.add_argument("--peers-python", type=Path, help="peers venv's python ($DEEPZ_PEERS_PYTHON)")
    p.add_argument("--deep-kind", default="lsst-deep", help="simulate --kind of the deep mock")
    p.add_argument("--deep-n", type=int, default=10000, help="galaxies in the deep mock")
    args = p.parse_args(argv)
    if (args.dataset is None) == (args.catalog is None):
        p.error("give exactly one of --dataset and --catalog")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or set(args.methods) - set(METHODS):
        p.error(f"--methods: choose from {METHODS}, got {args.methods}")
    args.name = args.name or args.dataset or args.catalog.stem
    args.out_dir = args.out_dir or Path("runs/bench-peers") / args.name
    return args


def run_methods(args: argparse.Namespace, log: Path) -> dict[str, float]:
    """Train/predict every requested method; seconds per method (train + predict)."""
    seconds: dict[str, float] = {}
    if "deepz" in args.methods:
        run, train_s = train_deepz(args, args.out_dir, log)
        seconds["deepz"] = train_s + predict_deepz(run, args.out_dir, log)
    peers = [m for m in args.methods if m != "deepz"]
    if peers:
        run_peers(peers_python(args.peers_python), peers, args.out_dir, args.seed, log)
        for m in peers:
            seconds[m] = json.loads((args.out_dir / "peers" / f"{m}.metrics.json").read_text())[
                "seconds"
            ]
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Build, split, run, score; write results.json and results.md."""
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    log = args.out_dir / "bench.log"
    catalog = dataset_catalog(args, args.out_dir, log)
    record = make_split(catalog, args.out_dir, args.seed, args.test_fraction)
    print(f"{catalog}: train {record['n_train']}, test {record['n_test']} (seed {args.seed})")
    seconds = run_methods(args, log)
    scores = score(args.out_dir, args.methods)
    title = f"{args.name}: {record['n_train']} train / {record['n_test']} test galaxies, seed {args.seed}"
    if "deepz" in args.methods:
        title += (
            f", deepz --preset {args.preset} --pretrain {args.pretrain} {args.deepz_args}".rstrip()
        )
    table = markdown(title, scores, seconds)
    results = {
        "name": args.name,
        "catalog": str(catalog),
        "seed": args.seed,
        "test_fraction": args.test_fraction,
        "n_train": record["n_train"],
        "n_test": record["n_test"],
        "deepz": {"preset": args.preset, "pretrain": args.pretrain, "extra_args": args.deepz_args},
        "seconds": seconds,
        "metrics": scores,
    }
    if "deepz" in args.methods:
        results["deepz_evaluate_check"] = deepz_agreement(args.out_dir, scores["deepz"])
    atomic_write_json(args.out_dir / "results.json", results)
    atomic_write_text(args.out_dir / "results.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
