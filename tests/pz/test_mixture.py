"""Gaussian-mixture p(z) against scipy, the MDN head and ensemble averaging (E20 Sec. 2.3, 5.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from deepz_core.errors import ConfigError
from deepz_core.nets.mdn import MixtureDensityHead
from deepz_core.pz import mixture as mdn
from deepz_core.pz.mixture import GaussianMixture, combine_members


def _random_mixture(rng: np.random.Generator, batch: tuple[int, ...], m: int) -> GaussianMixture:
    logits = torch.from_numpy(rng.normal(size=(*batch, m)))  # float64
    loc = torch.from_numpy(rng.uniform(0.0, 1.5, size=(*batch, m)))
    scale = torch.from_numpy(rng.uniform(0.01, 0.2, size=(*batch, m)))
    return GaussianMixture.from_params(logits, loc, scale)


def _scipy_pdf_cdf(d: GaussianMixture, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, mu, s = (t.detach().numpy() for t in (d.weights, d.loc, d.scale))
    pdf = (w * stats.norm.pdf(z[..., None], mu, s)).sum(-1)
    cdf = (w * stats.norm.cdf(z[..., None], mu, s)).sum(-1)
    return pdf, cdf


def test_log_prob_and_cdf_match_scipy(rng: np.random.Generator) -> None:
    d = _random_mixture(rng, (4, 6), 10)
    z = rng.uniform(-0.2, 1.8, size=(4, 6))
    pdf, cdf = _scipy_pdf_cdf(d, z)
    zt = torch.from_numpy(z)
    np.testing.assert_allclose(d.log_prob(zt).numpy(), np.log(pdf), rtol=0, atol=1e-9)
    np.testing.assert_allclose(d.cdf(zt).numpy(), cdf, rtol=0, atol=1e-6)
    np.testing.assert_allclose(d.cdf(torch.tensor(50.0)).numpy(), 1.0, atol=1e-12)


def test_mean_and_sample(rng: np.random.Generator) -> None:
    d = _random_mixture(rng, (5,), 3)
    expected = (d.weights * d.loc).sum(-1)
    torch.testing.assert_close(d.mean, expected)
    assert d.sample((7,)).shape == (7, 5)


def test_pdf_grid_equals_pointwise_density(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _random_mixture(rng, (3, 4), 5)
    grid = torch.linspace(0.0, 2.0, 101, dtype=torch.float64)  # (G,)
    dens = d.pdf_grid(grid)  # (3, 4, G)
    assert dens.shape == (3, 4, 101)
    pointwise = d.log_prob(grid[:, None, None]).exp().permute(1, 2, 0)
    torch.testing.assert_close(dens, pointwise)
    monkeypatch.setattr(mdn, "_GRID_CHUNK_ELEMENTS", 2 * 101 * 5)  # force several chunks
    torch.testing.assert_close(d.pdf_grid(grid), dens)


def test_head_parameterisation() -> None:
    head = MixtureDensityHead(n_components=4, sigma_floor=1e-3)
    raw = torch.randn(2, 8, 12)
    raw[..., 8:] = -50.0  # tiny log sigma -> the floor
    d = head(raw)
    assert d.batch_shape == (2, 8)
    torch.testing.assert_close(d.weights.sum(-1), torch.ones(2, 8))
    torch.testing.assert_close(d.loc, raw[..., 4:8])
    assert float(d.scale.min()) >= 1e-3
    assert torch.isfinite(head(torch.full((1, 1, 12), 1e4)).scale).all()


def test_combined_members_is_mean_of_member_pdfs(rng: np.random.Generator) -> None:
    d = _random_mixture(rng, (4, 6), 3)  # (E, N)
    grid = torch.linspace(-1.0, 3.0, 4001, dtype=torch.float64)
    combined = combine_members(d)
    assert combined.batch_shape == (6,)
    dens = combined.pdf_grid(grid)  # (N, G)
    torch.testing.assert_close(dens, d.pdf_grid(grid).mean(0))
    integral = torch.trapezoid(dens, grid, dim=-1)
    torch.testing.assert_close(integral, torch.ones(6, dtype=torch.float64), atol=1e-6, rtol=0)
    z = torch.full((6,), 0.7, dtype=torch.float64)
    torch.testing.assert_close(combined.cdf(z), d.cdf(z).mean(0))


def test_combined_members_with_out_of_fold_mask(rng: np.random.Generator) -> None:
    d = _random_mixture(rng, (4, 5), 3)  # (E, N)
    mask = torch.from_numpy(rng.uniform(size=(4, 5)) < 0.5)
    mask[0] = True  # every galaxy has at least one usable member
    grid = torch.linspace(0.0, 2.0, 51, dtype=torch.float64)
    dens = combine_members(d, mask).pdf_grid(grid)  # (N, G)
    member = d.pdf_grid(grid)  # (E, N, G)
    for n in range(5):
        torch.testing.assert_close(dens[n], member[mask[:, n], n].mean(0))


def test_combine_members_rejects_bad_masks(rng: np.random.Generator) -> None:
    d = _random_mixture(rng, (3, 4), 2)
    with pytest.raises(ConfigError, match="member_mask"):
        combine_members(d, torch.ones(4, 3, dtype=torch.bool))
    empty = torch.ones(3, 4, dtype=torch.bool)
    empty[:, 2] = False
    with pytest.raises(ConfigError, match="galaxy index 2"):
        combine_members(d, empty)
    with pytest.raises(ConfigError, match="batch shape"):
        combine_members(_random_mixture(rng, (3,), 2))
