"""RAIL stages for deepz (a pz-rail-* style plugin, shipped with deepz as the ``rail`` namespace
package; ``pip install deepz[rail]`` adds pz-rail-base and qp-prob).

``DeepzInformer`` trains a deepz ensemble through deepz's public API on a RAIL table in RAIL's
conventions: magnitudes ``mag_{band}_lsst`` with errors ``mag_err_{band}_lsst`` (``bands``,
``err_bands``), ``nondetect_val`` (99) = non-detection, its error taken from ``mag_limits`` (1-sigma
limits, ``limit_nsigma``), ``nonobserved_val`` (-99) = not observed, and ``redshift_col`` /
``id_col`` naming the columns. Its model is a small JSON file pointing at the deepz run folder
(weights stay safetensors there: nothing is pickled).

``DeepzEstimator`` predicts chunk by chunk with that run and writes one qp ``mixmod`` p(z) per
input row, with deepz's exact ``zmode``, ``zmean``, ``zmedian``, 68% interval, ``odds``, ``flag``
and ``ref_id`` as ancillary columns (rows deepz cannot answer get a broad placeholder p(z) and the
NO_PZ flag, never a missing row; deepz_core.inference.qp_io).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from ceci.config import StageParameter as Param
from rail.core.common_params import SHARED_PARAMS
from rail.core.data import ModelHandle, TableHandle
from rail.estimation.estimator import CatEstimator
from rail.estimation.informer import CatInformer

import deepz_core as dz
from deepz_core.catalog.magnitudes import MagnitudeColumns, magnitude_columns, resolve_limits

MODEL_FORMAT = "deepz-rail-model"
FALLBACK_ID = -1  # estimated rows without an integer id_col: -1, -2, ... (training: 0, 1, ...)


class DeepzModelHandle(ModelHandle):
    """A deepz model for RAIL: a JSON file naming the deepz run folder and the sha256 of its
    ``model.safetensors`` (read and written as JSON, never pickled)."""

    suffix = "json"

    @classmethod
    def _open(cls, path: str, **kwargs: Any) -> Any:
        if kwargs.get("mode", "r") == "w":
            return open(path, mode="w", encoding="utf-8")
        return cls._read(path)

    @classmethod
    def _read(cls, path: str, **kwargs: Any) -> dict[str, Any]:
        model = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(model, dict) or model.get("format") != MODEL_FORMAT:
            raise dz.ConfigError(f"{path}: not a deepz RAIL model (format != {MODEL_FORMAT!r})")
        return {**model, "run": str(run_folder(model, Path(path).parent))}

    @classmethod
    def _write(cls, data: dict[str, Any], path: str, **kwargs: Any) -> None:
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def run_folder(model: dict[str, Any], beside: Path) -> Path:
    """The run folder a model names: ``run_relative`` to the model file's folder ``beside`` when
    that holds the run (a pipeline folder moved or copied as a whole), else ``run``."""
    relative = model.get("run_relative")
    if relative is not None and (beside / relative / "config.json").is_file():
        return (beside / relative).resolve()
    return Path(model["run"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def band_text(column: str) -> str:
    """'mag_u_lsst' -> 'u_lsst' (deepz reads it as its band lsst_u)."""
    return column[4:] if column.startswith("mag_") else column


def object_ids(data: dict[str, Any], id_col: str, rows: np.ndarray) -> np.ndarray:
    """(N,) int64 ids from ``id_col`` when it holds integers, else the numbers ``rows`` (N,)."""
    values = np.asarray(data[id_col]) if id_col in data else None
    if values is not None and values.dtype.kind in "iu":
        return values.astype(np.int64)
    return rows


def deepz_catalog(
    data: dict[str, Any], config: Any, ids: np.ndarray, zspec: np.ndarray | None = None
) -> dz.Catalog:
    """A deepz Catalog from RAIL magnitude columns (``config.bands``, ``config.err_bands``), the
    non-detection codes and ``mag_limits`` of ``config``; ``zspec`` (N,) for training."""
    if len(config.bands) != len(config.err_bands):
        raise dz.ConfigError(
            f"bands ({len(config.bands)}) and err_bands ({len(config.err_bands)}) differ in length"
        )
    columns: dict[str, Any] = {"ref_id": ids}
    for band, error in zip(config.bands, config.err_bands, strict=True):
        for column in (band, error):
            if column not in data:
                raise dz.CatalogError(f"RAIL input: no column {column!r} (columns: {list(data)})")
        name = band_text(band)
        columns[f"mag_{name}"] = np.asarray(data[band], dtype=np.float64)
        columns[f"magerr_{name}"] = np.asarray(data[error], dtype=np.float64)
    limits = stage_limits(config.mag_limits, config.bands, magnitude_columns(list(columns)))
    if zspec is not None:
        columns["zspec"] = np.asarray(zspec, dtype=np.float64)
    conventions = dz.InputConventions(
        magnitudes=True,
        mag_limits=limits,
        limit_nsigma=config.limit_nsigma,
        nondetect=config.nondetect_val,
        unobserved=config.nonobserved_val,
    )
    return dz.Catalog.from_table(columns, source="RAIL input", conventions=conventions)


def stage_limits(
    mag_limits: dict[str, Any], bands: list[str], columns: list[MagnitudeColumns]
) -> dict[str, Any]:
    """The stage's ``mag_limits`` keyed by deepz's magnitude columns ``columns`` (the keys read
    as ``--mag-limits`` reads them: the RAIL column, the band, or its filter letter). ConfigError
    listing the valid keys for a key that names no band (was: dropped silently); a key of RAIL's
    default limits for a column the stage does not read (``bands``) is passed over."""
    default = SHARED_PARAMS.get("mag_limits").default or {}
    asked = {k: v for k, v in mag_limits.items() if not (k in default and k not in bands)}
    return resolve_limits(asked, columns, option="mag_limits")


DEEPZ_PARAMS = dict(  # what both stages read: RAIL's shared photometry parameters and deepz's
    bands=SHARED_PARAMS,
    err_bands=SHARED_PARAMS,
    nondetect_val=SHARED_PARAMS,
    nonobserved_val=SHARED_PARAMS,
    mag_limits=SHARED_PARAMS,
    limit_nsigma=Param(float, 1.0, msg="mag_limits are the magnitudes of N-sigma fluxes"),
    device=Param(str, "auto", msg="torch device: auto (cuda > mps > cpu), cpu, cuda, cuda:N"),
)


class DeepzInformer(CatInformer):
    """Trains a deepz ensemble (E20: autoencoder + mixture density network, randomized coadds)
    on the input table and stores a ``DeepzModelHandle`` pointing at the run folder."""

    name = "DeepzInformer"
    config_options = CatInformer.config_options.copy()
    config_options.update(
        ref_band=SHARED_PARAMS,
        redshift_col=SHARED_PARAMS,
        id_col=SHARED_PARAMS,
        preset=Param(str, "quick", msg="deepz preset: smoke, quick or paper"),
        pretrain=Param(str, "none", msg="deepz pretraining: none, auto (SPS) or a simulation"),
        members=Param(int, 0, msg="repetitions R (0: the preset's)"),
        folds=Param(int, 0, msg="folds K (0: the preset's)"),
        seed=Param(int, 0, msg="random seed"),
        run_dir=Param(str, "", msg="deepz run folder (default: next to the model file)"),
        **DEEPZ_PARAMS,
    )
    outputs = [("model", DeepzModelHandle)]

    def run(self) -> None:
        data = self.get_data("input")
        if self.config.hdf5_groupname:
            data = data[self.config.hdf5_groupname]
        data = self._convert_table_format(data, "numpyDict")
        for name in ("members", "folds"):  # 0: the preset's
            if self.config[name] < 0:
                raise dz.ConfigError(
                    f"{name} must be >= 0 (0: the preset's), got {self.config[name]}"
                )
        redshift = self.config.redshift_col
        if redshift not in data:
            raise dz.CatalogError(f"training data: no redshift column {redshift!r} (redshift_col)")
        ids = object_ids(data, self.config.id_col, np.arange(len(data[redshift])))
        cat = deepz_catalog(data, self.config, ids, data[redshift])
        run = dz.train(
            cat,
            self.run_dir(),
            preset=self.config.preset,
            pretrain=self.config.pretrain,
            ref_band=self.deepz_band(cat, self.config.ref_band),
            members=self.config.members or None,
            folds=self.config.folds or None,
            device=self.config.device,
            seed=self.config.seed,
            reuse=True,  # re-running a pipeline: the finished run of the same inputs and settings
        )
        model_dir = self.model_path().parent.resolve()
        self.model = {
            "format": MODEL_FORMAT,
            "run": str(run.path.resolve()),
            "run_relative": os.path.relpath(run.path.resolve(), model_dir),
            "model_sha256": _sha256(run.path / "model.safetensors"),
            "deepz_version": dz.__version__,
            "bands": list(self.config.bands),
        }
        self.add_data("model", self.model)

    def deepz_band(self, cat: dz.Catalog, column: str) -> str | None:
        """deepz's name of the band of magnitude column ``column``; None for RAIL's default
        ``ref_band`` when it is not one of ``bands`` (another survey's: deepz then picks its *_i
        band). Another column that is not one of ``bands`` (a typo) is a ConfigError."""
        bands = list(self.config.bands)
        if column in bands:
            return cat.bands[bands.index(column)]
        if column != SHARED_PARAMS.get("ref_band").default:
            raise dz.ConfigError(f"ref_band {column!r} is not one of bands {bands}")
        return None

    def model_path(self) -> Path:
        """Where the model file is written."""
        return Path(self.get_output(self.get_aliased_tag("model"), final_name=True))

    def run_dir(self) -> Path:
        """``run_dir``, else ``<model file stem>_run`` beside the model file."""
        if self.config.run_dir:
            return Path(self.config.run_dir)
        model = self.model_path()
        return model.with_name(model.stem + "_run")


class DeepzEstimator(CatEstimator):
    """One qp mixmod p(z) per input row from a deepz run (``DeepzInformer``'s model), with
    deepz's point estimates as ancillary columns."""

    name = "DeepzEstimator"
    config_options = CatEstimator.config_options.copy()
    config_options.update(**DEEPZ_PARAMS)
    inputs = [("model", DeepzModelHandle), ("input", TableHandle)]

    def open_model(self, **kwargs: Any) -> Any:
        model = super().open_model(**kwargs)
        if model is not None:
            self.deepz_run = dz.load_run(model["run"])
            found = _sha256(self.deepz_run.path / "model.safetensors")
            if found != model.get("model_sha256", found):
                raise dz.ConfigError(
                    f"deepz run {model['run']}: model.safetensors changed since the informer "
                    "wrote this model file (sha256 differs); inform again"
                )
        return model

    def _process_chunk(self, start: int, end: int, data: Any, first: bool) -> None:
        data = self._convert_table_format(data, "numpyDict")  # pandas chunks: plain arrays
        rows = FALLBACK_ID - np.arange(start, end, dtype=np.int64)  # never a training row number
        cat = deepz_catalog(data, self.config, object_ids(data, self.config.id_col, rows))
        # RAIL's input is AB magnitudes (no flux unit to mistake), read in chunks that need not
        # be samples of the whole (sorted by magnitude): no whole-catalogue check on a chunk
        table = self.deepz_run.predict(cat, device=self.config.device, part=True)
        ens = dz.to_qp(table)  # the run's grid for the placeholders of unanswered rows
        self._do_chunk_output(ens, start, end, first, data=data)
