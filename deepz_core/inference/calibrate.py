"""A run's p(z) calibration (beyond E20; the transform is ``pz.calibration``): fitted on the
out-of-fold PITs of the training galaxies, stored in the run as ``calibration.json``, applied at
prediction time.

Honest out-of-fold numbers need galaxies the calibration never saw, so a run stores CROSS_FOLDS + 1
calibrations: the training galaxies are cut into CROSS_FOLDS folds by a hash of their ref_id, fold k
is calibrated by the calibration fitted on the other folds (its predictions in ``predictions.fits``,
and again whenever the run predicts it), every other galaxy by the one fitted on all of them. The
stored summary compares the PIT before and after: KS, the share of spec-z inside the 68% interval
overall and per half magnitude, over the training galaxies with a spec-z (cross-fitted).

A galaxy the run did not train on pools all K fold networks, a broader p(z) than the out-of-fold
ones the calibration is fitted on; its calibrated probit is multiplied by the pool scale
lambda(mag) (``pz.calibration.fit_pool_scale``), fitted at the end of training on the catalogue's
galaxies without a spec-z, without any redshift (none such: no pool scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write_json, jsonable, read_json_object
from deepz_core.pz.calibration import (
    MAX_BINS,
    MIN_PER_BIN,
    PitCalibration,
    PitTransform,
    PoolScale,
    coverage_noise,
    fit_pit_calibration,
    half_mag_edges,
    pit_coverage,
)
from deepz_core.pz.metrics import pit_ks
from deepz_core.rundir import RunDir

CALIBRATION_FILE = "calibration.json"
CROSS_FOLDS = 5
MIN_GALAXIES = 200  # fewer out-of-fold spec-z galaxies: no calibration (too noisy to help)
_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing of ref_ids into folds


@dataclass(frozen=True)
class RunCalibration:
    """The calibration fitted on all training galaxies (``full``), the cross-fitted ones
    (``folds``, k = 0..CROSS_FOLDS-1) and the before/after ``summary``."""

    full: PitCalibration
    folds: tuple[PitCalibration, ...]
    summary: dict[str, Any]
    pool: PoolScale | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "full": self.full.to_dict(),
            "folds": [c.to_dict() for c in self.folds],
            "summary": self.summary,
            "pool": None if self.pool is None else self.pool.to_dict(),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunCalibration:
        try:
            folds = tuple(PitCalibration.from_dict(d) for d in doc["folds"])
            pool = None if doc.get("pool") is None else PoolScale.from_dict(doc["pool"])
            return cls(PitCalibration.from_dict(doc["full"]), folds, dict(doc["summary"]), pool)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{CALIBRATION_FILE}: not a run calibration ({exc!r})") from None

    def transform(self, mag: np.ndarray, ref_id: np.ndarray, training: np.ndarray) -> PitTransform:
        """g of each galaxy (N,): its cross-fitted calibration where ``training`` (N,) bool (an
        out-of-fold training galaxy), else the full one, times the pool scale (the galaxy's p(z)
        pools all networks); ``mag`` (N,) AB (NaN allowed)."""
        fold = np.where(training, calibration_fold(ref_id, len(self.folds)), -1)
        x = np.zeros((len(mag), len(self.full.y)))
        for k, cal in [(-1, self.full), *enumerate(self.folds)]:
            rows = np.flatnonzero(fold == k)
            if len(rows):
                x[rows] = cal.transform(np.asarray(mag)[rows]).x.numpy()
        scale = np.ones(len(mag))
        if self.pool is not None:
            scale = np.where(training, 1.0, self.pool.at(np.asarray(mag)))
        y = torch.as_tensor(scale)[:, None] * torch.as_tensor(self.full.y)[None, :]
        return PitTransform(torch.as_tensor(x), y)

    def with_pool(self, pool: PoolScale | None) -> RunCalibration:
        """This calibration with the pool scale ``pool`` (its lambdas in the summary)."""
        summary = dict(self.summary)
        if pool is not None:
            summary["pool_scale"] = {"mag": list(pool.mag_centres), "scale": list(pool.scale)}
            summary["n_pool"] = pool.n_fit
        return RunCalibration(self.full, self.folds, summary, pool)


def calibration_fold(ref_id: np.ndarray, folds: int = CROSS_FOLDS) -> np.ndarray:
    """(N,) fold 0..folds-1 of each ref_id (N,): a fixed hash, the same in every process."""
    ids = np.asarray(ref_id).astype(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        return ((ids * _HASH) >> np.uint64(32)).astype(np.int64) % folds


def fit_run_calibration(
    pit: np.ndarray,
    mag: np.ndarray,
    ref_id: np.ndarray,
    folds: int = CROSS_FOLDS,
    min_per_bin: int = MIN_PER_BIN,
    max_bins: int = MAX_BINS,
) -> RunCalibration:
    """Fit the full and the cross-fitted calibrations on the raw PITs (N,) of out-of-fold training
    galaxies with a spec-z, their magnitudes and ref_ids (N,), in magnitude bins of at least
    ``min_per_bin`` galaxies, at most ``max_bins`` (``fit_pit_calibration``); the summary is
    computed here."""
    pit, mag = np.asarray(pit, dtype=np.float64), np.asarray(mag, dtype=np.float64)
    if len(pit) < MIN_GALAXIES:
        raise ConfigError(
            f"calibration: {len(pit)} out-of-fold galaxies with a spec-z, need >= {MIN_GALAXIES}"
        )
    fold = calibration_fold(ref_id, folds)
    bins = {"min_per_bin": min_per_bin, "max_bins": max_bins}
    cross = tuple(fit_pit_calibration(pit[fold != k], mag[fold != k], **bins) for k in range(folds))
    full = fit_pit_calibration(pit, mag, **bins)
    cal = RunCalibration(full, cross, {})
    after = (
        cal.transform(mag, ref_id, np.ones(len(pit), bool))
        .forward(torch.as_tensor(pit)[:, None])[:, 0]
        .numpy()
    )
    return RunCalibration(full, cross, pit_summary(pit, after, mag))


def pit_summary(before: np.ndarray, after: np.ndarray, mag: np.ndarray) -> dict[str, Any]:
    """PIT KS and 68% coverage before / after (cross-fitted), overall and per magnitude bin."""
    rows = []
    edges = half_mag_edges(mag)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = (mag >= lo) & (mag < hi) if hi < edges[-1] else (mag >= lo) & (mag <= hi)
        rows.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "n": int(s.sum()),
                "coverage68_before": pit_coverage(before[s]),
                "coverage68_after": pit_coverage(after[s]),
                "coverage68_noise": coverage_noise(int(s.sum())),
                "pit_ks_before": pit_ks(before[s]).statistic,
                "pit_ks_after": pit_ks(after[s]).statistic,
            }
        )
    return {
        "n": len(before),
        "pit_ks_before": pit_ks(before).statistic,
        "pit_ks_after": pit_ks(after).statistic,
        "coverage68_before": pit_coverage(before),
        "coverage68_after": pit_coverage(after),
        "per_magnitude": rows,
        "note": "after: each galaxy calibrated by the calibration fitted without it",
    }


def save_calibration(run: RunDir, cal: RunCalibration) -> Path:
    """Write ``calibration.json`` (NaN written as null)."""
    return atomic_write_json(run.file(CALIBRATION_FILE), jsonable(cal.to_dict()))


def load_calibration(run_path: Path | str) -> RunCalibration | None:
    """The run's calibration, or None for a run without one (trained with calibration off, or
    before calibration existed)."""
    path = Path(run_path) / CALIBRATION_FILE
    if not path.exists():
        return None
    return RunCalibration.from_dict(read_json_object(path, "calibration"))
