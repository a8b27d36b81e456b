"""DEEPZ as a natively batched ensemble: autoencoder + photo-z MDN (E20 Sec. 2.2, 2.3, Fig. 1).

One :class:`DeepzModel` holds E members; every tensor has a leading member axis and inputs are
(E, N, F): each member sees its own batch of galaxies. Losses are per-member means summed over
members, so each member's gradient is the one it would get alone.

Input normalisation (``ModelConfig.input_norm``):
- ``"robust"`` (default): each flux ratio is first standardised by fixed statistics of the training
  population stored with the model (median and IQR / 1.349, ``deepz_core.catalog.screen.InputStats``)
  and clipped to +-``input_clip``; the input layers of the encoder and of the photo-z network are
  BatchNorms with robust batch statistics (batch median and IQR, ``EnsembleRobustNorm``). One
  galaxy moves a batch median by at most one rank, so it cannot move the normalisation of the
  others (issue 23: one galaxy with ratios of ~1000 inflated the input BatchNorm's batch and
  running variance and squashed every other galaxy's inputs).
- ``"batchnorm"`` (E20; the authors' code): the raw ratios go to an input BatchNorm in the encoder
  and one over concat[ratios, latent] in the photo-z network.
The decoder reads the latent features directly and reconstructs raw flux ratios in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from deepz_core.configs import (
    Config,
    check_bool,
    check_choice,
    check_int,
    check_probability,
    check_real,
)
from deepz_core.errors import ConfigError
from deepz_core.files import read_description
from deepz_core.nets.layers import (
    TRUNK_INT_BOUNDS,
    EnsembleMLP,
    build_trunk,
    member_mean,
    members_view,
    save_network,
)
from deepz_core.nets.mdn import MixtureDensityHead
from deepz_core.pz.mixture import GaussianMixture

_FORMAT = "deepz.model"
_VERSION = 1
INPUT_NORMS = ("robust", "batchnorm")


@dataclass(frozen=True)
class ModelConfig(Config):
    """Network shape (E20 Fig. 1 defaults; where the authors' code differed it is noted).

    - ``encoder_layers`` / ``decoder_layers``: hidden layers of ``width`` nodes (paper 10; code 5 in
      the encoder). Each network ends in a plain linear layer (to ``n_latent`` / ``n_inputs``).
    - ``photoz_first_width``: an extra first hidden layer of this width (authors' code: 56 -> 400;
      0 = none), followed by ``photoz_layers`` hidden layers of ``width``, then the MDN layer (3M).
    - Dropout ``ae_dropout`` / ``pz_dropout`` after every linear layer except the last
      ``undropped_last`` of each network. ``sigma = sigma_floor + exp(log_sigma)``.
    - ``use_autoencoder=False``: ablation without encoder/decoder; photo-z reads the ratios only.
    - ``input_norm``: "robust" (fixed training-set statistics, clipped at ``input_clip`` robust
      sigma) or "batchnorm" (E20's input BatchNorm); see the module docstring.
    - ``magnitude_input``: the reference band's AB magnitude is a last input beside the flux ratios
      (E20's networks see the ratios only); ``n_inputs`` counts it.
    """

    n_inputs: int = 46
    n_latent: int = 10
    encoder_layers: int = 10
    decoder_layers: int = 10
    width: int = 250
    photoz_layers: int = 13
    photoz_first_width: int = 400
    n_components: int = 10
    ae_dropout: float = 0.02
    pz_dropout: float = 0.01
    undropped_last: int = 3
    sigma_floor: float = 1e-3
    use_autoencoder: bool = True
    members: int = 1
    input_norm: str = "robust"
    input_clip: float = 50.0
    magnitude_input: bool = False

    CONFIG_NAME: ClassVar[str] = "model"

    def __post_init__(self) -> None:
        for name, (low, high) in _INT_BOUNDS.items():
            self._set(name, check_int(name, getattr(self, name), low, high))
        for name in ("ae_dropout", "pz_dropout"):
            self._set(name, check_probability(name, getattr(self, name)))
        for name in ("sigma_floor", "input_clip"):
            self._set(name, check_real(name, getattr(self, name), 0.0, low_open=True))
        for name in ("use_autoencoder", "magnitude_input"):
            self._set(name, check_bool(name, getattr(self, name)))
        check_choice("input_norm", self.input_norm, INPUT_NORMS)
        if self.n_weights > MAX_WEIGHTS:
            raise ConfigError(
                f"model: {self.members} networks of width {self.width} with "
                f"{self.encoder_layers}+{self.decoder_layers}+{self.photoz_layers} layers hold "
                f"{self.n_weights:,} weights, more than the {MAX_WEIGHTS:,} (4 GB) allowed; "
                "use fewer members, layers or a smaller width"
            )

    @property
    def n_weights(self) -> int:
        """Weights and biases of the linear layers of all members (the bulk of the model)."""

        def mlp(n_in: int, hidden: list[int], n_out: int) -> int:
            sizes = [n_in, *hidden, n_out]
            return sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))

        first = [self.photoz_first_width] if self.photoz_first_width > 0 else []
        n_pz_in = self.n_inputs + (self.n_latent if self.use_autoencoder else 0)
        total = mlp(n_pz_in, first + [self.width] * self.photoz_layers, 3 * self.n_components)
        if self.use_autoencoder:
            total += mlp(self.n_inputs, [self.width] * self.encoder_layers, self.n_latent)
            total += mlp(self.n_latent, [self.width] * self.decoder_layers, self.n_inputs)
        return total * self.members

    @classmethod
    def from_stored(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Config from a stored mapping (model.json, a run's config.json): one written before
        ``input_norm`` or ``magnitude_input`` existed used E20's input BatchNorm and ratios only."""
        return cls.from_dict({"input_norm": "batchnorm", "magnitude_input": False, **values})


MAX_WEIGHTS = 1_000_000_000  # all members together: ~10x E20's 50 paper-size networks
_INT_BOUNDS = {**TRUNK_INT_BOUNDS, "n_components": (1, 64)}


class DeepzModel(nn.Module):
    """E members of encoder + decoder + photo-z MDN (E20 Fig. 1). Inputs (E, N, n_inputs).

    A 2-D input (N, n_inputs) is shared by all members (inference on one catalogue).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        norm = "robust" if c.input_norm == "robust" else True
        self.encoder, self.decoder, self.photoz = build_trunk(c, 3 * c.n_components, norm)
        self.head = MixtureDensityHead(c.n_components, c.sigma_floor)
        # training-population statistics of each input (robust scaling and the screen), (E, F)
        self.register_buffer("input_loc", torch.zeros(c.members, c.n_inputs))
        self.register_buffer("input_scale", torch.ones(c.members, c.n_inputs))

    def set_input_stats(self, loc: Tensor | Any, scale: Tensor | Any) -> None:
        """Store the training population's per-input median ``loc`` and robust sigma ``scale``
        (F,), the same for every member (``deepz_core.catalog.screen.fit_input_stats``)."""
        for buf, values in ((self.input_loc, loc), (self.input_scale, scale)):
            buf.copy_(torch.as_tensor(values, dtype=buf.dtype).expand_as(buf))

    def input_stats(self) -> tuple[Tensor, Tensor]:
        """(loc, scale) of member 0, (F,) each, on the CPU."""
        return self.input_loc[0].cpu(), self.input_scale[0].cpu()

    def _scaled(self, x: Tensor) -> Tensor:
        """(E, N, F) inputs as the networks read them: robustly scaled and clipped, or raw."""
        if self.config.input_norm != "robust":
            return x
        clip = self.config.input_clip
        return ((x - self.input_loc.unsqueeze(1)) / self.input_scale.unsqueeze(1)).clamp(
            -clip, clip
        )

    def _photoz_input(self, x: Tensor, latent: Tensor) -> Tensor:
        """concat[inputs, latent features] (E, N, F + L)."""
        return torch.cat([x, latent], dim=-1)

    @property
    def members(self) -> int:
        return self.config.members

    def _members_view(self, x: Tensor) -> Tensor:
        """Check and broadcast inputs to (E, N, F)."""
        return members_view(x, self.config.members, self.config.n_inputs)

    def _require_autoencoder(self) -> tuple[EnsembleMLP, EnsembleMLP]:
        if self.encoder is None or self.decoder is None:
            raise ConfigError(
                "use_autoencoder: this model was built without an autoencoder (False)"
            )
        return self.encoder, self.decoder

    def encode(self, x: Tensor) -> Tensor:
        """Latent features, (E, N, F) -> (E, N, n_latent) (E20 Sec. 4.1)."""
        encoder, _ = self._require_autoencoder()
        return encoder(self._scaled(self._members_view(x)))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Autoencoder output, (E, N, F) -> (E, N, F)."""
        encoder, decoder = self._require_autoencoder()
        return decoder(encoder(self._scaled(self._members_view(x))))

    def forward_with_reconstruction(self, x: Tensor) -> tuple[GaussianMixture, Tensor | None]:
        """p(z) with batch shape (E, N) and the reconstruction (E, N, F), None without autoencoder."""
        x = self._scaled(self._members_view(x))  # (E, N, F)
        if self.encoder is None or self.decoder is None:
            return self.head(self.photoz(x)), None
        latent = self.encoder(x)  # (E, N, L)
        raw = self.photoz(self._photoz_input(x, latent))  # (E, N, 3M)
        return self.head(raw), self.decoder(latent)

    def forward(self, x: Tensor) -> GaussianMixture:
        """p(z) for each member and galaxy: mixture with batch shape (E, N) (E20 Sec. 2.3)."""
        x = self._scaled(self._members_view(x))  # (E, N, F)
        inputs = x if self.encoder is None else self._photoz_input(x, self.encoder(x))
        return self.head(self.photoz(inputs))

    def mdn_nll(self, x: Tensor, z: Tensor, weight: Tensor | None = None) -> Tensor:
        """Per-member mean -log p(z_label), (E,). ``z`` is (E, N) or (N,); ``weight`` (E, N) optional
        per-galaxy weights (0 drops a galaxy from the mean)."""
        return member_mean(-self(x).log_prob(z), weight)  # (E, N) -> (E,)

    def mdn_loss(self, x: Tensor, z: Tensor, weight: Tensor | None = None) -> Tensor:
        """Fine-tuning loss (E20 Sec. 2.3): per-member MDN losses, summed; the decoder is unused."""
        return self.mdn_nll(x, z, weight).sum()

    def pretrain_losses(
        self, x: Tensor, z: Tensor, x_err: Tensor, target: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Per-member (MDN loss (E,), autoencoder loss (E,)).

        Autoencoder loss as in the authors' code: mean |reconstruction - target| / x_err over
        galaxies and bands; ``target`` defaults to ``x``. ``x_err`` broadcasts to (E, N, F).
        """
        dist, recon = self.forward_with_reconstruction(x)
        nll = -dist.log_prob(z).mean(dim=-1)  # (E,)
        if recon is None:
            return nll, torch.zeros_like(nll)
        goal = self._members_view(x if target is None else target)  # (E, N, F)
        ae = ((recon - goal).abs() / x_err).mean(dim=(1, 2))  # (E,)
        return nll, ae

    def pretrain_loss(
        self, x: Tensor, z: Tensor, x_err: Tensor, target: Tensor | None = None
    ) -> Tensor:
        """Pretraining loss (E20 Sec. 3.2): MDN + autoencoder loss, equal weights, summed."""
        nll, ae = self.pretrain_losses(x, z, x_err, target)
        return (nll + ae).sum()

    def member(self, i: int) -> DeepzModel:
        """A standalone single-member copy of member ``i`` (same train/eval mode)."""
        if not 0 <= i < self.members:
            raise ConfigError(f"member: index must be in [0, {self.members}), got {i!r}")
        return _from_state(self, [{k: v[i : i + 1] for k, v in self.state_dict().items()}])

    @classmethod
    def from_members(cls, models: Sequence[DeepzModel]) -> DeepzModel:
        """Stack models with identical configs (any member counts) into one ensemble."""
        if not models:
            raise ConfigError("models: expected at least one model, got none")
        shapes = [{**m.config.to_dict(), "members": 0} for m in models]
        if any(s != shapes[0] for s in shapes):
            raise ConfigError("models: all configs must match apart from 'members'")
        return _from_state(models[0], [m.state_dict() for m in models])


def _from_state(template: DeepzModel, states: list[dict[str, Tensor]]) -> DeepzModel:
    """New model with ``template``'s config whose members are the concatenated ``states``."""
    merged = {k: torch.cat([s[k] for s in states], dim=0).clone() for k in states[0]}
    members = next(iter(merged.values())).shape[0]
    config = ModelConfig.from_dict({**template.config.to_dict(), "members": members})
    model = DeepzModel(config).to(next(iter(merged.values())).device)
    model.load_state_dict(merged)
    return model.train(template.training)


def save_model(
    model: DeepzModel,
    directory: Path | str,
    name: str = "model",
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<name>.safetensors`` (weights + BatchNorm running stats) and ``<name>.json``.

    The JSON holds the config and optional JSON-ready ``metadata``. Returns the JSON path.
    """
    return save_network(model, Path(directory) / name, _FORMAT, _VERSION, metadata)


def load_model_json(directory: Path | str, name: str = "model") -> dict[str, Any]:
    """The ``<name>.json`` document written by :func:`save_model` (config and metadata), checked:
    ``config`` a valid ModelConfig (sizes within bounds), ``metadata.bands`` a list of unique band
    names matching ``n_inputs``, ``metadata.ref_band`` one of them. ConfigError naming the file."""
    path = Path(directory) / f"{name}.json"
    doc = read_description(path, _FORMAT, "model")
    if not isinstance(doc.get("config"), Mapping):
        raise ConfigError(f"{path}: damaged model description: no 'config' object")
    try:
        config = ModelConfig.from_stored(doc["config"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: damaged model description: {exc}") from None
    meta = doc.setdefault("metadata", {})
    problem = _metadata_problem(meta, config.n_inputs - int(config.magnitude_input))
    if problem:
        raise ConfigError(f"{path}: damaged model description: {problem}")
    return doc


def _metadata_problem(meta: Any, n_bands: int) -> str | None:
    """What is wrong with a model's metadata (bands, ref_band; the networks read ``n_bands``
    bands), or None."""
    if not isinstance(meta, Mapping):
        return f"'metadata' must be an object, got {meta!r:.60}"
    bands, ref = meta.get("bands"), meta.get("ref_band")
    if bands is not None:
        names = isinstance(bands, list) and all(isinstance(b, str) and b for b in bands)
        if not names or len(set(bands)) != len(bands):
            return f"'metadata.bands' must be a list of unique band names, got {bands!r:.80}"
        if len(bands) != n_bands:
            return f"'metadata.bands' names {len(bands)} bands, the networks read {n_bands}"
    if ref is not None and (not isinstance(ref, str) or (bands is not None and ref not in bands)):
        return f"'metadata.ref_band' must be one of the bands, got {ref!r:.60}"
    return None


def load_model(
    directory: Path | str, name: str = "model", device: str | torch.device = "cpu"
) -> DeepzModel:
    """Rebuild the model from ``<name>.json``, load ``<name>.safetensors``; returns it in eval mode."""
    doc = load_model_json(directory, name)
    model = DeepzModel(ModelConfig.from_stored(doc["config"]))
    path = Path(directory) / f"{name}.safetensors"
    try:
        state = load_file(str(path), device=str(device))
        if "input_loc" not in state:  # saved before the screen: no population statistics, so
            state["input_loc"] = model.input_loc  # nothing is ever beyond them
            state["input_scale"] = torch.full_like(model.input_scale, float("inf"))
        model.load_state_dict(state)
    except (
        OSError,
        RuntimeError,
        SafetensorError,
    ) as exc:  # missing file, or weights that do not fit the config
        raise ConfigError(f"{path}: cannot load weights ({exc})") from exc
    return model.to(device).eval()
