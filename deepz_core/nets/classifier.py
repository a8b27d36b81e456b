"""Photo-z as a classifier over thin redshift bins, with adaptive label smoothing (E20 App. E).

The network is the DEEPZ photo-z trunk (ensemble layers of ``deepz_core.nets.layers``, members as a leading
axis, optional autoencoder as in E20 Fig. 1) ending in one logit per redshift bin (paper: dz = 0.001
over 0 < z < 1.5, so 1500 classes). Its p(z) is piecewise constant: :class:`BinnedRedshift`.

Label smoothing (E20 App. E): at every step the width of each galaxy's predicted p(z),
sigma68 = (z84 - z16) / 2 from the cumulative sum over the bins, sets a smoothing
sigma_s = ``smoothing`` x sigma68 (paper: 15 per cent). We train on the Gaussian-smoothed TARGET
(the masses of N(z_label, sigma_s^2) in each bin) rather than on a randomly scattered label: the
cross-entropy is linear in the target, so this is exactly the expectation of the random-scatter loss
over the scatter, with the same mean gradient and none of its noise. ``smoothing = 0``: plain
cross-entropy with the label's bin. sigma68 is computed from the same forward pass, detached.
Labels outside [z_min, z_max] are counted in the first/last bin (the classifier cannot say more).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, constraints
from torch.distributions.utils import lazy_property

from deepz_core.configs import (
    Config,
    check_bool,
    check_int,
    check_probability,
    check_real,
)
from deepz_core.errors import ConfigError
from deepz_core.files import read_description
from deepz_core.nets.layers import (
    TRUNK_INT_BOUNDS,
    build_trunk,
    member_mean,
    members_view,
    save_network,
)

_FORMAT = "deepz.classifier"
_VERSION = 1
Q16, Q84 = 0.158655, 0.841345  # the +-1 sigma quantiles of a Gaussian (sigma68)


class BinnedRedshift(Distribution):
    """Piecewise-constant p(z) over bin ``edges`` (G + 1,) with bin ``logits`` (..., G).

    Batch shape (...) (e.g. (E, N)); events are scalars. The density inside bin k is
    probs_k / width_k and zero outside [edges[0], edges[-1]] (log_prob -inf there). ``cdf`` is exact
    (linear inside a bin), ``icdf`` its inverse from the cumulative sum of the bin probabilities.
    """

    arg_constraints = {"logits": constraints.real_vector}
    has_rsample = False

    def __init__(self, edges: Tensor, logits: Tensor, validate_args: bool = False) -> None:
        if edges.dim() != 1 or logits.dim() < 1 or logits.shape[-1] != edges.numel() - 1:
            raise ConfigError(
                f"logits: expected shape (..., G={edges.numel() - 1}) for "
                f"{edges.numel()} edges, got {tuple(logits.shape)}"
            )
        if edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()):
            raise ConfigError("edges: expected at least 2 strictly increasing bin edges")
        self.edges = edges.to(logits.dtype)  # (G + 1,)
        self.logits = torch.log_softmax(logits, dim=-1)  # (..., G), normalised
        super().__init__(logits.shape[:-1], torch.Size(), validate_args=validate_args)

    @property
    def n_bins(self) -> int:
        return self.edges.numel() - 1

    @lazy_property
    def probs(self) -> Tensor:
        """Bin probabilities summing to one, (..., G) (computed once)."""
        return self.logits.exp()

    @property
    def widths(self) -> Tensor:
        return self.edges[1:] - self.edges[:-1]  # (G,)

    @property
    def centers(self) -> Tensor:
        return 0.5 * (self.edges[1:] + self.edges[:-1])  # (G,)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.interval(self.edges[0], self.edges[-1])

    @property
    def mean(self) -> Tensor:
        return (self.probs * self.centers).sum(-1)  # (...)

    @property
    def variance(self) -> Tensor:
        second = (self.probs * (self.centers**2 + self.widths**2 / 12)).sum(-1)  # (...)
        return (second - self.mean**2).clamp_min(0)

    @property
    def mode(self) -> Tensor:
        """Centre of the most probable bin, (...)."""
        return self.centers[self.logits.argmax(-1)]

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> BinnedRedshift:
        shape = torch.Size(batch_shape)
        return BinnedRedshift(self.edges, self.logits.expand(*shape, self.n_bins))

    def bin_index(self, value: Tensor) -> Tensor:
        """Index of the bin holding ``value`` (the last bin includes z_max), clamped to [0, G-1]."""
        k = torch.bucketize(value, self.edges, right=True) - 1
        k = torch.where(value == self.edges[-1], self.n_bins - 1, k)
        return k.clamp(0, self.n_bins - 1)

    def _gather(self, table: Tensor, value: Tensor, k: Tensor) -> Tensor:
        """table (..., T) picked at k (value shape broadcast with the batch shape)."""
        shape = torch.broadcast_shapes(value.shape, self.batch_shape)
        table = table.expand(*shape, table.shape[-1])
        return table.gather(-1, k.expand(shape).unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(value): log(probs_k / width_k) inside the support, -inf outside."""
        value = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        k = self.bin_index(value)
        logp = self._gather(self.logits, value, k) - torch.log(self.widths)[k]
        inside = (value >= self.edges[0]) & (value <= self.edges[-1])
        return torch.where(inside, logp, -math.inf)

    def cdf(self, value: Tensor) -> Tensor:
        """P(Z <= value), linear inside each bin; value broadcasts with the batch shape."""
        value = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        probs = self.probs  # (..., G)
        below = torch.cumsum(probs, -1) - probs  # (..., G) mass of the bins before bin k
        k = self.bin_index(value)
        frac = ((value - self.edges[k]) / self.widths[k]).clamp(0, 1)
        return self._gather(below, value, k) + self._gather(probs, value, k) * frac

    def icdf(self, value: Tensor | float) -> Tensor:
        """The q-quantile (q broadcasts with the batch shape), linear inside the bin reaching q."""
        q = torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device)
        shape = torch.broadcast_shapes(q.shape, self.batch_shape)
        return self.quantiles(q.expand(shape).unsqueeze(-1)).squeeze(-1)

    def quantiles(self, q: Tensor) -> Tensor:
        """Several quantiles at once from one cumulative sum: q (..., Q) -> z (..., Q), where (...)
        is the batch shape or broadcasts to it from the left (sample dimensions)."""
        probs = self.probs.expand(*q.shape[:-1], self.n_bins)  # (..., G)
        cum = torch.cumsum(probs, -1)  # (..., G)
        q = q.to(probs.dtype).contiguous()
        k = torch.searchsorted(cum, q).clamp(max=self.n_bins - 1)  # (..., Q) first bin reaching q
        p_k = probs.gather(-1, k)  # (..., Q)
        frac = ((q - (cum.gather(-1, k) - p_k)) / p_k.clamp_min(1e-30)).clamp(0, 1)
        return self.edges[k] + frac * self.widths[k]  # (..., Q)

    def sigma68(self) -> Tensor:
        """Half the central 68% interval, (z84 - z16) / 2, (...) (E20 App. E, Sec. 6)."""
        q = torch.tensor([Q16, Q84], dtype=self.logits.dtype, device=self.logits.device)
        lo, hi = self.quantiles(q.expand(*self.batch_shape, 2)).unbind(-1)
        return 0.5 * (hi - lo)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        """Draws (*sample_shape, ...): a bin by its probability, then uniform inside it."""
        with torch.no_grad():
            k = Categorical(logits=self.logits).sample(torch.Size(sample_shape))
            u = torch.rand(k.shape, dtype=self.logits.dtype, device=k.device)
            return self.edges[k] + u * self.widths[k]

    def smoothed_targets(self, z: Tensor, sigma: Tensor) -> Tensor:
        """Bin masses of N(z, sigma^2) renormalised over the bins, (..., G) (E20 App. E).

        ``z`` and ``sigma`` broadcast to the batch shape; z is clamped into the support first.
        sigma -> 0 gives the label's bin (half/half when z lies exactly on an inner edge).
        """
        z = z.clamp(self.edges[0], self.edges[-1]).unsqueeze(-1)  # (..., 1)
        u = (self.edges - z) / sigma.unsqueeze(-1).clamp_min(1e-12)  # (..., G + 1)
        cdf = torch.special.ndtr(u)
        mass = cdf[..., 1:] - cdf[..., :-1]  # (..., G)
        return mass / mass.sum(-1, keepdim=True).clamp_min(1e-30)

    def smoothed_cross_entropy(self, z: Tensor, sigma: Tensor, n_sigma: float = 6.0) -> Tensor:
        """-sum_k t_k log p_k with t = ``smoothed_targets(z, sigma)``, (...).

        Evaluated only over the bins within ``n_sigma`` x max(sigma) of each label's bin (the
        target mass beyond 6 sigma is ~2e-9), so a step costs O(window), not O(G), while that window
        is under G / 4 (measured: 3x cheaper than the dense target at sigma = 2 bins); otherwise the
        dense target. The target carries no gradient.
        """
        shape = torch.broadcast_shapes(z.shape, sigma.shape, self.batch_shape)
        z = z.expand(shape).clamp(self.edges[0], self.edges[-1])  # (...)
        sigma = sigma.expand(shape)
        reach = n_sigma * float(sigma.max()) / float(self.widths.min())  # in bins
        half = int(math.ceil(reach)) + 1
        if 2 * half + 1 > self.n_bins // 4:  # a wide window: the dense target is cheaper
            return -(self.smoothed_targets(z, sigma).detach() * self.logits).sum(-1)
        offsets = torch.arange(-half, half + 1, device=z.device)  # (W,)
        idx = self.bin_index(z).unsqueeze(-1) + offsets  # (..., W)
        valid = (idx >= 0) & (idx < self.n_bins)
        idx = idx.clamp(0, self.n_bins - 1)
        zz, s = z.unsqueeze(-1), sigma.unsqueeze(-1).clamp_min(1e-12)  # (..., 1)
        with torch.no_grad():
            cdf_hi = torch.special.ndtr((self.edges[idx + 1] - zz) / s)  # (..., W)
            mass = (cdf_hi - torch.special.ndtr((self.edges[idx] - zz) / s)) * valid
            target = mass / mass.sum(-1, keepdim=True).clamp_min(1e-30)  # (..., W)
        logits = self.logits.expand(*idx.shape[:-1], self.n_bins)  # (..., G)
        return -(target * logits.gather(-1, idx)).sum(-1)  # (...)


def combine_binned(dist: BinnedRedshift, member_mask: Tensor | None = None) -> BinnedRedshift:
    """Ensemble p(z) with batch shape (N,): the (masked) mean of the member p(z) (E20 Sec. 5.2).

    ``dist`` has batch shape (E, N); ``member_mask`` (E, N) bool or weights >= 0 says which members
    count for each galaxy (out of fold: the members that never trained on it), as in
    ``mdn.combine_members``.
    """
    if len(dist.batch_shape) != 2:
        raise ConfigError(f"dist: expected batch shape (E, N), got {tuple(dist.batch_shape)}")
    e, n = dist.batch_shape
    if member_mask is None:
        weight = torch.full((e, n), 1.0 / e, dtype=dist.logits.dtype, device=dist.logits.device)
    else:
        if tuple(member_mask.shape) != (e, n):
            raise ConfigError(
                f"member_mask: expected shape {(e, n)}, got {tuple(member_mask.shape)}"
            )
        mask = member_mask.to(dist.logits.dtype)  # (E, N)
        total = mask.sum(0)  # (N,)
        if bool((mask < 0).any()) or bool((total <= 0).any()):
            raise ConfigError("member_mask: weights must be >= 0 and leave every galaxy a member")
        weight = mask / total  # (E, N)
    probs = (weight.unsqueeze(-1) * dist.probs).sum(0)  # (N, G)
    return BinnedRedshift(dist.edges, torch.log(probs))


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """Bins, label smoothing and network shape (field names and defaults as ``ModelConfig``, so the
    presets' model overrides apply unchanged).

    - Bins: ``bin_width`` wide from ``z_min`` to ``z_max`` (E20 App. E: 0.001 over 0..1.5).
    - ``smoothing``: label-smoothing sigma as a fraction of the predicted sigma68 (E20: 0.15; 0 = off).
    - Photo-z network: optional first hidden layer ``photoz_first_width`` (0 = none), then
      ``photoz_layers`` x ``width``, then one logit per bin; ``pz_dropout`` except the last
      ``undropped_last`` layers. ``use_autoencoder``: encoder/decoder as DeepzModel (only useful with
      pretraining, which trains the decoder; off by default: App. E does not describe one).
    """

    n_inputs: int = 46
    z_min: float = 0.0
    z_max: float = 1.5
    bin_width: float = 0.001
    smoothing: float = 0.15
    width: int = 250
    photoz_layers: int = 13
    photoz_first_width: int = 400
    pz_dropout: float = 0.01
    undropped_last: int = 3
    use_autoencoder: bool = False
    n_latent: int = 10
    encoder_layers: int = 10
    decoder_layers: int = 10
    ae_dropout: float = 0.02
    members: int = 1

    CONFIG_NAME: ClassVar[str] = "classifier"

    def __post_init__(self) -> None:
        for name, (low, high) in TRUNK_INT_BOUNDS.items():
            self._set(name, check_int(name, getattr(self, name), low, high))
        for name in ("z_min", "z_max", "bin_width", "smoothing"):
            self._set(name, check_real(name, getattr(self, name)))
        for name in ("pz_dropout", "ae_dropout"):
            self._set(name, check_probability(name, getattr(self, name)))
        self._set("use_autoencoder", check_bool("use_autoencoder", self.use_autoencoder))
        if not self.z_max > self.z_min:
            raise ConfigError(f"z_max: expected > z_min = {self.z_min!r}, got {self.z_max!r}")
        bins = (self.z_max - self.z_min) / self.bin_width if self.bin_width > 0 else 0.0
        if not 2 <= round(bins) <= 1_000_000 or abs(bins - round(bins)) > 1e-6 * bins:
            raise ConfigError(
                f"bin_width: expected to divide z_max - z_min into 2..1e6 bins, "
                f"got {self.bin_width!r}"
            )
        if self.smoothing < 0:
            raise ConfigError(f"smoothing: expected a fraction >= 0, got {self.smoothing!r}")

    @property
    def n_bins(self) -> int:
        return int(round((self.z_max - self.z_min) / self.bin_width))

    def edges(self) -> Tensor:
        """(G + 1,) float64 bin edges z_min + k bin_width, computed from integers (exact grid)."""
        k = torch.arange(self.n_bins + 1, dtype=torch.float64)
        return self.z_min + k * self.bin_width

    @classmethod
    def from_model_config(cls, values: Mapping[str, Any]) -> ClassifierConfig:
        """The classifier with the network shape of a run's MDN model config: the fields both
        have; the MDN's own (``input_norm``, ``sigma_floor``, ...) are not the classifier's."""
        return cls.from_dict({k: v for k, v in values.items() if k in cls.field_names()})


class DeepzClassifier(nn.Module):
    """E members of (optional autoencoder +) a photo-z classifier; inputs (E, N, F) or shared (N, F).

    The estimator owns its losses: :meth:`loss` (fine-tuning) and :meth:`pretrain_loss`
    (classifier + autoencoder, E20 Sec. 3.2), both per-member means summed over members.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.encoder, self.decoder, self.photoz = build_trunk(c, c.n_bins)
        self.register_buffer("edges", c.edges().float(), persistent=False)  # (G + 1,)

    @property
    def members(self) -> int:
        return self.config.members

    def _members_view(self, x: Tensor) -> Tensor:
        return members_view(x, self.config.members, self.config.n_inputs)

    def forward_with_reconstruction(self, x: Tensor) -> tuple[BinnedRedshift, Tensor | None]:
        """p(z) with batch shape (E, N) and the reconstruction (E, N, F) (None without autoencoder)."""
        x = self._members_view(x)  # (E, N, F)
        if self.encoder is None or self.decoder is None:
            return BinnedRedshift(self.edges, self.photoz(x)), None
        latent = self.encoder(x)  # (E, N, L)
        logits = self.photoz(torch.cat([x, latent], dim=-1))  # (E, N, G)
        return BinnedRedshift(self.edges, logits), self.decoder(latent)

    def forward(self, x: Tensor) -> BinnedRedshift:
        """p(z) for each member and galaxy, batch shape (E, N)."""
        return self.forward_with_reconstruction(x)[0]

    def smoothing_sigma(self, dist: BinnedRedshift) -> Tensor:
        """Label-smoothing sigma, ``smoothing`` x sigma68 of the predicted p(z), (E, N), detached.

        Not under no_grad: ``dist.probs`` is cached, and must keep its graph for other users."""
        return self.config.smoothing * dist.sigma68().detach()

    def cross_entropy(self, dist: BinnedRedshift, z: Tensor) -> Tensor:
        """Per-galaxy loss (E, N): cross-entropy with the smoothed (or, if smoothing = 0, hard) label."""
        z = torch.as_tensor(z, dtype=dist.logits.dtype, device=dist.logits.device)
        z = z.expand(dist.batch_shape)  # (E, N)
        if self.config.smoothing == 0:
            k = dist.bin_index(z.clamp(dist.edges[0], dist.edges[-1]))  # (E, N)
            return -dist.logits.gather(-1, k.unsqueeze(-1)).squeeze(-1)
        return dist.smoothed_cross_entropy(z, self.smoothing_sigma(dist))  # (E, N)

    def losses(self, x: Tensor, z: Tensor, weight: Tensor | None = None) -> Tensor:
        """Per-member (weighted) mean cross-entropy, (E,); ``weight`` (E, N), 0 drops a galaxy."""
        return member_mean(self.cross_entropy(self(x), z), weight)  # (E, N) -> (E,)

    def loss(self, x: Tensor, z: Tensor, weight: Tensor | None = None) -> Tensor:
        """Fine-tuning loss: per-member losses summed (each member gets its own gradient)."""
        return self.losses(x, z, weight).sum()

    def pretrain_loss(
        self, x: Tensor, z: Tensor, x_err: Tensor, target: Tensor | None = None
    ) -> Tensor:
        """Classifier + autoencoder loss (mean |recon - target| / x_err, as DeepzModel), summed."""
        dist, recon = self.forward_with_reconstruction(x)
        ce = self.cross_entropy(dist, z).mean(dim=-1)  # (E,)
        if recon is None:
            return ce.sum()
        goal = self._members_view(x if target is None else target)  # (E, N, F)
        return ce.sum() + ((recon - goal).abs() / x_err).mean(dim=(1, 2)).sum()


def save_classifier(
    model: DeepzClassifier,
    directory: Path | str,
    name: str = "classifier",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (config + metadata); returns the JSON path."""
    return save_network(model, Path(directory) / name, _FORMAT, _VERSION, metadata)


def load_classifier(
    directory: Path | str, name: str = "classifier", device: str | torch.device = "cpu"
) -> DeepzClassifier:
    """Rebuild from ``<name>.json`` and load ``<name>.safetensors``; returned in eval mode."""
    path = Path(directory) / f"{name}.json"
    doc = read_description(path, _FORMAT, "classifier")
    model = DeepzClassifier(ClassifierConfig.from_dict(doc["config"]))
    weights = path.with_suffix(".safetensors")
    try:
        model.load_state_dict(load_file(str(weights), device=str(device)))
    except (OSError, RuntimeError, SafetensorError) as exc:
        raise ConfigError(f"{weights}: cannot load weights ({exc})") from exc
    return model.to(device).eval()
