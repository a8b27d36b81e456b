"""Ensemble layers equal E separate torch layers, and members never mix (E20 Sec. 2.2, 5.2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepz_core.nets.layers import (
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


# ---------------------------------------------------------------- fused CPU paths (docs/benchmarks.md)


def _reference_block(block: EnsembleBlock, e: int) -> nn.Sequential:
    """Member ``e`` of an ensemble block as torch layers: Linear -> BatchNorm1d -> ReLU."""
    lin, norm = block[0], block[1]
    ref_lin = _separate_linears(lin)[e]
    ref_bn = nn.BatchNorm1d(norm.num_features)
    with torch.no_grad():
        ref_bn.weight.copy_(norm.weight[e])
        ref_bn.bias.copy_(norm.bias[e])
        ref_bn.running_mean.copy_(norm.running_mean[e])
        ref_bn.running_var.copy_(norm.running_var[e])
    return nn.Sequential(ref_lin, ref_bn, nn.ReLU())


@pytest.mark.parametrize("members", [1, 3])
def test_block_training_step_equals_torch_layers(members: int) -> None:
    """Fused batch norm + ReLU (E > 1) and torch's kernels (E = 1): outputs, all gradients and
    running statistics equal those of separate torch layers."""
    block = EnsembleBlock(members, F_IN, F_OUT, dropout=0.0)
    with torch.no_grad():
        block[1].weight.uniform_(0.5, 1.5)
        block[1].bias.uniform_(-0.5, 0.5)
    refs = [_reference_block(block, e) for e in range(members)]
    x = torch.randn(members, N, F_IN, requires_grad=True)
    w = torch.randn(members, N, F_OUT)
    y = block(x)  # (E, N, O)
    (y * w).sum().backward()
    for e, ref in enumerate(refs):
        x_e = x[e].detach().clone().requires_grad_()
        y_ref = ref(x_e)
        (y_ref * w[e]).sum().backward()
        torch.testing.assert_close(y[e], y_ref)
        torch.testing.assert_close(x.grad[e], x_e.grad)
        torch.testing.assert_close(block[0].weight.grad[e], ref[0].weight.grad)
        torch.testing.assert_close(block[1].weight.grad[e], ref[1].weight.grad)
        torch.testing.assert_close(block[1].bias.grad[e], ref[1].bias.grad)
        torch.testing.assert_close(block[1].running_var[e], ref[1].running_var)
    assert float(block[0].bias.grad.abs().max()) < 1e-5  # a bias before a batch norm: no effect


@pytest.mark.parametrize("members", [1, 3])
def test_block_dropout_scales_kept_units_and_blocks_gradients_of_dropped_ones(members: int) -> None:
    p = 0.3
    block = EnsembleBlock(members, F_IN, 400, dropout=p)
    refs = [_reference_block(block, e) for e in range(members)]
    x = torch.randn(members, 64, F_IN, requires_grad=True)
    w = torch.randn(members, 64, 400)
    y = block(x)  # (E, N, O)
    (y * w).sum().backward()
    for e, ref in enumerate(refs):
        x_e = x[e].detach().clone().requires_grad_()
        y_ref = ref(x_e)  # (N, O) without dropout
        kept = y[e] > 0
        positive = y_ref.detach() > 0
        assert bool((kept <= positive).all())  # dropout only zeroes
        torch.testing.assert_close(y[e][kept], y_ref[kept] / (1 - p))
        dropped = float((positive & ~kept).sum()) / float(positive.sum())  # ~6,000 positive units
        assert dropped == pytest.approx(p, abs=0.03)
        (y_ref * kept / (1 - p) * w[e]).sum().backward()  # the same mask, applied by hand
        torch.testing.assert_close(x.grad[e], x_e.grad)
        torch.testing.assert_close(block[1].weight.grad[e], ref[1].weight.grad)


def test_fused_functions_pass_gradcheck_in_float64() -> None:
    from deepz_core.nets.layers import _BatchNormActFn, _EnsembleLinearFn

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(2, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(_EnsembleLinearFn.apply, (x, w, b))
    scale = torch.rand(2, 4, dtype=torch.float64, generator=g).add_(0.5).requires_grad_()
    shift = torch.randn(2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    for relu in (False, True):
        stats = (torch.zeros(2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64))

        def fn(x, scale, shift, relu=relu, stats=stats):
            return _BatchNormActFn.apply(x, scale, shift, *stats, 0.1, 1e-5, relu, 0.0)

        assert torch.autograd.gradcheck(fn, (x, scale, shift))


@pytest.mark.parametrize("p", [0.01, 0.2, 0.7])
def test_dropout_mask_drops_each_element_independently_with_probability_p(p: float) -> None:
    from deepz_core.nets.layers import dropout_mask_

    n = 200_000
    y = dropout_mask_(torch.ones(4, n // 4), p)  # (4, n/4)
    dropped = float((y == 0).sum())
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(dropped - n * p) < 5 * sigma  # Binomial(n, p) count
    flat = (y.flatten() == 0).double()
    pair = float((flat[1:] * flat[:-1]).mean())  # neighbours dropped together: p^2 if independent
    assert pair == pytest.approx(p * p, abs=6 * math.sqrt(p * p / n) + 1e-5)
    assert not torch.equal(y[0], y[1])  # rows (members) get different masks
    small = dropout_mask_(torch.ones(3), p)  # a tensor smaller than one expected gap
    assert small.shape == (3,) and bool(((small == 0) | (small == 1)).all())
    out = FastDropout(p)(torch.ones(300, 200).t())  # non-contiguous input
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1.0 / (1 - p)))
    assert float((out == 0).float().mean()) == pytest.approx(p, abs=0.02)


def test_eval_block_is_the_folded_linear_map() -> None:
    for members in (1, 3):
        block = EnsembleBlock(members, F_IN, F_OUT, dropout=0.1)
        block(torch.randn(members, N, F_IN))  # one training step sets running statistics
        block.eval()
        x = torch.randn(members, N, F_IN)
        with torch.no_grad():
            lin, norm = block[0], block[1]
            ref = torch.relu(norm(lin(x)))  # unfolded: linear, then batch norm
            torch.testing.assert_close(block(x), ref)
