"""Training configuration and presets (E20 Sec. 2.4, 3, 5).

``paper``: the published protocol (Adam, weight decay 1e-4, 100 epochs at 1e-3 then 200 each at 1e-4,
1e-5, 1e-6; pretraining 10 epochs over 1e6 simulated galaxies; 10 x 5 networks; paper-size networks).
``quick``: a CPU-friendly version that trains the demo in minutes: narrower, shallower networks,
pretraining for 10 epochs on 300,000 simulated galaxies (once: ``deepz_core.training.pretrained`` caches it)
and a compressed fine-tuning schedule with the paper's shape (100 epochs at 1e-3, 50 at 1e-4, 20 at
1e-5); docs/benchmarks.md measures shorter and longer ones and larger and smaller pretraining sets. ``smoke``: tiny networks and a
few epochs, for tests and for trying the app (seconds; no science).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepz_core.errors import ConfigError

Schedule = tuple[tuple[int, float], ...]  # (epochs, learning rate) stages
INT_FIELDS = ("batch_size", "min_batch", "pretrain_n", "pretrain_batch_size", "repetitions",
              "folds", "eval_every", "checkpoint_every", "seed")  # fmt: skip
OUTLIER_UNITS = ("galaxy", "measurement")  # what outlier_fraction counts (E20 App. B is ambiguous)


def _check_schedule(name: str, schedule: Any) -> Schedule:
    """The schedule as a tuple of (epochs, lr) tuples; ConfigError naming ``name`` if malformed."""
    try:
        stages = tuple(tuple(s) for s in schedule)
        ok = len(stages) > 0 and all(
            len(s) == 2 and _is_real(s[0]) and _is_real(s[1]) and int(s[0]) == s[0]
            and s[0] >= 0 and 0 < s[1] < 1
            for s in stages
        )  # fmt: skip
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be (epochs >= 0, 0 < lr < 1) stages, got {schedule!r}")
    return tuple((int(e), float(lr)) for e, lr in stages)  # plain JSON-ready values


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _check_types(cfg: TrainConfig) -> None:
    """Integers, finite numbers and booleans where expected (a JSON config can hold anything)."""
    for name in INT_FIELDS:
        value = getattr(cfg, name)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        object.__setattr__(cfg, name, int(value))  # numpy integers -> int (JSON-ready)
    for name in ("weight_decay", "alpha", "outlier_fraction", "outlier_amplitude"):
        value = getattr(cfg, name)
        if not _is_real(value) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        object.__setattr__(cfg, name, float(value))
    for name in ("keep_one", "randomize_coadds"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"{name} must be true or false, got {getattr(cfg, name)!r}")
    if not isinstance(cfg.device, str):
        raise ConfigError(f"device must be a string, got {cfg.device!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: schedules, batches, randomised coadds, ensembles, device, seed."""

    schedule: Schedule = ((100, 1e-3), (200, 1e-4), (200, 1e-5), (200, 1e-6))
    weight_decay: float = 1e-4
    batch_size: int = 100
    min_batch: int = 10  # smaller batches are skipped (BatchNorm needs a few galaxies)
    pretrain_schedule: Schedule = ((10, 1e-3),)
    pretrain_n: int = 1_000_000
    pretrain_batch_size: int = 500
    alpha: float = 0.8  # probability of keeping each single exposure (E20 Sec. 5.1)
    keep_one: bool = True  # keep >= 1 existing exposure per band
    randomize_coadds: bool = True  # only acts where the catalogue has exposures
    outlier_fraction: float = 0.0  # photometric outliers drawn each epoch (E20 App. B), per unit:
    outlier_unit: str = "galaxy"  # "galaxy": that fraction of galaxies, one band each;
    # "measurement": that fraction of every (galaxy, band) flux, the reference band excepted
    outlier_amplitude: float = 1.0  # an outlier adds U(0, this) x |the band's flux|
    repetitions: int = 1  # R: random partitions (E20: 10)
    folds: int = 5  # K: folds per partition (E20: 5); E = R * K networks
    eval_every: int = 1  # epochs between validation passes on held-out galaxies
    checkpoint_every: int = 5  # epochs between checkpoints (and always at the end of a phase)
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", _check_schedule("schedule", self.schedule))
        object.__setattr__(
            self, "pretrain_schedule", _check_schedule("pretrain_schedule", self.pretrain_schedule)
        )
        _check_types(self)
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha}")
        if not 0.0 <= self.outlier_fraction < 1.0:
            raise ConfigError(f"outlier_fraction must be in [0, 1), got {self.outlier_fraction!r}")
        if not 0.0 < self.outlier_amplitude <= 10.0:
            raise ConfigError(
                f"outlier_amplitude must be in (0, 10], got {self.outlier_amplitude!r}"
            )
        if self.outlier_unit not in OUTLIER_UNITS:
            raise ConfigError(
                f"outlier_unit must be one of {OUTLIER_UNITS}, got {self.outlier_unit!r}"
            )
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("batch_size", "pretrain_batch_size", "repetitions", "folds", "eval_every",
                     "checkpoint_every"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.min_batch <= self.batch_size:
            raise ConfigError(f"min_batch must be in [1, batch_size], got {self.min_batch}")
        if self.pretrain_n < 0:
            raise ConfigError(f"pretrain_n must be >= 0, got {self.pretrain_n}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith(
            "cuda:"
        ):
            raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")

    @property
    def members(self) -> int:
        return self.repetitions * self.folds

    @property
    def epochs(self) -> int:
        return sum(int(e) for e, _ in self.schedule)

    @property
    def pretrain_epochs(self) -> int:
        return sum(int(e) for e, _ in self.pretrain_schedule)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training config fields {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class Preset:
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        model={}, train={"repetitions": 10, "folds": 5, "eval_every": 10, "checkpoint_every": 10}
    ),  # fmt: skip
    "quick": Preset(
        model={
            "width": 128,
            "encoder_layers": 4,
            "decoder_layers": 4,
            "photoz_layers": 5,
            "photoz_first_width": 128,
        },  # fmt: skip
        train={
            "schedule": ((100, 1e-3), (50, 1e-4), (20, 1e-5)),
            "batch_size": 200,
            "pretrain_schedule": ((8, 1e-3), (2, 1e-4)),
            "pretrain_n": 300_000,
            "repetitions": 1,
            "folds": 5,
        },
    ),
    # seconds, not minutes: for smoke tests and trying the app; not for science
    "smoke": Preset(
        model={
            "width": 32,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "photoz_layers": 2,
            "photoz_first_width": 32,
        },  # fmt: skip
        train={
            "schedule": ((3, 1e-3),),
            "batch_size": 100,
            "pretrain_schedule": ((1, 1e-3),),
            "pretrain_n": 2_000,
            "repetitions": 1,
            "folds": 2,
        },
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]
