"""The DEEPZ ensemble: config, shapes, gradients, member independence, save/load (E20 Fig. 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from deepz_core.errors import ConfigError
from deepz_core.nets.deepz import DeepzModel, ModelConfig, load_model, load_model_json, save_model
from deepz_core.pz.mixture import GaussianMixture

E, N, F = 3, 16, 8
SMALL = dict(
    n_inputs=F,
    n_latent=3,
    encoder_layers=4,
    decoder_layers=4,
    width=16,
    photoz_layers=4,
    photoz_first_width=24,
    n_components=3,
    members=E,
)


def _model(**overrides: Any) -> DeepzModel:
    return DeepzModel(ModelConfig(**{**SMALL, **overrides}))


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = 1.0 + 0.3 * torch.randn(E, N, F)  # (E, N, F) flux ratios
    z = torch.rand(E, N)  # (E, N)
    return x, z, torch.full((E, N, F), 0.1)


def test_config_defaults_are_the_paper_values() -> None:
    c = ModelConfig()
    assert (c.n_inputs, c.n_latent, c.width, c.n_components) == (46, 10, 250, 10)
    assert (c.encoder_layers, c.decoder_layers, c.photoz_first_width) == (10, 10, 400)
    assert (c.ae_dropout, c.pz_dropout, c.undropped_last) == (0.02, 0.01, 3)
    assert c.use_autoencoder and c.members == 1 and c.sigma_floor > 0
    assert ModelConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_inputs", 0),
        ("width", 2.5),
        ("members", True),
        ("encoder_layers", -1),
        ("ae_dropout", 1.0),
        ("pz_dropout", -0.1),
        ("sigma_floor", 0.0),
        ("sigma_floor", float("nan")),
        ("use_autoencoder", "yes"),
        ("n_components", "10"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        ModelConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="hidden_width"):
        ModelConfig.from_dict({"hidden_width": 100})


def test_output_shapes() -> None:
    model = _model().eval()
    x, _, _ = _batch()
    d = model(x)
    assert isinstance(d, GaussianMixture)
    assert d.batch_shape == (E, N)
    assert d.pdf_grid(torch.linspace(0, 2, 21)).shape == (E, N, 21)
    assert d.cdf(torch.zeros(E, N)).shape == (E, N) and d.mean.shape == (E, N)
    assert model.encode(x).shape == (E, N, 3)
    assert model.reconstruct(x).shape == (E, N, F)
    assert model(x[0]).batch_shape == (E, N)  # (N, F) is shared by all members
    with pytest.raises(ConfigError, match="x: expected shape"):
        model(torch.randn(E, N, F + 1))


def test_pretrain_loss_reaches_every_parameter() -> None:
    model = _model().train()
    model.pretrain_loss(*_batch()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_finetune_loss_leaves_decoder_without_gradient() -> None:
    model = _model().train()
    x, z, _ = _batch()
    model.mdn_loss(x, z).backward()
    for name, p in model.named_parameters():
        if name.startswith("decoder."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_members_are_independent() -> None:
    model = _model().train()
    x, z, err = _batch()
    nll, ae = model.pretrain_losses(x, z, err)
    assert nll.shape == ae.shape == (E,)
    (nll[1] + ae[1]).backward()  # member 1's loss only
    for name, p in model.named_parameters():
        assert float(p.grad[1].abs().sum()) > 0, name
        assert float(p.grad[0].abs().sum()) == 0 and float(p.grad[2].abs().sum()) == 0, name


def test_batched_training_step_equals_each_member_alone() -> None:
    model = _model(ae_dropout=0.0, pz_dropout=0.0).train()
    x, z, _ = _batch()
    alone_models = [model.member(i) for i in range(E)]  # copies before any running-stat update
    batched = model(x).log_prob(z)  # (E, N), train-mode batch statistics per member
    for i, alone in enumerate(alone_models):
        assert alone.config.members == 1 and alone.training
        torch.testing.assert_close(alone(x[i : i + 1]).log_prob(z[i : i + 1])[0], batched[i])
        torch.testing.assert_close(
            alone.photoz.input_norm.running_mean[0], model.photoz.input_norm.running_mean[i]
        )


def test_batched_training_step_equals_each_member_alone_with_input_batchnorm() -> None:
    model = _model(ae_dropout=0.0, pz_dropout=0.0, input_norm="batchnorm").train()
    x, z, _ = _batch()
    alone_models = [model.member(i) for i in range(E)]
    batched = model(x).log_prob(z)  # (E, N)
    for i, alone in enumerate(alone_models):
        torch.testing.assert_close(alone(x[i : i + 1]).log_prob(z[i : i + 1])[0], batched[i])
        torch.testing.assert_close(
            alone.photoz.input_norm.running_mean[0], model.photoz.input_norm.running_mean[i]
        )


def test_from_members_rebuilds_the_ensemble() -> None:
    model = _model().eval()
    x, z, _ = _batch()
    rebuilt = DeepzModel.from_members([model.member(i) for i in range(E)])
    assert not rebuilt.training
    torch.testing.assert_close(rebuilt(x).log_prob(z), model(x).log_prob(z))
    with pytest.raises(ConfigError, match="models"):
        DeepzModel.from_members([model.member(0), _model(width=8).member(0)])


def test_eval_is_deterministic_and_train_is_not() -> None:
    model = _model(ae_dropout=0.3, pz_dropout=0.3)
    x, z, _ = _batch()
    model.train()
    a, b = model(x).log_prob(z), model(x).log_prob(z)
    assert not torch.allclose(a, b)  # fresh dropout masks
    model.eval()
    c, d = model(x).log_prob(z), model(x).log_prob(z)
    torch.testing.assert_close(c, d)
    assert not torch.allclose(a, c)  # running statistics instead of batch statistics


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _model().train()
    x, z, _ = _batch()
    for _ in range(3):  # move BatchNorm running statistics away from their initial values
        model(x)
    model.eval()
    bands = [f"b{i}" for i in range(F)]
    json_path = save_model(model, tmp_path / "run", metadata={"bands": bands})
    assert json_path.name == "model.json" and (tmp_path / "run" / "model.safetensors").exists()
    loaded = load_model(tmp_path / "run")
    assert not loaded.training and loaded.config == model.config
    torch.testing.assert_close(loaded(x).log_prob(z), model(x).log_prob(z), rtol=0, atol=0)
    torch.testing.assert_close(
        loaded.encoder.input_norm.running_var, model.encoder.input_norm.running_var
    )
    assert load_model_json(tmp_path / "run")["metadata"] == {"bands": bands}


def test_load_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.json"):
        load_model(tmp_path)
    save_model(_model(), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="model.safetensors"):
        load_model(tmp_path)


def test_ablation_without_autoencoder() -> None:
    model = _model(use_autoencoder=False).train()
    assert model.encoder is None and model.decoder is None
    assert model.photoz.input_norm.num_features == F  # ratios only, no latent features
    x, z, err = _batch()
    nll, ae = model.pretrain_losses(x, z, err)
    assert float(ae.abs().sum()) == 0.0
    (nll + ae).sum().backward()
    with pytest.raises(ConfigError, match="use_autoencoder"):
        model.encode(x)


def test_robust_scaling_uses_the_stored_statistics_and_clips() -> None:
    model = _model(input_clip=5.0).eval()
    loc, scale = torch.linspace(0.5, 1.5, F), torch.linspace(0.1, 0.8, F)
    model.set_input_stats(loc, scale)
    x = loc + scale * torch.tensor([[0.0] * F, [2.0] * F, [1e6] * F])  # (3, F)
    scaled = model._scaled(model._members_view(x))  # (E, 3, F)
    torch.testing.assert_close(scaled[:, 0], torch.zeros(E, F))
    torch.testing.assert_close(scaled[:, 1], torch.full((E, F), 2.0))
    torch.testing.assert_close(scaled[:, 2], torch.full((E, F), 5.0))  # clipped
    torch.testing.assert_close(model.input_stats()[0], loc)


def test_a_junk_galaxy_barely_moves_the_others_normalised_inputs() -> None:
    """Robust mode: an extreme galaxy in a training batch is clipped, and the input layer's batch
    median and IQR move by about one rank, where a BatchNorm's variance explodes."""
    torch.manual_seed(0)
    x = 1.0 + 0.3 * torch.randn(1, 200, F)
    junk = x.clone()
    junk[:, 0] = 1e4  # one galaxy with ratios of 10,000 (a reference flux near zero)
    for norm, tolerance in (("robust", 0.2), ("batchnorm", None)):
        model = _model(members=1, input_norm=norm).train()
        model.set_input_stats(torch.ones(F), torch.full((F,), 0.3))
        first = model.encoder.input_norm
        clean = first(model._scaled(x))[:, 1:]
        dirty = first(model._scaled(junk))[:, 1:]
        change = float((dirty - clean).detach().abs().max())
        if tolerance is None:  # E20's input BatchNorm squashes the 199 others
            assert float(dirty.detach().std()) < 0.2 * float(clean.detach().std())
        else:
            assert change < tolerance, change
    assert float(model._scaled(junk).abs().max()) <= 1e4  # batchnorm mode: raw ratios


def test_models_saved_before_input_norm_load_as_batchnorm(tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    model = _model(input_norm="batchnorm").eval()
    save_model(model, tmp_path)
    doc = json.loads((tmp_path / "model.json").read_text())
    for key in ("input_norm", "input_clip"):
        del doc["config"][key]
    (tmp_path / "model.json").write_text(json.dumps(doc))
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("input_")},
        str(tmp_path / "model.safetensors"),
    )
    loaded = load_model(tmp_path)
    assert loaded.config.input_norm == "batchnorm"
    assert torch.isinf(loaded.input_stats()[1]).all()  # no population: nothing is beyond it
    x, z, _ = _batch()
    torch.testing.assert_close(loaded(x).log_prob(z), model(x).log_prob(z), rtol=0, atol=0)


# ---------------------------------------------------------------- issue 19: trusted files


def test_sizes_no_machine_could_allocate_are_refused() -> None:
    with pytest.raises(ConfigError, match="width"):
        ModelConfig(width=200_000)
    with pytest.raises(ConfigError, match="weights, more than the 1,000,000,000"):
        ModelConfig(width=4096, photoz_layers=64, members=100)
    assert ModelConfig(members=50).n_weights < 200_000_000  # E20's 50 networks fit easily


def test_n_weights_counts_the_linear_layers() -> None:
    config = ModelConfig(n_inputs=7, members=3, width=16, encoder_layers=2, photoz_layers=2)
    model = DeepzModel(config)
    linear = sum(p.numel() for n, p in model.named_parameters() if "norm" not in n)
    assert config.n_weights == pytest.approx(linear, rel=0.1)  # an estimate, for the budget


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda d: d.pop("config"), "no 'config' object"),
        (lambda d: d["config"].update(width=320_000), "width"),
        (lambda d: d["metadata"].update(bands="NB455"), "'metadata.bands' must be a list"),
        (lambda d: d["metadata"].update(bands=["a", "a", "b", "c"]), "unique band names"),
        (lambda d: d["metadata"].update(bands=["a", "b"]), "names 2 bands, the networks read 4"),
        (lambda d: d["metadata"].update(ref_band="z"), "'metadata.ref_band' must be one of"),
        (lambda d: d.update(metadata=[1]), "'metadata' must be an object"),
    ],
)
def test_damaged_model_descriptions_are_named(tmp_path: Path, edit, says) -> None:
    import json

    model = _model(n_inputs=4)
    save_model(model, tmp_path, metadata={"bands": ["a", "b", "c", "d"], "ref_band": "d"})
    doc = json.loads((tmp_path / "model.json").read_text())
    edit(doc)
    (tmp_path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=says) as err:
        load_model(tmp_path)
    assert "model.json" in str(err.value)


def test_a_model_reading_the_reference_magnitude_loads(tmp_path: Path) -> None:
    """Four bands and the reference magnitude: five inputs, and a valid description (found when
    the run-folder checks met the magnitude input: every new run was refused as damaged)."""
    model = _model(n_inputs=5, magnitude_input=True)
    save_model(model, tmp_path, metadata={"bands": ["a", "b", "c", "d"], "ref_band": "d"})
    assert load_model(tmp_path).config.magnitude_input
