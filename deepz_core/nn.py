"""Natively batched ensemble layers: E networks evaluated as one module (E20 Sec. 2.2, 5.2, Fig. 1).

Every parameter and buffer has a leading member dimension E, and activations have shape (E, N, F):
each member gets its own batch of N galaxies (its own data order and folds). Members never mix:
a linear layer is one batched matmul, batch normalisation reduces over the N axis of each member,
dropout masks are drawn per element. Summing per-member losses therefore gives each member exactly
the gradient it would get if trained alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EnsembleLinear(nn.Module):
    """E independent ``nn.Linear(in_features, out_features)`` layers applied to (E, N, in) inputs.

    ``weight`` is (E, out, in) and ``bias`` (E, out), the layout of E stacked ``nn.Linear`` weights.
    Each member is initialised like ``nn.Linear``: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members = members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default init, kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)), per member."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """(E, N, in) -> (E, N, out)."""
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))  # (E, N, out)

    def extra_repr(self) -> str:
        return f"members={self.members}, in={self.in_features}, out={self.out_features}"


class EnsembleBatchNorm1d(nn.Module):
    """E independent ``nn.BatchNorm1d(num_features)`` layers applied to (E, N, F) inputs.

    Training: normalise with each member's batch mean and biased variance over its N galaxies and
    update that member's running mean / unbiased running variance with ``momentum``. Evaluation:
    normalise with the running statistics. Affine ``weight``/``bias`` are (E, F).
    """

    def __init__(
        self, members: int, num_features: int, eps: float = 1e-5, momentum: float = 0.1
    ) -> None:
        super().__init__()
        self.members = members
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(members, num_features))
        self.bias = nn.Parameter(torch.zeros(members, num_features))
        self.register_buffer("running_mean", torch.zeros(members, num_features))
        self.register_buffer("running_var", torch.ones(members, num_features))

    def forward(self, x: Tensor) -> Tensor:
        """(E, N, F) -> (E, N, F): the E*F (member, feature) pairs are the channels of one batch norm."""
        e, n, f = x.shape
        if not self.training:  # a fixed per-member affine map: one fused op, no layout copies
            scale = self.weight * torch.rsqrt(self.running_var + self.eps)  # (E, F)
            shift = self.bias - self.running_mean * scale  # (E, F)
            return torch.addcmul(shift.unsqueeze(1), x, scale.unsqueeze(1))  # (E, N, F)
        flat = x.transpose(0, 1).reshape(n, e * f)  # (N, E*F)
        out = F.batch_norm(
            flat,
            self.running_mean.view(e * f),
            self.running_var.view(e * f),
            self.weight.reshape(e * f),
            self.bias.reshape(e * f),
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )  # (N, E*F)
        return out.view(n, e, f).transpose(0, 1)  # (E, N, F)

    def extra_repr(self) -> str:
        return (
            f"members={self.members}, num_features={self.num_features}, eps={self.eps}, "
            f"momentum={self.momentum}"
        )


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn by ``rand`` instead of ``bernoulli_`` (~1.8x faster on CPU,
    where dropout masks were 16% of a training step; docs/benchmarks.md)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        drop = torch.rand(x.shape, dtype=x.dtype, device=x.device) < self.p
        return x.masked_fill(drop, 0.0) * (1.0 / (1.0 - self.p))


class EnsembleBlock(nn.Sequential):
    """Linear -> BatchNorm -> ReLU (-> Dropout when ``dropout > 0``), E20 Fig. 1 and Sec. 2.2."""

    def __init__(self, members: int, in_features: int, out_features: int, dropout: float) -> None:
        layers: list[nn.Module] = [
            EnsembleLinear(members, in_features, out_features),
            EnsembleBatchNorm1d(members, out_features),
            nn.ReLU(inplace=True),  # batch norm's backward does not need its output
        ]
        if dropout > 0:
            layers.append(FastDropout(dropout))  # element-wise: independent masks per member
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(E, N, in) -> (E, N, out). In eval mode the batch norm is folded into the linear layer's
        weights (W' = s W, b' = s b + t), so inference makes one pass over the activations."""
        if self.training:
            return super().forward(x)
        linear, norm = self[0], self[1]
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)  # (E, out)
        shift = norm.bias - norm.running_mean * scale  # (E, out)
        weight = linear.weight * scale.unsqueeze(-1)  # (E, out, in)
        bias = linear.bias * scale + shift  # (E, out)
        return torch.relu_(torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2)))


class EnsembleMLP(nn.Module):
    """Optional input BatchNorm, hidden blocks, then a plain final linear layer (E20 Fig. 1).

    ``hidden`` lists the block widths; the network has ``len(hidden) + 1`` linear layers and the
    dropout follows every linear layer except the last ``undropped_last`` ones (E20 Fig. 1 caption:
    "dropout after all linear layers, except the last three"). The final linear layer has no
    BatchNorm, ReLU or dropout: it returns latent features, reconstructions or MDN parameters.
    """

    def __init__(
        self,
        members: int,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        dropout: float,
        undropped_last: int = 3,
        input_norm: bool = False,
    ) -> None:
        super().__init__()
        self.input_norm = EnsembleBatchNorm1d(members, n_in) if input_norm else None
        n_linear = len(hidden) + 1
        blocks: list[nn.Module] = []
        width_in = n_in
        for k, width in enumerate(hidden):
            p = dropout if k < n_linear - undropped_last else 0.0
            blocks.append(EnsembleBlock(members, width_in, width, p))
            width_in = width
        self.blocks = nn.Sequential(*blocks)
        self.out = EnsembleLinear(members, width_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        """(E, N, n_in) -> (E, N, n_out)."""
        if self.input_norm is not None:
            x = self.input_norm(x)  # (E, N, n_in)
        return self.out(self.blocks(x))  # (E, N, n_out)
