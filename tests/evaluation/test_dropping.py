"""Test-time exposure dropping (E20 Sec. 5.3, Fig. 7): leave-one-out coadds and the mode spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.features import build_features
from deepz_core.evaluation.dropping import exposure_effects, leave_one_out, mode_spread
from deepz_core.nets.deepz import DeepzModel, ModelConfig
from deepz_core.pz.products import PzConfig

BANDS = ("NB455", "NB465", "NB475", "subaru_i")
COUNTS = np.array([[3, 1, 4], [2, 5, 1], [1, 1, 1], [4, 2, 3]])  # exposures per galaxy, NB band


pytestmark = pytest.mark.usefixtures("one_thread")


def _catalog(rng: np.random.Generator, exposures: bool = True) -> Catalog:
    n = len(COUNTS)
    flux = rng.uniform(2.0, 10.0, (n, len(BANDS)))
    error = np.full_like(flux, 0.2)
    rows = []
    for i in range(n):
        for j, k in enumerate(COUNTS[i]):
            e = rng.uniform(0.2, 2.0, k)  # weights differ by up to 100x
            f = flux[i, j] + e * rng.normal(size=k)
            w = e**-2
            flux[i, j], error[i, j] = (w * f).sum() / w.sum(), w.sum() ** -0.5
            rows += [(i, BANDS[j], x, f[x], e[x]) for x in range(k)]
    ref, band, num, f, e = map(np.array, zip(*rows, strict=True))
    return Catalog(
        ref_id=np.arange(n),
        bands=BANDS,
        flux=flux,
        flux_error=error,
        exposures=Exposures(ref, band, num, f, e) if exposures else None,
    )


@pytest.fixture(scope="module")
def model() -> DeepzModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_inputs=len(BANDS),
        n_latent=2,
        encoder_layers=1,
        decoder_layers=1,
        width=8,
        photoz_layers=1,
        photoz_first_width=0,
        n_components=3,
        members=2,
    )
    return DeepzModel(cfg).eval()


def test_leave_one_out_rebuilds_each_band_from_the_other_exposures(rng) -> None:
    f = build_features(_catalog(rng))
    rows = np.arange(f.n)
    v = leave_one_out(f, rows)
    expected_variants = sum(int(c) for c in COUNTS.ravel() if c > 1)
    assert len(v.x) == f.n + expected_variants and v.x.dtype == np.float32
    for g, row in enumerate(rows):
        mine = np.flatnonzero(v.galaxy == g)
        full = mine[0]
        assert v.band[full] == -1 and v.slot[full] == -1  # the full-coadd row comes first
        np.testing.assert_array_equal(v.x[full], f.ratio[row])
        dropped = mine[1:]
        assert set(v.band[dropped]) == {j for j in range(3) if COUNTS[row, j] > 1}
        for i in dropped:
            b, s = v.band[i], v.slot[i]
            mask = f.exp_mask[row, b].copy()
            assert mask[s]
            mask[s] = False  # numpy reference: inverse-variance mean of the other exposures
            w = f.exp_error[row, b, mask].astype(np.float64) ** -2
            ref = (w * f.exp_ratio[row, b, mask]).sum() / w.sum()
            assert v.x[i, b] == pytest.approx(ref, rel=1e-5)
            others = np.arange(len(BANDS)) != b
            np.testing.assert_array_equal(v.x[i, others], f.ratio[row, others])


def test_single_exposure_bands_and_galaxies_are_skipped(rng) -> None:
    f = build_features(_catalog(rng))
    v = leave_one_out(f, np.array([2]))  # galaxy 2: one exposure per band
    assert len(v.x) == 1 and v.band.tolist() == [-1]
    v1 = leave_one_out(f, np.array([0]))
    assert 1 not in v1.band.tolist() and len(v1.x) == 1 + 3 + 4


def test_without_exposures_only_the_full_coadd(rng) -> None:
    f = build_features(_catalog(rng, exposures=False))
    v = leave_one_out(f, np.arange(f.n))
    assert len(v.x) == f.n and (v.band == -1).all()
    np.testing.assert_array_equal(v.galaxy, np.arange(f.n))


def test_mode_spread_shapes_and_consistency(rng, model) -> None:
    f = build_features(_catalog(rng))
    rows = np.array([0, 1, 2, 3])
    pz = PzConfig(dz=0.001)
    out = mode_spread(model, f, rows, pz)
    assert set(out) == {"mode_full", "spread_std", "max_shift", "n_variants"}
    for value in out.values():
        assert value.shape == (len(rows),)
    np.testing.assert_array_equal(out["n_variants"], [(c[c > 1]).sum() for c in COUNTS])
    assert out["spread_std"][2] == 0 and out["max_shift"][2] == 0  # nothing to drop
    assert (out["spread_std"] >= 0).all() and (out["max_shift"] >= out["spread_std"] - 1e-12).all()
    effects = exposure_effects(model, f, 1, pz)
    assert effects["mode_full"] == pytest.approx(out["mode_full"][1])
    assert len(effects["shift"]) == out["n_variants"][1]
    assert np.all(np.diff(np.abs(effects["shift"])) <= 0)  # largest |shift| first
    assert np.max(np.abs(effects["shift"])) == pytest.approx(out["max_shift"][1])
    np.testing.assert_allclose(effects["mode"] - effects["shift"], effects["mode_full"])
    np.testing.assert_allclose(np.std(effects["shift"]), out["spread_std"][1], atol=1e-9)
