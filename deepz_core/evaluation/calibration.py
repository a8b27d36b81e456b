"""Raw against calibrated p(z) (beyond E20; the calibration is ``inference.calibrate``): PIT KS,
CDE loss, sigma68 and the share of spec-z inside the 68% interval, overall and per magnitude bin.

The share of spec-z inside the central 68% interval [F^-1(0.159), F^-1(0.841)] is exactly the share
of PIT values inside [0.159, 0.841], so it is read from the ``pit`` (calibrated) and ``pit_raw``
columns. N galaxies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table

from deepz_core.errors import CatalogError
from deepz_core.evaluation.report import evaluate_table
from deepz_core.pz.calibration import coverage_noise, half_mag_edges, pit_coverage
from deepz_core.pz.metrics import DEFAULT_MAG_EDGES
from deepz_core.pz.products import PzConfig

LEVEL = 0.6827  # the 68% interval's probability (z_lo68, z_hi68)


def coverage_by_mag(
    pit: np.ndarray, mag: np.ndarray, edges: np.ndarray = DEFAULT_MAG_EDGES
) -> list[dict[str, float]]:
    """Per magnitude bin [lo, hi) (the last one closed): n, the share of PIT values (N,) inside
    the central 68% interval, i.e. of spec-z inside [z_lo68, z_hi68], and ``noise68``: that
    share's binomial standard deviation for calibrated p(z) (``coverage_noise``); ``mag`` (N,) AB."""
    pit, mag = np.asarray(pit, dtype=np.float64), np.asarray(mag, dtype=np.float64)
    if pit.shape != mag.shape:
        raise CatalogError(f"pit {pit.shape} and mag {mag.shape} differ in shape")
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        top = mag <= hi if i == len(edges) - 2 else mag < hi
        s = (mag >= lo) & top & np.isfinite(pit)
        rows.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "n": int(s.sum()),
                "coverage68": pit_coverage(pit[s], LEVEL),
                "noise68": coverage_noise(int(s.sum()), LEVEL),
            }
        )
    return rows


def compare_calibration(
    raw: Table, calibrated: Table, pz: PzConfig | None = None, mag_edges: np.ndarray | None = None
) -> dict[str, Any]:
    """The same galaxies predicted without (``raw``) and with the calibration: sigma68, PIT KS,
    CDE loss and 68% coverage of each (``evaluate_table``'s galaxies: spec-z and a p(z), out of
    fold where the table says so), the sigma68 ratio, and coverage per magnitude bin
    (``mag_edges``; None: ``half_mag_edges`` of the scored galaxies)."""
    if len(raw) != len(calibrated) or not np.array_equal(
        np.asarray(raw["ref_id"]), np.asarray(calibrated["ref_id"])
    ):
        raise CatalogError("raw and calibrated predictions must hold the same galaxies in order")
    out: dict[str, Any] = {}
    for name, t in (("raw", raw), ("calibrated", calibrated)):
        rep = evaluate_table(t, pz)["overall"]
        pit, mag, use = _scored(t)
        edges = half_mag_edges(mag[use]) if mag is not None and mag_edges is None else mag_edges
        out[name] = {
            "n": int(use.sum()),
            "sigma68": rep["sigma68"],
            "pit_ks": rep.get("pit_ks", float("nan")),
            "cde_loss": rep["cde_loss"],
            "coverage68": pit_coverage(pit[use], LEVEL),
            "per_magnitude": coverage_by_mag(pit[use], mag[use], edges) if mag is not None else [],
        }
    out["sigma68_ratio"] = out["calibrated"]["sigma68"] / out["raw"]["sigma68"]
    return out


def _scored(t: Table) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """pit (N,), mag (N,) or None, and the galaxies ``evaluate_table`` scores (N,) bool."""
    zs = np.asarray(t["zspec"], dtype=np.float64)
    use = np.isfinite(zs) & np.isfinite(np.asarray(t["zphot"], dtype=np.float64))
    if "out_of_fold" in t.colnames and np.asarray(t["out_of_fold"])[np.isfinite(zs)].any():
        use &= np.asarray(t["out_of_fold"], dtype=bool)
    pit = np.asarray(t["pit"], dtype=np.float64) if "pit" in t.colnames else np.full(len(t), np.nan)
    mag = np.asarray(t["mag"], dtype=np.float64) if "mag" in t.colnames else None
    return pit, mag, use
