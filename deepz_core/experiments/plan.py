"""What ``python -m deepz_core experiments`` trains and measures, per preset.

Every training run of the experiments uses R repetitions x K folds, so one run yields both a
single-network p(z) (out-of-fold from repetition 0 only: one network per galaxy) and an ensemble p(z)
(all repetitions; E20 Sec. 5.2). ``quick`` fits a 2-core CPU in about three hours; ``paper`` is the
published protocol (50 networks per configuration) and wants a GPU; ``smoke`` exists for tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from deepz_core.errors import ConfigError


@dataclass(frozen=True)
class ExperimentPlan:
    """Sizes and sweeps of the paper's experiments (E20 Figs. 2, 3, 5, 6, 8, 9, B1; Sec. 3.3; App. E)."""

    train_preset: str = (
        "quick"  # deepz_core.training.config PRESETS entry used by every training run
    )
    repetitions: int = 2  # R >= 2: single network = repetition 0, ensemble = all R
    alphas: tuple[float, ...] = (0.5, 0.7, 0.8, 1.0)  # Fig. 6, keeping one exposure
    alphas_drop: tuple[float, ...] = (0.5, 0.8)  # Fig. 6, dropping incomplete galaxies
    alpha: float = 0.8  # the default for every other run (E20 Sec. 5.1)
    u_band_added: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)  # Fig. B1 (fraction)
    train_outliers: float = 0.1  # Fig. B1: fraction of training galaxies given an outlier
    b1_galaxies: int = 3000  # test galaxies for Fig. B1 (template fits at every amplitude)
    b1_mock_galaxies: int = 10_000  # Fig. B1 in E20's set-up: elliptical mock (80% train, 20% test)
    template_sim_n: int = (
        30_000  # Sec. 3.3 template-based pretraining set (as large as the SPS one)
    )
    denoise_n: int = 5_000  # Sec. 4 / Fig. 5: noisy SPS galaxies to denoise
    classifier: bool = True  # Appendix E
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides for every run
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides for every run
    seed: int = 0

    def __post_init__(self) -> None:
        if self.repetitions < 2:
            raise ConfigError(
                f"repetitions must be >= 2 (single vs ensemble), got {self.repetitions}"
            )
        for name in ("alphas", "alphas_drop"):
            values = getattr(self, name)
            if not values or not all(0 < a <= 1 for a in values):
                raise ConfigError(f"{name} must be values in (0, 1], got {values}")
        if self.alpha not in self.alphas:
            raise ConfigError(f"alpha {self.alpha} must be one of alphas {self.alphas}")
        u = list(self.u_band_added)
        if not u or u[0] != 0.0 or any(b <= a for a, b in zip(u[:-1], u[1:], strict=True)):
            raise ConfigError(f"u_band_added must start at 0 and increase, got {self.u_band_added}")
        if not 0 < self.train_outliers < 1:
            raise ConfigError(f"train_outliers must be in (0, 1), got {self.train_outliers}")
        for name in ("b1_galaxies", "b1_mock_galaxies", "template_sim_n", "denoise_n"):
            if getattr(self, name) < 100:
                raise ConfigError(f"{name} must be >= 100, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PLANS: dict[str, ExperimentPlan] = {
    "paper": ExperimentPlan(
        train_preset="paper",
        alphas=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        alphas_drop=(0.5, 0.6, 0.7, 0.8, 0.9),
        repetitions=10,
        template_sim_n=1_000_000,
        b1_galaxies=10_000,
        denoise_n=20_000,
    ),
    # quick networks and fine-tuning, the paper's pretraining set (10^6 galaxies, 10 epochs): the
    # largest single effect measured on the demo (docs/benchmarks.md); pretrained once per network
    # kind and reused across configurations (deepz_core.training.pretrained)
    "quick": ExperimentPlan(
        train={"pretrain_n": 1_000_000, "pretrain_schedule": ((8, 1e-3), (2, 1e-4))},
        template_sim_n=1_000_000,
    ),
    # minutes on a laptop: tiny networks; checks that every section runs, not the science
    "smoke": ExperimentPlan(
        train_preset="smoke",
        alphas=(0.5, 0.8, 1.0),
        alphas_drop=(0.5,),
        u_band_added=(0.0, 0.5, 1.0),
        b1_galaxies=200,
        b1_mock_galaxies=500,
        template_sim_n=2_000,
        denoise_n=500,
        train={"folds": 2},
    ),
}


def plan(name: str) -> ExperimentPlan:
    """The experiment plan ``name`` (PLANS); ConfigError naming --preset otherwise."""
    if name not in PLANS:
        raise ConfigError(f"--preset must be one of {sorted(PLANS)}, got {name!r}")
    return PLANS[name]
