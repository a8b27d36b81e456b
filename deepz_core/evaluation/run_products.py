"""Run-level products for the analysis pages: a run's predictions as arrays, its headline statistics
(E20 Fig. 2, 3, 8, D1), ODDS for any window and quality cuts (E20 Sec. 6.2, Fig. 9), and exports.

Scored galaxies are those with a spec-z whose p(z) is out of fold (never trained on), as in
``deepz_core.inference.predict.summarise``. N galaxies, C = E*M mixture components.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from deepz_core.catalog.catalog import native_array
from deepz_core.errors import ConfigError
from deepz_core.evaluation.calibration import LEVEL, coverage_by_mag
from deepz_core.evaluation.profiles import PROFILES, SurveyProfile
from deepz_core.evaluation.report import window_odds
from deepz_core.pz import metrics
from deepz_core.pz.calibration import coverage_noise, half_mag_edges, pit_coverage
from deepz_core.training.splits import Z_LABEL_MAX

PAUS_TARGET = 0.0035  # sigma68 of dz = (zp - zs)/(1 + zs) for the best 50% (E20 Sec. 6.2)
POINT_NAMES = ("zphot", "zmean", "zmedian", "z_lo68", "z_hi68", "odds", "zspec", "pit", "pit_raw")
CUT_COMPLETENESS = np.round(np.linspace(0.02, 1.0, 50), 6)
EXPORT_FORMATS = ("fits", "csv", "parquet")


@dataclass(frozen=True, eq=False)
class Predictions:
    """A run's ``predictions.fits`` as arrays: point columns (N,), ``mag`` (N,) or None,
    ``out_of_fold`` (N,) bool, mixture ``weights``/``means``/``stds`` (N, C)."""

    path: Path
    ref_id: np.ndarray
    columns: dict[str, np.ndarray]
    mag: np.ndarray | None
    out_of_fold: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    odds_window: float | None = None  # the window of the ``odds`` column, when the file says
    # calibrated p(z) (a ``pit_raw`` column): the mixture columns and zmedian/z_lo68/z_hi68 are the
    # calibrated p(z)'s, zphot stays the mode of the raw one (``pz.products.calibrated_products``)
    calibrated: bool = False

    @property
    def n(self) -> int:
        return len(self.ref_id)

    def __getattr__(self, name: str) -> np.ndarray:  # zphot, zspec, odds, pit, ...
        columns = self.__dict__.get("columns", {})
        if name in columns:
            return columns[name]
        raise AttributeError(name)

    @property
    def has_pz(self) -> np.ndarray:
        """(N,) galaxies with a p(z) (the screen gives the others NaN products)."""
        return np.isfinite(self.columns["zphot"])

    @property
    def scored(self) -> np.ndarray:
        """(N,) galaxies with a finite spec-z and an out-of-fold p(z)."""
        return np.isfinite(self.columns["zspec"]) & self.out_of_fold & self.has_pz

    @property
    def failed(self) -> np.ndarray:
        """(N,) galaxies with a spec-z that get no p(z): failures, counted, never averaged
        (``metrics.no_pz_failures``: out of fold or not, as none is)."""
        return metrics.no_pz_failures(self.columns["zspec"], self.columns["zphot"])

    def index_of(self, ref_id: int) -> int | None:
        """Row of galaxy ``ref_id``, None when absent."""
        hit = np.flatnonzero(self.ref_id == int(ref_id))
        return int(hit[0]) if hit.size else None


def read_predictions(path: Path | str) -> Predictions:
    """Read a predictions file (FITS or Parquet) written by ``deepz_core.inference.predict``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"predictions file {path} does not exist")
    table = Table.read(path)
    missing = [
        c
        for c in ("ref_id", "zphot", "zspec", "weights", "means", "stds")
        if c not in table.colnames
    ]
    if missing:
        raise ConfigError(f"{path}: predictions lack the columns {missing}")

    def col(name: str, dtype: Any = np.float64) -> np.ndarray:
        return np.asarray(native_array(table[name]), dtype=dtype)

    n = len(table)
    columns = {c: col(c) if c in table.colnames else np.full(n, np.nan) for c in POINT_NAMES}
    oof = col("out_of_fold", bool) if "out_of_fold" in table.colnames else np.ones(n, bool)
    return Predictions(
        path=path,
        ref_id=col("ref_id", np.int64),
        columns=columns,
        mag=col("mag") if "mag" in table.colnames else None,
        out_of_fold=oof,
        weights=col("weights", np.float32),
        means=col("means", np.float32),
        stds=col("stds", np.float32),
        odds_window=_odds_window(path),
        calibrated="pit_raw" in table.colnames,
    )


def _odds_window(path: Path) -> float | None:
    """The window of a predictions file's ``odds`` column, from its provenance (None: unknown,
    files written before it was recorded)."""
    from deepz_core.inference.stream import file_provenance

    value = file_provenance(path).get("odds_window")
    return float(value) if value else None


def not_scored(pred: Predictions) -> int:
    """Spec-z galaxies with a p(z) that are not scored: no out-of-fold p(z), for a network run
    the galaxies the screen flagged (``training.splits.labelled_mask``), left out of training,
    so no network's p(z) of them is out of fold."""
    return int((np.isfinite(pred.zspec) & pred.has_pz & ~pred.out_of_fold).sum())


def training_zspec(pred: Predictions) -> np.ndarray:
    """Spec-z of the run's labelled galaxies (the training set of E20 Fig. 3)."""
    z = pred.zspec
    return z[np.isfinite(z) & (z >= 0) & (z <= Z_LABEL_MAX)]


def density_edges(max_count: int, linear_up_to: int = 40, n_log: int = 25) -> np.ndarray:
    """Bins of the spec-z count per dz = 0.001 bin: one per integer up to ``linear_up_to``,
    else log-spaced integer bins (edges at half integers)."""
    if max_count <= linear_up_to:
        return np.arange(max_count + 2) - 0.5
    ints = np.unique(np.round(np.geomspace(1, max_count + 1, n_log)).astype(int))
    return np.unique(np.concatenate([[-0.5], ints - 0.5, [max_count + 0.5]]))


def results_stats(
    pred: Predictions,
    profile: SurveyProfile | None = None,
    mag_edges: np.ndarray | None = None,
    odds: np.ndarray | None = None,
    pit_bins: int = 20,
) -> dict[str, Any]:
    """Headline statistics of the scored galaxies judged by ``profile`` (default narrow-band, E20):
    point metrics with its outlier threshold and the catastrophic rate, σ68 of the best
    ``target_fraction`` by ``odds`` (N,) (ODDS for the profile's window; default the stored
    column), metrics per magnitude bin (Fig. 2; ``mag_edges`` default: bins that follow the
    data), PIT histogram and KS test (Fig. 8), metrics vs training spec-z density (Fig. 3). A
    calibrated run (``pit_raw`` column, ``inference.calibrate``) adds ``pit_raw``/``pit_raw_ks``
    (the PIT before the calibration) and ``coverage68``: the share of spec-z inside the 68%
    interval before and after, overall and per magnitude bin (with the share's binomial noise for
    calibrated p(z), ``noise``)."""
    profile = profile or PROFILES["narrow-band"]
    use = pred.scored & np.isfinite(pred.zphot)
    zp, zs = pred.zphot[use], pred.zspec[use]
    out: dict[str, Any] = {
        "n": int(use.sum()),
        "n_total": pred.n,
        "summary": {"n": 0},
        "n_no_pz": int(pred.failed.sum()),
    }
    if not use.any():
        return out
    out["summary"] = headline(pred, profile, odds)
    if pred.mag is not None and np.isfinite(pred.mag[use]).any():
        edges = metrics.data_mag_edges(pred.mag[use]) if mag_edges is None else mag_edges
        out["by_mag"] = metrics.binned_metrics(zp, zs, pred.mag[use], edges, profile.outlier)
        binned = int(out["by_mag"].counts.sum())
        out["mag_coverage"] = (binned, int(np.isfinite(pred.mag[use]).sum()))
    pit = pred.pit[use]
    pit = pit[np.isfinite(pit)]
    out["pit"] = metrics.pit_histogram(pit, pit_bins)
    out["pit_ks"] = metrics.pit_ks(pit)
    out |= _calibration_stats(pred, use, pit_bins)
    train = training_zspec(pred)
    top = int(metrics.spec_density(zs, train).max())
    edges = density_edges(top)
    out["spec_density"] = metrics.sigma68_vs_spec_density(zp, zs, train, 0.001, edges)
    return out


def headline(
    pred: Predictions, profile: SurveyProfile | None = None, odds: np.ndarray | None = None
) -> dict[str, Any]:
    """Point metrics of the scored galaxies judged by ``profile``: n, sigma68, outlier fraction
    (its threshold), catastrophic fraction, bias, NMAD, and σ68 of the best ``target_fraction``
    by ``odds`` (N,) (default the stored column), and ``n_no_pz`` (spec-z galaxies without a
    p(z): failures, not scored) and ``n_not_scored`` (``not_scored``); {"n": 0, "n_no_pz": ...,
    "n_not_scored": ...} without scored galaxies."""
    profile = profile or PROFILES["narrow-band"]
    use = pred.scored & np.isfinite(pred.zphot)
    failed = int(pred.failed.sum())
    unscored = {"n_not_scored": not_scored(pred)}
    if not use.any():
        return {"n": 0, "n_no_pz": failed} | unscored
    zp, zs = pred.zphot[use], pred.zspec[use]
    out = metrics.point_metrics(zp, zs, profile.outlier) | {"n_no_pz": failed} | unscored
    out["catastrophic_fraction"] = metrics.outlier_fraction(
        metrics.dz(zp, zs), profile.catastrophic
    )
    score = pred.odds if odds is None else np.asarray(odds, float)
    if np.isfinite(score[use]).all():
        best = metrics.odds_curve(zp, zs, score[use], [profile.target_fraction], profile.outlier)
        out["best_sigma68"] = float(best["sigma68"][0])
    return out


def _calibration_stats(pred: Predictions, use: np.ndarray, pit_bins: int) -> dict[str, Any]:
    """PIT before calibration and 68% coverage before / after of the scored galaxies ``use`` (N,);
    empty for predictions without ``pit_raw``."""
    raw, cal = pred.pit_raw[use], pred.pit[use]
    both = np.isfinite(raw) & np.isfinite(cal)
    if not both.any():
        return {}
    out: dict[str, Any] = {
        "pit_raw": metrics.pit_histogram(raw[both], pit_bins),
        "pit_raw_ks": metrics.pit_ks(raw[both]),
    }
    mag = pred.mag[use][both] if pred.mag is not None else np.full(int(both.sum()), np.nan)
    rows = [
        {
            "lo": after["lo"],
            "hi": after["hi"],
            "n": after["n"],
            "raw": before["coverage68"],
            "calibrated": after["coverage68"],
            "noise": after["noise68"],
        }
        for before, after in zip(
            coverage_by_mag(raw[both], mag, half_mag_edges(mag)),
            coverage_by_mag(cal[both], mag, half_mag_edges(mag)),
            strict=True,
        )
    ]
    out["coverage68"] = {
        "n": int(both.sum()),
        "raw": pit_coverage(raw[both], LEVEL),
        "calibrated": pit_coverage(cal[both], LEVEL),
        "noise": coverage_noise(int(both.sum()), LEVEL),
        "per_magnitude": rows,
    }
    return out


def odds_for_window(pred: Predictions, window: float, chunk: int = 20_000) -> np.ndarray:
    """(N,) ODDS = P(|z - mode| <= window/2) of the predictions (E20 eq. 7): ``window_odds``."""
    stored = pred.columns.get("odds")
    return window_odds(
        pred.weights, pred.means, pred.stds, pred.zphot, window, stored, pred.odds_window, chunk
    )


def _mag_ok(pred: Predictions, mag_max: float | None) -> np.ndarray:
    if mag_max is None or pred.mag is None:
        return np.ones(pred.n, bool)
    return np.nan_to_num(pred.mag, nan=np.inf) <= mag_max


def cut_curves(
    pred: Predictions,
    odds: np.ndarray,
    mag_max: float | None = None,
    completeness: np.ndarray = CUT_COMPLETENESS,
    outlier: float = metrics.OUTLIER_THRESHOLD,
) -> dict[str, Any]:
    """sigma68 and outlier fraction (|Δz|/(1+z_s) > ``outlier``) vs completeness for the ODDS cut
    and the optimal cut, over scored galaxies brighter than ``mag_max`` (E20 Fig. 9)."""
    use = pred.scored & _mag_ok(pred, mag_max) & np.isfinite(odds)
    if not use.any():
        return {"n": 0}
    zp, zs = pred.zphot[use], pred.zspec[use]
    return {
        "n": int(use.sum()),
        "ODDS cut": metrics.odds_curve(zp, zs, odds[use], completeness, outlier),
        "optimal (|Δz| known)": metrics.optimal_curve(zp, zs, completeness, outlier),
    }


def threshold_for_completeness(
    pred: Predictions, odds: np.ndarray, completeness: float, mag_max: float | None = None
) -> float:
    """ODDS threshold keeping the fraction ``completeness`` of the scored galaxies (ties kept)."""
    use = pred.scored & _mag_ok(pred, mag_max) & np.isfinite(odds)
    if not use.any():
        return float("nan")
    curve = metrics.completeness_curve(
        pred.zphot[use], pred.zspec[use], odds[use], [completeness], higher_is_better=True
    )
    return float(curve["threshold"][0])


def selection_mask(
    pred: Predictions, odds: np.ndarray, threshold: float, mag_max: float | None = None
) -> np.ndarray:
    """(N,) galaxies passing ODDS >= threshold and mag <= mag_max (all galaxies, spec-z or not)."""
    return (odds >= threshold) & _mag_ok(pred, mag_max)


def cut_stats(
    pred: Predictions,
    odds: np.ndarray,
    threshold: float,
    mag_max: float | None = None,
    outlier: float = metrics.OUTLIER_THRESHOLD,
) -> dict[str, float]:
    """Completeness, sigma68 and outlier fraction (|Δz|/(1+z_s) > ``outlier``) of the scored
    galaxies passing the cut, and the number of catalogue galaxies selected."""
    keep = selection_mask(pred, odds, threshold, mag_max)
    base = pred.scored & _mag_ok(pred, mag_max) & np.isfinite(odds)
    kept = base & keep
    out = {"n_selected": int(keep.sum()), "n_scored": int(kept.sum()), "n_base": int(base.sum())}
    if not kept.any():
        return out | {
            "completeness": 0.0,
            "sigma68": float("nan"),
            "outlier_fraction": float("nan"),
        }
    d = metrics.dz(pred.zphot[kept], pred.zspec[kept])
    return out | {
        "completeness": float(kept.sum() / base.sum()),
        "sigma68": metrics.sigma68(d),
        "outlier_fraction": metrics.outlier_fraction(d, outlier),
    }


def selection_bytes(
    pred: Predictions,
    odds: np.ndarray,
    threshold: float,
    window: float,
    mag_max: float | None,
    fmt: str,
) -> bytes:
    """The galaxies passing a quality cut as a file: the predictions plus ``odds_cut`` (ODDS for
    the cut's ``window``, the column the threshold applies to), the cut in the header (FITS) or
    leading comments (CSV)."""
    keep = selection_mask(pred, odds, threshold, mag_max)
    cut = {
        "ODDSWIN": window,
        "ODDSMIN": threshold,
        "MAGMAX": "none" if mag_max is None else mag_max,
    }
    return export_bytes(pred.path, keep, fmt, {"odds_cut": odds}, cut)


def read_plain_table(path: Path | str) -> Table:
    """A predictions file as an astropy Table of plain columns: FITS NaN stay NaN (astropy would
    mask them, and Parquet would then grow ``zspec.mask`` columns), integers stay integers."""
    path = Path(path)
    fits = path.suffix.lower() in (".fits", ".fit") or path.name.lower().endswith(".fits.gz")
    table = Table.read(path, mask_invalid=False) if fits else Table.read(path)
    for name in table.colnames:
        col = table[name]
        if getattr(col, "mask", None) is not None and np.ma.isMaskedArray(col):
            table[name] = native_array(col)  # masked -> NaN (floats) / fill value
    return table


def export_bytes(
    path: Path | str,
    mask: np.ndarray | None,
    fmt: str,
    extra: dict[str, np.ndarray] | None = None,
    meta: dict[str, Any] | None = None,
) -> bytes:
    """Rows ``mask`` (all if None) of a predictions file, with ``extra`` columns (N,) and ``meta``
    header keys, as FITS, CSV or Parquet bytes: plain columns, missing values NaN (never masked
    columns); CSV keeps the per-galaxy columns only (the mixture parameters are vectors)."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    table = read_plain_table(path)
    for name, values in (extra or {}).items():
        table[name] = values
    table.meta.update(meta or {})
    if mask is not None:
        table = table[np.asarray(mask, bool)]
    if fmt == "csv":
        table = table[[c for c in table.colnames if table[c].ndim == 1]]
        table.meta = {"comments": [f"{k} = {v}" for k, v in (meta or {}).items()]}
    writer = {"fits": "fits", "csv": "ascii.csv", "parquet": "parquet"}[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"selection.{fmt}"
        table.write(
            out, format=writer, overwrite=True, **({"comment": "# "} if fmt == "csv" else {})
        )
        return out.read_bytes()


def selection_name(source: str, window: float, threshold: float, mag_max: float | None) -> str:
    """File stem of a quality-cut selection, named after its run and its cut, e.g.
    ``run-1_odds0.003-ge0.5_mag22.5`` (``nomag`` without a magnitude limit)."""
    mag = "nomag" if mag_max is None else f"mag{mag_max:g}"
    return f"{source}_odds{window:g}-ge{threshold:g}_{mag}"


def galaxy_table(
    pred: Predictions,
    mag_range: tuple[float, float] | None = None,
    outliers_only: bool = False,
    odds_min: float = 0.0,
    limit: int = 2000,
    outlier: float = metrics.OUTLIER_THRESHOLD,
    odds: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Columns (at most ``limit`` rows) of the galaxies with mag in ``mag_range``, ODDS >= odds_min
    (``odds`` (N,), default the stored column) and, with ``outliers_only``, |Δz|/(1+z_s) >
    ``outlier`` (needs a spec-z); and how many matched. ``row`` is the predictions row; ``ref_id``
    is text, so no 19-digit survey id passes through a JavaScript number (53-bit) on its way."""
    odds = pred.odds if odds is None else np.asarray(odds, float)
    has = np.isfinite(pred.zspec) & np.isfinite(pred.zphot)
    d = np.full(pred.n, np.nan)
    d[has] = metrics.dz(pred.zphot[has], pred.zspec[has])
    keep = np.nan_to_num(odds, nan=0.0) >= odds_min
    if mag_range is not None and pred.mag is not None:
        keep &= (pred.mag >= mag_range[0]) & (pred.mag <= mag_range[1])
    if outliers_only:
        keep &= np.abs(np.nan_to_num(d)) > outlier
    idx = np.flatnonzero(keep)
    shown = idx[: max(int(limit), 0)]
    cols: dict[str, np.ndarray] = {"ref_id": pred.ref_id.astype(str)}
    if pred.mag is not None:
        cols["m_AB [mag]"] = pred.mag
    cols |= {
        "z_s": pred.zspec,
        "z_p": pred.zphot,
        "ODDS": odds,
        "Δz/(1+z_s)": d,
        "PIT": pred.pit,
        "out of fold": pred.out_of_fold,
    }
    return {k: v[shown] for k, v in cols.items()} | {"row": shown}, len(idx)


def sigma68_at(curve: dict[str, np.ndarray], completeness: float = 0.5) -> float:
    """σ68 of a completeness curve interpolated at ``completeness`` (E20 target: best 50%)."""
    return float(np.interp(completeness, curve["completeness"], curve["sigma68"]))
