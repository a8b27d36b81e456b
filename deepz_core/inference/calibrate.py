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

from collections.abc import Mapping, Sequence
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
    compose_calibrations,
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
# the networks' out-of-fold calibration: bins of >= 500 galaxies smoothed across 2.5 magnitudes
# (``fit_pit_calibration(smooth=)``). Measured on 66,000 new galaxies of the demo and of the
# kcorrect mock: rms of the 68% coverage - 68.27 over the half magnitudes of iAB 17-22.5, 1.62 and
# 3.52 points with bins of >= 1,000 unsmoothed, 1.37 and 1.68 (docs/benchmarks.md, "The
# out-of-fold calibration smoothed across magnitude")
OUT_OF_FOLD_BINS: dict[str, Any] = {"min_per_bin": 500, "max_bins": 40, "smooth": 2.5}


@dataclass(frozen=True)
class RunCalibration:
    """The calibration fitted on all training galaxies (``full``), the cross-fitted ones
    (``folds``, k = 0..CROSS_FOLDS-1) and the before/after ``summary``; for galaxies the run
    did not train on, the pool scale (``pool``) and, when fitted on a held-out catalogue
    (``fit_heldout_stage``), the whole calibration of such galaxies (``heldout``: ``full``, the
    pool scale and the held-out stage composed)."""

    full: PitCalibration
    folds: tuple[PitCalibration, ...]
    summary: dict[str, Any]
    pool: PoolScale | None = None
    heldout: PitCalibration | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``calibration.json``."""
        return {
            "full": self.full.to_dict(),
            "folds": [c.to_dict() for c in self.folds],
            "summary": self.summary,
            "pool": None if self.pool is None else self.pool.to_dict(),
            "heldout": None if self.heldout is None else self.heldout.to_dict(),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunCalibration:
        """The calibration from its ``calibration.json`` document; ConfigError naming the file when
        damaged."""
        try:
            folds = tuple(PitCalibration.from_dict(d) for d in doc["folds"])
            pool = None if doc.get("pool") is None else PoolScale.from_dict(doc["pool"])
            held = doc.get("heldout")
            held = None if held is None else PitCalibration.from_dict(held)
            full = PitCalibration.from_dict(doc["full"])
            return cls(full, folds, dict(doc["summary"]), pool, held)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{CALIBRATION_FILE}: not a run calibration ({exc!r})") from None

    def transform(self, mag: np.ndarray, ref_id: np.ndarray, training: np.ndarray) -> PitTransform:
        """g of each galaxy (N,): its cross-fitted calibration where ``training`` (N,) bool (an
        out-of-fold training galaxy), else the held-out one when there is one, else the full
        one times the pool scale (the galaxy's p(z) pools all networks); ``mag`` (N,) AB (NaN
        allowed)."""
        mag = np.asarray(mag)
        fold = np.where(training, calibration_fold(ref_id, len(self.folds)), -1)
        x = np.zeros((len(mag), len(self.full.y)))
        new = self.full if self.heldout is None else self.heldout
        for k, cal in [(-1, new), *enumerate(self.folds)]:
            rows = np.flatnonzero(fold == k)
            if len(rows):
                x[rows] = cal.transform(mag[rows]).x.numpy()
        scale = np.ones(len(mag))
        if self.pool is not None and self.heldout is None:
            scale = np.where(training, 1.0, self.pool.at(mag))
        y = torch.as_tensor(scale)[:, None] * torch.as_tensor(self.full.y)[None, :]
        return PitTransform(torch.as_tensor(x), y)

    def with_pool(self, pool: PoolScale | None) -> RunCalibration:
        """This calibration with the pool scale ``pool`` (its lambdas in the summary); a
        held-out stage, fitted on top of the old pool scale, is dropped."""
        summary = self.without_heldout().summary
        if pool is not None:
            summary["pool_scale"] = {"mag": list(pool.mag_centres), "scale": list(pool.scale)}
            summary["n_pool"] = pool.n_fit
        return RunCalibration(self.full, self.folds, summary, pool)

    def without_heldout(self) -> RunCalibration:
        """This calibration without its held-out stage (new galaxies: ``full`` and the pool
        scale again)."""
        summary = {k: v for k, v in self.summary.items() if k != "heldout"}
        return RunCalibration(self.full, self.folds, summary, self.pool)


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
    breaks: Sequence[float] = (),
    smooth: float = 0.0,
) -> RunCalibration:
    """Fit the full and the cross-fitted calibrations on the raw PITs (N,) of out-of-fold training
    galaxies with a spec-z, their magnitudes and ref_ids (N,), in magnitude bins of at least
    ``min_per_bin`` galaxies, at most ``max_bins``, none across ``breaks``, smoothed across
    ``smooth`` magnitudes (``fit_pit_calibration``); the summary is computed here."""
    pit, mag = np.asarray(pit, dtype=np.float64), np.asarray(mag, dtype=np.float64)
    if len(pit) < MIN_GALAXIES:
        raise ConfigError(
            f"calibration: {len(pit)} out-of-fold galaxies with a spec-z, need >= {MIN_GALAXIES}"
        )
    fold = calibration_fold(ref_id, folds)
    bins = {"min_per_bin": min_per_bin, "max_bins": max_bins, "breaks": breaks, "smooth": smooth}
    cross = tuple(fit_pit_calibration(pit[fold != k], mag[fold != k], **bins) for k in range(folds))
    full = fit_pit_calibration(pit, mag, **bins)
    cal = RunCalibration(full, cross, {})
    after = (
        cal.transform(mag, ref_id, np.ones(len(pit), bool))
        .forward(torch.as_tensor(pit)[:, None])[:, 0]
        .numpy()
    )
    return RunCalibration(full, cross, pit_summary(pit, after, mag))


HELDOUT_MAX_BINS = 12  # a held-out catalogue may resolve magnitude more finely than MAX_BINS


def fit_heldout_stage(
    cal: RunCalibration,
    pit: np.ndarray,
    mag: np.ndarray,
    ref_id: np.ndarray,
    min_per_bin: int = MIN_PER_BIN,
    max_bins: int = HELDOUT_MAX_BINS,
    source: str | None = None,
    breaks: Sequence[float] = (),
) -> RunCalibration:
    """``cal`` with a stage for galaxies the run did not train on, fitted on held-out spec-z
    galaxies (no network trained on them, e.g. a spec-z sample kept out of training): their PITs
    (N,) under ``cal`` without a held-out stage, magnitudes and ref_ids (N,). A second monotone
    transform fitted on those PITs like the first (``fit_run_calibration``: magnitude bins of
    >= ``min_per_bin`` galaxies, at most ``max_bins``, none across ``breaks``: the magnitudes
    where the p(z) change abruptly, as at a combination's exponent bins) and composed with
    ``cal.full`` and its
    pool scale (``compose_calibrations``). The out-of-fold calibration of the training galaxies
    is unchanged. ``summary['heldout']``: the held-out galaxies' PIT KS and 68% coverage before
    and after the stage, each galaxy by a stage fitted without it (5 hash folds of ref_id), and
    ``catalog``: ``source``, the catalogue's file.

    Why: the out-of-fold calibration is only as precise as the training catalogue's spec-z
    sample is large, per magnitude; at iAB < 19.5 a PAUS-like catalogue of 10,000 galaxies has
    a few hundred per half magnitude (docs/benchmarks.md, "A held-out calibration stage")."""
    pit, mag = np.asarray(pit, dtype=np.float64), np.asarray(mag, dtype=np.float64)
    ok = np.isfinite(pit) & np.isfinite(mag)
    ids = np.asarray(ref_id)[ok]
    bins = {"min_per_bin": min_per_bin, "max_bins": max_bins, "breaks": breaks}
    stage = fit_run_calibration(pit[ok], mag[ok], ids, **bins)
    held = compose_calibrations(cal.full, stage.full, cal.pool)
    summary = {**cal.summary, "heldout": {**stage.summary, **stage_precision(stage.full)}}
    summary["heldout"]["catalog"] = source
    summary["heldout"]["breaks"] = [float(b) for b in breaks]
    return RunCalibration(cal.full, cal.folds, summary, cal.pool, held)


HELDOUT_PRECISE = 0.01  # stage bins this precise kept every half magnitude within 68 +- 2%


def stage_precision(stage: PitCalibration) -> dict[str, Any]:
    """How precisely a held-out stage fixes the 68% coverage: its magnitude bins, the galaxies per
    bin (``n_fit`` / bins, the quantile bins being equal) and the binomial noise of a share
    measured on that many (``precision68``, a fraction), plus ``precise``: whether it is within
    HELDOUT_PRECISE. Measured (docs/benchmarks.md, "How many held-out spec-z the per-bin target
    needs"): ~1,000 held-out galaxies per half magnitude (noise 0.015) kept 10 of 11 half
    magnitudes within 68 +- 2% on average, >= 3,000 (0.0085) all 11."""
    bins = len(np.unique(stage.x, axis=0))  # a bin repeated at a break counts once
    per_bin = stage.n_fit // bins
    noise = coverage_noise(per_bin)
    return {
        "bins": bins,
        "per_bin": per_bin,
        "precision68": noise,
        "precise": noise <= HELDOUT_PRECISE,
    }


def stage_precision_note(stage: Mapping[str, Any]) -> str:
    """One sentence on how precisely a held-out stage sets new galaxies' 68% coverage, from its
    summary ``stage`` (the ``stage_precision`` keys), with the advice to calibrate on a larger
    held-out catalogue when it is not ``precise``: what ``deepz calibrate`` prints and the Results
    page shows."""
    bins = int(stage["bins"])
    note = (
        f"The stage has {bins} magnitude bin{'s' * (bins > 1)} of ~{int(stage['per_bin']):,} "
        f"galaxies: it sets new galaxies' 68% coverage to within +-{100 * stage['precision68']:.1f} "
        "points by chance alone."
    )
    if stage["precise"]:
        return note
    return (
        f"{note} For 68 +- 2% in every half magnitude, calibrate on a larger held-out catalogue: "
        "about 1,000 spec-z per half magnitude kept 10 of 11 bins inside, 3,000 all of them "
        '(docs/benchmarks.md, "How many held-out spec-z the per-bin target needs").'
    )


def heldout_stage_from_table(
    cal: RunCalibration, table: Any, source: str | None = None, breaks: Sequence[float] = ()
) -> RunCalibration:
    """``fit_heldout_stage`` on a held-out catalogue's raw predictions ``table`` (the run's
    predictions with ``calibrate=False``: columns pit, mag, ref_id, zspec, flag, out_of_fold):
    its unflagged galaxies with a spec-z that no network trained on, their PITs taken through
    ``cal`` without any held-out stage; ``source`` (the catalogue's file) is kept in the
    summary; ``breaks`` as in ``fit_heldout_stage``. ConfigError with fewer than MIN_GALAXIES of
    them."""
    col = {c: np.asarray(table[c]) for c in ("pit", "mag", "ref_id", "zspec", "flag")}
    oof = np.zeros(len(table), bool)
    if "out_of_fold" in table.colnames:
        oof = np.asarray(table["out_of_fold"], dtype=bool)
    pit = col["pit"].astype(np.float64)
    use = ~oof & np.isfinite(col["zspec"].astype(np.float64)) & (col["flag"] == 0)
    use &= np.isfinite(pit) & np.isfinite(col["mag"].astype(np.float64))
    if use.sum() < MIN_GALAXIES:
        raise ConfigError(
            f"held-out calibration: the catalogue has {int(use.sum())} unflagged galaxies with a "
            f"spec-z that the run did not train on, need >= {MIN_GALAXIES}"
        )
    rows = np.flatnonzero(use)
    mag, ref_id = col["mag"][rows].astype(np.float64), col["ref_id"][rows]
    base = cal.without_heldout()
    first = base.transform(mag, ref_id, np.zeros(len(rows), bool))
    pit_first = first.forward(torch.as_tensor(pit[rows])[:, None])[:, 0].numpy()
    return fit_heldout_stage(base, pit_first, mag, ref_id, source=source, breaks=breaks)


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
