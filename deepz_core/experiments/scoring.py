"""Scored predictions: the galaxies with a spec-z and an out-of-fold p(z), as plain arrays.

Works on deepz predictions and on template-fit predictions alike (only ``zphot`` and ``zspec`` are
required; ``odds``, ``pit``, ``pit_raw``, ``mag`` and ``out_of_fold`` are used when present).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from deepz_core.catalog.catalog import Catalog, native_array
from deepz_core.errors import ConfigError
from deepz_core.pz import metrics


@dataclass(frozen=True, eq=False)
class Scored:
    """(N,) arrays of the scored galaxies: zp, zs, mag (NaN if unknown), odds, pit, ref_id, and the
    PIT before the run's calibration (``pit_raw``; None for a p(z) that is not calibrated)."""

    ref_id: np.ndarray
    zp: np.ndarray
    zs: np.ndarray
    mag: np.ndarray
    odds: np.ndarray
    pit: np.ndarray
    pit_raw: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.zp)

    def select(self, keep: np.ndarray) -> Scored:
        """The galaxies where ``keep`` (N,) bool is true."""
        return Scored(
            *(getattr(self, f)[keep] for f in ("ref_id", "zp", "zs", "mag", "odds", "pit")),
            None if self.pit_raw is None else self.pit_raw[keep],
        )

    def summary(self) -> dict[str, Any]:
        """Point metrics, ODDS-best-50% sigma68 and PIT KS (E20 Sec. 3.3, 6)."""
        out: dict[str, Any] = metrics.point_metrics(self.zp, self.zs)
        if np.isfinite(self.odds).all():
            out["odds_best50_sigma68"] = metrics.best_fraction_sigma68(self.zp, self.zs, self.odds)
        pit = self.pit[np.isfinite(self.pit)]
        if pit.size:
            out["pit_ks"] = metrics.pit_ks(np.clip(pit, 0, 1)).statistic
        return out

    def per_magnitude(
        self, edges: np.ndarray = metrics.DEFAULT_MAG_EDGES
    ) -> list[dict[str, float]]:
        """Metrics per iAB bin (E20 Fig. 2)."""
        return metrics.binned_metrics(self.zp, self.zs, self.mag, edges).rows()


def galaxy_types(cat: Catalog) -> dict[str, np.ndarray]:
    """(N,) masks quiescent / star-forming from the mocks' ``quiescent`` column; {} without it."""
    if "quiescent" not in cat.extra:
        return {}
    q = np.asarray(cat.extra["quiescent"])
    if q.dtype != bool and not (q.dtype.kind in "iu" and np.isin(q, (0, 1)).all()):
        raise ConfigError(
            f"catalogue column 'quiescent' must be boolean or 0/1, got dtype {q.dtype}"
        )
    return {"quiescent": q.astype(bool), "star-forming": ~q.astype(bool)}


# bright / middle / faint iAB for the per-type split: the bright end shows the networks' precision
TYPE_MAG_EDGES = np.array([10.0, 20.0, 21.0, 30.0])


def by_type(cat: Catalog, lines: Mapping[str, Scored]) -> dict[str, dict[str, Any]]:
    """Point metrics of each line per galaxy type of ``cat`` (matched on ref_id), with counts, and
    the same per ``TYPE_MAG_EDGES`` iAB bin (``by_magnitude``)."""
    out: dict[str, dict[str, Any]] = {}
    for label, s in lines.items():
        out[label] = {}
        for kind, mask in galaxy_types(cat).items():
            keep = np.isin(s.ref_id, cat.ref_id[mask])
            out[label][kind] = metrics.point_metrics(s.zp[keep], s.zs[keep]) | {
                "n": int(keep.sum()),
                "by_magnitude": s.select(keep).per_magnitude(TYPE_MAG_EDGES),
            }
    return out


def read_scored(path: Path | str, mag_of: dict[int, float] | None = None) -> Scored:
    """Scored galaxies of a predictions file; ``mag_of`` (ref_id -> iAB) fills a missing mag column."""
    t = Table.read(path)
    for name in ("ref_id", "zphot", "zspec"):
        if name not in t.colnames:
            raise ConfigError(f"{path}: predictions lack column {name!r}")

    def col(name: str, dtype: Any = np.float64) -> np.ndarray:
        if name not in t.colnames:
            return np.full(len(t), np.nan)
        return np.asarray(native_array(t[name]), dtype=dtype)

    zs = col("zspec")
    use = np.isfinite(zs)
    if "out_of_fold" in t.colnames:
        use &= col("out_of_fold", bool)
    ref_id = col("ref_id", np.int64)
    mag = col("mag")
    if "mag" not in t.colnames and mag_of is not None:
        mag = np.array([mag_of.get(int(r), np.nan) for r in ref_id])
    raw = col("pit_raw")[use] if "pit_raw" in t.colnames else None
    return Scored(
        ref_id[use], col("zphot")[use], zs[use], mag[use], col("odds")[use], col("pit")[use], raw
    )


def faintest_bin(scored: Scored, edges: np.ndarray = metrics.DEFAULT_MAG_EDGES) -> dict[str, float]:
    """Metrics of the faintest magnitude bin holding galaxies."""
    rows = [r for r in scored.per_magnitude(edges) if r["n"] > 0]
    if not rows:
        raise ConfigError("no galaxies with a magnitude in any bin")
    return rows[-1]
