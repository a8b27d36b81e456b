"""Natively batched ensemble layers: E networks evaluated as one module (E20 Sec. 2.2, 5.2, Fig. 1).

Every parameter and buffer has a leading member dimension E, and activations have shape (E, N, F):
each member gets its own batch of N galaxies (its own data order and folds). Members never mix:
a linear layer is one batched matmul, batch normalisation reduces over the N axis of each member,
dropout masks are drawn per element. Summing per-member losses therefore gives each member exactly
the gradient it would get if trained alone.

CPU speed (docs/benchmarks.md, "Networks"): with E > 1 a training step runs two hand-written autograd
functions, a batched linear layer whose weight gradient comes out in the weight's own layout, and
BatchNorm + ReLU + dropout fused in the (E, N, F) layout (no transposes, dropout masks drawn as
geometric gaps between dropped elements). With E = 1 the same modules use torch's own ``F.linear`` and
``F.batch_norm`` on (N, F), the fastest single-network path, so sequential baselines stay honest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function

from deepz_core.errors import ConfigError
from deepz_core.files import atomic_write, atomic_write_json


def dropout_mask_(y: Tensor, p: float) -> Tensor:
    """Zero each element of ``y`` in place with probability ``p`` (independently); returns ``y``.

    On CPU the dropped positions are drawn as cumulative sums of Geometric(p) gaps, an exact
    Bernoulli(p) process that needs ~p*numel random numbers instead of numel (8x faster than
    ``rand < p`` at p = 0.02, where masks were a tenth of a step). Elsewhere: ``rand < p``.
    """
    if p <= 0.0:
        return y
    if y.device.type != "cpu" or p > 0.5 or not y.is_contiguous():
        return y.masked_fill_(torch.rand_like(y) < p, 0.0)
    flat = y.view(-1)  # (numel,)
    n = flat.numel()
    expected = n * p
    draws = int(expected + 6.0 * math.sqrt(expected) + 16)  # rarely needs a second round
    last = -1
    while last < n - 1:
        gaps = torch.empty(draws, dtype=torch.float64, device=y.device).geometric_(p)  # >= 1
        pos = gaps.clamp_(max=n + 1).to(torch.int64).cumsum_(0).add_(last)  # (draws,)
        flat.index_fill_(0, pos[pos < n], 0.0)
        last = int(pos[-1])
    return y


class _EnsembleLinearFn(Function):
    """(E, N, in) x (E, out, in) + (E, out) -> (E, N, out); the weight gradient is computed as
    grad^T x, already in the (E, out, in) layout (autograd's bmm gives (E, in, out) plus a copy)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))  # (E, N, out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = torch.bmm(grad, weight) if need_x else None  # (E, N, in)
        grad_w = torch.bmm(grad.transpose(1, 2), x) if need_w else None  # (E, out, in)
        grad_b = grad.sum(1) if need_b else None  # (E, out)
        return grad_x, grad_w, grad_b


def ensemble_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """E linear layers, (E, N, in) -> (E, N, out); E = 1 runs ``F.linear`` (one addmm)."""
    if weight.shape[0] == 1:  # squeeze, not [0]: select's backward zero-fills a (1, out, in) grad
        y = F.linear(x.squeeze(0), weight.squeeze(0), bias.squeeze(0))  # (N, out)
        return y.unsqueeze(0)  # (1, N, out)
    if torch.is_grad_enabled() and (weight.requires_grad or x.requires_grad):
        return _EnsembleLinearFn.apply(x, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))  # (E, N, out)


class _BatchNormActFn(Function):
    """Training-mode batch norm over dim 1 of (E, N, F), optionally + ReLU + dropout, in one node.

    Forward ``y = k relu(w (x - mean) rstd + b) * keep`` with k = 1/(1-p) folded into the affine map
    (ReLU commutes with k > 0); the running statistics are updated like ``F.batch_norm``. Backward
    needs only the centred input and ``y``: ReLU and dropout pass the gradient where ``y > 0``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        running_mean: Tensor,  # type: ignore[override]
        running_var: Tensor,
        momentum: float,
        eps: float,
        relu: bool,
        p: float,
    ) -> Tensor:
        n = x.shape[1]
        mean = x.mean(1, keepdim=True)  # (E, 1, F)
        xc = x - mean  # (E, N, F)
        var = torch.linalg.vecdot(xc, xc, dim=1) / n  # (E, F), biased
        running_mean.lerp_(mean.squeeze(1), momentum)
        running_var.lerp_(var * (n / (n - 1)), momentum)  # unbiased, as torch
        rstd = torch.rsqrt(var + eps)  # (E, F)
        k = 1.0 / (1.0 - p)
        scale = (weight * rstd * k).unsqueeze(1)  # (E, 1, F)
        y = torch.addcmul((bias * k).unsqueeze(1), xc, scale)  # (E, N, F)
        if relu:
            dropout_mask_(y.relu_(), p)
        ctx.save_for_backward(xc, y, rstd, weight)
        ctx.k, ctx.relu = k, relu
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        xc, y, rstd, weight = ctx.saved_tensors
        n, k = xc.shape[1], ctx.k
        d = torch.ops.aten.threshold_backward(grad, y, 0.0) if ctx.relu else grad  # (E, N, F)
        grad_b = d.sum(1) * k  # (E, F)
        dot = torch.linalg.vecdot(xc, d, dim=1) * k  # (E, F): sum over N of dL/dpre * (x - mean)
        a = weight * rstd  # (E, F)
        c = -dot * rstd * rstd * a / n  # (E, F)
        grad_x = torch.addcmul((-grad_b * a / n).unsqueeze(1), xc, c.unsqueeze(1))  # (E, N, F)
        grad_x.addcmul_(d, (a * k).unsqueeze(1))
        return grad_x, dot * rstd, grad_b, None, None, None, None, None, None


def _batch_norm_train(norm: EnsembleBatchNorm1d, x: Tensor, relu: bool, p: float) -> Tensor:
    """Training-mode ``norm`` (+ ReLU + dropout with probability ``p``) on (E, N, F)."""
    assert relu or p == 0.0, "dropout without ReLU is not fused"
    e, n = x.shape[:2]
    if e == 1:  # torch's kernel on (N, F) needs no layout change and is fastest for one member
        y = F.batch_norm(
            x.squeeze(0),
            norm.running_mean[0],
            norm.running_var[0],
            norm.weight.squeeze(0),
            norm.bias.squeeze(0),
            True,
            norm.momentum,
            norm.eps,
        )  # (N, F)
        if relu:
            y = torch.relu_(y)  # batch norm's backward does not need its output
        if p > 0:
            keep = dropout_mask_(torch.full_like(y, 1.0 / (1.0 - p)), p)  # (N, F)
            y = y * keep
        return y.unsqueeze(0)  # (1, N, F)
    if n < 2:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}"
        )
    return _BatchNormActFn.apply(
        x,
        norm.weight,
        norm.bias,
        norm.running_mean,
        norm.running_var,
        norm.momentum,
        norm.eps,
        relu,
        p,
    )


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
        return ensemble_linear(x, self.weight, self.bias)  # (E, N, out)

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
        """(E, N, F) -> (E, N, F), statistics over each member's N galaxies."""
        if self.training:
            return _batch_norm_train(self, x, relu=False, p=0.0)
        scale, shift = self.eval_affine()  # a fixed per-member affine map: one fused op
        return torch.addcmul(shift.unsqueeze(1), x, scale.unsqueeze(1))  # (E, N, F)

    def eval_affine(self) -> tuple[Tensor, Tensor]:
        """Evaluation mode as ``x * scale + shift``, both (E, F)."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)  # (E, F)
        return scale, self.bias - self.running_mean * scale  # (E, F)

    def extra_repr(self) -> str:
        return (
            f"members={self.members}, num_features={self.num_features}, eps={self.eps}, "
            f"momentum={self.momentum}"
        )


class EnsembleRobustNorm(EnsembleBatchNorm1d):
    """``EnsembleBatchNorm1d`` with robust batch statistics: each member's batch median and
    interquartile range / 1.349 replace its batch mean and standard deviation (issue 23).

    One galaxy moves a batch median or quartile by at most one rank, so an extreme galaxy cannot
    squash the other galaxies' normalised inputs, as it does through a batch variance; the batch
    to batch noise of the statistics, which regularises like BatchNorm's, is kept. The statistics
    are not differentiated (constants of each step); running averages of them are used in
    evaluation, like BatchNorm's running mean and variance.
    """

    def forward(self, x: Tensor) -> Tensor:
        """(E, N, F) -> (E, N, F), statistics over each member's N galaxies."""
        if not self.training:
            return super().forward(x)
        with torch.no_grad():
            q1, med, q3 = torch.quantile(x, x.new_tensor([0.25, 0.5, 0.75]), dim=1)  # (E, F) each
            var = ((q3 - q1) / 1.349).square()  # (E, F): a Gaussian's variance
            self.running_mean.lerp_(med, self.momentum)
            self.running_var.lerp_(var, self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)  # (E, F)
        return torch.addcmul((self.bias - med * scale).unsqueeze(1), x, scale.unsqueeze(1))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn by :func:`dropout_mask_` (geometric gaps on CPU).

    Inside an :class:`EnsembleBlock` the dropout is fused with the batch norm and ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.full(x.shape, 1.0 / (1.0 - self.p), dtype=x.dtype, device=x.device)
        return x * dropout_mask_(keep, self.p)


class EnsembleBlock(nn.Sequential):
    """Linear -> BatchNorm -> ReLU (-> Dropout when ``dropout > 0``), E20 Fig. 1 and Sec. 2.2."""

    def __init__(self, members: int, in_features: int, out_features: int, dropout: float) -> None:
        layers: list[nn.Module] = [
            EnsembleLinear(members, in_features, out_features),
            EnsembleBatchNorm1d(members, out_features),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(FastDropout(dropout))  # element-wise: independent masks per member
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(E, N, in) -> (E, N, out). Training: the linear layer, then batch norm + ReLU + dropout as
        one fused step. Eval: the batch norm is folded into the linear layer's weights
        (W' = s W, b' = s b + t), so inference makes one pass over the activations."""
        linear, norm = self[0], self[1]
        if self.training:
            p = self[3].p if len(self) > 3 else 0.0
            return _batch_norm_train(norm, linear(x), relu=True, p=p)  # (E, N, out)
        scale, shift = norm.eval_affine()  # (E, out)
        weight = linear.weight * scale.unsqueeze(-1)  # (E, out, in)
        bias = linear.bias * scale + shift  # (E, out)
        return torch.relu_(ensemble_linear(x, weight, bias))  # (E, N, out)


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
        input_norm: bool | str = False,
    ) -> None:
        super().__init__()
        norm = EnsembleRobustNorm if input_norm == "robust" else EnsembleBatchNorm1d
        self.input_norm = norm(members, n_in) if input_norm else None
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


def members_view(x: Tensor, members: int, n_inputs: int) -> Tensor:
    """Check and broadcast inputs to (E, N, F): a 2-D input (N, F) is shared by all E members."""
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(members, -1, -1)  # (E, N, F)
    if x.dim() != 3 or x.shape[0] != members or x.shape[2] != n_inputs:
        raise ConfigError(
            f"x: expected shape (E={members}, N, F={n_inputs}) or (N, F={n_inputs}), "
            f"got {tuple(x.shape)}"
        )
    return x


def member_mean(values: Tensor, weight: Tensor | None = None) -> Tensor:
    """Per-member mean over galaxies of (E, N) ``values``, (E,); ``weight`` (E, N) optional
    per-galaxy weights (0 drops a galaxy from its member's mean)."""
    if weight is None:
        return values.mean(dim=-1)
    return (values * weight).sum(dim=-1) / weight.sum(dim=-1).clamp_min(1e-12)


# (low, high) of the integer fields of a network trunk (ModelConfig, ClassifierConfig): the highs
# refuse sizes no machine could allocate (a width of 200,000 asks for hundreds of GB), far above
# the paper's networks
TRUNK_INT_BOUNDS = {
    "n_inputs": (1, 10_000),
    "n_latent": (1, 1024),
    "encoder_layers": (0, 64),
    "decoder_layers": (0, 64),
    "width": (1, 4096),
    "photoz_layers": (0, 64),
    "photoz_first_width": (0, 4096),
    "undropped_last": (0, 64),
    "members": (1, 1000),
}


class TrunkConfig(Protocol):
    """The fields ``build_trunk`` reads (ModelConfig and ClassifierConfig both have them)."""

    members: int
    n_inputs: int
    use_autoencoder: bool
    n_latent: int
    width: int
    encoder_layers: int
    decoder_layers: int
    ae_dropout: float
    photoz_first_width: int
    photoz_layers: int
    pz_dropout: float
    undropped_last: int


def build_trunk(
    c: TrunkConfig, n_outputs: int, input_norm: bool | str = True
) -> tuple[EnsembleMLP | None, EnsembleMLP | None, EnsembleMLP]:
    """(encoder, decoder, photo-z network) of E20 Fig. 1: the photo-z network reads the inputs and,
    with the autoencoder, its ``n_latent`` features, and ends in ``n_outputs`` raw outputs.
    ``input_norm``: the encoder and the photo-z network start with a BatchNorm over their inputs
    (True, E20), with robust batch statistics ("robust", ``EnsembleRobustNorm``), or none."""
    encoder = decoder = None
    n_pz_in = c.n_inputs
    if c.use_autoencoder:
        encoder = EnsembleMLP(
            c.members,
            c.n_inputs,
            [c.width] * c.encoder_layers,
            c.n_latent,
            c.ae_dropout,
            c.undropped_last,
            input_norm,
        )
        decoder = EnsembleMLP(
            c.members,
            c.n_latent,
            [c.width] * c.decoder_layers,
            c.n_inputs,
            c.ae_dropout,
            c.undropped_last,
        )
        n_pz_in += c.n_latent
    first = [c.photoz_first_width] if c.photoz_first_width > 0 else []
    photoz = EnsembleMLP(
        c.members,
        n_pz_in,
        first + [c.width] * c.photoz_layers,
        n_outputs,
        c.pz_dropout,
        c.undropped_last,
        input_norm,
    )
    return encoder, decoder, photoz


def save_network(
    model: nn.Module,
    path_stem: Path,
    file_format: str,
    version: int,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.safetensors`` (the state dict: weights and buffers, on the CPU) and
    ``<stem>.json`` (``file_format``, ``version``, the model's ``config`` and JSON-ready
    ``metadata``), atomically, never a pickle; returns the JSON path. Shared by the MDN and the
    classifier."""
    from safetensors.torch import save_file

    description = {
        "format": file_format,
        "version": version,
        "config": model.config.to_dict(),
        "metadata": dict(metadata or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = path_stem.with_name(f"{path_stem.name}.safetensors")
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp)))
    return atomic_write_json(path_stem.with_name(f"{path_stem.name}.json"), description)
