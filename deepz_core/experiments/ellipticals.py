"""Fig. B1 in the paper's own set-up (E20 Appendix B): a mock of early-type galaxies only.

E20 tested outlier robustness on 10,000 simulated ellipticals (BCNZ2's elliptical SEDs, no dust, no
emission lines, SNR 10 in the narrow and 35 in the broad bands), trained the network of Sec. 2 on
them (no transfer learning), and fitted them by minimum chi2 with the very SEDs they were made
from ("optimistic: we perfectly know the SEDs"). Extra u-band flux is then added to every test
galaxy. Here: the early-type SEDs of ``deepz_core.sed.template_sets`` (#0-2: old and 2-Gyr bursts, the
tau = 0.5 Gyr S0; deepz has 3 such SEDs, BCNZ2 had 8), one per galaxy, E(B-V) = 0, no lines, drawn
by ``simulate.templates_sim`` with the SPS prior's redshifts and magnitudes and noise added once.
Beyond E20: variants of the outlier training (rate, unit, amplitude) and a network trained without
the u band, flat by construction, that shows how flat a network could be at what clean accuracy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from deepz_core.catalog.catalog import Catalog
from deepz_core.catalog.io import write_catalog
from deepz_core.experiments.context import Context
from deepz_core.experiments.report_writer import NO_U, TRAINED_FLUXES, TRAINED_GALAXIES
from deepz_core.experiments.robustness import (
    PhotoZ,
    bands_without_u,
    network_photoz,
    u_band_curves,
)
from deepz_core.experiments.trained import train_run
from deepz_core.inference.predict import match_bands
from deepz_core.sed.template_sets import CONTINUUM, flux_table
from deepz_core.simulate.templates import TemplateSimConfig, simulate_templates

# template_set.CONTINUUM indices: ssp_old, ssp_2gyr, exp_tau0.5 (E20 used 8 elliptical SEDs)
EARLY_TYPES = (0, 1, 2)
TEST_FRACTION = 0.2  # of the mock, held out of training; Fig. B1 is measured on these
Z_STEP = 0.001  # chi2 fit grid (E20's p(z) grid step)
MOCK = TemplateSimConfig(ebv=(0.0, 0.0), max_seds=1, ew_oii_max=0.0, seds=EARLY_TYPES)


class B1Run(NamedTuple):
    """One network line of Fig. B1 in E20's set-up."""

    label: str
    outliers: bool  # trained with plan.train_outliers outliers (``options`` may override the rate)
    options: dict[str, Any]  # other training options
    without_u: bool = False  # trained on the mock less U_BAND: flat by construction


ELLIPTICAL_RUNS: dict[str, B1Run] = {
    "b1_ellipticals": B1Run("network", False, {}),
    "b1_ellipticals_outliers": B1Run(TRAINED_GALAXIES, True, {}),
    # E20's "10 per cent outliers uniformly distributed over the different bands" read per measurement
    "b1_ellipticals_outlier_fluxes": B1Run(TRAINED_FLUXES, True, {"outlier_unit": "measurement"}),
    "b1_ellipticals_outlier_fluxes_3": B1Run(
        "same, 3% of fluxes", True, {"outlier_unit": "measurement", "outlier_fraction": 0.03}
    ),
    "b1_ellipticals_outlier_fluxes_x2": B1Run(
        "same, up to +200% flux", True, {"outlier_unit": "measurement", "outlier_amplitude": 2.0}
    ),
    "b1_ellipticals_outlier_fluxes_20": B1Run(
        "same, 20% of fluxes", True, {"outlier_unit": "measurement", "outlier_fraction": 0.2}
    ),
    "b1_ellipticals_outlier_fluxes_30": B1Run(
        "same, 30% of fluxes", True, {"outlier_unit": "measurement", "outlier_fraction": 0.3}
    ),
    # one outlier band in most training galaxies: the test set's case (one bad band), u in 1 of 45
    "b1_ellipticals_one_band_each": B1Run(
        "90% of the galaxies, one band each",
        True,
        {"outlier_unit": "galaxy", "outlier_fraction": 0.9},
    ),
    "b1_ellipticals_no_u": B1Run(NO_U, False, {}, without_u=True),
}


def elliptical_mock(n: int, bands: tuple[str, ...], seed: int) -> tuple[Catalog, Catalog]:
    """(training, test) catalogues of early-type galaxies with Gaussian noise drawn once."""
    clean = simulate_templates(n, bands, seed, MOCK)
    rng = np.random.default_rng([seed, 1])
    flux = clean.flux + rng.normal(size=clean.flux.shape) * clean.flux_error  # (N, B)
    cat = dataclasses.replace(clean, flux=flux, meta={"SIMKIND": "b1-ellipticals", "SEED": seed})
    n_test = int(round(TEST_FRACTION * n))
    return cat.select(np.arange(n_test, n)), cat.select(np.arange(n_test))


def chi2_photoz(
    bands: tuple[str, ...], seds: tuple[int, ...], z_max: float = MOCK.sps.z[1]
) -> PhotoZ:
    """Minimum-chi2 redshift over single templates (``seds`` at E(B-V) = 0) x a z grid, each with
    its best non-negative amplitude: E20 App. B's "SED fitting" with perfectly known SEDs."""
    z = np.round(np.arange(0.0, z_max + Z_STEP / 2, Z_STEP), 6)  # (Z,)
    table = flux_table(bands, z)[:, :, list(seds)].astype(np.float64)  # (Z, B, S), E(B-V) = 0 first

    def zphot(cat: Catalog, block: int = 256) -> np.ndarray:
        out = np.empty(cat.n_galaxies)
        for s in range(0, cat.n_galaxies, block):
            f, e = cat.flux[s : s + block], cat.flux_error[s : s + block]  # (n, B)
            w = 1.0 / e**2  # (n, B)
            ft = np.einsum("nb,zbs->nzs", f * w, table)  # (n, Z, S)
            tt = np.einsum("nb,zbs->nzs", w, table**2)  # (n, Z, S)
            gain = np.where(ft > 0, ft**2 / tt, 0.0)  # chi2 = sum(w f^2) - gain, amplitude >= 0
            best = gain.reshape(len(f), -1).argmax(1)  # (n,)
            out[s : s + block] = z[best // len(seds)]
        return out

    return zphot


def figb1_ellipticals(ctx: Context) -> dict[str, Any]:
    """Strict outlier fraction vs u-band flux added, on the elliptical mock (E20 Fig. B1 set-up)."""
    folder = ctx.root / "b1_ellipticals"
    folder.mkdir(parents=True, exist_ok=True)
    bands = ctx.catalog.bands
    train, test = elliptical_mock(ctx.plan.b1_mock_galaxies, bands, ctx.plan.seed + 11)
    paths = {False: folder / "train.fits", True: folder / "train_no_u.fits"}  # by without_u
    for no_u, path in paths.items():
        if not path.exists():
            cat = match_bands(train, bands_without_u(bands) if no_u else bands)
            write_catalog(cat, path, overwrite=True)  # fixed by the plan's seed
    methods: dict[str, PhotoZ] = {"template fit (known SEDs)": chi2_photoz(bands, EARLY_TYPES)}
    for name, run_spec in ELLIPTICAL_RUNS.items():
        fraction = {"outlier_fraction": ctx.plan.train_outliers} if run_spec.outliers else {}
        options = {"device": ctx.device, **fraction, **run_spec.options}
        run = train_run(
            ctx.root, name, paths[run_spec.without_u], ctx.plan, "none", options, log=ctx.log
        )
        methods[run_spec.label] = network_photoz(run)
    curves = u_band_curves(ctx, test, methods, "figB1_ellipticals.png")
    return curves | {"n_train": train.n_galaxies, "seds": [list(CONTINUUM)[i] for i in EARLY_TYPES]}
