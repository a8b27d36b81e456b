"""Survey-scale inference benchmark (issue 6): ``python -m deepz_core bench-stream``.

1. Catalogue: ``n`` rows of Parquet written block by block, never held in memory. ``unique``
   PAUS-COSMOS-like mock galaxies (deepz_core.simulate, simulated in tiles) are observed again for
   every row: flux + N(0, flux_error), error * sqrt(2), so every row is a distinct noisy copy (0.38 mag
   shallower than the mock); fluxes stored as float32. Cached by everything that shapes it.
2. Run: ``run`` (a finished run folder), or a network of the preset's size (smoke / quick / paper =
   E20 Fig. 1) with ``members`` members trained for two epochs on the demo catalogue: its speed, not
   its accuracy, matters. Cached.
3. Every configuration is one ``python -m deepz_core predict`` process writing a partitioned dataset
   (read, network, p(z) products, write): single process with T torch threads, or ``--dask local:W``.
   Measured: wall time; CPU time of the process tree (os.wait4, reaped workers included); peak memory
   of the tree (sum of RSS sampled every 0.2 s with psutil; ru_maxrss cannot be used: Linux carries
   the forking parent's peak over exec). The same command on a 2,000-row catalogue gives the
   start-up cost (imports, model, Dask cluster).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.device import usable_cores
from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write, cache_dir

CATALOG_VERSION = 1  # bump when the catalogue recipe changes
SIM_TILE = 20_000  # mock galaxies simulated at once (their single exposures dominate memory)
TINY = 2_000  # rows of the start-up catalogue
BANDS = "paus_cosmos"
MEMORY_TARGET_MB = 2048  # the issue: 10^7 galaxies with peak memory < 2 GB


@dataclass(frozen=True)
class StreamBench:
    """What to measure: catalogue size, partition sizes, single-process threads, Dask workers."""

    n: int = 100_000
    unique: int = 0  # distinct mock galaxies; 0: min(n, 100_000)
    chunk_sizes: tuple[int, ...] = (25_000, 100_000)
    threads: tuple[int, ...] = (1, 2)  # single-process runs, torch threads each
    workers: tuple[int, ...] = (1, 2)  # --dask local:W runs
    preset: str = "smoke"
    members: int = 1
    run: str | None = None
    seed: int = 0
    work_dir: str | None = None

    def __post_init__(self) -> None:
        from deepz_core.training.config import PRESETS

        if self.n < TINY:
            raise ConfigError(f"--n must be >= {TINY}, got {self.n}")
        if not 0 <= self.unique <= self.n:
            raise ConfigError(f"--unique must be in [0, n = {self.n}], got {self.unique}")
        for name in ("chunk_sizes", "threads", "workers"):
            if any(v < 1 for v in getattr(self, name)):
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if not self.chunk_sizes or not (self.threads or self.workers):
            raise ConfigError("--chunk-sizes and one of --threads / --workers must be non-empty")
        if self.preset not in PRESETS:
            raise ConfigError(
                f"--model-preset must be one of {sorted(PRESETS)}, got {self.preset!r}"
            )
        if self.members < 1:
            raise ConfigError(f"--members must be >= 1, got {self.members}")
        if self.run is not None and not (Path(self.run) / "model.safetensors").exists():
            raise ConfigError(f"--run {self.run} has no trained model (model.safetensors)")

    @property
    def n_unique(self) -> int:
        return self.unique or min(self.n, 100_000)

    def folder(self) -> Path:
        path = Path(self.work_dir) if self.work_dir else cache_dir() / "bench_stream"
        path.mkdir(parents=True, exist_ok=True)
        return path


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    """'25000,100000' -> (25000, 100000); '' -> (); ConfigError naming ``flag`` otherwise."""
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers, got {text!r}") from None


# ---------------------------------------------------------------- catalogue


def unique_galaxies(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` mock galaxies (simulated SIM_TILE at a time, exposures dropped): flux and
    flux_error (n, B) float64, zspec, ztrue (n,), and the bands."""
    from deepz_core.sed.bands import band_set
    from deepz_core.simulate import simulate

    parts = []
    for k, start in enumerate(range(0, n, SIM_TILE)):
        cat = simulate("paus-mock", min(SIM_TILE, n - start), band_set(BANDS), seed * 1000 + k)
        parts.append((cat.flux, cat.flux_error, cat.zspec, cat.extra["ztrue"]))
    keys = ("flux", "flux_error", "zspec", "ztrue")
    out: dict[str, Any] = {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(keys)}
    out["bands"] = cat.bands
    return out


def _block(
    base: dict[str, Any], start: int, stop: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Rows [start, stop): unique galaxy (row mod U) observed again with fresh noise."""
    from deepz_core.catalog.catalog import DEFAULT_FLUXZP
    from deepz_core.catalog.features import resolve_ref_band

    src = np.arange(start, stop) % len(base["zspec"])
    err = base["flux_error"][src]  # (m, B)
    flux = base["flux"][src] + err * rng.standard_normal(err.shape)  # (m, B)
    bands = base["bands"]
    ref = bands.index(resolve_ref_band(bands))
    cols: dict[str, np.ndarray] = {"ref_id": np.arange(start + 1, stop + 1, dtype=np.int64)}
    for j, b in enumerate(bands):
        cols[f"flux_{b}"] = flux[:, j].astype(np.float32)
        cols[f"flux_error_{b}"] = (err[:, j] * np.sqrt(2.0)).astype(np.float32)
    cols["zspec"] = base["zspec"][src]
    cols["mag"] = DEFAULT_FLUXZP - 2.5 * np.log10(np.clip(flux[:, ref], 1e-6, None))
    cols["ra"] = 150.0 + 2.0 * rng.random(stop - start)  # a 2 x 2 deg field
    cols["dec"] = 1.0 + 2.0 * rng.random(stop - start)
    cols["ztrue"] = base["ztrue"][src]
    return cols


def cached_unique_galaxies(folder: Path, n: int, seed: int) -> dict[str, Any]:
    """unique_galaxies(n, seed), kept as .npz in ``folder`` for catalogues of other sizes."""
    path = folder / f"unique_v{CATALOG_VERSION}_n{n}_s{seed}.npz"
    if not path.exists():
        base = unique_galaxies(n, seed)
        arrays = {k: np.asarray(v) for k, v in base.items()}

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a name
                np.savez(fh, **arrays)

        atomic_write(path, save)
    with np.load(path, allow_pickle=False) as data:
        out: dict[str, Any] = {k: data[k] for k in data.files}
    out["bands"] = tuple(str(b) for b in out["bands"])
    return out


def build_catalog(path: Path, n: int, unique: int, seed: int, row_group: int) -> dict[str, Any]:
    """Write the benchmark catalogue (see the module docstring) block by block; returns its info."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    base = cached_unique_galaxies(path.parent, unique, seed)
    t_sim = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    meta = {"FLUXZP": 23.9, "SIMKIND": "paus-mock-tiled", "UNIQUE": unique, "SEED": seed}

    def write(tmp: Path) -> None:
        writer = None
        try:
            for start in range(0, n, row_group):
                table = pa.table(_block(base, start, min(start + row_group, n), rng))
                if writer is None:
                    schema = table.schema.with_metadata({"deepz": json.dumps(meta)})
                    writer = pq.ParquetWriter(tmp, schema)
                writer.write_table(table, row_group_size=row_group)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(path, write)
    return {"simulate_s": round(t_sim, 1), "build_s": round(time.perf_counter() - t0, 1)}


def bench_catalog(cfg: StreamBench, row_group: int) -> tuple[Path, dict[str, Any]]:
    """The cached catalogue for ``cfg`` (built on first use) and its description."""
    key = json.dumps([CATALOG_VERSION, cfg.n, cfg.n_unique, cfg.seed, row_group, BANDS])
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = cfg.folder() / f"catalog_n{cfg.n}_u{cfg.n_unique}_{tag}.parquet"
    info: dict[str, Any] = {"cached": path.exists()}
    if not path.exists():
        info |= build_catalog(path, cfg.n, cfg.n_unique, cfg.seed, row_group)
    info |= {
        "path": str(path),
        "n": cfg.n,
        "unique": cfg.n_unique,
        "row_group": row_group,
        "size_mb": round(path.stat().st_size / 2**20, 1),
        "flux_dtype": "float32",
        "note": f"{cfg.n_unique} simulated PAUS-COSMOS-like mock galaxies, each row one of "
        "them observed again: flux + N(0, flux_error), error * sqrt(2)",
    }
    return path, info


def tiny_catalog(path: Path, folder: Path) -> Path:
    """The first TINY rows of the catalogue (the start-up measurement)."""
    import pyarrow.parquet as pq

    out = folder / f"{path.stem}_tiny.parquet"
    if not out.exists():
        table = pq.ParquetFile(path).read_row_group(0).slice(0, TINY)
        atomic_write(out, lambda tmp: pq.write_table(table, tmp))
    return out


# ---------------------------------------------------------------- run


def bench_run(cfg: StreamBench) -> Path:
    """``cfg.run``, or a network of the preset's size trained briefly on the demo (cached)."""
    if cfg.run is not None:
        return Path(cfg.run)
    from deepz_core.jobs.training_run import create_run, execute_run, run_config
    from deepz_core.simulate import demo_catalog_path

    out = cfg.folder() / f"run_{cfg.preset}_e{cfg.members}_s{cfg.seed}"
    if (out / "model.safetensors").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)  # an interrupted earlier attempt
    train = {
        "folds": cfg.members,
        "repetitions": 1,
        "schedule": ((2, 1e-3),),
        "device": "cpu",
        "seed": cfg.seed,
    }
    run = create_run(
        out,
        run_config(str(demo_catalog_path()), pretrain="none", preset_name=cfg.preset, train=train),
    )
    execute_run(run)
    if run.status().get("state") != "finished":
        raise ConfigError(f"training the benchmark run in {out} failed: {run.status()}")
    return out


def run_info(path: Path) -> dict[str, Any]:
    """The benchmarked run: its folder, members, mixture components and parameters per member."""
    from deepz_core.nets.deepz import load_model

    model = load_model(path)
    return {
        "path": str(path),
        "members": model.members,
        "components": model.config.n_components,
        "parameters_per_member": sum(p.numel() for p in model.parameters()) // model.members,
    }


# ---------------------------------------------------------------- measuring


def _tree_rss(pid: int) -> int:
    """Bytes: RSS of process ``pid`` plus all its descendants (0 if gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; wall and CPU seconds of the process tree, peak memory, rows written."""
    try:
        import psutil  # noqa: F401

        sampled = True
    except ModuleNotFoundError:
        sampled = False
    peak = [0]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], _tree_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        if sampled:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
    wall = time.perf_counter() - t0
    text = log.read_text()
    if proc.returncode != 0:
        raise ConfigError(
            f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{text[-2000:]}"
        )
    rows = re.search(r"wrote (\d+) predictions", text)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "rows_out": int(rows[1]) if rows else None,
        "peak_tree_rss_mb": round(peak[0] / 2**20) if sampled else None,
    }


def _command(run: Path, catalog: Path, out: Path, chunk: int, workers: int | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "deepz_core",
        "predict",
        "--run",
        str(run),
        "--catalog",
        str(catalog),
        "--out",
        str(out),
        "--chunk-size",
        str(chunk),
    ]
    return cmd + (["--dask", f"local:{workers}"] if workers else [])


def _modes(cfg: StreamBench) -> list[tuple[str, int | None, int]]:
    """(label, dask workers or None, torch threads) for every configuration."""
    single = [(f"single, {t} thread{'s' * (t > 1)}", None, t) for t in cfg.threads]
    return single + [(f"dask local:{w}", w, 1) for w in cfg.workers]


def _env(threads: int) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "DEEPZ_QUIET": "1", "OMP_NUM_THREADS": str(threads)}


def _measure_mode(
    cfg: StreamBench, run: Path, catalog: Path, tiny: Path, mode: tuple
) -> list[dict]:
    """One start-up run on the tiny catalogue, then one run per partition size, for one mode."""
    label, workers, threads = mode
    folder, env = cfg.folder(), _env(threads)
    out, rows = folder / "out", []
    start: dict[str, Any] = {}
    for chunk in (min(cfg.chunk_sizes), *cfg.chunk_sizes):  # first: the start-up run
        shutil.rmtree(out, ignore_errors=True)
        cmd = _command(run, catalog if start else tiny, out, chunk, workers)
        got = measure(cmd, env, folder / "predict.log")
        if not start:
            start = got
            continue
        wall = max(got["wall_s"] - start["wall_s"], 1e-9)
        cpu = max(got["cpu_s"] - start["cpu_s"], 1e-9)
        rows.append(
            {
                "mode": label,
                "threads": threads,
                "workers": workers,
                "chunk_size": chunk,
                **got,
                "gal_per_s": round(cfg.n / got["wall_s"]),
                "gal_per_s_after_startup": round(cfg.n / wall),
                "gal_per_cpu_s": round(cfg.n / max(got["cpu_s"], 1e-9)),
                "gal_per_cpu_s_after_startup": round(cfg.n / cpu),
                "startup_wall_s": start["wall_s"],
                "startup_cpu_s": start["cpu_s"],
                "command": f"OMP_NUM_THREADS={threads} python " + " ".join(cmd[1:]),
            }
        )
    shutil.rmtree(out, ignore_errors=True)
    return rows


def _machine() -> dict[str, Any]:
    import torch

    cores = usable_cores()
    return {
        "cores": cores,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "loadavg_start": os.getloadavg(),
    }


def run_stream_bench(cfg: StreamBench) -> dict[str, Any]:
    """Build/reuse the catalogue and run, measure every configuration; the benchmark JSON.

    ``gal_per_cpu_s_after_startup`` (galaxies per CPU second of the whole process tree, start-up
    excluded) is the figure least disturbed by other jobs on the machine."""
    machine = _machine()
    catalog, cat_info = bench_catalog(cfg, row_group=min(min(cfg.chunk_sizes), 100_000))
    tiny = tiny_catalog(catalog, cfg.folder())
    run = bench_run(cfg)
    results = [row for mode in _modes(cfg) for row in _measure_mode(cfg, run, catalog, tiny, mode)]
    peaks = [r["peak_tree_rss_mb"] for r in results if r["peak_tree_rss_mb"] is not None]
    return {
        "machine": machine | {"loadavg_end": os.getloadavg()},
        "catalog": cat_info,
        "run": run_info(run) | {"preset": None if cfg.run else cfg.preset},
        "config": dataclasses.asdict(cfg),
        "results": results,
        "peak_memory_mb": max(peaks, default=None),  # None: psutil missing, not sampled
        "memory_target_met": max(peaks) < MEMORY_TARGET_MB if peaks else None,
    }
