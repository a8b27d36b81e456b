"""Configuration of the BCNZ2-like template fit (``deepz_core.templatefit.fit``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from deepz_core.configs import (
    Config,
    check_choice,
    check_int,
    check_probability,
    check_range,
    check_real,
)
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
        self._check_grid()
        for name in ("coarse_stride", "top_stride"):
            stride = check_int(name, getattr(self, name), 1)
            if stride & (stride - 1):
                raise ConfigError(f"{name} must be a power of two >= 1, got {stride!r}")
            self._set(name, stride)
        check_choice("solver", self.solver, SOLVERS)
        for name in ("mu_iterations", "k_iterations", "zp_iterations", "chunk"):
            self._set(name, check_int(name, getattr(self, name), 0))
        for name in ("delta_chi2", "zp_min_snr"):
            self._set(name, check_real(name, getattr(self, name), 0.0, low_open=True))
        self._set("clip_sigma", check_real("clip_sigma", self.clip_sigma, 0.0))
        if 0 < self.clip_sigma < 2.0:
            raise ConfigError(f"clip_sigma must be 0 (off) or >= 2, got {self.clip_sigma!r}")
        self._set("error_floor", check_probability("error_floor", self.error_floor))
        self._check_k_range()
        self._set(
            "mixture_components", check_int("mixture_components", self.mixture_components, 1, 64)
        )

    def _check_grid(self) -> None:
        """z_min, z_max in [0, 6], z_min first; dz in (0, (z_max - z_min) / 4]."""
        self._set("z_min", check_real("z_min", self.z_min, 0.0, 6.0))
        self._set("z_max", check_real("z_max", self.z_max, 0.0, 6.0))
        if not self.z_min < self.z_max:
            raise ConfigError(
                f"z_min/z_max must satisfy 0 <= z_min < z_max <= 6, got {self.z_min}, {self.z_max}"
            )
        span = (self.z_max - self.z_min) / 4
        self._set("dz", check_real("dz", self.dz, 0.0, span, low_open=True))

    def _check_k_range(self) -> None:
        """k_range a pair (low, high) of numbers with 0 < low <= 1 <= high."""
        lo, hi = check_range("k_range", self.k_range, 0.0, math.inf)
        if not 0 < lo <= 1.0 <= hi:
            raise ConfigError(
                f"k_range must be (low, high) with 0 < low <= 1 <= high, got {self.k_range}"
            )
        self._set("k_range", (lo, hi))

    def z_grid(self) -> np.ndarray:
        """(Z,) exact fit grid z_min + k dz."""
        n = int(round((self.z_max - self.z_min) / self.dz))
        return np.round(self.z_min + np.arange(n + 1) * self.dz, 12)


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
