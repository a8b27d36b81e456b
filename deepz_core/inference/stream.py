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
import logging
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
from deepz_core.catalog.io import count_rows, iter_rows, plan, plan_warning
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import (
    LOCK_FILE,
    atomic_write,
    atomic_write_json,
    check_outputs,
    file_digest,
    file_identity,
    is_temporary,
    lock_folder,
)
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
from deepz_core.training.config import run_pz_config

LOG = logging.getLogger("deepz")
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
            extra["pz"] = pz_grid(products, self.pz)
        return arrow_table(predictions_table(features, products, extra, cat))

    def columns(self) -> set[str] | None:
        """Catalogue columns the predictions use (None: all, for a run without recorded bands)."""
        return used_columns(self.meta)

    def chunks(self, catalog: str, rows: Range, chunk_size: int) -> Iterator[Catalog]:
        """The rows [start, stop) of ``catalog`` in chunks, with only the columns used: at most
        CPU_CHUNK rows on a CPU (memory, not speed, grows with the chunk), ``chunk_size`` on a GPU."""
        device = next(self.model.parameters()).device
        size = chunk_size if device.type == "cuda" else min(chunk_size, CPU_CHUNK)
        return iter_rows(catalog, rows, size, self.columns())


def used_columns(meta: dict[str, Any]) -> set[str] | None:
    """Catalogue columns the predictions of a model with ``meta`` (model.json's metadata) use;
    None (all) for a run without recorded bands."""
    bands = meta.get("bands")
    if bands is None:
        return None
    fluxes = {p + b for b in bands for p in (FLUX_PREFIX, ERROR_PREFIX)}
    return {"ref_id", "zspec", "mag", *KEEP_EXTRA, *fluxes}


PREFLIGHT_ROWS = 100


def preflight(run_dir: str, catalog: str) -> int:
    """Rows in ``catalog`` after reading and checking its first ``PREFLIGHT_ROWS`` rows with the
    columns the run uses: a catalogue with the wrong columns, values or layout fails here, in one
    line, before any output (or Dask task) exists. CatalogError for an empty catalogue."""
    n = count_rows(catalog)
    if n == 0:
        raise CatalogError(f"{catalog}: no galaxies (empty table): nothing to predict")
    columns = used_columns(load_model_json(run_dir).get("metadata", {}))
    for _ in iter_rows(catalog, (0, min(n, PREFLIGHT_ROWS)), PREFLIGHT_ROWS, columns):
        pass
    return n


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
        pz = run_pz_config(run)
        _PREDICTORS[key] = Predictor(
            run, load_model(run.path, device=str(resolve_device(device))), meta, pz
        )
    return _PREDICTORS[key]


def pz_grid(products: dict[str, np.ndarray], pz: PzConfig, block: int = 4096) -> np.ndarray:
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
    check_outputs({"output": out}, {"catalogue": catalog, "run folder": run_dir})
    rows = (0, preflight(run_dir, catalog))  # one pass: no partitions to re-decode
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
    """Partitioned Parquet dataset OUT/part-NNNNN.parquet, _SUCCESS last; rows out. The folder is
    locked for the whole call (a second writer gets an InUseError naming this process); its
    ``_plan.json`` keys it on the run (model checksum, p(z) grid), the catalogue (size,
    modification time, content fingerprint) and the options that change outputs, so a re-run
    with the same key skips the finished parts (resume) and any other is refused, saying what
    differs. ``mapper`` runs the missing parts (scaleout.dask_map for Dask). Paths travel to the
    workers as absolute paths: a worker's working folder is its own."""
    run_dir, catalog = str(Path(run_dir).resolve()), str(Path(catalog).resolve())
    folder = Path(out).resolve()
    check_outputs({"output": folder}, {"catalogue": catalog, "run folder": run_dir})
    _refuse_foreign(folder)
    preflight(run_dir, catalog)
    ranges = plan(catalog, chunk_size)
    with lock_folder(folder, f"dataset folder {folder}"):
        key = dataset_key(run_dir, catalog, ranges, grid)
        _check_plan(folder, key)
        advice = plan_warning(catalog, chunk_size)
        if advice:
            LOG.warning(advice)
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


DATASET_FILES = (PLAN, SUCCESS, LOCK_FILE)


def _refuse_foreign(folder: Path) -> None:
    """ConfigError when ``folder`` holds files that are not this dataset's (parts, plan, success
    mark, lock, temporaries): predictions written beside them would be mixed with a user's files."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {str(folder)!r} is a file; a dataset is a folder")
    if not folder.is_dir():
        return
    foreign = sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in DATASET_FILES
        and not is_temporary(p.name)
        and not (p.name.startswith("part-") and p.name.endswith(".parquet"))
    )
    if foreign:
        raise ConfigError(
            f"output {str(folder)!r} holds files that are not a deepz predictions dataset "
            f"({', '.join(foreign[:5])}); give a new or empty folder"
        )


_MODEL_DIGESTS: dict[tuple[str, int, int], str] = {}


def dataset_key(run_dir: str, catalog: str, ranges: list[Range], grid: bool) -> dict[str, Any]:
    """What a dataset's parts depend on: the run (checksum of its weights and its p(z) grid), the
    catalogue (``file_identity``), the partitions and ``--grid``."""
    model = Path(run_dir) / "model.safetensors"
    stat = model.stat()
    ident = (str(model), stat.st_size, stat.st_mtime_ns)
    if ident not in _MODEL_DIGESTS:
        _MODEL_DIGESTS[ident] = file_digest(model)[:16]
    return {
        "version": 2,
        "run": {
            "model_sha256": _MODEL_DIGESTS[ident],
            "pz": run_pz_config(RunDir(Path(run_dir))).to_dict(),
        },
        "catalog": {"path": catalog, **file_identity(catalog)},
        "ranges": [list(r) for r in ranges],
        "grid": grid,
    }


def plan_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between the key of a dataset and that of the call that wants to add to it."""
    if old.get("version") != new["version"]:
        return ["it was written by an older deepz that did not record the run and the catalogue"]
    out = []
    if old.get("run") != new["run"]:
        out.append(
            f"another run (model checksum {old.get('run', {}).get('model_sha256')} -> "
            f"{new['run']['model_sha256']}, or another p(z) grid)"
        )
    old_cat, new_cat = old.get("catalog", {}), new["catalog"]
    if old_cat != new_cat:
        what = [
            k for k in ("path", "size", "mtime_ns", "fingerprint") if old_cat.get(k) != new_cat[k]
        ]
        out.append(f"another catalogue, or the file changed since ({', '.join(what)} differ)")
    if old.get("ranges") != new["ranges"]:
        out.append("another --chunk-size (other partitions)")
    if old.get("grid") != new["grid"]:
        out.append(
            f"--grid {'on' if old.get('grid') else 'off'} then, {'on' if new['grid'] else 'off'} now"
        )
    return out


def _check_plan(folder: Path, key: dict[str, Any]) -> None:
    """Record the dataset's key; refuse a folder whose parts were made under another key (a folder
    with a plan but no part yet simply starts over: nothing is lost)."""
    path = folder / PLAN
    parts = any(folder.glob("part-*.parquet"))
    if path.exists() and parts:
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path}: damaged dataset plan ({exc}); choose an empty folder"
            ) from None
        differences = plan_differences(old if isinstance(old, dict) else {}, key)
        if differences:
            raise ConfigError(
                f"output {str(folder)!r} holds predictions made with {'; '.join(differences)}: "
                "adding to them would mix two datasets; choose another folder, or delete this one "
                "to start over"
            )
        return
    if parts:
        raise ConfigError(
            f"output {str(folder)!r} holds parts without a {PLAN}; choose an empty folder"
        )
    atomic_write_json(path, key)
