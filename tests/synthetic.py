"""Synthetic catalogues shared by the tests: smooth z-dependent SEDs, optionally with exposures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepz_core.catalog.catalog import Catalog, Exposures

BANDS = ("NB455", "NB555", "NB655", "subaru_r", "subaru_i")


def synthetic_catalog(
    n: int,
    seed: int,
    *,
    bands: Sequence[str] = BANDS,
    exposures: bool = True,
    noiseless: bool = False,
    first_id: int = 1,
    with_zspec: bool = True,
    max_exposures: int = 4,
    missing_zspec: float = 0.0,
    zspec_head: Sequence[float] = (),
) -> Catalog:
    """Smooth z-dependent SEDs in ``bands``; ref_id counts from ``first_id``.

    With ``exposures`` each narrow band (``NB*``) is the inverse-variance mean of 2 to
    ``max_exposures`` single exposures. ``noiseless``: fluxes are the true ones and the catalogue
    is marked NOISELESS. Unless noiseless, a ``missing_zspec`` fraction of the spec-z is NaN and
    the first ones are replaced by ``zspec_head``. ``with_zspec=False``: no spec-z column at all.
    """
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 1.2, n)
    pos = np.linspace(0, 1, len(bands))
    true = rng.uniform(5, 50, n)[:, None] * (1.2 + np.tanh(4 * (pos - z[:, None] / 1.3)))
    error = 0.05 * true
    flux = true if noiseless else true + error * rng.normal(size=true.shape)
    narrow = [j for j, band in enumerate(bands) if band.startswith("NB")]
    rows = []
    for i in range(n if exposures else 0):
        for j in narrow:
            k = int(rng.integers(2, max_exposures + 1))
            e = error[i, j] * np.sqrt(k) * rng.uniform(0.8, 1.2, k)
            f = true[i, j] + e * rng.normal(size=k)
            w = e**-2
            flux[i, j], error[i, j] = (w * f).sum() / w.sum(), w.sum() ** -0.5
            rows += [(first_id + i, bands[j], x, f[x], e[x]) for x in range(k)]
    exp = Exposures(*map(np.array, zip(*rows, strict=True))) if rows else None
    zspec = np.round(z, 4)
    if not noiseless:
        if missing_zspec:
            zspec[rng.random(n) < missing_zspec] = np.nan
        zspec[: len(zspec_head)] = zspec_head
    return Catalog(
        ref_id=np.arange(first_id, first_id + n),
        bands=tuple(bands),
        flux=flux,
        flux_error=error,
        zspec=zspec if with_zspec else None,
        mag=23.9 - 2.5 * np.log10(flux[:, -1]),
        exposures=exp,
        meta={"NOISELESS": True} if noiseless else {},
    )


SDSS_ID = 1237648720693755918  # a real-looking 19-digit SDSS objid, beyond 2**53


def with_survey_ids(cat: Catalog, start: int = SDSS_ID) -> Catalog:
    """``cat`` with 19-digit ids that have gaps (+3, +30, +7, ... between neighbours), as survey
    object ids do; the single exposures follow. The ids stay in the catalogue's row order."""
    import dataclasses

    gaps = np.array([3, 30, 7, 1, 12], dtype=np.int64)[np.arange(cat.n_galaxies) % 5]
    ids = np.int64(start) + np.cumsum(gaps)
    exposures = cat.exposures
    if exposures is not None:
        order = np.argsort(cat.ref_id)
        pos = order[np.searchsorted(cat.ref_id, exposures.ref_id, sorter=order)]
        exposures = dataclasses.replace(exposures, ref_id=ids[pos])
    return dataclasses.replace(cat, ref_id=ids, exposures=exposures)


# the smallest networks that still learn: for tests that train end to end in seconds
TINY_MODEL = dict(
    n_latent=2,
    width=12,
    encoder_layers=1,
    decoder_layers=1,
    photoz_layers=2,
    photoz_first_width=0,
    n_components=2,
)
