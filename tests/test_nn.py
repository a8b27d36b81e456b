"""Ensemble layers equal E separate torch layers, and members never mix (E20 Sec. 2.2, 5.2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepz_core.nn import (
    EnsembleBatchNorm1d,
    EnsembleBlock,
    EnsembleLinear,
    EnsembleMLP,
    FastDropout,
)

E, N, F_IN, F_OUT = 3, 12, 5, 7


def _separate_linears(layer: EnsembleLinear) -> list[nn.Linear]:
    out = []
    for e in range(layer.members):
        lin = nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            lin.weight.copy_(layer.weight[e])
            lin.bias.copy_(layer.bias[e])
        out.append(lin)
    return out


def test_linear_equals_separate_linears() -> None:
    layer = EnsembleLinear(E, F_IN, F_OUT)
    refs = _separate_linears(layer)
    x = torch.randn(E, N, F_IN)  # (E, N, F)
    y = layer(x)  # (E, N, O)
    assert y.shape == (E, N, F_OUT)
    y.square().sum().backward()
    for e, lin in enumerate(refs):
        y_ref = lin(x[e])
        torch.testing.assert_close(y[e], y_ref)
        y_ref.square().sum().backward()
        torch.testing.assert_close(layer.weight.grad[e], lin.weight.grad)
        torch.testing.assert_close(layer.bias.grad[e], lin.bias.grad)


def test_linear_init_matches_nn_linear_distribution() -> None:
    n_in, n_out = 64, 200
    layer = EnsembleLinear(4, n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)  # nn.Linear: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))
    ref = nn.Linear(n_in, n_out).weight.detach()
    for w in (layer.weight.detach(), layer.bias.detach()):
        assert float(w.abs().max()) <= bound
    std_expected = bound / math.sqrt(3.0)
    assert float(layer.weight.detach().std()) == pytest.approx(std_expected, rel=0.03)
    assert float(ref.std()) == pytest.approx(std_expected, rel=0.05)
    assert not torch.equal(layer.weight[0], layer.weight[1])  # members start differently


def _separate_batchnorms(layer: EnsembleBatchNorm1d) -> list[nn.BatchNorm1d]:
    out = []
    for e in range(layer.members):
        bn = nn.BatchNorm1d(layer.num_features, eps=1e-5, momentum=0.1)
        with torch.no_grad():
            bn.weight.copy_(layer.weight[e])
            bn.bias.copy_(layer.bias[e])
        out.append(bn)
    return out


def test_batchnorm_equals_separate_batchnorms_train_and_eval() -> None:
    layer = EnsembleBatchNorm1d(E, F_OUT)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    refs = _separate_batchnorms(layer)
    for _ in range(3):  # train mode: batch statistics, running statistics updated
        x = 2.0 + 3.0 * torch.randn(E, N, F_OUT)  # (E, N, F)
        y = layer(x)
        for e, bn in enumerate(refs):
            torch.testing.assert_close(y[e], bn(x[e]))
            torch.testing.assert_close(layer.running_mean[e], bn.running_mean)
            torch.testing.assert_close(layer.running_var[e], bn.running_var)
    layer.eval()
    x = torch.randn(E, N, F_OUT, requires_grad=True)
    y = layer(x)
    y.square().sum().backward()
    for e, bn in enumerate(refs):
        bn.eval()
        x_e = x[e].detach().clone().requires_grad_()
        y_ref = bn(x_e)
        torch.testing.assert_close(y[e], y_ref)
        y_ref.square().sum().backward()
        torch.testing.assert_close(x.grad[e], x_e.grad)
        torch.testing.assert_close(layer.weight.grad[e], bn.weight.grad)


def test_batchnorm_train_gradients_match() -> None:
    layer = EnsembleBatchNorm1d(E, F_OUT)
    refs = _separate_batchnorms(layer)
    x = torch.randn(E, N, F_OUT, requires_grad=True)
    w = torch.randn(E, N, F_OUT)
    (layer(x) * w).sum().backward()
    for e, bn in enumerate(refs):
        x_e = x[e].detach().clone().requires_grad_()
        (bn(x_e) * w[e]).sum().backward()
        torch.testing.assert_close(x.grad[e], x_e.grad)
        torch.testing.assert_close(layer.bias.grad[e], bn.bias.grad)


def test_batchnorm_single_galaxy_in_training_raises_like_torch() -> None:
    with pytest.raises(ValueError):
        EnsembleBatchNorm1d(E, F_OUT)(torch.randn(E, 1, F_OUT))


def test_block_is_linear_batchnorm_relu_dropout() -> None:
    block = EnsembleBlock(E, F_IN, F_OUT, dropout=0.1)
    kinds = [type(m) for m in block]
    assert kinds == [EnsembleLinear, EnsembleBatchNorm1d, nn.ReLU, FastDropout]
    assert len(EnsembleBlock(E, F_IN, F_OUT, dropout=0.0)) == 3
    assert float(block(torch.randn(E, N, F_IN)).detach().min()) >= 0.0


def test_mlp_dropout_skips_last_three_linear_layers() -> None:
    mlp = EnsembleMLP(E, F_IN, [16] * 6, F_OUT, dropout=0.02, undropped_last=3)  # 7 linear layers
    with_dropout = [any(isinstance(m, nn.Dropout) for m in b) for b in mlp.blocks]
    assert with_dropout == [True, True, True, True, False, False]
    assert mlp.input_norm is None
    assert EnsembleMLP(E, F_IN, [8], F_OUT, 0.1, input_norm=True).input_norm is not None


def test_mlp_members_are_independent() -> None:
    mlp = EnsembleMLP(E, F_IN, [16, 16, 16, 16], F_OUT, dropout=0.1, input_norm=True)
    x = torch.randn(E, N, F_IN)
    mlp(x)[0].square().mean().backward()  # member 0's loss only
    for name, p in mlp.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad[0].abs().sum()) > 0.0, name
        assert float(p.grad[1:].abs().sum()) == 0.0, name


def test_mlp_member_output_does_not_depend_on_other_members_inputs() -> None:
    mlp = EnsembleMLP(E, F_IN, [16, 16], F_OUT, dropout=0.0, input_norm=True)
    x = torch.randn(E, N, F_IN)
    y = mlp(x)
    x2 = x.clone()
    x2[1:] = torch.randn(E - 1, N, F_IN)  # other members see other galaxies
    torch.testing.assert_close(mlp(x2)[0], y[0])
