"""Photo-z classifier with adaptive label smoothing (E20 App. E): binned p(z), model, loss, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepz_core.catalog.features import build_features
from deepz_core.errors import ConfigError
from deepz_core.nets.classifier import (
    BinnedRedshift,
    ClassifierConfig,
    DeepzClassifier,
    combine_binned,
    load_classifier,
    save_classifier,
)
from deepz_core.pz.metrics import point_metrics
from deepz_core.training.batches import SimulationBatches
from deepz_core.training.classifier import classifier_products, train_classifier
from deepz_core.training.config import PRESETS, TrainConfig
from deepz_core.training.splits import make_splits
from tests.synthetic import synthetic_catalog

pytestmark = pytest.mark.usefixtures("one_thread")

EDGES = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64)
PROBS = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
TINY = dict(
    n_inputs=5,
    width=16,
    photoz_layers=2,
    photoz_first_width=8,
    undropped_last=1,
    bin_width=0.01,
    pz_dropout=0.1,
)


def _hand() -> BinnedRedshift:
    return BinnedRedshift(EDGES, torch.log(PROBS))  # batch (2,), unequal bin widths


def _gaussian(centre: float, sigma: float, edges: torch.Tensor) -> BinnedRedshift:
    """A binned N(centre, sigma^2), batch shape ()."""
    c = 0.5 * (edges[1:] + edges[:-1])
    return BinnedRedshift(edges, -0.5 * ((c - centre) / sigma) ** 2)


# --- BinnedRedshift ------------------------------------------------------------------------------


def test_binned_cdf_log_prob_and_moments_match_hand_computed_values() -> None:
    d = _hand()
    assert d.batch_shape == (2,) and d.event_shape == ()
    torch.testing.assert_close(d.probs, PROBS)
    # cdf: bins before + the bin's mass x the fraction of its width
    z = torch.tensor([[1.5, 3.0], [0.25, 1.0], [-1.0, 9.0], [4.0, 4.0]], dtype=torch.float64)
    expected = [[0.2 + 0.3 * 0.5, 1.0], [0.05, 0.5], [0.0, 1.0], [1.0, 1.0]]
    torch.testing.assert_close(d.cdf(z), torch.tensor(expected, dtype=torch.float64))
    # density = probs / width; -inf outside [0, 4]; the last edge belongs to the last bin
    z = torch.tensor([[0.5, 1.5], [3.0, 3.0], [4.0, 0.0], [4.5, -0.1]], dtype=torch.float64)
    expected = [[0.2, 0.5], [0.25, 0.0], [0.25, 0.5], [0.0, 0.0]]
    torch.testing.assert_close(d.log_prob(z).exp(), torch.tensor(expected, dtype=torch.float64))
    assert torch.isinf(d.log_prob(torch.tensor([5.0, -1.0], dtype=torch.float64))).all()
    # moments of the piecewise-uniform density
    torch.testing.assert_close(d.mean, torch.tensor([2.05, 1.0], dtype=torch.float64))
    second = 0.2 * (0.25 + 1 / 12) + 0.3 * (2.25 + 1 / 12) + 0.5 * (9 + 4 / 12)
    torch.testing.assert_close(d.variance[0], torch.tensor(second - 2.05**2, dtype=torch.float64))
    torch.testing.assert_close(d.mode, torch.tensor([3.0, 0.5], dtype=torch.float64))


def test_binned_icdf_inverts_the_cdf_and_sigma68_of_a_gaussian() -> None:
    d = _hand()
    torch.testing.assert_close(d.icdf(0.35), torch.tensor([1.5, 0.7], dtype=torch.float64))
    q = torch.tensor([[0.1, 0.6], [0.9, 0.99]], dtype=torch.float64)
    torch.testing.assert_close(d.cdf(d.icdf(q)), q)
    edges = torch.arange(0, 1501, dtype=torch.float64) * 0.001
    for sigma in (0.005, 0.05):  # a binned Gaussian: sigma68 = sigma up to the binning
        g = _gaussian(0.7, sigma, edges)
        assert float(g.sigma68()) == pytest.approx(sigma, rel=0.02)
        assert float(g.icdf(0.5)) == pytest.approx(0.7, abs=1e-4)


def test_binned_cdf_is_the_integral_of_the_density(rng) -> None:
    edges = torch.as_tensor(np.sort(rng.uniform(0, 2, 12)), dtype=torch.float64)
    d = BinnedRedshift(edges, torch.as_tensor(rng.normal(size=(3, 11))))
    z = torch.linspace(float(edges[0]), float(edges[-1]), 20001, dtype=torch.float64)
    pdf = d.log_prob(z[:, None]).exp()  # (G, 3)
    integral = torch.cumulative_trapezoid(pdf, z, dim=0)  # (G - 1, 3)
    torch.testing.assert_close(integral, d.cdf(z[1:, None]), atol=2e-3, rtol=0)
    torch.testing.assert_close(d.cdf(edges[-1]), torch.ones(3, dtype=torch.float64))


def test_binned_samples_follow_the_bin_probabilities() -> None:
    d = _hand()
    s = d.sample((40_000,))  # (S, 2)
    assert s.shape == (40_000, 2)
    frac = torch.stack(
        [
            ((s >= lo) & (s < hi)).double().mean(0)
            for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True)
        ],
        -1,
    )
    torch.testing.assert_close(frac, PROBS, atol=0.015, rtol=0)
    assert abs(float(s[:, 0].mean()) - 2.05) < 0.03
    assert d.expand((4, 2)).batch_shape == (4, 2)


def test_binned_rejects_mismatched_or_unsorted_edges() -> None:
    with pytest.raises(ConfigError, match="logits"):
        BinnedRedshift(EDGES, torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="edges"):
        BinnedRedshift(torch.tensor([0.0, 2.0, 1.0, 3.0]), torch.zeros(3))


def test_smoothed_targets_are_binned_gaussians_of_the_label() -> None:
    edges = torch.arange(0, 151, dtype=torch.float64) * 0.01
    d = BinnedRedshift(edges, torch.zeros(2, 150, dtype=torch.float64))
    z = torch.tensor([0.7234, 0.3051], dtype=torch.float64)
    t = d.smoothed_targets(z, torch.tensor([1e-9, 0.05], dtype=torch.float64))
    torch.testing.assert_close(t.sum(-1), torch.ones(2, dtype=torch.float64))
    assert int(t[0].argmax()) == 72 and float(t[0, 72]) == pytest.approx(1.0)  # no smoothing
    c = d.centers
    mean = (t[1] * c).sum()
    std = ((t[1] * (c - mean) ** 2).sum() - 0.01**2 / 12).sqrt()  # minus the binning variance
    assert float(mean) == pytest.approx(0.3051, abs=1e-4) and float(std) == pytest.approx(
        0.05, rel=0.01
    )
    high = d.smoothed_targets(torch.tensor([3.0, 3.0], dtype=torch.float64), torch.full((2,), 1e-9))
    assert float(high[0, -1]) == pytest.approx(1.0)  # beyond z_max: the last bin


def test_windowed_smoothed_cross_entropy_equals_the_dense_one(rng) -> None:
    edges = torch.arange(0, 1501, dtype=torch.float64) * 0.001
    logits = torch.as_tensor(rng.normal(size=(2, 50, 1500)))
    d = BinnedRedshift(edges, logits)
    z = torch.as_tensor(rng.uniform(-0.1, 1.6, (2, 50)))  # some beyond the support
    z[0, :3] = torch.tensor([0.0, 1.5, 0.7005], dtype=torch.float64)  # edges and a bin centre
    for scale in (1e-6, 1e-3, 0.02, 0.3):  # the window grows with the widest sigma
        sigma = torch.as_tensor(rng.uniform(0.2, 1.0, (2, 50))) * scale
        dense = -(d.smoothed_targets(z, sigma) * d.logits).sum(-1)
        torch.testing.assert_close(d.smoothed_cross_entropy(z, sigma), dense, rtol=1e-7, atol=1e-7)


def test_combine_binned_averages_the_allowed_members() -> None:
    logits = torch.randn(3, 4, 6, dtype=torch.float64)
    d = BinnedRedshift(torch.linspace(0, 1, 7, dtype=torch.float64), logits)
    mask = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)
    out = combine_binned(d, mask)
    assert out.batch_shape == (4,)
    p = torch.softmax(logits, -1)
    expected = (p * mask[..., None]).sum(0) / mask.sum(0)[:, None]
    torch.testing.assert_close(out.probs, expected)
    torch.testing.assert_close(combine_binned(d).probs, p.mean(0))
    with pytest.raises(ConfigError, match="member_mask"):
        combine_binned(d, torch.zeros(3, 4, dtype=torch.bool))


# --- config --------------------------------------------------------------------------------------


def test_config_defaults_are_the_paper_bins_and_smoothing() -> None:
    c = ClassifierConfig()
    assert (c.n_bins, c.smoothing) == (1500, 0.15)
    e = c.edges()
    assert e.dtype == torch.float64 and float(e[0]) == 0.0 and float(e[-1]) == pytest.approx(1.5)
    assert float((e[1:] - e[:-1]).std()) < 1e-12
    for name, p in PRESETS.items():  # the presets' network overrides apply unchanged
        assert ClassifierConfig.from_dict(p.model).width == p.model.get("width", 250), name
    assert ClassifierConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bin_width", 0.0),
        ("bin_width", 0.0007),
        ("bin_width", 1.0),
        ("z_max", 0.0),
        ("z_min", float("nan")),
        ("smoothing", -0.1),
        ("smoothing", "0.15"),
        ("pz_dropout", 1.0),
        ("width", 0),
        ("members", 2.0),
        ("use_autoencoder", 1),
        ("n_inputs", True),
    ],
)
def test_config_bad_values_raise_naming_field_and_value(field, value) -> None:
    with pytest.raises(ConfigError) as err:
        ClassifierConfig.from_dict({field: value})
    assert field in str(err.value) and repr(value) in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="n_components"):
        ClassifierConfig.from_dict({"n_components": 3})


# --- model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_autoencoder", [False, True])
def test_model_shapes_and_every_parameter_gets_a_gradient(use_autoencoder) -> None:
    cfg = ClassifierConfig(
        **TINY,
        members=3,
        use_autoencoder=use_autoencoder,
        n_latent=3,
        encoder_layers=1,
        decoder_layers=1,
    )
    model = DeepzClassifier(cfg)
    x = torch.randn(3, 20, 5)
    d = model(x)
    assert d.batch_shape == (3, 20) and d.probs.shape == (3, 20, 150)
    assert model(x[0]).batch_shape == (3, 20)  # (N, F): shared by all members
    z = torch.rand(3, 20) * 1.4
    loss = (
        model.pretrain_loss(x, z, torch.full_like(x, 0.1)) if use_autoencoder else model.loss(x, z)
    )
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    with pytest.raises(ConfigError, match="x: expected shape"):
        model(torch.randn(2, 20, 5))


def test_members_train_independently() -> None:
    model = DeepzClassifier(ClassifierConfig(**TINY, members=2))
    x, z = torch.randn(2, 30, 5), torch.rand(2, 30)
    model.losses(x, z)[0].backward()  # member 0's loss only
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(float(g[1].abs().sum()) == 0 for g in grads)  # nothing reaches member 1
    assert any(float(g[0].abs().sum()) > 0 for g in grads)


def test_eval_is_deterministic_and_train_mode_is_not() -> None:
    model = DeepzClassifier(ClassifierConfig(**TINY, members=2))
    x = torch.randn(2, 50, 5)
    a, b = model(x).logits, model(x).logits  # dropout + batch statistics
    assert not torch.equal(a, b)
    model.eval()
    torch.testing.assert_close(model(x).logits, model(x).logits, rtol=0, atol=0)
    torch.testing.assert_close(model(x[:, :10]).logits, model(x).logits[:, :10])  # no batch stats


def test_save_load_round_trip(tmp_path) -> None:
    model = DeepzClassifier(ClassifierConfig(**TINY, members=2, smoothing=0.2))
    model.train()
    model.loss(torch.randn(2, 40, 5), torch.rand(2, 40)).backward()  # update BatchNorm stats
    model.eval()
    save_classifier(model, tmp_path, metadata={"bands": ["a"]})
    back = load_classifier(tmp_path)
    assert back.config == model.config and not back.training
    x = torch.randn(17, 5)
    torch.testing.assert_close(back(x).logits, model(x).logits, rtol=0, atol=0)
    (tmp_path / "classifier.json").write_text('{"format": "deepz.model"}')
    with pytest.raises(ConfigError, match="not a deepz classifier"):
        load_classifier(tmp_path)


# --- loss: adaptive label smoothing --------------------------------------------------------------


def _target_from_gradient(model: DeepzClassifier, d_logits: torch.Tensor, z) -> torch.Tensor:
    """The training target t, from d CE / d logits = softmax(logits) - t."""
    logits = d_logits.clone().requires_grad_(True)
    d = BinnedRedshift(model.edges, logits)
    model.cross_entropy(d, torch.as_tensor(z, dtype=torch.float32)).sum().backward()
    return torch.softmax(logits, -1).detach() - logits.grad


def test_label_smoothing_width_follows_the_predicted_pz_width() -> None:
    model = DeepzClassifier(ClassifierConfig(**{**TINY, "bin_width": 0.001}, members=1))
    edges = model.edges.double()
    for width in (0.01, 0.05, 0.2):  # narrow (bright) to broad (faint) p(z)
        d = _gaussian(0.6, width, edges)
        logits = d.logits.float()[None, None]  # (E=1, N=1, G)
        t = _target_from_gradient(model, logits, [[0.7]])[0, 0].double()
        c = d.centers
        mean = (t * c).sum()
        std = ((t * (c - mean) ** 2).sum() - 0.001**2 / 12).clamp_min(0).sqrt()
        assert float(mean) == pytest.approx(0.7, abs=2e-4)  # centred on the label
        assert float(std) == pytest.approx(0.15 * width, rel=0.05)  # 15% of the p(z) width


def test_zero_smoothing_is_plain_cross_entropy() -> None:
    model = DeepzClassifier(ClassifierConfig(**TINY, members=2, smoothing=0.0))
    x, z = torch.randn(2, 30, 5), torch.rand(2, 30) * 1.5
    z[0, 0] = 1.5  # the upper edge: the last bin
    z[1, 0] = 2.7  # beyond z_max: the last bin
    model.eval()
    d = model(x)
    k = torch.clamp((z / 0.01).floor().long(), max=149)
    expected = F.cross_entropy(d.logits.reshape(-1, 150), k.reshape(-1), reduction="none")
    torch.testing.assert_close(model.cross_entropy(d, z), expected.reshape(2, 30))
    w = torch.zeros(2, 30)
    w[:, :10] = 1.0
    torch.testing.assert_close(model.losses(x, z, w), expected.reshape(2, 30)[:, :10].mean(-1))
    # continuous NLL = discrete cross-entropy + log(bin width)
    nll = -d.log_prob(z.clamp(max=1.5))
    torch.testing.assert_close(nll, model.cross_entropy(d, z) + math.log(0.01), atol=1e-4, rtol=0)


# --- training ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    cat = synthetic_catalog(400, 3, max_exposures=3, missing_zspec=0.05)
    features = build_features(cat)
    splits = make_splits(np.isfinite(features.zspec), 1, 2, seed=1)
    cfg = ClassifierConfig.from_dict(TINY | {"width": 32, "pz_dropout": 0.0})
    train = TrainConfig(
        schedule=((25, 3e-3), (5, 3e-4)), batch_size=50, seed=2, device="cpu", eval_every=10
    )
    rows: list[dict] = []
    result = train_classifier(features, splits, cfg, train, "cpu", on_epoch=rows.append)
    return features, splits, result, rows


def test_training_learns_the_redshift_out_of_fold(trained) -> None:
    features, splits, result, rows = trained
    n = features.n
    assert result.probs.shape == (n, 150) and result.edges.shape == (151,)
    np.testing.assert_allclose(result.probs.sum(1), 1.0, atol=1e-5)
    assert set(result.products) == {"zphot", "zmean", "zmedian", "z_lo68", "z_hi68", "odds", "pit"}
    assert rows == result.history and len(rows) == 30
    val = [r["val_nll"] for r in rows if "val_nll" in r]  # epochs 10, 20, 30; one per member
    assert [len(v) for v in val] == [2, 2, 2] and max(val[-1]) < min(val[0])
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]  # smoothed targets: the loss has a floor
    oof = splits.out_of_fold()
    zs = features.zspec[oof]
    m = point_metrics(result.zphot[oof], zs)
    baseline = point_metrics(np.full(len(zs), np.median(zs)), zs)
    assert m["sigma68"] < 0.25 * baseline["sigma68"]  # measured ~0.11 x
    pit = result.pit[oof]
    assert np.all((pit >= 0) & (pit <= 1)) and 0.3 < np.mean(pit) < 0.7
    assert np.isnan(result.pit[~np.isfinite(features.zspec)]).all()
    assert np.all(result.products["z_lo68"] <= result.products["z_hi68"])


def test_products_match_the_binned_distribution() -> None:
    d = BinnedRedshift(EDGES, torch.log(PROBS))
    out = classifier_products(d, 0.5, torch.tensor([1.5, float("nan")], dtype=torch.float64))
    torch.testing.assert_close(out["zphot"], d.mode)
    torch.testing.assert_close(out["odds"], d.cdf(d.mode + 0.25) - d.cdf(d.mode - 0.25))
    assert float(out["pit"][0]) == pytest.approx(0.35) and math.isnan(float(out["pit"][1]))


def test_training_with_autoencoder_pretraining_runs(rng) -> None:
    cat = synthetic_catalog(120, 4, exposures=False)
    features = build_features(cat)
    splits = make_splits(np.isfinite(features.zspec), 1, 2, seed=1)
    flux = rng.uniform(5, 20, (300, 5))
    sim = SimulationBatches(
        flux, 0.05 * flux, rng.uniform(0.1, 1.2, 300), 4, 2, torch.device("cpu")
    )
    cfg = ClassifierConfig.from_dict(
        TINY | {"use_autoencoder": True, "n_latent": 3, "encoder_layers": 1, "decoder_layers": 1}
    )
    train = TrainConfig(
        schedule=((2, 1e-3),),
        pretrain_schedule=((2, 1e-3),),
        batch_size=40,
        pretrain_batch_size=100,
        device="cpu",
    )
    result = train_classifier(features, splits, cfg, train, "cpu", pretrain=sim)
    assert [r["phase"] for r in result.history] == ["pretrain"] * 2 + ["finetune"] * 2
    assert np.isfinite(result.zphot).all() and result.model.config.use_autoencoder
    with pytest.raises(ConfigError, match="pretrain"):
        sim3 = SimulationBatches(flux, flux * 0.05, flux[:, 0], 4, 3, torch.device("cpu"))
        train_classifier(features, splits, cfg, train, "cpu", pretrain=sim3)


def test_the_classifier_draws_outliers_as_configured() -> None:
    """The classifier's batches take the outlier unit and amplitude (they took only the
    fraction: a classifier trained with outlier_unit="measurement" got per-galaxy outliers)."""
    from deepz_core.training.classifier import classifier_phases

    features = build_features(synthetic_catalog(60, 1))
    splits = make_splits(np.isfinite(features.zspec), 1, 2, seed=0)
    train = TrainConfig(outlier_fraction=0.1, outlier_unit="measurement", outlier_amplitude=2.0)
    (phase,) = classifier_phases(features, splits, train, torch.device("cpu"), None)
    assert phase.source.outlier_fraction == 0.1
    assert phase.source.outliers_per_measurement and phase.source.outlier_amplitude == 2.0
