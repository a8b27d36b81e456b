"""p(z) as qp ensembles (qp-prob, LSST DESC): deepz's mixtures are qp's ``mixmod`` (``weights``,
``means``, ``stds``, (N, E*M)), its exact point products the ensemble's ancillary columns under
RAIL's names: ``zmode`` (deepz's ``zphot``), ``zmean``, ``zmedian``, ``z_lo68``, ``z_hi68``,
``odds``, ``flag``, ``ref_id`` (qp would recompute the median less exactly, and its mixmod mean
fails with numpy 2).

Files: ``.hdf5`` is qp's own (``qp.read`` opens it; provenance in the root attributes). A FITS
predictions file carries qp's table convention as extra HDUs ``META``, ``DATA``, ``ANCIL`` after
deepz's ``PREDICTIONS`` HDU, so ``qp.read`` opens it too. qp has no single-file Parquet convention
(it writes three files), so Parquet outputs name the ensemble in their schema metadata:
``qp_pdf_name`` = mixmod, ``qp_pdf_version`` = 0, ``qp_data_columns`` = ["weights", "means",
"stds"] (fixed-size list columns) and ``qp_ancil_columns`` = {qp name: column}; ``read_qp`` reads
any of them.

Rows without a p(z) (``flag`` has NO_PZ; deepz writes NaN there) cannot be NaN in qp: NaN breaks
qp's medians for every row, its CDE loss, and its PIT counts them as 0. They get a placeholder
instead: one broad Gaussian (weight 1, the other components 0) centred on the redshift range with
sigma = its width, point estimates of that Gaussian (``zmode`` = ``zmean`` = ``zmedian`` = the
centre, ``odds`` = 0), and ``flag`` still says NO_PZ, so one p(z) answers every input row and a
RAIL evaluation counts the failures as outliers. Select ``(flag & NO_PZ) == 0`` to leave them
out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.screen import PzFlag
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import atomic_write

MIXMOD = ("weights", "means", "stds")
ANCIL = {  # qp / RAIL ancillary name -> deepz predictions column
    "zmode": "zphot",
    "zmean": "zmean",
    "zmedian": "zmedian",
    "z_lo68": "z_lo68",
    "z_hi68": "z_hi68",
    "odds": "odds",
    "flag": "flag",
    "ref_id": "ref_id",
}
DEFAULT_Z_RANGE = (0.0, 3.0)  # RAIL's zmin, zmax: the placeholder's range without a run grid
PDF_NAME, PDF_VERSION = "mixmod", 0


def _column(table: Any, name: str) -> np.ndarray:
    """A column of an astropy Table / pandas DataFrame / mapping as a plain array."""
    values = table[name]
    values = values.to_numpy() if hasattr(values, "to_numpy") else values
    return np.asarray(values.filled(np.nan) if np.ma.isMaskedArray(values) else values)


def _names(table: Any) -> list[str]:
    if hasattr(table, "colnames"):
        return list(table.colnames)
    return [str(c) for c in (table.columns if hasattr(table, "columns") else table)]


GRID_META = "DZZGRID"  # table meta: the run's redshift grid 'z_min:z_max:dz' (provenance)


def table_z_range(table: Any) -> tuple[float, float]:
    """The redshift range a predictions table names in its meta (``Run.predict``, a FITS header),
    else DEFAULT_Z_RANGE."""
    return grid_z_range(getattr(table, "meta", {}).get(GRID_META))


def grid_z_range(grid: str | None) -> tuple[float, float]:
    """(z_min, z_max) of a grid text 'z_min:z_max:dz' (provenance ``z_grid``), else
    DEFAULT_Z_RANGE."""
    if not grid:
        return DEFAULT_Z_RANGE
    lo, hi = (float(v) for v in str(grid).split(":")[:2])
    return lo, hi


def qp_tables(
    table: Any, z_range: tuple[float, float] | None = None, extra: tuple[str, ...] = ()
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(data, ancil) of a predictions table: the mixture (N, C) float32 with placeholders over
    ``z_range`` (default ``table_z_range``) where there is no p(z), and the ancillary columns (N,)
    (``ANCIL`` plus ``extra`` columns)."""
    z_range = z_range or table_z_range(table)
    names = _names(table)
    missing_cols = [c for c in MIXMOD if c not in names]
    if missing_cols:
        raise ConfigError(
            f"not a predictions table: no columns {missing_cols} (make one with predict)"
        )
    data = {k: np.array(_column(table, k), dtype=np.float32) for k in MIXMOD}
    finite = np.isfinite(data["weights"]) & np.isfinite(data["means"]) & np.isfinite(data["stds"])
    empty = ~finite.all(axis=1) | (data["stds"] <= 0).any(axis=1)  # (N,) no p(z)
    ancil = {qp_name: _column(table, col) for qp_name, col in ANCIL.items() if col in names}
    ancil |= {c: _column(table, c) for c in extra}
    if empty.any():
        _placeholders(data, ancil, empty, z_range)
    return data, ancil


def _placeholders(
    data: dict[str, np.ndarray],
    ancil: dict[str, np.ndarray],
    rows: np.ndarray,
    z_range: tuple[float, float],
) -> None:
    """Fill ``rows`` (N,) with the broad placeholder p(z), its point estimates and NO_PZ."""
    lo, hi = z_range
    centre, width = 0.5 * (lo + hi), hi - lo
    data["weights"][rows] = 0.0
    data["weights"][rows, 0] = 1.0
    data["means"][rows] = centre
    data["stds"][rows] = width
    points = {"zmode": centre, "zmean": centre, "zmedian": centre, "odds": 0.0}
    points |= {"z_lo68": centre - width, "z_hi68": centre + width}
    for name, value in points.items():
        if name in ancil:
            ancil[name] = ancil[name].astype(np.float64, copy=True)
            ancil[name][rows] = value
    if "flag" in ancil:
        ancil["flag"] = ancil["flag"].astype(np.int32) | np.where(rows, int(PzFlag.NO_PZ), 0)


def to_qp(
    table: Any, z_range: tuple[float, float] | None = None, extra: tuple[str, ...] = ()
) -> Any:
    """The p(z) of a predictions table (``Run.predict``, a predictions file read back) as a qp
    ``mixmod`` Ensemble, one distribution per row, with deepz's point estimates as ancillary
    columns (zmode, zmean, zmedian, z_lo68, z_hi68, odds, flag, ref_id; ``extra`` columns too).
    Rows without a p(z) get a placeholder over ``z_range`` (default: the run's grid the table
    names, else 0-3; see deepz_core.inference.qp_io).

    >>> import numpy as np, deepz_core as dz
    >>> from astropy.table import Table
    >>> nan = [np.nan, np.nan]
    >>> t = Table({"ref_id": [7, 8], "zphot": [0.5, np.nan], "flag": [0, 3],
    ...            "weights": [[0.6, 0.4], nan], "means": [[0.5, 0.7], nan],
    ...            "stds": [[0.05, 0.1], nan]})
    >>> ens = dz.to_qp(t, z_range=(0.0, 2.0))
    >>> int(ens.npdf), ens.ancil["zmode"].tolist(), ens.ancil["ref_id"].tolist()
    (2, [0.5, 1.0], [7, 8])
    """
    import qp

    data, ancil = qp_tables(table, z_range, extra)
    ens = qp.Ensemble(qp.mixmod, data=data)
    if ancil:
        ens.set_ancil(ancil)
    return ens


def write_qp(
    table: Any, path: Path | str, prov: dict[str, str], z_range: tuple[float, float]
) -> Path:
    """Write the predictions ``table`` as a qp HDF5 file (``.hdf5``), atomically, with the
    provenance ``prov`` as attributes of its root group."""
    import h5py

    from deepz_core.inference.provenance import flat

    if not str(path).lower().endswith(".hdf5"):
        raise ConfigError(f"--out {str(path)!r}: a qp file is named .hdf5")
    ens = to_qp(table, z_range)

    def write(tmp: Path) -> None:
        ens.write_to(str(tmp))
        with h5py.File(tmp, "a") as f:
            for key, value in flat(prov).items():
                f.attrs[key] = value

    return atomic_write(path, write)


def fits_hdus(table: Any, z_range: tuple[float, float]) -> list[Any]:
    """qp's table convention as FITS HDUs ``META``, ``DATA``, ``ANCIL`` (built by qp itself), to
    follow deepz's predictions HDU so that ``qp.read`` opens the file."""
    from astropy.io import fits
    from astropy.table import Table

    hdus = []
    for name, columns in to_qp(table, z_range).build_tables().items():
        hdu = fits.table_to_hdu(Table(dict(columns)))
        hdu.header["EXTNAME"] = name.upper()
        hdus.append(hdu)
    return hdus


def parquet_metadata() -> dict[bytes, bytes]:
    """Schema metadata naming the qp ensemble of a predictions Parquet file (module docstring)."""
    return {
        b"qp_pdf_name": PDF_NAME.encode(),
        b"qp_pdf_version": str(PDF_VERSION).encode(),
        b"qp_data_columns": json.dumps(list(MIXMOD)).encode(),
        b"qp_ancil_columns": json.dumps(ANCIL).encode(),
    }


def read_qp(path: Path | str, z_range: tuple[float, float] | None = None) -> Any:
    """The qp Ensemble of a deepz predictions file: ``.hdf5`` through ``qp.read``, FITS (also a
    run's ``predictions.fits``) from deepz's table, Parquet files and complete dataset folders
    through their schema metadata, HATS outputs
    (``--out-format hats``) through their pixel files (placeholders over ``z_range``, default
    the run's grid in the provenance). A dataset without ``_SUCCESS`` is refused: it lacks
    rows.

    >>> import deepz_core as dz
    >>> from astropy.table import Table
    >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
    >>> Table({"ref_id": [7, 8], "zphot": [0.5, 1.0], "flag": [0, 0], "weights": [[1.0], [1.0]],
    ...        "means": [[0.5], [1.0]], "stds": [[0.05], [0.1]]}).write(tmp / "pz.fits")
    >>> ens = dz.read_qp(tmp / "pz.fits", z_range=(0.0, 2.0))  # or a run's predict(out=...) file
    >>> int(ens.npdf), ens.ancil["ref_id"].tolist(), ens.ancil["zmode"].tolist()
    (2, [7, 8], [0.5, 1.0])
    """
    import pyarrow.parquet as pq

    from deepz_core.inference.arrow_tables import SUCCESS, astropy_table, dataset_files
    from deepz_core.inference.hats_out import is_hats_predictions
    from deepz_core.inference.provenance import from_parquet_metadata

    path = Path(path)
    if not path.exists():
        raise CatalogError(f"{path}: no such predictions file or folder")
    if is_hats_predictions(path):
        return _hats_qp(path, z_range)
    if path.is_dir() and not (path / SUCCESS).is_file():
        raise CatalogError(
            f"{path}: not a complete predictions dataset (no {SUCCESS}: run the same "
            "'predict' again to finish it) nor a HATS output"
        )
    if path.name.lower().endswith(FITS_SUFFIXES):
        return _fits_qp(path, z_range)
    if not path.is_dir() and not path.name.lower().endswith((".parquet", ".pq")):
        return _qp_file(path)
    table = pq.read_table(dataset_files(path) if path.is_dir() else path)
    meta = table.schema.metadata or {}
    if meta.get(b"qp_pdf_name") != PDF_NAME.encode():
        raise ConfigError(f"{path}: no qp metadata (qp_pdf_name); not a deepz predictions file")
    t = astropy_table(table)
    grid = from_parquet_metadata(meta).get("z_grid")
    if grid:
        t.meta[GRID_META] = grid
    return to_qp(t, z_range)


FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz")


def _fits_qp(path: Path, z_range: tuple[float, float] | None) -> Any:
    """``read_qp`` of a FITS predictions file from its deepz table (HDU 1; its header names the
    grid): ``predict``'s files, which carry qp's HDUs too, and a run's ``predictions.fits``,
    which does not."""
    from astropy.table import Table

    try:
        t = Table.read(path, hdu=1)
    except (OSError, ValueError, IndexError, TypeError) as exc:
        raise CatalogError(f"{path}: no predictions table in HDU 1 ({exc})") from None
    return to_qp(t, z_range)


def _qp_file(path: Path) -> Any:
    """A qp file (``predict --out pz.hdf5``) through ``qp.read``; CatalogError in one line for a
    file qp cannot read."""
    import contextlib
    import io

    import qp

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # qp prints why before it raises
            return qp.read(str(path))
    except (KeyError, OSError, ValueError) as exc:
        raise CatalogError(f"{path}: not a qp file ({type(exc).__name__}: {exc})") from None


def _hats_qp(folder: Path, z_range: tuple[float, float] | None) -> Any:
    """``read_qp`` of a HATS output: its rows in pixel order, its grid from hats.properties."""
    from deepz_core.inference.arrow_tables import astropy_table
    from deepz_core.inference.hats_out import hats_provenance, read_hats_table

    t = astropy_table(read_hats_table(folder))
    grid = hats_provenance(folder).get("z_grid")
    if grid:
        t.meta[GRID_META] = grid
    return to_qp(t, z_range)
