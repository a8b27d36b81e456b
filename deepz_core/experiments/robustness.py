"""Photometric outliers (E20 Appendix B, Fig. B1): extra u-band flux added to every test galaxy.

Template fitting trusts its Gaussian likelihood and degrades; the network degrades less; a network
trained with 10% outliers (``TrainConfig.outlier_fraction``) should stay flat. Test galaxies: a fixed
random subset of the labelled galaxies, each predicted by the network that never trained on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deepz_core import metrics
from deepz_core.catalog import Catalog
from deepz_core.experiments import figures
from deepz_core.experiments.context import Context
from deepz_core.experiments.trained import predict_single_network
from deepz_core.features import build_features
from deepz_core.runs import RunDir

U_BAND = "cfht_u"
PhotoZ = Callable[[Catalog], np.ndarray]  # catalogue -> zphot (N,)


def test_galaxies(ctx: Context) -> Catalog:
    """A fixed random subset of the labelled galaxies (without exposures: coadds are what is tested)."""
    cat = ctx.catalog
    labelled = np.flatnonzero(np.isfinite(cat.zspec))
    rng = np.random.default_rng([ctx.plan.seed, 77])
    rows = np.sort(rng.choice(labelled, min(ctx.plan.b1_galaxies, labelled.size), replace=False))
    return dataclasses.replace(cat.select(rows), exposures=None)


def add_u_flux(cat: Catalog, fraction: float) -> Catalog:
    """The catalogue with ``fraction`` x its u-band flux added to the u band (errors unchanged)."""
    flux = cat.flux.copy()
    u = cat.band_index(U_BAND)
    flux[:, u] += fraction * np.abs(flux[:, u])
    return dataclasses.replace(cat, flux=flux)


def network_photoz(run: RunDir) -> PhotoZ:
    ref_band = run.config().get("ref_band")

    def zphot(cat: Catalog) -> np.ndarray:
        features = build_features(cat, ref_band, use_exposures=False)
        assert features.n == cat.n_galaxies, "test galaxies must have a positive reference flux"
        return predict_single_network(run, features)["zphot"]

    return zphot


def figb1(ctx: Context, methods: Mapping[str, PhotoZ]) -> dict[str, Any]:
    """Strict outlier fraction vs added u-band flux for each method (E20 Fig. B1), demo mock."""
    return u_band_curves(ctx, test_galaxies(ctx), methods, "figB1_u_band_outliers.png")


def u_band_curves(
    ctx: Context, base: Catalog, methods: Mapping[str, PhotoZ], figure: str
) -> dict[str, Any]:
    """Each method's strict outlier fraction on ``base`` at every u-band flux of the plan, the rise
    from none to the most, and the figure ``figure``."""
    fractions = list(ctx.plan.u_band_added)
    lines: dict[str, list[float]] = {label: [] for label in methods}
    for f in fractions:
        cat = add_u_flux(base, f)
        for label, photoz in methods.items():
            ctx.log(f"[experiments] Fig. B1 ({figure}): {label}, u-band +{100 * f:.0f}%")
            lines[label].append(metrics.outlier_fraction(metrics.dz(photoz(cat), cat.zspec)))
    fig = figures.u_band_outliers(ctx.figure(figure), fractions, lines)
    rise = {label: y[-1] - y[0] for label, y in lines.items()}
    return {"u_band_added": fractions, "outlier_fraction": lines, "rise": rise,
            "n_galaxies": base.n_galaxies, "figure": fig}  # fmt: skip
