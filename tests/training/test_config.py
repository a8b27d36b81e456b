"""Training configuration and presets (E20 Sec. 2.4, 3, 5): defaults, validation, presets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepz_core.errors import ConfigError
from deepz_core.nets.deepz import ModelConfig
from deepz_core.training.config import PRESETS, TrainConfig, preset


def test_defaults_are_the_paper_protocol() -> None:
    c = TrainConfig()
    assert c.schedule == ((100, 1e-3), (200, 1e-4), (200, 1e-5), (200, 1e-6))
    assert c.epochs == 700 and c.pretrain_epochs == 10
    assert (c.weight_decay, c.alpha, c.keep_one, c.min_batch) == (1e-4, 0.8, True, 10)
    assert c.outlier_fraction == 0.0  # no photometric outliers unless asked for (E20 App. B)
    assert c.members == c.repetitions * c.folds


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_configs(name) -> None:
    p = preset(name)
    train = TrainConfig.from_dict(p.train)
    model = ModelConfig.from_dict({"n_inputs": 46, **p.model, "members": train.members})
    assert train.epochs >= 1 and model.members == train.members


def test_paper_preset_has_10_by_5_networks_and_quick_is_smaller() -> None:
    paper = TrainConfig.from_dict(preset("paper").train)
    quick = TrainConfig.from_dict(preset("quick").train)
    assert (paper.repetitions, paper.folds, paper.members) == (10, 5, 50)
    assert quick.epochs < paper.epochs and quick.pretrain_n < paper.pretrain_n
    assert ModelConfig.from_dict({**preset("quick").model}).width < ModelConfig().width


def test_unknown_preset_names_it() -> None:
    with pytest.raises(ConfigError, match="preset.*'fast'"):
        preset("fast")


def test_dict_round_trip_through_json() -> None:
    c = TrainConfig(schedule=((3, 1e-3), (2, 1e-4)), folds=2, seed=7, alpha=0.7)
    back = TrainConfig.from_dict(json.loads(json.dumps(c.to_dict())))  # lists come back
    assert back == c and back.schedule == ((3, 1e-3), (2, 1e-4))


def test_numpy_values_become_plain_json_ready_values() -> None:
    c = TrainConfig(
        seed=np.int64(3),
        folds=np.int32(2),
        alpha=np.float32(0.5),
        schedule=[[np.int64(2), np.float64(1e-3)]],
    )
    text = json.dumps(c.to_dict())
    assert TrainConfig.from_dict(json.loads(text)) == c
    assert type(c.seed) is int and type(c.alpha) is float


def test_unknown_fields_are_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match="epochs") as err:
        TrainConfig.from_dict({"epochs": 3, "seed": 1})
    assert "known" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alpha", 0.0),
        ("alpha", 1.5),
        ("alpha", float("nan")),
        ("alpha", "high"),
        ("weight_decay", -1e-4),
        ("weight_decay", float("inf")),
        ("weight_decay", float("nan")),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("batch_size", "100"),
        ("batch_size", None),
        ("pretrain_batch_size", 0),
        ("repetitions", 0),
        ("folds", -2),
        ("folds", True),
        ("eval_every", 0),
        ("checkpoint_every", 0),
        ("min_batch", 0),
        ("min_batch", 500),
        ("pretrain_n", -1),
        ("seed", 1.5),
        ("seed", "zero"),
        ("keep_one", "yes"),
        ("randomize_coadds", 1),
        ("outlier_fraction", 1.0),
        ("outlier_fraction", -0.1),
        ("outlier_fraction", float("nan")),
        ("outlier_fraction", "0.1"),
        ("outlier_unit", "band"),
        ("outlier_amplitude", 0.0),
        ("outlier_amplitude", 11.0),
        ("device", "gpu"),
        ("device", 0),
        ("schedule", ()),
        ("schedule", ((10, 2.0),)),
        ("schedule", ((10, 0.0),)),
        ("schedule", ((2.5, 1e-3),)),
        ("schedule", ((-1, 1e-3),)),
        ("schedule", ((10,),)),
        ("schedule", (("ten", 1e-3),)),
        ("schedule", 5),
        ("pretrain_schedule", ((1, float("nan")),)),
    ],
)
def test_bad_values_raise_config_error_naming_field_and_value(field, value) -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({field: value})
    message = str(err.value)
    assert field in message and repr(value) in message, message


def test_device_names() -> None:
    for name in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert TrainConfig(device=name).device == name


def test_zero_epoch_pretraining_is_allowed() -> None:
    c = TrainConfig(pretrain_schedule=((0, 1e-3),))
    assert c.pretrain_epochs == 0


def test_outlier_fraction_round_trips_through_the_cli_run_config_and_resume(
    tmp_path, monkeypatch
) -> None:
    """--train-outliers -> config.json -> TrainConfig; a cancelled + resumed run ends bit-identical
    to an uninterrupted one (the outliers come from the checkpointed generator)."""
    from safetensors.torch import load_file

    from deepz_core.catalog.io import write_catalog
    from deepz_core.cli.main import main
    from deepz_core.rundir import RunDir
    from tests.synthetic import synthetic_catalog

    cat = tmp_path / "cat.fits"
    write_catalog(synthetic_catalog(120, 0, max_exposures=3), cat)

    def train(out: str, *extra: str) -> int:
        return main(
            [
                "train",
                "--catalog",
                str(cat),
                "--pretrain",
                "none",
                "--preset",
                "smoke",
                "--epochs",
                "3",
                "--folds",
                "2",
                "--device",
                "cpu",
                "--seed",
                "2",
                "--out",
                str(tmp_path / out),
                *extra,
            ]
        )

    assert train("straight", "--train-outliers", "0.25") == 0
    config = RunDir(tmp_path / "straight").config()
    assert TrainConfig.from_dict(config["train"]).outlier_fraction == 0.25
    assert TrainConfig.from_dict(config["train"]).outlier_unit == "galaxy"
    assert train("fluxes", "--train-outliers", "0.1", "--outlier-unit", "measurement") == 0
    assert RunDir(tmp_path / "fluxes").config()["train"]["outlier_unit"] == "measurement"
    original = RunDir.append_metrics

    def append(self: RunDir, row: dict) -> None:
        original(self, row)
        if row["epoch"] == 1:
            self.file("cancel").touch()  # the user cancels during epoch 1

    monkeypatch.setattr(RunDir, "append_metrics", append)
    assert train("resumed", "--train-outliers", "0.25") == 3  # cancelled
    monkeypatch.setattr(RunDir, "append_metrics", original)
    assert main(["resume", "--run", str(tmp_path / "resumed")]) == 0
    assert train("clean") == 0  # no outliers: a different training
    weights = {
        k: load_file(str(tmp_path / k / "model.safetensors"))
        for k in ("straight", "resumed", "clean")
    }
    assert all(torch.equal(v, weights["resumed"][k]) for k, v in weights["straight"].items())
    assert not all(torch.equal(v, weights["clean"][k]) for k, v in weights["straight"].items())
    assert RunDir(tmp_path / "clean").config()["train"]["outlier_fraction"] == 0.0


# ---------------------------------------------------------------- issue 19: config.json on load


def _stored_run(tmp_path, edit):
    from deepz_core.rundir import RunDir
    from deepz_core.training.config import RunConfig

    config = RunConfig(catalog="/data/cat.fits").to_dict()
    edit(config)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.file("config.json").write_text(json.dumps(config))
    return run


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda c: c["pz"].update(dz=1e-9), "dz must be in"),
        (lambda c: c["pz"].update(bins=3), "unknown p\\(z\\) config fields \\['bins'\\]"),
        (lambda c: c.update(colour="red"), "unknown run config fields \\['colour'\\]"),
        (lambda c: c["train"].update(repetitions="ten"), "repetitions: expected an integer"),
        (lambda c: c["model"].update(width=200_000), "width: expected an integer"),
        (lambda c: c.pop("catalog"), "missing fields \\['catalog'\\]"),
    ],
)
def test_a_damaged_or_edited_config_json_is_named_on_load(tmp_path, edit, says) -> None:
    from deepz_core.training.config import load_run_config, run_pz_config

    run = _stored_run(tmp_path, edit)
    for load in (load_run_config, run_pz_config):
        with pytest.raises(ConfigError, match=says) as err:
            load(run)
        assert str(err.value).startswith(str(run.file("config.json")))


def test_an_ensemble_too_big_to_allocate_is_refused_before_a_run_exists() -> None:
    from deepz_core.training.config import RunConfig

    with pytest.raises(ConfigError, match="weights, more than"):
        RunConfig(
            catalog="/data/cat.fits",
            model={"width": 4096, "photoz_layers": 64},
            train=TrainConfig(repetitions=100, folds=10),
        )


def test_a_run_combined_with_the_template_fit_needs_folds_and_a_known_set() -> None:
    """The combination is fitted on out-of-fold galaxies: one fold trains the whole run and
    fails only at the end, so the config refuses it up front (and names the field)."""
    from deepz_core.training.config import RunConfig, TrainConfig

    with pytest.raises(ConfigError, match="templates.*folds >= 2, got 1"):
        RunConfig(catalog="c.fits", train=TrainConfig(folds=1), templates="bcnz2")
    with pytest.raises(ConfigError, match="templates"):
        RunConfig(catalog="c.fits", templates="nosuch")
    assert RunConfig(catalog="c.fits", templates="kcorrect").templates == "kcorrect"
    assert RunConfig.from_dict(RunConfig(catalog="c.fits").to_dict()).templates is None
