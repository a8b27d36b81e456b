"""Photometric outliers (E20 Appendix B, Fig. B1): extra u-band flux added to every test galaxy.

Template fitting trusts its Gaussian likelihood and degrades; the network degrades less; a network
trained with 10% outliers (``TrainConfig.outlier_fraction``) should stay flat. A network trained
without the u band is flat by construction and shows what ignoring u would cost on clean
photometry: how flat a network could be, and at what accuracy. Test galaxies: a fixed random
subset of the labelled galaxies, each predicted by the network that never trained on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepz_core.catalog.catalog import Catalog, exposure_index, few
from deepz_core.catalog.features import build_features
from deepz_core.catalog.io import write_catalog
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.experiments import figures
from deepz_core.experiments.context import Context
from deepz_core.experiments.report_writer import NO_U
from deepz_core.experiments.scoring import galaxy_types
from deepz_core.experiments.trained import predict_single_network
from deepz_core.inference.predict import match_bands
from deepz_core.nets.deepz import load_model_json
from deepz_core.pz import metrics
from deepz_core.rundir import RunDir

U_BAND = "cfht_u"
Z_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, np.inf)  # breakdown bins (spec-z); empty ones left out
PhotoZ = Callable[[Catalog], np.ndarray]  # catalogue -> zphot (N,)


def test_galaxies(ctx: Context) -> Catalog:
    """A fixed random subset of the labelled galaxies, with their single exposures: the template fit
    rebuilds clipped coadds from them as it does for the whole catalogue; the networks see coadds."""
    cat = ctx.catalog
    labelled = np.flatnonzero(np.isfinite(cat.zspec))
    rng = np.random.default_rng([ctx.plan.seed, 77])
    return cat.select(
        np.sort(rng.choice(labelled, min(ctx.plan.b1_galaxies, labelled.size), replace=False))
    )


def add_u_flux(cat: Catalog, fraction: float) -> Catalog:
    """The catalogue with ``fraction`` x its u-band coadd flux added to the u band, coadd and any
    single u exposures alike (errors unchanged), so that rebuilt coadds keep the outlier."""
    u = cat.band_index(U_BAND)
    extra = fraction * np.abs(cat.flux[:, u])  # (N,)
    flux = cat.flux.copy()
    flux[:, u] += extra
    exposures = cat.exposures
    if exposures is not None and np.any(exposures.band == U_BAND):
        galaxy, _ = exposure_index(cat)  # (M,)
        if (galaxy < 0).any():
            raise CatalogError(
                f"add_u_flux: exposures of unknown galaxies, ref_id "
                f"{few(exposures.ref_id[galaxy < 0])}"
            )
        shifted = exposures.flux + np.where(exposures.band == U_BAND, extra[galaxy], 0.0)
        exposures = dataclasses.replace(exposures, flux=shifted)
    return dataclasses.replace(cat, flux=flux, exposures=exposures)


def bands_without_u(bands: tuple[str, ...]) -> tuple[str, ...]:
    """``bands`` without the u band (U_BAND); ConfigError when the catalogue has no u band (E20 Fig.
    B1)."""
    if U_BAND not in bands:
        raise ConfigError(
            f"Fig. B1 adds flux to the u band {U_BAND!r}; the catalogue has only {list(bands)}"
        )
    return tuple(b for b in bands if b != U_BAND)


def catalog_without_u(ctx: Context) -> Path:
    """``DIR/b1_no_u/catalog.fits``: the demo mock less the u band, written once (like the runs,
    an output folder belongs to one catalogue). A network trained on it is flat in Fig. B1 by
    construction: the level a network that ignores u reaches."""
    path = ctx.root / "b1_no_u" / "catalog.fits"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cat = match_bands(ctx.catalog, bands_without_u(ctx.catalog.bands))
        write_catalog(cat, path, overwrite=True)  # fixed by the catalogue: the same galaxies
    return path


def network_photoz(run: RunDir) -> PhotoZ:
    """The run's single-network zphot; a run trained on fewer bands reads only those."""
    ref_band = run.config().get("ref_band")
    bands = tuple(load_model_json(run.path)["metadata"]["bands"])

    def zphot(cat: Catalog) -> np.ndarray:
        features = build_features(
            match_bands(cat, bands, f"the test set of run {run.path.name}"),
            ref_band,
            use_exposures=False,
        )
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
    from none to the most, the same per galaxy group (``breakdown``) and the figure ``figure``."""
    fractions = list(ctx.plan.u_band_added)
    flags: dict[str, list[np.ndarray]] = {label: [] for label in methods}  # outlier per galaxy
    for f in fractions:
        cat = add_u_flux(base, f)
        for label, photoz in methods.items():
            ctx.log(f"[experiments] Fig. B1 ({figure}): {label}, u-band +{100 * f:.0f}%")
            flags[label].append(metrics.is_outlier(metrics.dz(photoz(cat), cat.zspec)))
    lines = {label: [float(b.mean()) for b in bs] for label, bs in flags.items()}
    fig = figures.u_band_outliers(ctx.figure(figure), fractions, lines, references={NO_U})
    rise = {label: y[-1] - y[0] for label, y in lines.items()}
    return {
        "u_band_added": fractions,
        "outlier_fraction": lines,
        "rise": rise,
        "breakdown": breakdown(base, flags),
        "n_galaxies": base.n_galaxies,
        "figure": fig,
    }


def galaxy_groups(cat: Catalog) -> dict[str, np.ndarray]:
    """Boolean masks (N,): quiescent / star-forming where the catalogue says (the mocks' column
    ``quiescent``), and spec-z bins ``Z_EDGES``."""
    groups = galaxy_types(cat)
    z = np.asarray(cat.zspec, dtype=float)
    for lo, hi in zip(Z_EDGES[:-1], Z_EDGES[1:], strict=True):
        name = f"{lo:.2f} <= z < {hi:.2f}" if np.isfinite(hi) else f"z >= {lo:.2f}"
        groups[name] = (z >= lo) & (z < hi)
    return groups


def breakdown(cat: Catalog, flags: Mapping[str, list[np.ndarray]]) -> dict[str, Any]:
    """Per group: its size and each method's strict outlier fraction with no u-band flux added and
    with the most; which galaxies a method's rise comes from."""
    out: dict[str, Any] = {}
    for group, mask in galaxy_groups(cat).items():
        if mask.any():
            out[group] = {"n": int(mask.sum())} | {
                label: [float(b[0][mask].mean()), float(b[-1][mask].mean())]
                for label, b in flags.items()
            }
    return out
