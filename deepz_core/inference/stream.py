"""Survey-scale inference: read catalogues in chunks, predict, write Parquet (or FITS) atomically.

A catalogue is cut into partitions of at most ``chunk_size`` rows, each read in chunks of at most
``CPU_CHUNK`` rows on a CPU (deepz_core.catalog.io, only the columns used), so memory stays bounded
whatever the file or partition size. The network and the p(z) products run chunk by chunk.

Output: one file (``.parquet``; ``.fits``, a qp ``.hdf5`` or a HATS folder assembled in memory
for smaller outputs) or, when the output name has no suffix, a partitioned Parquet dataset
``OUT/part-00000.parquet ...`` with ``OUT/_SUCCESS`` written last; parts already present are
skipped, so re-running resumes (deepz_core.inference.scaleout runs the parts on Dask workers).
Mixtures use qp's 'mixmod' layout: ``weights``, ``means``, ``stds`` as fixed-size list columns
(N, E*M), named in the Parquet schema metadata (deepz_core.inference.qp_io); ``pz`` (N, G) on the
run's PzConfig grid only when asked for. Every output carries its provenance
(deepz_core.inference.provenance). Coordinates (ra/dec, RA/DEC, coord_ra/coord_dec, _healpix_29)
and the ``keep`` columns of ``ReadOptions`` are passed through.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from deepz_core.catalog.catalog import DEFAULT_FLUXZP, FLUX_PREFIX, Catalog, native_array
from deepz_core.catalog.conventions import (
    COORDINATE_COLUMNS,
    InputConventions,
    identifier,
    needed_columns,
    rename_columns,
)
from deepz_core.catalog.features import build_features, resolve_ref_band
from deepz_core.catalog.formats.common import Range
from deepz_core.catalog.io import (
    column_names,
    count_rows,
    iter_rows,
    plan_partitions,
    plan_warning,
    read_sample,
)
from deepz_core.catalog.scan import scan_catalog
from deepz_core.catalog.screen import TrainingMagnitudes, UnitCheck, judge_unit_shift
from deepz_core.catalog.validation import (
    check_not_magnitudes,
    check_unique_ids,
    judged_ranges,
)
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import (
    DATASET_PLAN,
    LOCK_FILE,
    atomic_write,
    atomic_write_json,
    check_outputs,
    file_digest,
    file_identity,
    is_temporary,
    lock_folder,
)
from deepz_core.inference.arrow_tables import SUCCESS, arrow_table, astropy_table, dataset_files
from deepz_core.inference.calibrate import CALIBRATION_FILE, RunCalibration, load_calibration
from deepz_core.inference.predict import (
    PRODUCT_COLUMNS,
    check_reference_measured,
    galaxy_mags,
    member_mask,
    mixture_from_arrays,
    model_features,
    mtime_ns,
    predict_features,
    predictions_table,
    table_format,
    training_magnitudes,
    unknown_as_nan,
    unmeasured_bands,
    unmeasured_notes,
    with_run_bands,
)
from deepz_core.inference.provenance import fits_cards, parquet_metadata, provenance
from deepz_core.inference.qp_io import fits_hdus, grid_z_range, write_qp
from deepz_core.inference.qp_io import parquet_metadata as qp_metadata
from deepz_core.memory import tune_malloc
from deepz_core.nets.deepz import DeepzModel, load_model, load_model_json
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir
from deepz_core.training.config import run_pz_config

LOG = logging.getLogger("deepz")
DEFAULT_CHUNK = 100_000  # rows per partition (one part file, one Dask task)
CPU_CHUNK = 25_000  # rows read and predicted at once on a CPU: ~330 MB, as fast as larger chunks
MEMORY_MAX_ROWS = 2_000_000  # FITS, qp and HATS outputs are assembled in memory
KEEP_EXTRA = COORDINATE_COLUMNS  # catalogue columns copied to the predictions when present
PLAN = DATASET_PLAN  # files.refuse_inside_dataset knows a dataset by it


@dataclass(frozen=True)
class ReadOptions:
    """How the catalogue is read and what comes along: ``keep`` columns passed through to the
    predictions (besides the coordinates), ``conventions`` of its columns (identifier,
    magnitudes, limits); ``csv_dtypes``: (column, pandas dtype) pairs a CSV file's chunks are
    read with, found by the ``preflight`` (``catalog.scan``: each passed-through column's type
    over the whole file)."""

    keep: tuple[str, ...] = ()
    conventions: InputConventions = field(default_factory=InputConventions)
    csv_dtypes: tuple[tuple[str, str], ...] = ()

    def key(self) -> dict[str, Any]:
        """JSON of the options the user chose (part of a dataset's plan; ``csv_dtypes`` follow
        from the catalogue, whose identity the plan holds)."""
        return {"keep": list(self.keep), "conventions": self.conventions.to_dict()}


# ---------------------------------------------------------------- predicting


@dataclass
class Predictor:
    """A loaded run: predicts a Catalog chunk into an Arrow table of predictions."""

    run: RunDir
    model: DeepzModel
    meta: dict[str, Any]
    pz: PzConfig
    calibration: RunCalibration | None = None
    training: TrainingMagnitudes | None = None  # the unit check's (predict.training_magnitudes)

    def __call__(
        self,
        cat: Catalog,
        grid: bool = False,
        keep: tuple[str, ...] = (),
        calibrate: bool = True,
        given: set[str] | None = None,
        check: UnitCheck | None = None,
        source: str = "the catalogue",
    ) -> pa.Table:
        """Predictions for the galaxies of ``cat`` with features (none: an empty table with the
        same columns, so every chunk and part of a dataset has one schema); the coordinates and
        ``keep`` columns of ``cat`` come along (ConfigError for a ``keep`` column it lacks).
        Calibrated when ``calibrate`` and the run has a calibration (``inference.calibrate``).
        ``given``: the notes this prediction gave already (``predict.with_run_bands``; the chunks
        of one stream share it), None when ``cat`` is the whole catalogue: then a run band without
        any value in it is named in a warning (``tables`` does so for a stream), as are the
        values read as unknown (``predict.unknown_as_nan``: the stream's ``preflight`` names
        them). A run band ``cat`` lacks is imputed for every galaxy (``predict.with_run_bands``).
        ``check``: the unit check of the catalogue ``source`` against the run's training
        magnitudes (``predict.model_features``): a chunk of a stream carries the preflight's
        verdict; None: ``cat`` is judged, a catalogue a unit's shift away refused."""
        cat = unknown_as_nan(cat, given)
        bands = self.bands
        if bands is not None:
            if given is None:
                for note in unmeasured_notes(unmeasured_bands(cat, bands), bands, self.ref_band):
                    LOG.warning(note)
            cat = with_run_bands(cat, bands, self.ref_band, given=given)
        features = model_features(
            self.model, cat, self.ref_band, False, self.training, check, source
        )
        mask, oof = member_mask(self.run, features, self.model.members)
        cal = self.calibration if calibrate else None
        transform = (
            None if cal is None else cal.transform(galaxy_mags(features), features.ref_id, oof)
        )
        products = predict_features(self.model, features, mask, self.pz, transform=transform)
        extra = {"out_of_fold": oof} | carried_columns(cat, features.rows, keep)
        if grid:
            extra["pz"] = mixture_on_grid(products, self.pz)
        return arrow_table(predictions_table(features, products, extra, cat))

    @property
    def bands(self) -> tuple[str, ...] | None:
        """The run's bands in its order (None: a run that did not record them)."""
        bands = self.meta.get("bands")
        return None if bands is None else tuple(bands)

    @property
    def ref_band(self) -> str | None:
        """The run's reference band (None: the default choice among its bands)."""
        return self.meta.get("ref_band")

    @property
    def z_range(self) -> tuple[float, float]:
        """The run's redshift range (the placeholder p(z) of rows without one, qp_io)."""
        return self.pz.z_min, self.pz.z_max

    def columns(self, names: list[str], read: ReadOptions, source: str = "") -> list[str] | None:
        """The catalogue columns (of the file ``source`` with columns ``names``) the predictions
        use (None: all, for a run without recorded bands)."""
        bands = self.meta.get("bands")
        return needed_columns(names, bands, read.keep, read.conventions, source)

    def chunks(
        self, catalog: str, rows: Range, chunk_size: int, read: ReadOptions | None = None
    ) -> Iterator[Catalog]:
        """The rows [start, stop) of ``catalog`` in chunks, with only the columns used: at most
        CPU_CHUNK rows on a CPU (memory, not speed, grows with the chunk), ``chunk_size`` on a GPU."""
        read = read or ReadOptions()
        device = next(self.model.parameters()).device
        size = chunk_size if device.type == "cuda" else min(chunk_size, CPU_CHUNK)
        columns = self.columns(column_names(catalog), read, str(catalog))
        return iter_rows(catalog, rows, size, columns, read.conventions, dict(read.csv_dtypes))

    def tables(
        self,
        catalog: str,
        rows: Range,
        chunk_size: int,
        grid: bool,
        read: ReadOptions | None,
        calibrate: bool = True,
        given: set[str] | None = None,
        check: UnitCheck | None = None,
        unmeasured: set[str] | None = None,
    ) -> Iterator[pa.Table]:
        """Arrow tables of predictions for the rows [start, stop) of ``catalog``, chunk by chunk;
        a note about the catalogue comes with the first chunk that has it, once per stream
        (``given``: the set of notes given, shared with other parts of the same prediction;
        None: a new one). A run band without values in every chunk is named once, at the end
        (``predict.unmeasured_notes``), or, for a part of a dataset, put in ``unmeasured`` (a set
        the caller gave), for the dataset's one note (``dataset_notes``); in some chunks only,
        its rows are flagged alone. ``check``: the preflight's unit check of the whole catalogue
        (``preflight``; None: each chunk judged alone)."""
        read = read or ReadOptions()
        notes = StreamNotes(self.bands, self.ref_band, set() if given is None else given)
        for cat in self.chunks(catalog, rows, chunk_size, read):
            notes.seen(cat)
            yield self(cat, grid, read.keep, calibrate, notes.given, check, str(catalog))
        if unmeasured is not None:
            unmeasured.update(notes.empty or ())
        elif notes.pending:
            whole = rows == (0, count_rows(catalog))
            notes.close(
                "this catalogue" if whole else f"rows {rows[0]} to {rows[1] - 1} of {catalog}"
            )


@dataclass
class StreamNotes:
    """The warnings of one prediction made chunk by chunk, each given once: ``given``, the notes
    given so far (``predict.model_features``, ``predict.with_run_bands``), shared by its chunks
    (and by the parts of a dataset), and the run bands that no chunk has a value of (``seen``),
    named once at the end (``close``); a band without values in some chunks only is flagged in
    their rows alone, without a note. ``bands``, ``ref_band``: the run's (None: not recorded)."""

    bands: tuple[str, ...] | None
    ref_band: str | None
    given: set[str] = field(default_factory=set)
    empty: set[str] | None = None  # the bands no chunk seen so far has a value of

    def seen(self, cat: Catalog) -> None:
        """Take in the chunk ``cat``: a band with a value in it is no longer without values."""
        found = set(unmeasured_bands(cat, self.bands or cat.bands))
        self.empty = found if self.empty is None else self.empty & found

    @property
    def pending(self) -> bool:
        """Whether ``close`` has a note to give."""
        return bool(self.empty) and self.bands is not None

    def close(self, where: str = "this catalogue") -> None:
        """Warn once about the run bands without a value in every chunk of ``where``
        (``predict.unmeasured_notes``)."""
        if not self.pending:
            return
        ordered = [b for b in self.bands or () if b in (self.empty or ())]
        for note in unmeasured_notes(ordered, self.bands or (), self.ref_band, where):
            LOG.warning(note)


def carried_columns(cat: Catalog, rows: np.ndarray, keep: tuple[str, ...]) -> dict:
    """The coordinates (KEEP_EXTRA) and ``keep`` columns of ``cat`` at ``rows`` (N,), by name."""
    columns = cat.columns()
    missing = [k for k in keep if k not in columns]
    if missing:
        raise ConfigError(f"--keep-columns: {missing} not in the catalogue ({cat.n_galaxies} rows)")
    names = [k for k in (*KEEP_EXTRA, *keep) if k in columns and k not in PRODUCT_COLUMNS]
    return {k: columns[k][rows] for k in dict.fromkeys(names)}


def run_bands(run_dir: str) -> tuple[tuple[str, ...] | None, str | None]:
    """The run's bands in its order (None: a run that did not record them) and its reference
    band (None: the default choice among them), from its model's JSON."""
    meta = load_model_json(run_dir).get("metadata", {})
    bands = meta.get("bands")
    return (None if bands is None else tuple(bands)), meta.get("ref_band")


@dataclass(frozen=True)
class Checked:
    """A catalogue the ``preflight`` passed: its rows, and the read options to stream it with
    (the caller's, with the CSV column types it found) and the unit check its chunks carry."""

    rows: int
    read: ReadOptions
    check: UnitCheck


def preflight(
    run_dir: str,
    catalog: str,
    read: ReadOptions | None = None,
    given: set[str] | None = None,
    sky: tuple[str, str] | None = None,
    allow_magnitude_shift: bool = False,
) -> Checked:
    """The rows of ``catalog`` and how to read it, once it passed the checks a prediction needs
    of every row, so that a bad file fails here, in one line, before any output (or Dask task)
    exists, never in a late chunk. Read alone for all rows (``catalog.scan``, 8 bytes per row and column): the ids
    (integers, none repeated, as ``read_catalog`` refuses them whatever the partitions), zspec,
    mag and the coordinates (numbers; with a HATS output, ``sky``: the (ra, dec) columns, on the
    sky) and, in a CSV file, every numeric column (a text cell is named with its row) and the
    type of each column passed through (``Checked.read``'s ``csv_dtypes``). Read with
    the columns the run uses: the rows ``validation.judged_ranges`` names (all up to 10,000),
    checked as every chunk is (columns, units, layout) and judged for a flux column holding AB
    magnitudes (``validation.check_not_magnitudes``, on the same rows as the catalogue read
    whole). A run band the file lacks is refused or named here (``predict.with_run_bands``), as
    are, in one warning each, the values the prediction reads as unknown (a spec-z code such as
    99: ``validation.unknown_note``). ``given``: the prediction's notes given (the absent
    bands' is added). The reference band is read alone for all rows (``unit_verdict``): a catalogue
    without a reference magnitude in any row, or whose reference magnitudes lie a unit's shift
    from the run's training population (unless ``allow_magnitude_shift``), is refused too; the
    verdict travels in ``Checked.check``. CatalogError for an empty catalogue."""
    n = count_rows(catalog)
    if n == 0:
        raise CatalogError(f"{catalog}: no galaxies (empty table): nothing to predict")
    read = read or ReadOptions()
    bands, ref_band = run_bands(run_dir)
    names = column_names(catalog)
    columns = needed_columns(names, bands, read.keep, read.conventions, str(catalog))
    scan = scan_catalog(catalog, read.conventions, columns, read.keep, sky)
    ident = identifier(names, read.conventions) or "ref_id"
    check_unique_ids(scan.ids, str(catalog), ident)
    sample = read_sample(catalog, judged_ranges(n), columns, read.conventions)
    check_not_magnitudes(sample, str(catalog), names)  # a flux column holding magnitudes
    if bands is not None:  # refused without the reference band; else named once
        with_run_bands(sample, bands, ref_band, given=set() if given is None else given)
    for note in scan.notes():
        LOG.warning(note)
    read = dataclasses.replace(read, csv_dtypes=tuple(sorted(scan.csv_dtypes.items())))
    check = UnitCheck(allow_magnitude_shift)
    ref = resolve_ref_band(bands or sample.bands, ref_band)
    if ref not in sample.bands:  # no run bands recorded, and no such column: nothing to judge
        return Checked(n, read, check.judged(False))
    return Checked(n, read, unit_verdict(run_dir, catalog, ref, read, check))


REF_CHUNK = 1_000_000  # rows of the reference flux read at once by ``unit_verdict`` (~50 MB)


def unit_verdict(
    run_dir: str, catalog: str, ref_band: str, read: ReadOptions, check: UnitCheck
) -> UnitCheck:
    """``check`` judged on the whole ``catalog`` (``screen.judge_unit_shift``): the reference
    magnitudes of all its rows, from its ``ref_band`` flux and error read alone (with the
    identifier, zspec, mag and coordinates), REF_CHUNK rows at a time; CatalogError when no row
    has one (``predict.check_reference_measured``: no galaxy could get a p(z)), or when they lie
    a unit's shift from the run's training magnitudes and ``check`` does not allow it."""
    names = column_names(catalog)
    columns = needed_columns(names, [ref_band], (), read.conventions, str(catalog))
    parts, fluxzp = [np.zeros(0, np.float32)], DEFAULT_FLUXZP
    rows = (0, count_rows(catalog))
    csv_dtypes = dict(read.csv_dtypes)
    for cat in iter_rows(catalog, rows, REF_CHUNK, columns, read.conventions, csv_dtypes):
        parts.append(build_features(cat, ref_band, use_exposures=False).ref_mag)
        fluxzp = cat.fluxzp
    column = f"{FLUX_PREFIX}{ref_band}"
    mag = np.concatenate(parts)
    check_reference_measured(mag, rows[1], column, str(catalog))
    training = training_magnitudes(run_dir)
    if training is None:
        return check.judged(False)
    return check.judged(judge_unit_shift(mag, training, check, column, fluxzp, str(catalog)))


_PREDICTORS: dict[tuple[str, str, int, int], Predictor] = {}  # one loaded model per process


def load_predictor(run_dir: Path | str, device: str = "cpu") -> Predictor:
    """The run's model, loaded once per process (cached by run path and device)."""
    from deepz_core.device import resolve_device

    path = Path(run_dir).resolve()  # resolved here: on the worker that predicts
    key = (
        str(path),
        device,
        mtime_ns(path / "model.safetensors"),
        mtime_ns(path / CALIBRATION_FILE),
    )
    if key not in _PREDICTORS:  # a retrained model or a new calibration: loaded again
        tune_malloc()  # Dask workers start with glibc settings that page-fault every block
        run = RunDir(Path(run_dir))
        if not run.file("model.safetensors").exists():
            raise ConfigError(f"--run {run_dir} has no trained model (model.safetensors)")
        meta = load_model_json(run.path).get("metadata", {})
        pz = run_pz_config(run)
        _PREDICTORS[key] = Predictor(
            run,
            load_model(run.path, device=str(resolve_device(device))),
            meta,
            pz,
            load_calibration(run.path),
            training_magnitudes(run.path),
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


# ---------------------------------------------------------------- writing


PARQUET_OPTIONS = dict(compression="zstd", compression_level=1, use_dictionary=False)
# zstd level 1: ~25% smaller than snappy at about its speed; no dictionaries (distinct floats)


def output_format(out: Path | str, out_format: str | None = None) -> str:
    """'parquet', 'fits', 'qp' (a qp .hdf5 file) from the file name, or 'hats' (a folder) when
    asked; ConfigError for anything else."""
    if out_format not in (None, "auto", "hats"):
        raise ConfigError(f"--out-format: expected auto or hats, got {out_format!r}")
    if out_format == "hats":
        if Path(out).suffix:
            raise ConfigError(
                f"--out-format hats writes a folder: give --out without a suffix, got {out}"
            )
        return "hats"
    if str(out).lower().endswith(".hdf5"):
        return "qp"
    try:
        return table_format(out)
    except ConfigError:
        raise ConfigError(
            f"--out {str(out)!r}: predictions are written as .parquet, .fits, .hdf5 (a qp file) "
            "or, without a suffix, a folder (a partitioned dataset; --out-format hats: HATS)"
        ) from None


def output_metadata(prov: dict[str, str]) -> dict[bytes, bytes]:
    """Parquet schema metadata of predictions: the qp ensemble's description and provenance."""
    return {**qp_metadata(), **parquet_metadata(prov)}


Footer = Callable[[], dict[str, str]]  # key-value metadata known once every table is written


def _write_chunks(
    tables: Iterator[pa.Table],
    tmp: Path,
    metadata: dict[bytes, bytes],
    footer: Footer | None = None,
) -> int:
    """Stream Arrow tables into one Parquet file with schema ``metadata`` and, once they are
    written, the key-value metadata ``footer()`` in its footer; returns rows written (0: empty
    file)."""
    writer, n = None, 0
    try:
        for t in tables:
            t = t.replace_schema_metadata(metadata)
            writer = writer or pq.ParquetWriter(tmp, t.schema, **PARQUET_OPTIONS)
            writer.write_table(t)
            n += t.num_rows
        if writer is not None and footer is not None:
            writer.add_key_value_metadata(footer())
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        empty = pa.table({"ref_id": pa.array([], pa.int64())})
        extra = {} if footer is None else {k.encode(): v.encode() for k, v in footer().items()}
        pq.write_table(empty.replace_schema_metadata({**metadata, **extra}), tmp)
    return n


def write_parquet(
    tables: Iterator[pa.Table],
    out: Path | str,
    prov: dict[str, str],
    footer: Footer | None = None,
) -> int:
    """Stream Arrow tables (one schema) into the Parquet file ``out``, atomically, with
    ``footer()``'s key-value metadata when given (``_write_chunks``); rows written."""
    n = [0]
    metadata = output_metadata(prov)
    atomic_write(out, lambda tmp: n.__setitem__(0, _write_chunks(tables, tmp, metadata, footer)))
    return n[0]


def write_fits(
    table: pa.Table, out: Path | str, prov: dict[str, str], z_range: tuple[float, float]
) -> int:
    """The predictions as FITS, atomically: HDU ``PREDICTIONS`` (provenance in its header, TUNIT
    'mag' on ``mag``), then qp's ``META``, ``DATA``, ``ANCIL`` (qp_io); rows written."""
    from astropy.io import fits

    t = astropy_table(table)
    if "mag" in t.colnames:
        t["mag"].unit = "mag"
    hdu = fits.table_to_hdu(t)
    hdu.header["EXTNAME"] = "PREDICTIONS"
    for key, value, comment in fits_cards(prov):
        hdu.header[key] = (value, comment)
    hdus = fits.HDUList([fits.PrimaryHDU(), hdu, *fits_hdus(t, z_range)])
    atomic_write(out, lambda tmp: hdus.writeto(tmp, overwrite=True))
    return len(t)


def predict_part(
    run_dir: str,
    catalog: str,
    rows: Range,
    out: str,
    chunk_size: int,
    device: str = "cpu",
    grid: bool = False,
    read: ReadOptions | None = None,
    prov: dict[str, str] | None = None,
    calibrate: bool = True,
    check: UnitCheck | None = None,
    given: set[str] | None = None,
) -> int:
    """Predict rows [start, stop) of ``catalog`` into the Parquet file ``out`` (atomic), with the
    provenance ``prov`` (computed here when not given); rows out. ``calibrate``: apply the run's
    calibration when it has one. ``check``: the preflight's unit check of the whole catalogue
    (``preflight``; None: each chunk judged alone). ``given``: the notes the prediction gave
    already (the parts one process predicts share it, a Dask task gets a copy of the
    preflight's: a note once per dataset; None: once per part). The run bands without values in
    every row of the part are recorded in its footer (``UNMEASURED_KEY``), for the dataset's one
    note (``dataset_notes``)."""
    predictor = load_predictor(run_dir, device)
    prov = prov or provenance(run_dir, catalog)
    empty: set[str] = set()
    tables = predictor.tables(
        catalog, rows, chunk_size, grid, read, calibrate, given, check=check, unmeasured=empty
    )
    return write_parquet(tables, out, prov, lambda: {UNMEASURED_KEY: json.dumps(sorted(empty))})


def predict_file(
    run_dir: str,
    catalog: str,
    out: str,
    chunk_size: int = DEFAULT_CHUNK,
    device: str = "cpu",
    grid: bool = False,
    read: ReadOptions | None = None,
    out_format: str | None = None,
    calibrate: bool = True,
    overwrite: bool = False,
    allow_magnitude_shift: bool = False,
) -> int:
    """Stream a catalogue into one .parquet file, or a smaller .fits, qp .hdf5 or HATS folder
    (``out_format='hats'``), written atomically with their provenance; rows out. ``calibrate``:
    apply the run's calibration when it has one. An existing ``out`` is replaced only with
    ``overwrite`` (``files.check_outputs``). A catalogue a unit's shift from the run's training
    magnitudes is refused before any output unless ``allow_magnitude_shift`` (``preflight``)."""
    fmt = output_format(out, out_format)
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    check_outputs({"--out": out}, {"catalogue": catalog, "run folder": run_dir}, overwrite)
    check = UnitCheck(allow_magnitude_shift)
    with repeats_held_back():
        return _predict_file(
            run_dir, catalog, out, fmt, chunk_size, device, grid, read, calibrate, check
        )


def _predict_file(
    run_dir: str,
    catalog: str,
    out: str,
    fmt: str,
    chunk_size: int,
    device: str,
    grid: bool,
    read: ReadOptions | None,
    calibrate: bool,
    check: UnitCheck,
) -> int:
    """``predict_file`` once its arguments and output are checked."""
    sky = hats_coordinates(catalog, read or ReadOptions()) if fmt == "hats" else None
    given: set[str] = set()
    checked = preflight(run_dir, catalog, read, given, sky, check.allow)
    rows, read = (0, checked.rows), checked.read  # one pass: no partitions
    predictor = load_predictor(run_dir, device)
    prov = provenance(run_dir, catalog)
    tables = predictor.tables(
        catalog, rows, chunk_size, grid, read, calibrate, given, checked.check
    )
    if fmt == "parquet":
        return write_parquet(tables, out, prov)
    if rows[1] > MEMORY_MAX_ROWS:
        raise ConfigError(
            f"--out {out}: {fmt.upper()} output is limited to {MEMORY_MAX_ROWS} rows; "
            "use .parquet or a folder (no suffix)"
        )
    table = pa.concat_tables(list(tables)) if rows[1] else pa.table({})
    return write_output(table, out, fmt, prov, predictor.z_range)


def hats_coordinates(catalog: str, read: ReadOptions) -> tuple[str, str]:
    """The (ra, dec) columns of ``catalog`` (read with ``read``'s renames) that a HATS output is
    partitioned by; ConfigError listing the catalogue's columns when it has none, before any
    galaxy is predicted (``hats_out.coordinate_pair``)."""
    from deepz_core.inference.hats_out import coordinate_pair

    names = column_names(catalog)
    if read.conventions.rename:
        renamed = rename_columns(names, read.conventions.rename, catalog)
        names = [renamed.get(n, n) for n in names]
    return coordinate_pair(names)


def write_output(
    table: pa.Table, out: Path | str, fmt: str, prov: dict[str, str], z_range: tuple[float, float]
) -> int:
    """Write predictions held in memory as ``fmt`` (``output_format``) with their provenance;
    rows written."""
    if fmt == "parquet":
        return write_parquet(iter([table]), out, prov)
    if fmt == "fits":
        return write_fits(table, out, prov, z_range)
    if fmt == "qp":
        write_qp(astropy_table(table), out, prov, z_range)
        return table.num_rows
    from deepz_core.inference.hats_out import write_hats

    return write_hats(table, out, prov)


def file_provenance(path: Path | str) -> dict[str, str]:
    """The provenance a predictions file carries: its FITS header cards (first table HDU) or its
    Parquet schema metadata; {} when it has none."""
    from deepz_core.inference.provenance import from_fits_header, from_parquet_metadata

    if table_format(path) == "fits":
        from astropy.io import fits

        from deepz_core.catalog.formats.fits_file import complete_file, quiet_warnings

        with quiet_warnings(), fits.open(path) as hdus:
            complete_file(Path(path), hdus)  # one line, not astropy's 'may have been truncated'
            return from_fits_header(hdus[1].header)
    return from_parquet_metadata(pq.read_schema(path).metadata)


def predictions_file_bytes(path: Path | str, fmt: str) -> bytes:
    """A FITS or Parquet predictions file as the bytes of a ``fmt`` file ('fits', 'parquet' or
    'qp'), written as ``predict`` writes its outputs (``write_output``): its provenance kept, qp's
    HDUs in FITS and its schema metadata in Parquet. For downloads (the app)."""
    import tempfile

    if fmt not in ("fits", "parquet", "qp"):
        raise ConfigError(f"predictions: format must be fits, parquet or qp, got {fmt!r}")
    if table_format(path) == "fits":
        from astropy.table import Table

        t = Table.read(path, hdu=1, mask_invalid=False)  # big-endian columns: Arrow wants native
        table = arrow_table(Table({n: native_array(t[n]) for n in t.colnames}))
    else:
        table = pq.read_table(path)
    prov = file_provenance(path)
    z_range = grid_z_range(prov.get("z_grid"))
    suffix = {"fits": ".fits", "parquet": ".parquet", "qp": ".hdf5"}[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"predictions{suffix}"
        write_output(table, out, fmt, prov, z_range)
        return out.read_bytes()


def flag_counts(out: Path | str) -> dict[str, int]:
    """``{"rows": N, flag name: rows with it, ...}`` of a predictions file, dataset folder or
    HATS folder."""
    from deepz_core.catalog.screen import PzFlag

    path = Path(out)
    if path.is_file() and str(path).lower().endswith(".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            flags = np.asarray(f["ancil/flag"])
    elif path.is_file() and table_format(path) == "fits":
        from astropy.table import Table

        flags = np.asarray(Table.read(path, hdu=1)["flag"])
    else:
        import pyarrow.dataset as ds

        hats = (path / "dataset").is_dir()
        source = (
            str(path / "dataset") if hats else dataset_files(path) if path.is_dir() else str(path)
        )
        dataset = ds.dataset(source, format="parquet", partitioning="hive" if hats else None)
        flags = dataset.to_table(columns=["flag"])["flag"].to_numpy()
    counts = {f.name: int(np.count_nonzero(flags & f)) for f in PzFlag if f.name is not None}
    return {"rows": len(flags), **{k: v for k, v in counts.items() if v}}


Mapper = Callable[[list[tuple]], Iterator[int]]


class FirstOfEachWarning(logging.Filter):
    """Passes the first record of each warning and holds back its repeats: the same message for
    another chunk, which differs only in its numbers (row range, counts). The repeats of a line
    about the whole read (a record with ``per_read``, e.g. bands without magnitude limits) are
    dropped without being counted as held back."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass errors, notes and the first warning of each kind (numbers ignored); count the
        repeats held back."""
        if record.levelno != logging.WARNING:  # errors and notes always pass
            return True
        key = re.sub(r"(?<![\w.])\d+(?![\w.])", "#", record.getMessage())  # NB455 stays
        if key in self.seen:
            self.held += not getattr(record, "per_read", False)  # a read's line: said once
            return False
        self.seen.add(key)
        return True


@contextmanager
def repeats_held_back() -> Iterator[None]:
    """Within the block, each of deepz's warnings is shown for the first chunk that has it, not
    once per chunk (a survey has hundreds); when the block finishes, one line says how many were
    held back. A failing block adds nothing to its one-line error."""
    held = FirstOfEachWarning()
    LOG.addFilter(held)
    try:
        yield
    finally:
        LOG.removeFilter(held)
    if held.held:
        LOG.warning(
            "%d more warnings like those above, for later chunks, held back (the flag and "
            "out_of_fold columns mark every row concerned)",
            held.held,
        )


def local_map(tasks: list[tuple]) -> Iterator[int]:
    """Run ``predict_part`` tasks one after another in this process, sharing one set of notes
    given (their last argument, the preflight's: a note about the catalogue comes once per
    dataset, not once per part)."""
    given: set[str] = set(tasks[0][-1]) if tasks else set()
    for task in tasks:
        yield predict_part(*task[:-1], given)


def predict_dataset(
    run_dir: str,
    catalog: str,
    out: str,
    chunk_size: int = DEFAULT_CHUNK,
    device: str = "cpu",
    grid: bool = False,
    mapper: Mapper = local_map,
    read: ReadOptions | None = None,
    calibrate: bool = True,
    overwrite: bool = False,
    allow_magnitude_shift: bool = False,
) -> int:
    """Partitioned Parquet dataset OUT/part-NNNNN.parquet, _SUCCESS last; rows out. The folder is
    locked for the whole call (a second writer gets an InUseError naming this process); its
    ``_plan.json`` keys it on the run (model checksum, p(z) grid), the catalogue (size,
    modification time, content fingerprint) and the options that change outputs, so a re-run
    with the same key skips the finished parts (resume, also with ``overwrite``) and any other is
    refused, saying what differs, or with ``overwrite`` starts the dataset over. ``mapper``
    runs the missing parts (scaleout.dask_map for Dask). Paths travel to the workers as absolute
    paths: a worker's working folder is its own. A catalogue a unit's shift from the run's
    training magnitudes is refused before any part exists unless ``allow_magnitude_shift``
    (``preflight``; the parts carry its verdict)."""
    run_dir, catalog = str(Path(run_dir).resolve()), str(Path(catalog).resolve())
    read = read or ReadOptions()
    folder = Path(out).resolve()
    check_outputs({"--out": folder}, {"catalogue": catalog, "run folder": run_dir}, resumable=True)
    _refuse_foreign(folder)
    with repeats_held_back():
        return _predict_dataset(
            run_dir,
            catalog,
            folder,
            chunk_size,
            device,
            grid,
            mapper,
            read,
            calibrate,
            overwrite,
            UnitCheck(allow_magnitude_shift),
        )


def _predict_dataset(
    run_dir: str,
    catalog: str,
    folder: Path,
    chunk_size: int,
    device: str,
    grid: bool,
    mapper: Mapper,
    read: ReadOptions,
    calibrate: bool,
    overwrite: bool,
    check: UnitCheck,
) -> int:
    """``predict_dataset`` once its paths and output folder are checked."""
    given: set[str] = set()
    checked = preflight(run_dir, catalog, read, given, None, check.allow)
    ranges = plan_partitions(catalog, chunk_size)
    with lock_folder(folder, f"dataset folder {folder}"):
        key = dataset_key(run_dir, catalog, ranges, grid, read, calibrate)
        _check_plan(folder, key, overwrite)
        advice = plan_warning(catalog, chunk_size)
        if advice:
            LOG.warning(advice)
        names = [folder / f"part-{i:05d}.parquet" for i in range(len(ranges))]
        prov = provenance(run_dir, catalog)
        task = (chunk_size, device, grid, checked.read, prov, calibrate, checked.check, given)
        todo = [
            (run_dir, catalog, r, str(p), *task)
            for r, p in zip(ranges, names, strict=True)
            if not p.exists()
        ]
        for _ in mapper(todo):
            pass
        footers = [pq.ParquetFile(p).metadata for p in names]
        rows = sum(f.num_rows for f in footers)
        atomic_write_json(folder / SUCCESS, {"parts": len(names), "rows": rows})
    for note in dataset_notes([f.metadata or {} for f in footers], *run_bands(run_dir)):
        LOG.warning(note)
    return rows


UNMEASURED_KEY = "deepz_unmeasured_bands"  # a part's footer: its run bands without any value


def dataset_notes(
    footers: list[dict[bytes, bytes]], bands: tuple[str, ...] | None, ref_band: str | None
) -> list[str]:
    """The one note of a dataset about the run ``bands`` without values in any of its rows,
    from its parts' ``footers`` (key-value metadata, ``UNMEASURED_KEY``: each part's bands
    without values); none when a part does not say (one written by an older deepz)."""
    key = UNMEASURED_KEY.encode()
    if bands is None or not footers or any(key not in f for f in footers):
        return []
    empty = set.intersection(*(set(json.loads(f[key])) for f in footers))
    return unmeasured_notes([b for b in bands if b in empty], bands, ref_band)


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


def dataset_key(
    run_dir: str,
    catalog: str,
    ranges: list[Range],
    grid: bool,
    read: ReadOptions | None = None,
    calibrate: bool = True,
) -> dict[str, Any]:
    """What a dataset's parts depend on: the run (checksum of its weights and its p(z) grid), the
    catalogue (``file_identity``), the partitions, ``--grid``, the read options
    (``--keep-columns``, column conventions) and ``--no-calibrate`` (recorded only when given, so
    folders written before calibration existed resume)."""
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
        "read": (read or ReadOptions()).key(),
    } | ({} if calibrate else {"calibrate": False})


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
    if old.get("read") != new["read"]:
        out.append("other --keep-columns or column conventions")
    if old.get("calibrate", True) != new.get("calibrate", True):
        out.append(f"--no-calibrate {'off' if old.get('calibrate', True) else 'on'} then")
    if old.get("grid") != new["grid"]:
        out.append(
            f"--grid {'on' if old.get('grid') else 'off'} then, {'on' if new['grid'] else 'off'} now"
        )
    return out


def _check_plan(folder: Path, key: dict[str, Any], overwrite: bool = False) -> None:
    """Record the dataset's key; refuse a folder whose parts were made under another key, or,
    with ``overwrite``, delete them and start over (a folder with a plan but no part yet simply
    starts over: nothing is lost). Parts made under the same key are kept (resume)."""
    path = folder / PLAN
    problem = _plan_problem(folder, key)
    if problem and not overwrite:
        raise ConfigError(
            f"--out {str(folder)!r} {problem}: adding to it would mix two datasets; choose "
            "another folder, or pass --overwrite to start it over"
        )
    if problem:
        for old in (*folder.glob("part-*.parquet"), folder / SUCCESS, path):
            old.unlink(missing_ok=True)
    elif path.exists() and any(folder.glob("part-*.parquet")):
        return
    atomic_write_json(path, key)


def _plan_problem(folder: Path, key: dict[str, Any]) -> str | None:
    """Why the parts in ``folder`` are not those of a dataset with ``key`` (None: no parts, or
    the same key)."""
    path = folder / PLAN
    if not any(folder.glob("part-*.parquet")):
        return None
    if not path.exists():
        return f"holds parts without a {PLAN}"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"holds parts with a damaged {PLAN} ({exc})"
    differences = plan_differences(old if isinstance(old, dict) else {}, key)
    if differences:
        return f"holds predictions made with {'; '.join(differences)}"
    return None
