"""Autoencoder denoising on the SPS simulation (E20 Sec. 4.2, Fig. 5).

An autoencoder pretrained on noisy SPS galaxies (the ``autoencoder_sim`` run: pretraining only)
reconstructs fresh noisy galaxies; per band, sigma68 of (denoised - true) / input error says how much
noise it removed (< 1: denoised; the paper finds 0.3-0.5 in the narrow bands), and the correlation
matrix of those residuals between narrow bands shows the correlated noise the decoder introduces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepz_core.catalog.features import resolve_ref_band
from deepz_core.catalog.io import read_catalog
from deepz_core.experiments import figures
from deepz_core.experiments.context import Context
from deepz_core.nets.deepz import load_model
from deepz_core.pz import metrics
from deepz_core.rundir import RunDir
from deepz_core.sed.bands import get_band
from deepz_core.simulate import cached_simulation
from deepz_core.training.batches import SimulationBatches


@torch.no_grad()
def residuals(run: RunDir, n: int, seed: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Bands and (n, B) residuals (denoised - true) / input error of fresh noisy SPS galaxies."""
    model = load_model(run.path, device="cpu").eval()
    config = run.config()
    bands = tuple(read_catalog(config["catalog"]).bands)
    sim = read_catalog(cached_simulation("sps", n, bands, seed))
    ref = sim.bands.index(resolve_ref_band(sim.bands, config.get("ref_band")))
    good = np.isfinite(sim.zspec) & (sim.flux[:, ref] > 0)
    zp = sim.fluxzp if model.config.magnitude_input else None
    source = SimulationBatches(
        sim.flux[good], sim.flux_error[good], sim.zspec[good], ref, 1, torch.device("cpu"), zp
    )
    gen = torch.Generator().manual_seed(seed)
    batch = next(source.epoch(np.random.default_rng(seed), gen, int(good.sum()), 1))
    recon = model.reconstruct(batch.x)  # (1, n, F): the B bands, then the magnitude if read
    r = ((recon - batch.target) / batch.x_err)[0, :, : len(bands)].numpy()  # (n, B)
    return bands, r


def fig5(ctx: Context, run: RunDir) -> dict[str, Any]:
    """E20 Fig. 5: sigma68 of the autoencoder's flux-ratio residuals per band and the narrow bands'
    residual correlations; the figure and its numbers."""
    bands, r = residuals(run, ctx.plan.denoise_n, ctx.plan.seed + 1000)
    ref = resolve_ref_band(bands, run.config().get("ref_band"))
    keep = [i for i, b in enumerate(bands) if b != ref]  # the reference ratio is 1 by construction
    ratio = {bands[i]: metrics.sigma68(r[:, i]) for i in keep}
    narrow = [i for i in keep if get_band(bands[i]).is_narrow]
    corr = np.corrcoef(r[:, narrow].T)  # (NB, NB)
    wave = [get_band(bands[i]).effective_wavelength for i in keep]
    fig = figures.denoising(
        ctx.figure("fig5_denoising.png"),
        wave,
        list(ratio.values()),
        corr,
        [bands[i] for i in narrow],
    )
    nb = [ratio[bands[i]] for i in narrow]
    broad = {bands[i]: ratio[bands[i]] for i in keep if i not in narrow}
    off_diag = corr[~np.eye(len(narrow), dtype=bool)]
    return {
        "sigma68_ratio": ratio,
        "narrow_median": float(np.median(nb)),
        "broad": broad,
        "narrow_corr_mean_offdiag": float(off_diag.mean()),
        "narrow_corr_max_offdiag": float(off_diag.max()),
        "n_galaxies": int(r.shape[0]),
        "figure": fig,
    }
