"""Configuration of the BCNZ2-like template fit (``deepz_core.templatefit.fit``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from deepz_core.configs import Config
from deepz_core.errors import ConfigError
from deepz_core.pz.products import PzConfig
from deepz_core.sed.template_sets import DEFAULT_SET, set_info

SOLVERS = ("active-set", "mu")


@dataclass(frozen=True)
class TemplateFitConfig(Config):
    """Settings of the template fit; defaults reproduce BCNZ2's choices where E20 states them.

    The fit grid is z_min + k dz (1201 redshifts by default); ``pz`` is the output grid (deepz's).
    ``template_set`` names the templates (``template_set.TEMPLATE_SETS``: "bcnz2", "kcorrect").
    """

    template_set: str = DEFAULT_SET
    z_min: float = 0.0
    z_max: float = 1.5
    dz: float = 0.00125
    coarse_stride: int = 8  # every coarse_stride-th redshift is solved for every galaxy and run
    top_stride: int = 128  # first (cold-started) level of the coarse-to-fine search
    delta_chi2: float = 40.0  # finer redshifts solved only within this of the best chi2
    solver: str = "active-set"  # exact NNLS; "mu": BCNZ2's multiplicative updates
    mu_iterations: int = 1000
    k_iterations: int = 1  # narrow/broad scale refits (0: k = 1)
    k_range: tuple[float, float] = (0.5, 2.0)
    zp_iterations: int = 5
    zp_min_snr: float = 5.0
    error_floor: float = 0.0  # fractional error added in quadrature to every flux error
    clip_sigma: float = 4.0  # outlier single exposures rejected beyond this (0: catalogue coadds)
    chunk: int = 0  # galaxies per chunk (0: 256 on CPU, 2048 on CUDA)
    mixture_components: int = 8
    pz: PzConfig = field(default_factory=PzConfig)

    CONFIG_NAME: ClassVar[str] = "template-fit"
    NESTED: ClassVar[dict[str, type[Config]]] = {"pz": PzConfig}

    def __post_init__(self) -> None:
        set_info(self.template_set, "template_set")  # ConfigError naming the field for a bad name
        if not (0.0 <= self.z_min < self.z_max <= 6.0):
            raise ConfigError(
                f"z_min/z_max must satisfy 0 <= z_min < z_max <= 6, got {self.z_min}, {self.z_max}"
            )
        if not 0 < self.dz <= (self.z_max - self.z_min) / 4:
            raise ConfigError(f"dz must be in (0, (z_max - z_min) / 4], got {self.dz}")
        for name in ("coarse_stride", "top_stride"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1 and v & (v - 1) == 0):
                raise ConfigError(f"{name} must be a power of two >= 1, got {v!r}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        for name in ("mu_iterations", "k_iterations", "zp_iterations", "chunk"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        for name in ("delta_chi2", "zp_min_snr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not (self.clip_sigma == 0 or self.clip_sigma >= 2.0):
            raise ConfigError(f"clip_sigma must be 0 (off) or >= 2, got {self.clip_sigma!r}")
        if not 0.0 <= self.error_floor < 1.0:
            raise ConfigError(f"error_floor must be in [0, 1), got {self.error_floor!r}")
        lo, hi = self.k_range
        if not 0 < lo <= 1.0 <= hi:
            raise ConfigError(
                f"k_range must be (low, high) with 0 < low <= 1 <= high, got {self.k_range}"
            )
        if not 1 <= self.mixture_components <= 64:
            raise ConfigError(
                f"mixture_components must be in [1, 64], got {self.mixture_components!r}"
            )

    def z_grid(self) -> np.ndarray:
        """(Z,) exact fit grid z_min + k dz."""
        n = int(round((self.z_max - self.z_min) / self.dz))
        return np.round(self.z_min + np.arange(n + 1) * self.dz, 12)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TemplateFitConfig:
        """As ``Config.from_dict``; ``k_range`` given as a list becomes a pair."""
        values = dict(values) if isinstance(values, Mapping) else values
        if isinstance(values, dict) and "k_range" in values:
            values["k_range"] = tuple(values["k_range"])
        return super().from_dict(values)


def over_redshifts(
    cfg: TemplateFitConfig, z_max: float, odds_window: float | None = None
) -> TemplateFitConfig:
    """``cfg`` fitting z_min .. ``z_max`` and writing its p(z) on deepz's grid over the same range
    (the p(z) grid's other settings kept): a p(z) grid shorter than the fit would cut it off.
    ``odds_window``: the odds column's window (the catalogue's survey profile's, as a training
    run's; None keeps the grid's)."""
    if not (isinstance(z_max, int | float) and cfg.z_min < z_max <= 6.0):
        raise ConfigError(f"--z-max must be in ({cfg.z_min:g}, 6], got {z_max!r}")
    window = cfg.pz.odds_window if odds_window is None else odds_window
    pz = dataclasses.replace(cfg.pz, z_min=cfg.z_min, z_max=float(z_max), odds_window=window)
    return dataclasses.replace(cfg, z_max=float(z_max), pz=pz)
