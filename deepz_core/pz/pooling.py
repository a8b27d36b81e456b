"""Log-linear pooling of two p(z) on one redshift grid (beyond E20: the network and the template fit
combined, ``deepz_core.hybrid``).

The pooled density is p(z) = p_net(z)^a p_tf(z)^b / Z with tempering exponents a, b >= 0 chosen per
half-magnitude bin by the mean log density of the spec-z of galaxies neither estimator trained on
(out-of-fold network p(z); the template fit learns only its per-band zero-points from the spec-z);
neighbouring half magnitudes with few galaxies are merged first (``merged_edges``), so noise does
not decide a bin. a = 1, b = 0 is the network alone, a = 0, b = 1 the template fit alone;
a + b != 1 sharpens or broadens the product, which the PIT calibration fitted afterwards
(``pz.calibration``) corrects. Where the template fit is sharp and
right (bright galaxies) the product follows it; where it is broad or multimodal (faint galaxies) the
network decides between its peaks.

Shapes: N galaxies, G grid points, B magnitude bins, C candidate (a, b) pairs.
Stored as JSON (``to_dict``/``from_dict``), never pickled.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deepz_core.errors import ConfigError

CANDIDATE_A = (0.0, 0.25, 0.5, 0.75, 1.0)  # the network's exponent
CANDIDATE_B = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # the template fit's
# fewest spec-z galaxies per magnitude bin: smaller neighbouring half magnitudes are merged. Chosen on
# the demo mock (docs/benchmarks.md): with 100, the brightest half magnitude (83 galaxies) picked
# exponents 10% worse than the template fit's alone out of fold; with 300, every bin is within 3%
MIN_PER_BIN = 300
LOG_FLOOR = 60.0  # nats: a log density is floored this far below its galaxy's maximum
CHUNK = 2048  # galaxies per block (N x G float64 arrays)
VERSION = 1


@dataclass(frozen=True)
class PoolingWeights:
    """Exponents (a, b) per magnitude bin [edges[i], edges[i+1]); galaxies outside the edges take
    the nearest bin, galaxies without a magnitude the all-galaxy choice (a_all, b_all)."""

    edges: np.ndarray  # (B + 1,) AB, increasing
    a: np.ndarray  # (B,) the network's exponent
    b: np.ndarray  # (B,) the template fit's exponent
    a_all: float
    b_all: float
    n_fit: int

    def __post_init__(self) -> None:
        nb = len(self.edges) - 1
        if nb < 1 or np.shape(self.a) != (nb,) or np.shape(self.b) != (nb,):
            raise ConfigError(
                f"pooling: edges {np.shape(self.edges)}, a {np.shape(self.a)} and b "
                f"{np.shape(self.b)} do not fit together"
            )
        if not np.all(np.diff(self.edges) > 0):
            raise ConfigError(f"pooling: edges must increase, got {list(self.edges)}")
        values = np.concatenate([self.a, self.b, [self.a_all, self.b_all]])
        if not np.all(np.isfinite(values) & (values >= 0)):
            raise ConfigError(f"pooling: exponents must be finite and >= 0, got {list(values)}")

    def at(self, mag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(a, b), each (N,), of galaxies with AB magnitudes ``mag`` (N,) (NaN allowed)."""
        mag = np.asarray(mag, dtype=np.float64)
        idx = np.clip(np.searchsorted(self.edges, mag, side="right") - 1, 0, len(self.a) - 1)
        known = np.isfinite(mag)
        return (
            np.where(known, self.a[idx], self.a_all),
            np.where(known, self.b[idx], self.b_all),
        )

    def breaks(self) -> np.ndarray:
        """(J,) the inner edges where (a, b) change: where the pooled p(z) change abruptly with
        magnitude, so a calibration must not be interpolated across them."""
        change = (np.diff(self.a) != 0) | (np.diff(self.b) != 0)
        return np.asarray(self.edges[1:-1])[change]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (``from_dict`` reads them back)."""
        return {
            "version": VERSION,
            "method": "log-linear pooling p_net^a p_tf^b",
            "edges": [float(v) for v in self.edges],
            "a": [float(v) for v in self.a],
            "b": [float(v) for v in self.b],
            "a_all": float(self.a_all),
            "b_all": float(self.b_all),
            "n_fit": int(self.n_fit),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PoolingWeights:
        """The weights stored by ``to_dict``; a damaged document raises a ConfigError."""
        try:
            if int(doc["version"]) != VERSION:
                raise ConfigError(f"pooling: unknown version {doc['version']!r}")
            return cls(
                edges=np.asarray(doc["edges"], dtype=np.float64),
                a=np.asarray(doc["a"], dtype=np.float64),
                b=np.asarray(doc["b"], dtype=np.float64),
                a_all=float(doc["a_all"]),
                b_all=float(doc["b_all"]),
                n_fit=int(doc["n_fit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"pooling: not stored pooling weights ({exc!r})") from None


def floored(log_p: Tensor, floor: float = LOG_FLOOR) -> Tensor:
    """``log_p`` (N, G) with -inf/NaN and values more than ``floor`` nats below each row's maximum
    raised to that level: a zero of one estimator tempered by b > 0 vetoes no redshift outright,
    and b = 0 never meets 0 x inf. A row without a finite value becomes flat."""
    finite = torch.isfinite(log_p)
    top = torch.where(finite, log_p, torch.full_like(log_p, -torch.inf)).amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    low = top - floor
    return torch.where(finite, torch.maximum(log_p, low), low)


def pool(log_p: Tensor, log_q: Tensor, a: Tensor, b: Tensor, dz: float) -> Tensor:
    """Normalised p_net^a p_tf^b (N, G) (trapezoid rule, step ``dz``) of the floored log densities
    ``log_p``, ``log_q`` (N, G) and exponents ``a``, ``b`` (N,)."""
    log = a[:, None] * floored(log_p) + b[:, None] * floored(log_q)
    return normalised(log, dz)


def normalised(log: Tensor, dz: float) -> Tensor:
    """exp(log) (N, G) divided by its trapezoid integral over the grid of step ``dz``."""
    p = torch.exp(log - log.amax(1, keepdim=True))
    area = dz * (p.sum(1, keepdim=True) - 0.5 * (p[:, :1] + p[:, -1:]))
    return p / area


def value_at(p: Tensor, z_min: float, dz: float, z: Tensor) -> Tensor:
    """Linear interpolation of the rows of p (N, G) on the grid z_min + k dz at z (N,)."""
    g = p.shape[1]
    u = ((z - z_min) / dz).clamp(0, g - 1)
    lo = u.floor().long().clamp(max=g - 2)
    t = u - lo
    rows = torch.arange(len(z), device=p.device)
    return (1 - t) * p[rows, lo] + t * p[rows, lo + 1]


def candidate_loglik(
    log_p: Tensor,
    log_q: Tensor,
    z: Tensor,
    z_min: float,
    dz: float,
    candidates: Sequence[tuple[float, float]],
) -> Tensor:
    """(C, N) log of the pooled density at ``z`` (N,) for every candidate (a, b)."""
    out = torch.empty(len(candidates), len(z), dtype=torch.float64)
    lp, lq = floored(log_p.double()), floored(log_q.double())
    for c, (a, b) in enumerate(candidates):
        p = normalised(a * lp + b * lq, dz)
        out[c] = torch.log(value_at(p, z_min, dz, z.double()).clamp_min(1e-300))
    return out


def fit_pooling(
    loglik: np.ndarray,
    mag: np.ndarray,
    candidates: Sequence[tuple[float, float]],
    edges: np.ndarray,
    min_per_bin: int = MIN_PER_BIN,
) -> PoolingWeights:
    """The (a, b) of ``candidates`` with the largest mean log density at the spec-z, per magnitude
    bin, from ``loglik`` (C, N) (``candidate_loglik``) and ``mag`` (N,): the bins of ``edges``
    (B + 1,) merged so that each holds >= ``min_per_bin`` galaxies (``merged_edges``; with fewer
    galaxies in all, one bin with the all-galaxy choice). The mean is of log densities clipped at
    -20 nats, so one hopeless galaxy does not decide a bin."""
    loglik = np.maximum(np.asarray(loglik, dtype=np.float64), -20.0)
    mag = np.asarray(mag, dtype=np.float64)
    if loglik.ndim != 2 or loglik.shape != (len(candidates), len(mag)) or len(mag) == 0:
        raise ConfigError(
            f"pooling: loglik {loglik.shape} does not match {len(candidates)} candidates and "
            f"{len(mag)} galaxies"
        )
    best_all = int(np.argmax(loglik.mean(1)))
    edges = merged_edges(edges, mag, min_per_bin)
    nb = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, mag, side="right") - 1, 0, nb - 1)
    choice = np.full(nb, best_all)
    for i in range(nb):
        rows = np.isfinite(mag) & (idx == i)
        if rows.sum() >= min_per_bin:
            choice[i] = int(np.argmax(loglik[:, rows].mean(1)))
    cand = np.asarray(candidates, dtype=np.float64)
    return PoolingWeights(
        np.asarray(edges, dtype=np.float64),
        cand[choice, 0],
        cand[choice, 1],
        float(cand[best_all, 0]),
        float(cand[best_all, 1]),
        len(mag),
    )


def merged_edges(edges: np.ndarray, mag: np.ndarray, minimum: int) -> np.ndarray:
    """``edges`` (B + 1,) without the inner edges that leave a bin with fewer than ``minimum`` of
    the finite magnitudes ``mag`` (N,): bins are closed from the bright end once they hold
    ``minimum``, and a short last bin joins the one before. Magnitudes outside the edges count in
    the end bins, as ``PoolingWeights.at`` puts them there."""
    edges = np.asarray(edges, dtype=np.float64)
    m = np.asarray(mag, dtype=np.float64)
    m = m[np.isfinite(m)]
    nb = len(edges) - 1
    counts = np.bincount(
        np.clip(np.searchsorted(edges, m, side="right") - 1, 0, nb - 1), minlength=nb
    )
    keep, held = [edges[0]], 0
    for i in range(nb):
        held += counts[i]
        if held >= minimum and i < nb - 1:
            keep.append(edges[i + 1])
            held = 0
    if held < minimum and len(keep) > 1:
        keep.pop()  # the faint end's short remainder joins the bin before it
    return np.asarray([*keep, edges[-1]])


def default_candidates() -> list[tuple[float, float]]:
    """The (a, b) grid searched by default: CANDIDATE_A x CANDIDATE_B without (0, 0), the flat
    p(z) (its mode would be z_min with finite numbers)."""
    return [(a, b) for a, b in itertools.product(CANDIDATE_A, CANDIDATE_B) if a or b]
