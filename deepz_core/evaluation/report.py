"""Evaluation reports of predictions tables (E20 Sec. 3.3 and 6)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from deepz_core.errors import CatalogError, ConfigError
from deepz_core.evaluation.profiles import (
    SurveyProfile,
    profile_for_bands,
    profile_of_odds_window,
    survey_profile,
)
from deepz_core.files import atomic_write_json, check_outputs, jsonable
from deepz_core.pz import metrics
from deepz_core.pz.products import PzConfig, mixture_odds

REQUIRED = ("ref_id", "zphot", "odds", "weights", "means", "stds")  # in every predictions table


def _read_table(path: Path | str) -> Table:
    """A predictions table: one file (.fits or .parquet, its bytes checked against its name), or
    the folder of a complete partitioned Parquet dataset; CatalogError in one line otherwise."""
    from deepz_core.catalog.formats.common import check_file, library_errors
    from deepz_core.inference.arrow_tables import SUCCESS, astropy_table
    from deepz_core.inference.hats_out import is_hats_predictions, read_hats_table
    from deepz_core.inference.predict import table_format

    path = Path(path)
    if is_hats_predictions(path):  # a HATS catalogue (predict --out-format hats)
        with library_errors(path, "read the HATS predictions"):
            t = astropy_table(read_hats_table(path))
    elif path.is_dir():
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
            qp_file = " (this looks like a qp file: predict to .parquet or .fits to evaluate)"
            raise CatalogError(
                f"{path}: predictions are a .fits or .parquet file or a dataset folder "
                f"(made with 'predict'){qp_file if path.suffix.lower() == '.hdf5' else ''}"
            ) from None
        check_file(path, fmt)  # magic bytes and size: no library guessing at other formats
        with library_errors(path, f"read predictions as {fmt.upper()}"):
            hdu = {"hdu": 1} if fmt == "fits" else {}  # deepz's table; qp's HDUs follow it
            t = Table.read(path, format=fmt, **hdu)
    if not _is_fits(path):  # Parquet keeps the provenance in its schema: as the FITS header does
        t.meta.update(_provenance_meta(path))
    missing = [c for c in REQUIRED if c not in t.colnames]
    if missing:
        raise CatalogError(
            f"{path}: not a predictions table, no columns {missing} (make one "
            f"with 'predict'); its columns: {t.colnames[:8]}"
        )
    return t


def _provenance_meta(path: Path) -> dict[str, str]:
    """The provenance of a Parquet predictions file or dataset folder (``file_provenance`` of
    its first part) or of a HATS output (its hats.properties) as the FITS header keys a FITS file carries (DZZGRID, DZODDSW...), for the
    table's meta."""
    from deepz_core.inference.hats_out import hats_provenance, is_hats_predictions
    from deepz_core.inference.provenance import fits_cards
    from deepz_core.inference.stream import dataset_files, file_provenance

    if is_hats_predictions(path):
        return {key: value for key, value, _ in fits_cards(hats_provenance(path))}
    files = dataset_files(path) if path.is_dir() else [str(path)]
    if not files:
        return {}
    return {key: value for key, value, _ in fits_cards(file_provenance(files[0]))}


def _is_fits(path: Path | str) -> bool:
    return str(path).lower().endswith((".fits", ".fit", ".fits.gz", ".fit.gz"))


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


def table_grid(t: Table) -> PzConfig:
    """The redshift grid of the run that made a predictions table, as its meta names it
    (DZZGRID 'z_min:z_max:dz': ``Run.predict``, a FITS header, Parquet or HATS provenance), else
    the default 0-1.5: the CDE loss integrates p(z) over it and reads it at the spec-z."""
    from deepz_core.inference.qp_io import GRID_META

    text = t.meta.get(GRID_META)
    if not text:
        return PzConfig()
    try:
        z_min, z_max, dz = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise CatalogError(
            f"predictions: {GRID_META} {text!r} is no redshift grid 'z_min:z_max:dz'"
        ) from None
    return PzConfig(z_min=z_min, z_max=z_max, dz=dz)


def cde_loss_from_table(t: Table, pz: PzConfig) -> float:
    """The CDE loss (Izbicki & Lee 2017) of a predictions table's mixtures (N, C) against its zspec
    (N,), on the p(z) grid ``pz``."""
    from deepz_core.inference.predict import mixture_from_arrays

    grid = pz.grid()
    mix = mixture_from_arrays(
        np.asarray(t["weights"]), np.asarray(t["means"]), np.asarray(t["stds"])
    )
    pdf = mix.pdf_grid(torch.as_tensor(grid)).numpy()
    return metrics.cde_loss(pdf, grid, np.asarray(t["zspec"]))


PROFILE_META = "DZPROF"  # table meta key: the survey profile predictions are judged by (JSON)


def window_odds(
    weights: np.ndarray,
    means: np.ndarray,
    stds: np.ndarray,
    zphot: np.ndarray,
    window: float,
    stored: np.ndarray | None = None,
    stored_window: float | None = None,
    chunk: int = 20_000,
) -> np.ndarray:
    """(N,) ODDS = P(|z - zphot| <= window/2) (E20 eq. 7) of the mixtures (N, C) with modes
    ``zphot`` (N,); NaN without a p(z). For the window the ``stored`` odds column was computed
    for (``stored_window``, the predictions' DZODDSW), that column itself: it is exact for the
    calibrated p(z), of which the mixture columns are a refit (its ODDS in a 0.003 window differ
    by ~5% at the median, review of the ninth session), so pages, cuts and files agree."""
    from deepz_core.inference.predict import mixture_from_arrays

    if stored is not None and stored_window is not None and math.isclose(window, stored_window):
        return np.asarray(stored, dtype=np.float64)
    out = np.empty(len(zphot))
    for s in range(0, len(zphot), chunk):
        sl = slice(s, s + chunk)
        mix = mixture_from_arrays(weights[sl], means[sl], stds[sl])
        mode = torch.as_tensor(np.asarray(zphot[sl], dtype=np.float64))
        out[sl] = mixture_odds(mix, torch.nan_to_num(mode), window).numpy()
    return np.where(np.isfinite(zphot), out, np.nan)


def odds_in_window(t: Table, window: float) -> np.ndarray:
    """(N,) ODDS = P(|z - zphot| <= window/2) of a predictions table (E20 eq. 7;
    ``window_odds``: the stored column where ``window`` is its own, as the table's
    meta DZODDSW says); NaN where there is no p(z)."""
    from deepz_core.inference.provenance import ODDS_WINDOW_META

    stored = t.meta.get(ODDS_WINDOW_META)
    return window_odds(
        np.asarray(t["weights"]),
        np.asarray(t["means"]),
        np.asarray(t["stds"]),
        np.asarray(t["zphot"], dtype=np.float64),
        window,
        np.asarray(t["odds"], dtype=np.float64) if "odds" in t.colnames else None,
        float(stored) if stored else None,
    )


def table_profile(t: Table, catalog: Any = None) -> SurveyProfile:
    """The profile of a predictions table: the one it carries (meta DZPROF, set by ``Run.predict``),
    else the standard profile of the window of its odds column (DZODDSW, which every prediction
    carries: the run's profile chose it), else the default for the bands of ``catalog`` (a
    file), else narrow-band (E20)."""
    from deepz_core.inference.provenance import ODDS_WINDOW_META

    stored = t.meta.get(PROFILE_META)
    if stored:
        return survey_profile(json.loads(stored) if str(stored).startswith("{") else stored)
    by_window = profile_of_odds_window(t.meta.get(ODDS_WINDOW_META))
    if by_window is not None:
        return by_window
    if catalog is not None:
        from deepz_core.catalog.io import read_catalog

        return profile_for_bands(read_catalog(catalog).bands)
    return survey_profile(None)


def evaluate_table(
    t: Table,
    pz: PzConfig | None = None,
    profile: SurveyProfile | str | dict | None = None,
    mag_edges: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics over galaxies with a spec-z: overall, best-fraction σ68 by ODDS, PIT, CDE loss, per
    magnitude bin, judged by ``profile`` (outlier thresholds, ODDS window; default the table's,
    else narrow-band); magnitude bins ``mag_edges`` (default: bins that follow the data).

    Galaxies without a p(z) (NaN products, ``flag`` NO_PZ) are failures: counted in ``n_no_pz``
    and ``no_pz_fraction`` (of the galaxies with a spec-z), never averaged in as numbers."""
    pz = pz or table_grid(t)
    prof = table_profile(t) if profile is None else survey_profile(profile)
    z = np.asarray(t["zspec"], dtype=np.float64)
    use = np.isfinite(z)
    if "out_of_fold" in t.colnames and np.asarray(t["out_of_fold"])[use].any():
        use &= np.asarray(t["out_of_fold"], dtype=bool)
    if not use.any():
        raise CatalogError("no galaxies with a spec-z to evaluate against")
    failed = metrics.no_pz_failures(z, t["zphot"])
    use &= ~failed
    sub = t[use]
    if len(sub) == 0:
        raise CatalogError(
            f"none of the {int(failed.sum())} galaxies with a spec-z has a p(z) "
            "(all NaN; see the flag column): nothing to evaluate"
        )
    zp, zs = np.asarray(sub["zphot"], dtype=np.float64), np.asarray(sub["zspec"], dtype=np.float64)
    overall = metrics.point_metrics(zp, zs, prof.outlier)
    overall["catastrophic_fraction"] = metrics.outlier_fraction(
        metrics.dz(zp, zs), prof.catastrophic
    )
    overall.update(
        n_no_pz=int(failed.sum()), no_pz_fraction=failed.sum() / (failed.sum() + len(sub))
    )
    odds = odds_in_window(sub, prof.odds_window)
    best = metrics.odds_curve(zp, zs, odds, [prof.target_fraction], prof.outlier)
    overall["odds_best_sigma68"] = float(best["sigma68"][0])
    if prof.target_fraction == 0.5:
        overall["odds_best50_sigma68"] = overall["odds_best_sigma68"]
    report: dict[str, Any] = {"overall": overall, "profile": prof.to_dict()}
    pit = np.asarray(sub["pit"], dtype=np.float64) if "pit" in sub.colnames else np.array([])
    if np.isfinite(pit).any():
        ks = metrics.pit_ks(np.clip(pit[np.isfinite(pit)], 0, 1))
        report["overall"].update(pit_ks=ks.statistic, pit_ks_pvalue=ks.pvalue)
    report["overall"]["cde_loss"] = cde_loss_from_table(sub, pz)
    if "mag" in sub.colnames:
        mag = np.asarray(sub["mag"], dtype=np.float64)
        edges = metrics.data_mag_edges(mag) if mag_edges is None else mag_edges
        binned = metrics.binned_metrics(zp, zs, mag, edges, prof.outlier)
        report["per_magnitude"] = binned.rows()
    return report


def evaluate(
    predictions: Table | Path | str,
    catalog: Any = None,
    pz: PzConfig | None = None,
    profile: SurveyProfile | str | dict | None = None,
    mag_edges: Any = None,
) -> dict[str, Any]:
    """The evaluation report of predictions (a Table from ``Run.predict``, a predictions file or a
    dataset folder): sigma68, the outlier fraction (``outlier_fraction``, by the profile's
    threshold; E20's strict |dz| > 0.02 for narrow-band) and the catastrophic one
    (``catastrophic_fraction``, |dz| > 0.15), bias, NMAD, ODDS-best-50% sigma68, PIT KS, CDE loss
    overall and per magnitude bin, over the galaxies with a spec-z (out-of-fold ones where the
    table says so); galaxies without a p(z) are counted as failures (``n_no_pz``). ``catalog`` (a
    file) supplies zspec and mag by ref_id when the predictions lack them.

    ``profile``: the survey profile the numbers are judged by ('narrow-band': E20's strict
    outliers |dz| > 0.02 and ODDS window 0.003; 'broad-band': outliers |dz| > 0.15, ODDS window
    0.1; or a custom profile's fields as a dict); default: the one ``Run.predict`` attached, else
    the default for ``catalog``'s bands, else narrow-band. ``mag_edges``: magnitude bins (default:
    0.5-mag bins spanning the data).

    >>> import deepz_core as dz
    >>> cat = dz.simulate_catalog("lsst-deep", 300, seed=4)
    >>> import pathlib, tempfile; tmp = pathlib.Path(tempfile.mkdtemp())  # a scratch folder
    >>> run = dz.train(cat, tmp / "e", preset="smoke", pretrain="none")
    >>> report = dz.evaluate(run.predict(cat))
    >>> sorted(report), report["overall"]["n_no_pz"], report["profile"]["name"]
    (['overall', 'per_magnitude', 'profile'], 0, 'broad-band')
    """
    if not isinstance(predictions, Table | Path | str):
        raise ConfigError(
            f"evaluate takes a predictions Table (Run.predict) or file, not a "
            f"{type(predictions).__name__}; for a qp Ensemble use qp's metrics"
        )
    t = predictions if isinstance(predictions, Table) else _read_table(predictions)
    if catalog is not None:
        t = _join_catalog(t, catalog)
    if "zspec" not in t.colnames:
        raise CatalogError("the predictions have no zspec column; give a catalogue with spec-z")
    prof = table_profile(t, catalog) if profile is None else survey_profile(profile)
    return evaluate_table(t, pz, prof, mag_edges)


def evaluate_files(
    pred: Path | str,
    catalog: Path | str | None,
    out: Path | str | None,
    profile: SurveyProfile | str | dict | None = None,
    mag_edges: Any = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``evaluate`` of the predictions file or dataset folder ``pred`` (``catalog``: a file of
    spec-z by ref_id), written to the JSON report ``out`` (None: not written); the report.
    ``out`` replaces an existing file only with ``overwrite``, and never an input or a run
    folder's file."""
    if out is not None:
        if Path(out).suffix.lower() != ".json":
            raise ConfigError(f"--out: the report is JSON, give a .json name, got {str(out)!r}")
        check_outputs({"--out": out}, {"--pred": pred, "--catalog": catalog}, overwrite)
    t = _read_table(pred)
    if catalog is not None:
        t = _join_catalog(t, catalog)
    if "zspec" not in t.colnames:
        raise CatalogError(f"{pred}: no zspec column; pass --catalog with spectroscopic redshifts")
    if catalog is None and not np.isfinite(np.asarray(t["zspec"], dtype=np.float64)).any():
        raise CatalogError(
            f"{pred}: no galaxy has a spec-z (its catalogue had none); pass --catalog with "
            "spectroscopic redshifts by ref_id"
        )
    prof = table_profile(t, catalog) if profile is None else survey_profile(profile)
    report = evaluate_table(t, None, prof, mag_edges)
    if out is not None:
        atomic_write_json(out, jsonable(report))
    return report
