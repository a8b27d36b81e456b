"""What every experiment section shares: the output folder, the plan, the demo catalogue, logging."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import read_catalog
from deepz_core.experiments.plan import ExperimentPlan


@dataclass
class Context:
    root: Path  # the --out folder: runs/, figures/, report.md, results.json
    plan: ExperimentPlan
    catalog_path: Path  # the demo mock
    device: str = "auto"
    log: Callable[[str], None] = print
    _catalog: Catalog | None = field(default=None, repr=False)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = read_catalog(self.catalog_path)
        return self._catalog

    def figure(self, name: str) -> Path:
        path = self.root / "figures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def mag_of(self) -> dict[int, float]:
        """ref_id -> iAB of the demo galaxies (template-fit outputs carry no magnitude)."""
        cat = self.catalog
        mag = cat.mag if cat.mag is not None else np.full(cat.n_galaxies, np.nan)
        return dict(zip(cat.ref_id.tolist(), np.asarray(mag, dtype=float).tolist(), strict=True))
