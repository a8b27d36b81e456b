"""Survey-scale inference: read catalogues in chunks, predict, write Parquet (or FITS) atomically.

A catalogue is cut into partitions of at most ``chunk_size`` rows, each read in chunks of at most
``CPU_CHUNK`` rows on a CPU (deepz_core.catalog.io, only the columns used), so memory stays bounded
whatever the file or partition size. The network and the p(z) products run chunk by chunk.

Output: one file (``.parquet``, or ``.fits`` assembled in memory for small outputs) or, when the
output name has no suffix, a partitioned Parquet dataset ``OUT/part-00000.parquet ...`` with
``OUT/_SUCCESS`` written last; parts already present are skipped, so re-running resumes
(deepz_core.inference.scaleout runs the parts on Dask workers). Mixtures use qp's 'mixmod' layout:
``weights``, ``means``, ``stds`` as fixed-size list columns (N, E*M); ``pz`` (N, G) on the run's
PzConfig grid only when asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from deepz_core.catalog.catalog import ERROR_PREFIX, FLUX_PREFIX, Catalog
from deepz_core.catalog.formats.common import Range
from deepz_core.catalog.io import count_rows, iter_rows, plan_partitions
from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write, atomic_write_json
from deepz_core.inference.predict import (
    match_bands,
    member_mask,
    mixture_from_arrays,
    model_features,
    predict_features,
    predictions_table,
    table_format,
)
from deepz_core.memory import tune_malloc
from deepz_core.nets.deepz import DeepzModel, load_model, load_model_json
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir

DEFAULT_CHUNK = 100_000  # rows per partition (one part file, one Dask task)
CPU_CHUNK = 25_000  # rows read and predicted at once on a CPU: ~330 MB, as fast as larger chunks
FITS_MAX_ROWS = 2_000_000  # FITS output is assembled in memory
KEEP_EXTRA = ("ra", "dec")  # catalogue columns copied to the predictions when present
SUCCESS = "_SUCCESS"
PLAN = "_plan.json"


# ---------------------------------------------------------------- predicting


@dataclass
class Predictor:
    """A loaded run: predicts a Catalog chunk into an Arrow table of predictions."""

    run: RunDir
    model: DeepzModel
    meta: dict[str, Any]
    pz: PzConfig

    def __call__(self, cat: Catalog, grid: bool = False) -> pa.Table:
        """Predictions for the galaxies of ``cat`` with features (none: an empty table with the
        same columns, so every chunk and part of a dataset has one schema)."""
        if self.meta.get("bands") is not None:
            cat = match_bands(cat, tuple(self.meta["bands"]))
        features = model_features(self.model, cat, self.meta.get("ref_band"), False)
        mask, oof = member_mask(self.run, features, self.model.members)
        products = predict_features(self.model, features, mask, self.pz)
        extra = {"out_of_fold": oof}
        extra |= {k: cat.extra[k][features.rows] for k in KEEP_EXTRA if k in cat.extra}
        if grid:
            extra["pz"] = mixture_on_grid(products, self.pz)
        return arrow_table(predictions_table(features, products, extra, cat))

    def columns(self) -> set[str] | None:
        """Catalogue columns the predictions use (None: all, for a run without recorded bands)."""
        bands = self.meta.get("bands")
        if bands is None:
            return None
        fluxes = {p + b for b in bands for p in (FLUX_PREFIX, ERROR_PREFIX)}
        return {"ref_id", "zspec", "mag", *KEEP_EXTRA, *fluxes}

    def chunks(self, catalog: str, rows: Range, chunk_size: int) -> Iterator[Catalog]:
        """The rows [start, stop) of ``catalog`` in chunks, with only the columns used: at most
        CPU_CHUNK rows on a CPU (memory, not speed, grows with the chunk), ``chunk_size`` on a GPU."""
        device = next(self.model.parameters()).device
        size = chunk_size if device.type == "cuda" else min(chunk_size, CPU_CHUNK)
        return iter_rows(catalog, rows, size, self.columns())


_PREDICTORS: dict[tuple[str, str], Predictor] = {}  # one loaded model per worker process


def load_predictor(run_dir: Path | str, device: str = "cpu") -> Predictor:
    """The run's model, loaded once per process (cached by run path and device)."""
    from deepz_core.device import resolve_device

    key = (str(Path(run_dir).resolve()), device)  # resolved here: on the worker that predicts
    if key not in _PREDICTORS:
        tune_malloc()  # Dask workers start with glibc settings that page-fault every block
        run = RunDir(Path(run_dir))
        if not run.file("model.safetensors").exists():
            raise ConfigError(f"--run {run_dir} has no trained model (model.safetensors)")
        meta = load_model_json(run.path).get("metadata", {})
        pz = PzConfig(**run.config().get("pz", {}))
        _PREDICTORS[key] = Predictor(
            run, load_model(run.path, device=str(resolve_device(device))), meta, pz
        )
    return _PREDICTORS[key]


def mixture_on_grid(products: dict[str, np.ndarray], pz: PzConfig, block: int = 4096) -> np.ndarray:
    """(N, G) float32 p(z) on the PzConfig grid from the stored mixture parameters."""
    z = torch.as_tensor(pz.grid(), dtype=torch.float64)
    out = [np.zeros((0, len(z)), dtype=np.float32)]
    for s in range(0, len(products["weights"]), block):
        mix = mixture_from_arrays(
            *(products[k][s : s + block] for k in ("weights", "means", "stds"))
        )
        out.append(mix.log_prob(z[:, None]).T.exp().float().numpy())  # (n, G)
    return np.concatenate(out)


def arrow_table(table: Any) -> pa.Table:
    """An astropy Table as Arrow: 2-D columns become fixed-size lists (qp 'mixmod' layout)."""
    cols = {}
    for name in table.colnames:
        a = np.ascontiguousarray(table[name])
        flat = pa.array(a.reshape(-1)) if a.ndim == 2 else None
        cols[name] = pa.FixedSizeListArray.from_arrays(flat, a.shape[1]) if a.ndim == 2 else a
    return pa.table(cols)


# ---------------------------------------------------------------- writing


PARQUET_OPTIONS = dict(compression="zstd", compression_level=1, use_dictionary=False)
# zstd level 1: ~25% smaller than snappy at about its speed; no dictionaries (distinct floats)


def _write_chunks(tables: Iterator[pa.Table], tmp: Path) -> int:
    """Stream Arrow tables into one Parquet file; returns rows written (0: empty file)."""
    writer, n = None, 0
    try:
        for t in tables:
            writer = writer or pq.ParquetWriter(tmp, t.schema, **PARQUET_OPTIONS)
            writer.write_table(t)
            n += t.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({"ref_id": pa.array([], pa.int64())}), tmp)
    return n


def write_parquet(tables: Iterator[pa.Table], out: Path | str) -> int:
    """Stream Arrow tables (one schema) into the Parquet file ``out``, atomically; rows written."""
    n = [0]
    atomic_write(out, lambda tmp: n.__setitem__(0, _write_chunks(tables, tmp)))
    return n[0]


def predict_part(
    run_dir: str,
    catalog: str,
    rows: Range,
    out: str,
    chunk_size: int,
    device: str = "cpu",
    grid: bool = False,
) -> int:
    """Predict rows [start, stop) of ``catalog`` into the Parquet file ``out`` (atomic); rows out."""
    predictor = load_predictor(run_dir, device)
    tables = (predictor(c, grid) for c in predictor.chunks(catalog, rows, chunk_size))
    n = [0]
    atomic_write(out, lambda tmp: n.__setitem__(0, _write_chunks(tables, tmp)))
    return n[0]


def predict_file(
    run_dir: str,
    catalog: str,
    out: str,
    chunk_size: int = DEFAULT_CHUNK,
    device: str = "cpu",
    grid: bool = False,
) -> int:
    """Stream a catalogue into one .parquet (or small .fits) file, written atomically; rows out."""
    fmt = table_format(out)
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    rows = (0, count_rows(catalog))  # one pass: no partitions to re-decode
    predictor = load_predictor(run_dir, device)
    tables = (predictor(c, grid) for c in predictor.chunks(catalog, rows, chunk_size))
    if fmt == "parquet":
        n = [0]
        atomic_write(out, lambda tmp: n.__setitem__(0, _write_chunks(tables, tmp)))
        return n[0]
    if rows[1] > FITS_MAX_ROWS:
        raise ConfigError(
            f"--out {out}: FITS output is limited to {FITS_MAX_ROWS} rows; "
            "use .parquet or a folder (no suffix)"
        )
    table = astropy_table(pa.concat_tables(list(tables)))
    atomic_write(out, lambda tmp: table.write(tmp, format="fits", overwrite=True))
    return len(table)


def flag_counts(out: Path | str) -> dict[str, int]:
    """``{"rows": N, flag name: rows with it, ...}`` of a predictions file or dataset folder."""
    from deepz_core.catalog.screen import PzFlag

    path = Path(out)
    if path.is_file() and table_format(path) == "fits":
        from astropy.table import Table

        flags = np.asarray(Table.read(path)["flag"])
    else:
        import pyarrow.dataset as ds

        source = (
            [str(p) for p in sorted(path.glob("part-*.parquet"))] if path.is_dir() else str(path)
        )
        flags = ds.dataset(source, format="parquet").to_table(columns=["flag"])["flag"].to_numpy()
    counts = {f.name: int(np.count_nonzero(flags & f)) for f in PzFlag if f.name is not None}
    return {"rows": len(flags), **{k: v for k, v in counts.items() if v}}


def astropy_table(table: pa.Table) -> Any:
    """An Arrow table as astropy: fixed-size list columns become (N, C) columns."""
    from astropy.table import Table

    out = Table()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.flatten().to_numpy().reshape(len(col), col.type.list_size)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


Mapper = Callable[[list[tuple]], Iterator[int]]


def local_map(tasks: list[tuple]) -> Iterator[int]:
    """Run ``predict_part`` tasks one after another in this process."""
    for task in tasks:
        yield predict_part(*task)


def predict_dataset(
    run_dir: str,
    catalog: str,
    out: str,
    chunk_size: int = DEFAULT_CHUNK,
    device: str = "cpu",
    grid: bool = False,
    mapper: Mapper = local_map,
) -> int:
    """Partitioned Parquet dataset OUT/part-NNNNN.parquet, _SUCCESS last; finished parts are
    skipped (resume). ``mapper`` runs the missing parts (scaleout.dask_map for Dask); rows out.
    Paths travel to the workers as absolute paths: a worker's working folder is its own."""
    run_dir, catalog = str(Path(run_dir).resolve()), str(Path(catalog).resolve())
    folder = Path(out).resolve()
    ranges = plan_partitions(catalog, chunk_size)
    key = {"catalog": str(Path(catalog).resolve()), "ranges": ranges, "grid": grid}
    _check_plan(folder, key)
    names = [folder / f"part-{i:05d}.parquet" for i in range(len(ranges))]
    todo = [
        (str(run_dir), str(catalog), r, str(p), chunk_size, device, grid)
        for r, p in zip(ranges, names, strict=True)
        if not p.exists()
    ]
    for _ in mapper(todo):
        pass
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in names)
    atomic_write_json(folder / SUCCESS, {"parts": len(names), "rows": rows})
    return rows


def _check_plan(folder: Path, key: dict[str, Any]) -> None:
    """Record the partition plan; refuse a folder that holds parts of another plan."""
    path = folder / PLAN
    if path.exists():
        old = json.loads(path.read_text())
        old["ranges"] = [tuple(r) for r in old["ranges"]]
        if old != key:
            raise ConfigError(
                f"--out {folder} holds predictions of another catalogue, "
                "chunk size or --grid setting; choose an empty folder"
            )
    elif folder.exists() and any(folder.glob("part-*.parquet")):
        raise ConfigError(f"--out {folder} holds parts without a {PLAN}; choose an empty folder")
    else:
        atomic_write_json(path, key)
