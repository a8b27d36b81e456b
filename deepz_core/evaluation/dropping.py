"""Test-time exposure dropping (E20 Sec. 5.3, Fig. 7) and the mode spread as a quality indicator.

For a galaxy, each single exposure is left out in turn and the coadd of its band rebuilt from the
others (inverse-variance mean); all variants go through the ensemble in one batched inference. Bands
with a single exposure cannot lose it and are skipped. The spread of the variants' modes measures how
much one measurement can move the redshift, and can rank galaxies like ODDS does (Sec. 6.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepz_core.catalog.features import Features
from deepz_core.nets.deepz import DeepzModel
from deepz_core.pz.mixture import combine_members
from deepz_core.pz.products import PzConfig, mixture_mode


@dataclass(frozen=True, eq=False)
class Variants:
    """Leave-one-out inputs: x (V, B) with row 0 the full coadd; band, slot (V,) of the dropped
    exposure (-1 for the full coadd); galaxy (V,) index into the selection."""

    x: np.ndarray
    band: np.ndarray
    slot: np.ndarray
    galaxy: np.ndarray


def leave_one_out(
    features: Features, rows: np.ndarray, inputs: np.ndarray | None = None
) -> Variants:
    """All leave-one-exposure-out variants for galaxies ``rows`` (plus each full coadd).
    ``inputs`` (n, F): the model's inputs of those galaxies (``galaxy.model_inputs``: unusable
    bands imputed, a magnitude column), default their flux ratios."""
    xs, bands, slots, gals = [], [], [], []
    rows = np.atleast_1d(rows)
    inputs = features.ratio[rows] if inputs is None else inputs
    for g, row in enumerate(rows):
        full = inputs[g]  # (F,)
        xs.append(full[None, :])
        bands.append([-1]), slots.append([-1]), gals.append([g])
        if features.exp_mask is None:
            continue
        mask = features.exp_mask[row]  # (B, X)
        b_idx, x_idx = np.nonzero(mask & (mask.sum(axis=1, keepdims=True) > 1))
        if len(b_idx) == 0:
            continue
        err = np.where(mask, features.exp_error[row], 1.0).astype(np.float64)  # empty slots hold 0
        w = np.where(mask, err**-2.0, 0.0)  # (B, X), float64: sums minus one term stay accurate
        f = np.where(mask, features.exp_ratio[row], 0.0).astype(np.float64)
        sw, swf = w.sum(axis=1), (w * f).sum(axis=1)  # (B,)
        rebuilt = (swf[b_idx] - (w * f)[b_idx, x_idx]) / (sw[b_idx] - w[b_idx, x_idx])  # (V,)
        x = np.repeat(full[None, :], len(b_idx), axis=0)
        x[np.arange(len(b_idx)), b_idx] = rebuilt
        xs.append(x), bands.append(b_idx), slots.append(x_idx), gals.append(np.full(len(b_idx), g))
    cat = np.concatenate
    return Variants(cat(xs).astype(np.float32), cat(bands), cat(slots), cat(gals))


@torch.no_grad()
def variant_modes(
    model: DeepzModel, variants: Variants, pz: PzConfig, chunk: int = 20000
) -> np.ndarray:
    """(V,) ensemble p(z) mode of every variant."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(variants.x), chunk):
        mix = combine_members(model(torch.as_tensor(variants.x[s : s + chunk], device=device)))
        out.append(mixture_mode(mix, pz).cpu().numpy())
    return np.concatenate(out)


def exposure_effects(model: DeepzModel, features: Features, row: int, pz: PzConfig) -> dict:
    """One galaxy: its full-coadd mode and, per dropped exposure, band, slot, mode and shift."""
    v = leave_one_out(features, np.array([row]), model_inputs(model, features, np.array([row])))
    modes = variant_modes(model, v, pz)
    shift = modes[1:] - modes[0]
    order = np.argsort(-np.abs(shift))
    return {
        "variants": v,
        "mode_full": float(modes[0]),
        "band": v.band[1:][order],
        "slot": v.slot[1:][order],
        "mode": modes[1:][order],
        "shift": shift[order],
    }


def mode_spread(model: DeepzModel, features: Features, rows: np.ndarray, pz: PzConfig) -> dict:
    """Per galaxy of ``rows``: the full mode, and the std and max |shift| of leave-one-out modes."""
    v = leave_one_out(features, rows, model_inputs(model, features, np.atleast_1d(rows)))
    modes = variant_modes(model, v, pz)
    full = modes[v.band == -1]  # (N,) one full-coadd row per galaxy, in order
    shift = modes - full[v.galaxy]
    n = len(np.atleast_1d(rows))
    count = np.bincount(v.galaxy, minlength=n) - 1
    mean = np.bincount(v.galaxy, weights=shift, minlength=n) / np.maximum(count, 1)
    sq = np.bincount(v.galaxy, weights=shift**2, minlength=n) / np.maximum(count, 1)
    max_abs = np.zeros(n)
    np.maximum.at(max_abs, v.galaxy, np.abs(shift))
    return {
        "mode_full": full,
        "spread_std": np.sqrt(np.maximum(sq - mean**2, 0.0)),
        "max_shift": max_abs,
        "n_variants": count,
    }


def model_inputs(model: DeepzModel, features: Features, rows: int | np.ndarray) -> np.ndarray:
    """The inputs ``model`` reads for feature rows ``rows`` (unusable bands imputed by the training
    population's median, the reference magnitude appended when the model reads it)."""
    loc = model.input_stats()[0].numpy()
    return features.network_input(loc, rows, model.config.magnitude_input)
