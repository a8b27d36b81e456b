"""Input calibration for the template fit (E20 Appendix A): robust coadds and band zero-points.

Zero-points are calibrated on the spec-z galaxies as in BCNZ2: fit each at its zspec (best run,
exact NNLS, k alternated with the amplitudes), take per band the median of observed / model flux
over galaxies where the model has SNR >= ``zp_min_snr``, multiply it into l_b, and repeat
``zp_iterations`` times. An overall factor of the narrow bands is degenerate with k and an overall
factor of all bands with the amplitudes, so l_b is normalised to a geometric mean of 1 over the
narrow and over the broad bands separately.

Coadds: where the catalogue has single exposures, outlier exposures (PAUS has scattered light and
cross-talk, E20 Sec. 2.1 and Appendix B) are rejected before the inverse-variance coadd, as a
template chi2 has no protection against them (``clipped_coadds``).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from deepz_core.catalog.catalog import Catalog, dense_exposures, few
from deepz_core.catalog.features import default_ref_band
from deepz_core.catalog.mapping import band_names_hint
from deepz_core.catalog.screen import Screen, screen_template_fit
from deepz_core.catalog.validation import unusable_values
from deepz_core.device import resolve_device
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.inference.predict import match_bands, unmeasured_bands
from deepz_core.sed.bands import get_band
from deepz_core.sed.template_sets import check_bands_coverable
from deepz_core.templatefit.chi2 import SOLVE_DTYPE, TemplateModel, inverse_variances
from deepz_core.templatefit.config import TemplateFitConfig
from deepz_core.templatefit.nnls import chi2_value, nnls

LOG = logging.getLogger("deepz")


def fit_device(device: str | torch.device) -> torch.device:
    """cuda > cpu for 'auto' (not mps: the solves need float64, which MPS lacks)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {str(device)!r}: the template fit runs on cpu or cuda (float64)")
    return dev


def chunk_size(cfg: TemplateFitConfig, device: torch.device) -> int:
    """Galaxies per chunk: ``cfg.chunk``, else 256 on CPU (cache-sized) and 2048 on CUDA."""
    return cfg.chunk or (2048 if device.type == "cuda" else 256)


def check_catalog(cat: Catalog, cfg: TemplateFitConfig) -> None:
    """CatalogError/ConfigError for catalogues the fit cannot use (no galaxies, unknown bands)."""
    if cat.n_galaxies == 0:
        raise CatalogError("catalogue has no galaxies")
    check_bands(tuple(cat.bands), cfg)


def check_bands(bands: tuple[str, ...], cfg: TemplateFitConfig) -> None:
    """ConfigError unless every band has a known filter curve and set ``cfg.template_set`` covers
    it over z = ``cfg.z_min`` .. ``cfg.z_max`` (``SetInfo.check_bands_coverable``)."""
    unknown = [b for b in bands if not _known(b)]
    if unknown:
        raise ConfigError(
            f"bands {unknown} have no known filter curve (see deepz_core.sed.bands)"
            f"{band_names_hint(unknown)}"
        )
    check_bands_coverable(bands, cfg.z_max, cfg.template_set)


def _known(band: str) -> bool:
    try:
        get_band(band)
    except ConfigError:
        return False
    return True


def robust_coadds(cat: Catalog, cfg: TemplateFitConfig) -> Catalog:
    """``cat`` with its coadds rebuilt from the single exposures without outliers
    (``clipped_coadds``) when it has exposures and ``cfg.clip_sigma`` > 0; exposures dropped."""
    if cat.exposures is None or cfg.clip_sigma == 0:
        return cat
    flux, error = clipped_coadds(cat, cfg.clip_sigma)
    return dataclasses.replace(cat, flux=flux, flux_error=error, exposures=None)


def empty_bands(cat: Catalog) -> list[str]:
    """The bands of ``cat`` without a usable value in any row (flux NaN/inf or a placeholder,
    error NaN/inf or <= 0: ``predict.unmeasured_bands``; a run band the catalogue lacks, added as
    NaN for the networks to impute, among them); [] when no band has a value (nothing would be
    left to fit: the screen flags every galaxy instead)."""
    empty = unmeasured_bands(cat, cat.bands)
    return [] if len(empty) == len(cat.bands) else empty


def without_bands(cat: Catalog, drop: list[str] | tuple[str, ...]) -> Catalog:
    """``cat`` without the bands ``drop`` (their fluxes, errors and exposures): the template fit
    of a band without any value is that of the catalogue without it, in the screen's share of
    usable bands too (``screen_template_fit``: half of the bands fitted)."""
    if not drop:
        return cat
    return match_bands(cat, tuple(b for b in cat.bands if b not in drop))


def without_empty_bands(cat: Catalog) -> Catalog:
    """``cat`` without its ``empty_bands``, with one warning naming them ('band NB455 has no
    values in this catalogue: left out of the template fit'): a catalogue to fit whose band has
    no value is fitted as the catalogue without it, not refused."""
    empty = empty_bands(cat)
    if empty:
        named = f"band {empty[0]} has" if len(empty) == 1 else f"bands {few(empty, 4)} have"
        LOG.warning(f"{named} no values in this catalogue: left out of the template fit")
    return without_bands(cat, empty)


def fit_screen(cat: Catalog) -> Screen:
    """The photometric screen of the template fit (``catalog.screen.screen_template_fit``) of the
    coadds of ``cat`` as fitted (after ``robust_coadds``): (N,) PzFlag bits, (N, B) usable bands.
    The reference band (``default_ref_band``) only decides the REF_* flags."""
    ref = cat.bands.index(default_ref_band(cat.bands))
    return screen_template_fit(cat.flux, cat.flux_error, ref, cat.fluxzp)


def scaled_fluxes(cat: Catalog, zero_points: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, B) fluxes and errors divided by the zero-points l_b (model flux = l_b x template flux);
    NaN where the photometric screen finds a value unusable (``catalog.validation.unusable_values``:
    a placeholder such as -99, an error <= 0, a flux or error brighter than AB 0 such as 1e30),
    so that such a band drops out of chi2 instead of deciding the galaxy's fit."""
    zp = np.ones(len(cat.bands)) if zero_points is None else np.asarray(zero_points, dtype=float)
    if zp.shape != (len(cat.bands),) or not np.all(np.isfinite(zp) & (zp > 0)):
        raise ConfigError(
            f"zero_points must be {len(cat.bands)} positive numbers, got {zp.tolist()}"
        )
    missing, implausible = unusable_values(cat.flux, cat.flux_error, cat.fluxzp)
    bad = missing | implausible
    return np.where(bad, np.nan, cat.flux) / zp, np.where(bad, np.nan, cat.flux_error) / zp


def fit_at_redshift(
    model: TemplateModel,
    flux: torch.Tensor,
    error: torch.Tensor,
    z: torch.Tensor,
    cfg: TemplateFitConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model fluxes (C, B) (narrow bands times k) and chi2 (C,) of galaxies fitted at their own
    redshifts z (C,): best run, exact NNLS, k alternated with the amplitudes (E20 eq. A3)."""
    w, f = inverse_variances(flux, error, cfg.error_floor)
    zf = torch.as_tensor(model.z, dtype=torch.float64, device=f.device)
    pos = torch.searchsorted(zf, z.double().contiguous()).clamp(1, len(zf) - 1)
    t = ((z.double() - zf[pos - 1]) / (zf[pos] - zf[pos - 1])).clamp(0, 1).float()[:, None, None]
    a = (1 - t) * model.flux[pos - 1] + t * model.flux[pos]  # (C, B, Ttot)
    both = bool(model.narrow.any()) and bool((~model.narrow).any())
    k = torch.ones(len(f), dtype=f.dtype, device=f.device)
    fwf = (w.double() * f.double() ** 2).sum(1)
    for it in range(1 + (3 * cfg.k_iterations if both else 0)):
        s = torch.where(model.narrow[None, :], k[:, None], torch.ones_like(w))
        m, chi2 = _best_run(model, w * s * s, w * f * s, fwf, a)  # (C, B) unscaled model
        if it < 3 * cfg.k_iterations and both:
            nb = model.narrow.to(w.dtype)[None, :]
            num, den = (nb * w * f * m).sum(1), (nb * w * m * m).sum(1)
            k = torch.where(den > 0, num / den.clamp_min(1e-30), k).clamp(*cfg.k_range)
    s = torch.where(model.narrow[None, :], k[:, None], torch.ones_like(w))
    return m * s, chi2


def _best_run(
    model: TemplateModel, w2: torch.Tensor, wf: torch.Tensor, fwf: torch.Tensor, a: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled model fluxes (C, B) and chi2 (C,) of the best run for templates a (C, B, Ttot)."""
    c, r, t = a.shape[0], model.n_runs, model.n_per_run
    ar = a[:, :, model.runs]  # (C, B, R, T)
    G = torch.einsum("cb,cbri,cbrj->crij", w2, ar, ar).reshape(c * r, t, t).to(SOLVE_DTYPE)
    b = torch.einsum("cb,cbrt->crt", wf, ar).reshape(c * r, t).to(SOLVE_DTYPE)
    x = nnls(G, b)
    chi2 = chi2_value(G, b, fwf.repeat_interleave(r), x).view(c, r)
    best = chi2.argmin(1)  # (C,)
    rows = torch.arange(c, device=a.device)
    coef = x.view(c, r, t)[rows, best].to(a.dtype)  # (C, T)
    m = torch.einsum("cbt,ct->cb", ar[rows, :, best], coef)
    return m, chi2[rows, best]


def calibrate_zero_points(
    cat: Catalog, cfg: TemplateFitConfig | None = None, device: str | torch.device = "cpu"
) -> np.ndarray:
    """(B,) zero-points l_b from the galaxies with a spec-z (module docstring; BCNZ2 / E20 App. A).

    Raises CatalogError when fewer than 10 galaxies have a spec-z inside the fit range."""
    cfg = cfg or TemplateFitConfig()
    check_catalog(cat, cfg)
    cat = robust_coadds(cat, cfg)
    dev = fit_device(device)
    zs = cat.zspec
    fitted = fit_screen(cat).predictable
    use = np.flatnonzero(fitted & np.isfinite(zs) & (zs >= cfg.z_min) & (zs <= cfg.z_max))
    if len(use) < 10:
        raise CatalogError(
            f"zero-point calibration needs >= 10 galaxies with a spec-z in "
            f"[{cfg.z_min}, {cfg.z_max}], got {len(use)}"
        )
    model = TemplateModel.build(tuple(cat.bands), cfg.z_grid(), dev, cfg.template_set)
    zp = np.ones(len(cat.bands))
    step = chunk_size(cfg, dev) * 2
    for _ in range(cfg.zp_iterations):
        flux, error = scaled_fluxes(cat, zp)
        ratios, good = [], []
        for s in range(0, len(use), step):
            rows = use[s : s + step]
            f = torch.as_tensor(flux[rows], dtype=torch.float32, device=dev)
            e = torch.as_tensor(error[rows], dtype=torch.float32, device=dev)
            z = torch.as_tensor(zs[rows], device=dev)
            m, _ = fit_at_redshift(model, f, e, z, cfg)
            m = m.double().cpu().numpy()
            ratios.append(flux[rows] / np.where(m > 0, m, np.nan))
            good.append(m / error[rows] >= cfg.zp_min_snr)
        ratio, ok = np.concatenate(ratios), np.concatenate(good)
        med = np.array(
            [
                np.nanmedian(ratio[ok[:, j], j]) if ok[:, j].sum() >= 5 else 1.0
                for j in range(len(cat.bands))
            ]
        )
        zp = normalise_zero_points(
            zp * np.where(np.isfinite(med) & (med > 0), med, 1.0), model.narrow.cpu().numpy()
        )
    return zp


def normalise_zero_points(zp: np.ndarray, narrow: np.ndarray) -> np.ndarray:
    """zp (B,) with geometric mean 1 over the narrow and over the broad bands separately."""
    out = np.array(zp, dtype=float)
    for group in (narrow, ~narrow):
        if group.any():
            out[group] /= np.exp(np.mean(np.log(out[group])))
    return out


def clipped_coadds(
    cat: Catalog, clip_sigma: float, rounds: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(N, B) coadds and errors with outlier exposures rejected; catalogue values where a band has
    no single exposures. Each round drops, per (galaxy, band) cell with >= 3 exposures left, the one
    exposure that deviates most from the mean of the others if that exceeds ``clip_sigma`` (its
    error and the others' mean's error in quadrature); the rest are inverse-variance averaged."""
    dense = dense_exposures(cat)
    if dense.flux.shape[-1] == 0:
        return cat.flux, cat.flux_error
    f, e, keep = dense.flux.astype(np.float64), dense.error.astype(np.float64), dense.mask.copy()
    w = np.where(keep, 1.0 / np.where(keep, e, 1.0) ** 2, 0.0)  # (N, B, X)
    for _ in range(rounds):
        sw, swf = (w * keep).sum(-1, keepdims=True), (w * keep * f).sum(-1, keepdims=True)
        others = np.clip(sw - w, 1e-300, None)  # (N, B, X) weight of the other exposures
        resid = (f - (swf - w * f) / others) / np.sqrt(np.where(keep, e, 1.0) ** 2 + 1.0 / others)
        resid = np.where(keep & (keep.sum(-1, keepdims=True) >= 3), np.abs(resid), 0.0)
        worst = resid.argmax(-1)[..., None]  # (N, B, 1)
        drop = np.take_along_axis(resid, worst, -1) > clip_sigma
        np.put_along_axis(keep, worst, np.take_along_axis(keep, worst, -1) & ~drop, -1)
    sw = (w * keep).sum(-1)
    has = dense.mask.any(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(has, (w * keep * f).sum(-1) / sw, cat.flux)
        error = np.where(has, sw**-0.5, cat.flux_error)
    return flux, error
