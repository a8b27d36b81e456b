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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from deepz_core.configs import (
    Config,
    check_bool,
    check_choice,
    check_int,
    check_probability,
    check_real,
    is_real,
)
from deepz_core.errors import ConfigError
from deepz_core.nets.deepz import ModelConfig
from deepz_core.pz.products import PzConfig
from deepz_core.rundir import RunDir
from deepz_core.sed.template_sets import set_info

Schedule = tuple[tuple[int, float], ...]  # (epochs, learning rate) stages
OUTLIER_UNITS = ("galaxy", "measurement")  # what outlier_fraction counts (E20 App. B is ambiguous)
MAX_EPOCHS = 100_000  # per stage: far above any schedule anyone means


def check_schedule(name: str, schedule: Any) -> Schedule:
    """The schedule as a tuple of (epochs, lr) tuples; ConfigError naming ``name`` if malformed."""
    try:
        stages = tuple(tuple(s) for s in schedule)
        ok = len(stages) > 0 and all(
            len(s) == 2
            and is_real(s[0])
            and is_real(s[1])
            and int(s[0]) == s[0]
            and 0 <= s[0] <= MAX_EPOCHS
            and 0 < s[1] < 1
            for s in stages
        )
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be (epochs >= 0, 0 < lr < 1) stages, got {schedule!r}")
    return tuple((int(e), float(lr)) for e, lr in stages)  # plain JSON-ready values


# (low, high) of the integer fields; highs refuse sizes no machine could run (1,000 networks)
_INT_BOUNDS = {
    "batch_size": (1, 1_000_000),
    "min_batch": (1, 1_000_000),
    "pretrain_n": (0, 100_000_000),
    "pretrain_batch_size": (1, 1_000_000),
    "repetitions": (1, 100),
    "folds": (1, 100),
    "eval_every": (1, None),
    "checkpoint_every": (1, None),
    "seed": (None, None),
}


@dataclass(frozen=True)
class TrainConfig(Config):
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

    CONFIG_NAME: ClassVar[str] = "training"

    def __post_init__(self) -> None:
        self._set("schedule", check_schedule("schedule", self.schedule))
        self._set("pretrain_schedule", check_schedule("pretrain_schedule", self.pretrain_schedule))
        for name, (low, high) in _INT_BOUNDS.items():
            self._set(name, check_int(name, getattr(self, name), low, high))
        self._set("weight_decay", check_real("weight_decay", self.weight_decay, 0.0))
        self._set("alpha", check_real("alpha", self.alpha, 0.0, 1.0, low_open=True))
        self._set("outlier_fraction", check_probability("outlier_fraction", self.outlier_fraction))
        self._set(
            "outlier_amplitude",
            check_real("outlier_amplitude", self.outlier_amplitude, 0.0, 10.0, low_open=True),
        )
        for name in ("keep_one", "randomize_coadds"):
            self._set(name, check_bool(name, getattr(self, name)))
        check_choice("outlier_unit", self.outlier_unit, OUTLIER_UNITS)
        if self.min_batch > self.batch_size:
            raise ConfigError(
                f"min_batch (the smallest last batch an epoch keeps) must be <= batch_size "
                f"({self.batch_size}), got {self.min_batch}"
            )
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
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


@dataclass(frozen=True)
class Preset:
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        model={}, train={"repetitions": 10, "folds": 5, "eval_every": 10, "checkpoint_every": 10}
    ),
    "quick": Preset(
        model={
            "width": 128,
            "encoder_layers": 4,
            "decoder_layers": 4,
            "photoz_layers": 5,
            "photoz_first_width": 128,
        },
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
        },
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
    """The training preset ``name`` (PRESETS); ConfigError otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]


PRETRAIN_CHOICES = ("auto", "none")  # or the path of a simulation file


@dataclass(frozen=True)
class RunConfig(Config):
    """A training run, as its ``config.json`` holds it (``deepz_core.jobs.training_run``).

    ``catalog``/``exposures``: absolute paths; ``pretrain``: "auto" (an SPS simulation through the
    catalogue's bands), "none" or a simulation file; ``preset``: the preset the run started from;
    ``ref_band``: None picks subaru_i, else a band named *_i; ``model``: ModelConfig fields that
    differ from its defaults (``n_inputs`` and ``members`` follow from the catalogue and
    ``train``); ``train``, ``pz``: complete configs. A run written before ``input_norm`` existed
    reads as E20's input BatchNorm (``ModelConfig.from_stored``). ``calibrate``: fit the PIT
    calibration on the out-of-fold predictions and apply it (``inference.calibrate``; beyond E20).
    ``templates``: a template set (bcnz2, kcorrect) to combine the networks with the template fit
    after training (``deepz_core.hybrid``; beyond E20), None for the networks alone.
    """

    catalog: str
    exposures: str | None = None
    pretrain: str = "auto"
    preset: str = "quick"
    ref_band: str | None = None
    model: Mapping[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    pz: PzConfig = field(default_factory=PzConfig)
    calibrate: bool = True
    templates: str | None = None

    CONFIG_NAME: ClassVar[str] = "run"
    NESTED: ClassVar[dict[str, type[Config]]] = {"train": TrainConfig, "pz": PzConfig}

    def __post_init__(self) -> None:
        for name in ("catalog", "pretrain", "preset"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(
                    f"{name}: expected a non-empty string, got {getattr(self, name)!r}"
                )
        for name in ("exposures", "ref_band"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name}: expected a string or null, got {getattr(self, name)!r}")
        check_choice("preset", self.preset, tuple(PRESETS))
        self._set("calibrate", check_bool("calibrate", self.calibrate))
        if self.templates is not None:
            set_info(self.templates, "templates")  # ConfigError naming the field for a bad set
        if not isinstance(self.model, Mapping):
            raise ConfigError(f"model: expected a mapping of model fields, got {self.model!r}")
        for name, cls in self.NESTED.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"{name}: expected a {cls.CONFIG_NAME} config, got {getattr(self, name)!r}"
                )
        if self.templates is not None and self.train.folds < 2:
            raise ConfigError(
                "templates: the combination with the template fit is fitted on out-of-fold "
                f"galaxies and needs folds >= 2, got {self.train.folds}"
            )
        # bad model fields, and networks too big for the ensemble's size, fail here
        self.model_config(2, self.train.members)

    def model_config(self, n_inputs: int, members: int) -> ModelConfig:
        """The ModelConfig of this run's networks for ``n_inputs`` bands and ``members``."""
        return ModelConfig.from_stored({**self.model, "n_inputs": n_inputs, "members": members})

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``config.json`` (tuples as lists, as JSON reads them back)."""
        return json.loads(json.dumps(super().to_dict()))

    def full(self) -> dict[str, Any]:
        """``to_dict`` with ``model`` spelled out field by field, defaults filled in: a run written
        before a setting existed compares equal to one that states its default."""
        return {**self.to_dict(), "model": self.model_config(2, 1).to_dict()}

    @property
    def pretrains(self) -> bool:
        return self.pretrain != "none" and self.train.pretrain_epochs > 0


def load_run_config(run: RunDir) -> RunConfig:
    """The run's ``config.json``, checked by the same typed configs the CLI uses: a damaged or
    edited file (not JSON, unknown keys, a p(z) grid of 1e9 points, a width of 200,000) raises a
    ConfigError naming it and the field."""
    try:
        return RunConfig.from_dict(run.config())
    except ConfigError as exc:
        path = str(run.file("config.json"))
        raise ConfigError(str(exc) if str(exc).startswith(path) else f"{path}: {exc}") from None


def run_pz_config(run: RunDir) -> PzConfig:
    """The p(z) grid of a run: a training run's checked ``config.json`` (``load_run_config``); a
    template-fit run's ``pz`` entry, if any, checked the same way."""
    raw = run.config()
    if raw.get("kind", "deepz") == "deepz":
        return load_run_config(run).pz
    try:
        return PzConfig.from_dict(raw.get("pz") or {})
    except ConfigError as exc:
        raise ConfigError(f"{run.file('config.json')}: {exc}") from None
