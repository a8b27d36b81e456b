"""Evaluation reports of predictions tables (E20 Sec. 3.3 and 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import atomic_write_json, check_outputs
from deepz_core.pz import metrics
from deepz_core.pz.products import PzConfig

REQUIRED = ("ref_id", "zphot", "odds", "weights", "means", "stds")  # in every predictions table


def _read_table(path: Path | str) -> Table:
    """A predictions table: one file (.fits or .parquet, its bytes checked against its name), or
    the folder of a complete partitioned Parquet dataset; CatalogError in one line otherwise."""
    from deepz_core.catalog.formats.common import check_file, library_errors
    from deepz_core.inference.predict import table_format
    from deepz_core.inference.stream import SUCCESS, astropy_table

    path = Path(path)
    if path.is_dir():
        if not (path / SUCCESS).exists():
            raise CatalogError(
                f"{path}: dataset incomplete (no {SUCCESS}); run the same 'predict' again to "
                "finish it"
            )
        import pyarrow.parquet as pq

        with library_errors(path, "read the predictions dataset"):
            t = astropy_table(pq.read_table(path))  # part-*.parquet; _SUCCESS etc. ignored
    else:
        try:
            fmt = table_format(path)
        except ConfigError:
            raise CatalogError(
                f"{path}: predictions are a .fits or .parquet file or a dataset folder "
                "(made with 'predict')"
            ) from None
        check_file(path, fmt)  # magic bytes and size: no library guessing at other formats
        with library_errors(path, f"read predictions as {fmt.upper()}"):
            t = Table.read(path, format=fmt)
    missing = [c for c in REQUIRED if c not in t.colnames]
    if missing:
        raise CatalogError(
            f"{path}: not a predictions table, no columns {missing} (make one "
            f"with 'predict'); its columns: {t.colnames[:8]}"
        )
    return t


def _join_catalog(pred: Table, catalog_path: Path | str) -> Table:
    """Take zspec and mag from a catalogue (matched on ref_id) when the predictions lack them."""
    from deepz_core.catalog.io import read_catalog

    cat = read_catalog(catalog_path)
    index = {int(r): i for i, r in enumerate(cat.ref_id)}
    rows = np.array([index.get(int(r), -1) for r in pred["ref_id"]])
    if (rows < 0).any():
        raise CatalogError(
            f"{catalog_path}: {int((rows < 0).sum())} predicted ref_id not in catalogue"
        )
    pred["zspec"] = np.asarray(cat.zspec)[rows]
    if cat.mag is not None:
        pred["mag"] = np.asarray(cat.mag)[rows]
    if "pit" in pred.colnames:  # the stored PIT belongs to the old zspec (often NaN): redo it
        pred.remove_column("pit")
        if {"weights", "means", "stds"} <= set(pred.colnames):
            pred["pit"] = pit_from_table(pred)
    return pred


def pit_from_table(t: Table) -> np.ndarray:
    """(N,) CDF of each stored mixture at its zspec (E20 Sec. 6.1); NaN where zspec is unknown."""
    from deepz_core.inference.predict import mixture_from_arrays

    mix = mixture_from_arrays(
        np.asarray(t["weights"]), np.asarray(t["means"]), np.asarray(t["stds"])
    )
    z = torch.as_tensor(np.asarray(t["zspec"], dtype=np.float64))
    return torch.where(torch.isfinite(z), mix.cdf(torch.nan_to_num(z)), torch.nan).numpy()


def cde_loss_from_table(t: Table, pz: PzConfig) -> float:
    from deepz_core.inference.predict import mixture_from_arrays

    grid = pz.grid()
    mix = mixture_from_arrays(
        np.asarray(t["weights"]), np.asarray(t["means"]), np.asarray(t["stds"])
    )
    pdf = mix.pdf_grid(torch.as_tensor(grid)).numpy()
    return metrics.cde_loss(pdf, grid, np.asarray(t["zspec"]))


def evaluate_table(t: Table, pz: PzConfig | None = None) -> dict[str, Any]:
    """Metrics over galaxies with a spec-z: overall, ODDS-best-50%, PIT, CDE loss, per magnitude bin.

    Galaxies without a p(z) (NaN products, ``flag`` NO_PZ) are failures: counted in ``n_no_pz``
    and ``no_pz_fraction`` (of the galaxies with a spec-z), never averaged in as numbers."""
    pz = pz or PzConfig()
    z = np.asarray(t["zspec"], dtype=np.float64)
    use = np.isfinite(z)
    if "out_of_fold" in t.colnames and np.asarray(t["out_of_fold"])[use].any():
        use &= np.asarray(t["out_of_fold"], dtype=bool)
    if not use.any():
        raise CatalogError("no galaxies with a spec-z to evaluate against")
    failed = use & ~np.isfinite(np.asarray(t["zphot"], dtype=np.float64))
    sub = t[use & ~failed]
    if len(sub) == 0:
        raise CatalogError(
            f"none of the {int(use.sum())} galaxies with a spec-z has a p(z) "
            "(all NaN; see the flag column): nothing to evaluate"
        )
    zp, zs = np.asarray(sub["zphot"], dtype=np.float64), np.asarray(sub["zspec"], dtype=np.float64)
    report: dict[str, Any] = {"overall": metrics.point_metrics(zp, zs)}
    report["overall"].update(n_no_pz=int(failed.sum()), no_pz_fraction=failed.sum() / use.sum())
    report["overall"]["odds_best50_sigma68"] = metrics.best_fraction_sigma68(
        zp, zs, np.asarray(sub["odds"])
    )
    pit = np.asarray(sub["pit"], dtype=np.float64) if "pit" in sub.colnames else np.array([])
    if np.isfinite(pit).any():
        ks = metrics.pit_ks(np.clip(pit[np.isfinite(pit)], 0, 1))
        report["overall"].update(pit_ks=ks.statistic, pit_ks_pvalue=ks.pvalue)
    report["overall"]["cde_loss"] = cde_loss_from_table(sub, pz)
    if "mag" in sub.colnames:
        binned = metrics.binned_metrics(zp, zs, np.asarray(sub["mag"], dtype=np.float64))
        report["per_magnitude"] = binned.rows()
    return report


def evaluate(
    predictions: Table | Path | str, catalog: Any = None, pz: PzConfig | None = None
) -> dict[str, Any]:
    """The evaluation report of predictions (a Table from ``Run.predict``, a predictions file or a
    dataset folder): sigma68, outlier fractions, bias, NMAD, ODDS-best-50% sigma68, PIT KS, CDE loss
    overall and per magnitude bin, over the galaxies with a spec-z (out-of-fold ones where the
    table says so); galaxies without a p(z) are counted as failures (``n_no_pz``). ``catalog``
    (a file) supplies zspec and mag by ref_id when the predictions lack them.

    >>> import deepz_core as dz
    >>> cat = dz.simulate_catalog("lsst-deep", 300, seed=4)
    >>> run = dz.train(cat, tmp / "e", preset="smoke", pretrain="none")
    >>> report = dz.evaluate(run.predict(cat))
    >>> sorted(report), report["overall"]["n_no_pz"]
    (['overall', 'per_magnitude'], 0)
    """
    t = predictions if isinstance(predictions, Table) else _read_table(predictions)
    if catalog is not None:
        t = _join_catalog(t, catalog)
    if "zspec" not in t.colnames:
        raise CatalogError("the predictions have no zspec column; give a catalogue with spec-z")
    return evaluate_table(t, pz)


def evaluate_files(pred: Path | str, catalog: Path | str | None, out: Path | str) -> dict[str, Any]:
    if Path(out).suffix.lower() != ".json":
        raise ConfigError(f"--out: the report is JSON, give a .json name, got {str(out)!r}")
    check_outputs({"output": out}, {"predictions": pred, "catalogue": catalog})
    t = _read_table(pred)
    if catalog is not None:
        t = _join_catalog(t, catalog)
    if "zspec" not in t.colnames:
        raise CatalogError(f"{pred}: no zspec column; pass --catalog with spectroscopic redshifts")
    report = evaluate_table(t)
    atomic_write_json(out, _jsonable(report))
    return report


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
