"""One galaxy, or a selection, in detail for the explorer and exposure-dropping pages.

The ensemble p(z) comes from stored mixture parameters on the exact grid; the members' p(z) from the
model run on the galaxy's features; the SED from the catalogue (coadds and single exposures against
effective wavelength); the leave-one-exposure-out p(z) and mode spread from ``deepz_core.evaluation.dropping``
(E20 Sec. 5.3, Fig. 7, and the spread as a quality indicator, Sec. 6.2). G grid points, E members,
M components per member, C = E*M, V variants.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.features import Features
from deepz_core.catalog.validation import unusable_values
from deepz_core.evaluation.dropping import exposure_effects, mode_spread, model_inputs
from deepz_core.evaluation.run_products import Predictions
from deepz_core.inference.predict import mixture_from_arrays
from deepz_core.nets.deepz import DeepzModel
from deepz_core.pz import metrics
from deepz_core.pz.mixture import combine_members
from deepz_core.pz.products import PzConfig
from deepz_core.sed.bands import get_band, has_band


def pdf_on_grid(
    weights: np.ndarray, means: np.ndarray, stds: np.ndarray, grid: np.ndarray
) -> np.ndarray:
    """p(z) (N, G) of stored mixtures with parameters (N, C) on ``grid`` (G,)."""
    mix = mixture_from_arrays(np.atleast_2d(weights), np.atleast_2d(means), np.atleast_2d(stds))
    return mix.pdf_grid(torch.as_tensor(grid, dtype=torch.float64)).numpy()


def component_curves(
    weights: np.ndarray,
    means: np.ndarray,
    stds: np.ndarray,
    grid: np.ndarray,
    min_weight: float = 1e-3,
    max_components: int = 30,
) -> np.ndarray:
    """The heaviest weighted components w_i N(z; mu_i, sigma_i) (K, G), K <= max_components,
    each with w_i >= min_weight."""
    w, mu, sd = (np.asarray(a, float) for a in (weights, means, stds))
    keep = np.argsort(-w)[:max_components]
    keep = keep[w[keep] >= min_weight]
    u = (grid[None, :] - mu[keep, None]) / sd[keep, None]  # (K, G)
    return w[keep, None] * np.exp(-0.5 * u**2) / (np.sqrt(2 * np.pi) * sd[keep, None])


def galaxy_pz(
    pred: Predictions, index: int, pz: PzConfig, window: float | None = None
) -> dict[str, Any]:
    """Ensemble p(z) of predictions row ``index`` on the exact grid, its components, mode, z_s,
    Δz/(1+z_s), PIT and ODDS (for ``window``, default the run's), the median and 68% interval of
    that p(z), and ``calibrated``: the p(z) is the calibrated one, whose peak need not be at
    ``mode`` (zphot, the mode of the raw p(z) before calibration)."""
    grid = pz.grid()
    w, mu, sd = pred.weights[index], pred.means[index], pred.stds[index]
    zp, zs = float(pred.zphot[index]), float(pred.zspec[index])
    known = np.isfinite(zp) and np.isfinite(zs) and zs > -1
    return {
        "ref_id": int(pred.ref_id[index]),
        "grid": grid,
        "pdf": pdf_on_grid(w, mu, sd, grid)[0],
        "components": component_curves(w, mu, sd, grid),
        "mode": float(pred.zphot[index]),
        "zspec": float(pred.zspec[index]),
        "dz": float(metrics.dz(zp, zs)) if known else float("nan"),  # no spec-z (or no p(z))
        "pit": float(pred.pit[index]),
        "odds": float(pred.odds[index]),
        "odds_window": float(window or pz.odds_window),
        "mag": None if pred.mag is None else float(pred.mag[index]),
        "calibrated": bool(pred.calibrated),
        "zmedian": float(pred.zmedian[index]),
        "z_lo68": float(pred.z_lo68[index]),
        "z_hi68": float(pred.z_hi68[index]),
    }


def galaxy_inputs(
    model: DeepzModel, cat: Catalog, features: Features, pred: Predictions, index: int, pz: PzConfig
) -> dict[str, Any]:
    """Members' p(z) (E, G) from the model on the galaxy's features, which members the stored
    ensemble uses, the galaxy's SED from the catalogue and, for calibrated predictions,
    ``raw_pdf`` (G,): the ensemble p(z) before calibration (None otherwise), whose mode zphot is."""
    row = int(feature_rows(features, pred.ref_id[[index]])[0])
    members = member_pdfs(model, model_inputs(model, features, row), pz.grid())
    used = members_used(pred.weights[index], model.members)
    return {
        "members": members,
        "members_used": used,
        "raw_pdf": raw_ensemble_pdf(members, used) if pred.calibrated else None,
        "sed": sed(cat, int(features.rows[row])),
    }


def raw_ensemble_pdf(members: np.ndarray, used: np.ndarray) -> np.ndarray:
    """The uncalibrated ensemble p(z) (G,): the mean of the used members' p(z) (E, G), as
    ``pz.mixture.combine_members`` averages them (all members when none is marked used)."""
    used = np.asarray(used, bool)
    return np.asarray(members, float)[used if used.any() else slice(None)].mean(axis=0)


def members_used(weights: np.ndarray, members: int) -> np.ndarray:
    """(E,) whether each member contributes to a stored ensemble mixture (weights (C,), C = E*M):
    for a training galaxy only the members that never saw it do (E20 Sec. 5.2)."""
    return np.asarray(weights, float).reshape(members, -1).sum(axis=1) > 0


@torch.no_grad()
def member_pdfs(model: DeepzModel, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """p(z) (E, G) of every ensemble member for one galaxy's inputs x (B,)."""
    model.eval()
    device = next(model.parameters()).device
    mix = model(torch.as_tensor(np.asarray(x, np.float32)[None, :], device=device))  # (E, 1)
    grid_t = torch.as_tensor(grid, dtype=torch.float64, device=device)
    return mix.pdf_grid(grid_t)[:, 0, :].double().cpu().numpy()


def _wavelengths(bands: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Effective wavelengths [A] and narrow flags; band index and no flags when any band is unknown."""
    if all(has_band(b) for b in bands):
        objs = [get_band(b) for b in bands]
        return (
            np.array([o.effective_wavelength for o in objs]),
            np.array([o.is_narrow for o in objs]),
            True,
        )
    return (
        np.arange(len(bands), dtype=float),
        np.array([b.upper().startswith("NB") for b in bands]),
        False,
    )


def sed(cat: Catalog, row: int) -> dict[str, Any]:
    """Coadd fluxes and errors of catalogue row ``row`` per band, with effective wavelengths (or band
    index for unknown bands), narrow-band flags, ``usable`` (B,): False where the screen finds
    the value unusable (NaN, a placeholder, error <= 0, brighter than AB 0 such as 1e30; the
    networks impute it, the template fit leaves it out) and the galaxy's usable single exposures
    (long arrays)."""
    wave, narrow, known = _wavelengths(tuple(cat.bands))
    missing, implausible = unusable_values(
        cat.flux[row : row + 1], cat.flux_error[row : row + 1], cat.fluxzp
    )
    out: dict[str, Any] = {
        "bands": list(cat.bands),
        "wavelength": wave,
        "narrow": narrow,
        "known": known,
        "flux": cat.flux[row].astype(float),
        "error": cat.flux_error[row].astype(float),
        "usable": ~(missing | implausible)[0],
        "fluxzp": float(cat.fluxzp),
        "exp_wavelength": np.zeros(0),
        "exp_flux": np.zeros(0),
        "exp_error": np.zeros(0),
    }
    exp = cat.exposures
    if exp is not None and len(exp):
        pick = np.flatnonzero(exp.ref_id == cat.ref_id[row])
        index = {b: i for i, b in enumerate(cat.bands)}
        band_i = np.array([index.get(str(b), -1) for b in exp.band[pick]], dtype=int)
        pick, band_i = pick[band_i >= 0], band_i[band_i >= 0]
        bad = np.logical_or(*unusable_values(exp.flux[pick], exp.flux_error[pick], cat.fluxzp))
        pick, band_i = pick[~bad], band_i[~bad]
        out.update(
            exp_wavelength=wave[band_i], exp_flux=exp.flux[pick], exp_error=exp.flux_error[pick]
        )
    return out


@torch.no_grad()
def dropping_detail(
    model: DeepzModel, features: Features, row: int, pz: PzConfig
) -> dict[str, Any]:
    """Leave-one-exposure-out study of feature row ``row`` (E20 Fig. 7): the exposure_effects table
    (band name, slot, mode, shift, sorted by |shift|), the ensemble p(z) of the full coadd and of
    every variant on the exact grid (V, G) in the same order, and the spread of the modes. A
    galaxy the screen gives no p(z) (``Features.predictable`` False: its products are NaN) gets
    ``{"no_pz": True}``: its imputed inputs would give a confident p(z) it never had."""
    if not features.predictable[row]:
        return {"no_pz": True}
    eff = exposure_effects(model, features, row, pz)
    v = eff["variants"]
    grid = pz.grid()
    device = next(model.parameters()).device
    mix = combine_members(model(torch.as_tensor(v.x, device=device)))  # batch (1 + V,)
    pdf = (
        mix.pdf_grid(torch.as_tensor(grid, dtype=torch.float64, device=device))
        .double()
        .cpu()
        .numpy()
    )
    variant_pdf = pdf[1:][_variant_order(v, eff)]  # aligned with the table's |shift| order
    names = np.array(features.bands)[eff["band"]] if len(eff["band"]) else np.array([], str)
    shift = np.asarray(eff["shift"])
    return {
        "grid": grid,
        "pdf_full": pdf[0],
        "pdf_variants": variant_pdf,
        "band": names,
        "slot": np.asarray(eff["slot"]),
        "mode": np.asarray(eff["mode"]),
        "shift": shift,
        "mode_full": eff["mode_full"],
        "spread_std": float(shift.std()) if shift.size else 0.0,
        "max_shift": float(np.abs(shift).max()) if shift.size else 0.0,
    }


def _variant_order(v: Any, eff: dict[str, Any]) -> np.ndarray:
    """Index into the unsorted variants (1..V) of each sorted row of ``eff`` (matched by band, slot)."""
    key = {(int(b), int(s)): i for i, (b, s) in enumerate(zip(v.band[1:], v.slot[1:], strict=True))}
    return np.array(
        [key[(int(b), int(s))] for b, s in zip(eff["band"], eff["slot"], strict=True)], dtype=int
    )


def spread_study(
    model: DeepzModel, features: Features, pred: Predictions, pred_rows: np.ndarray, pz: PzConfig
) -> dict[str, Any]:
    """Mode spread of leave-one-out variants for the galaxies ``pred_rows`` (predictions rows) and
    sigma68 vs completeness when cutting on it or on ODDS (E20 Sec. 6.2)."""
    feat_rows = feature_rows(features, pred.ref_id[pred_rows])
    sp = mode_spread(model, features, feat_rows, pz)
    zp, zs, odds = pred.zphot[pred_rows], pred.zspec[pred_rows], pred.odds[pred_rows]
    comp = np.round(np.linspace(0.05, 1.0, 20), 6)
    spread = sp["spread_std"]
    curves = {
        "ODDS cut": metrics.odds_curve(zp, zs, odds, comp),
        "keep small spread": metrics.completeness_curve(
            zp, zs, spread, comp, higher_is_better=False
        ),
        "keep large spread": metrics.completeness_curve(
            zp, zs, spread, comp, higher_is_better=True
        ),
        "optimal (|Δz| known)": metrics.optimal_curve(zp, zs, comp),
    }
    return {
        "ref_id": pred.ref_id[pred_rows],
        "spread_std": spread,
        "max_shift": sp["max_shift"],
        "n_variants": sp["n_variants"],
        "curves": curves,
        "n": len(pred_rows),
    }


def feature_rows(features: Features, ref_ids: np.ndarray) -> np.ndarray:
    """Feature rows of galaxies ``ref_ids`` (all must be present)."""
    order = np.argsort(features.ref_id)
    pos = np.searchsorted(features.ref_id, ref_ids, sorter=order)
    rows = order[np.clip(pos, 0, len(order) - 1)]
    if not np.array_equal(features.ref_id[rows], np.asarray(ref_ids)):
        raise KeyError("some galaxies are not in the run's features")
    return rows


def spread_selection(
    pred: Predictions, n: int, mag_lo: float | None, mag_hi: float | None
) -> np.ndarray:
    """Predictions rows of the first ``n`` scored galaxies with mag in [mag_lo, mag_hi]."""
    use = pred.scored.copy()
    if pred.mag is not None and mag_lo is not None and mag_hi is not None:
        use &= (pred.mag >= mag_lo) & (pred.mag <= mag_hi)
    return np.flatnonzero(use)[: max(int(n), 0)]
