"""Randomised coadds from single exposures (E20 Sec. 5.1): keep rules and inverse-variance means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepz_core.training.coadds import (
    ExposureStack,
    inverse_variance_coadd,
    random_keep,
    randomized_coadds,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _generator(seed: int = 7) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _ragged_mask(rng: np.random.Generator, shape: tuple[int, ...], x: int) -> torch.Tensor:
    """(..., X) mask whose cells hold 0..X existing exposures in the first slots."""
    counts = rng.integers(0, x + 1, size=shape)
    return torch.as_tensor(np.arange(x) < counts[..., None])  # (..., X)


def _exposures(rng: np.random.Generator, n: int, b: int, x: int):
    mask = _ragged_mask(rng, (n, b), x)  # (N, B, X)
    flux = torch.as_tensor(rng.normal(1.0, 0.3, (n, b, x)), dtype=torch.float64)
    error = torch.as_tensor(rng.uniform(0.05, 0.5, (n, b, x)), dtype=torch.float64)
    # empty slots hold garbage, as they may in a dense tensor; it must never leak into a coadd
    flux = torch.where(mask, flux, torch.nan)
    error = torch.where(mask, error, torch.zeros_like(error))
    return flux, error, mask


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.8])
def test_keep_one_never_leaves_an_existing_band_empty(rng, alpha) -> None:
    mask = _ragged_mask(rng, (400, 12), 6)  # (N, B, X), some cells without exposures
    keep = random_keep(mask, alpha, _generator(), keep_one=True)
    assert keep.shape == mask.shape and keep.dtype == torch.bool
    assert not (keep & ~mask).any()  # only existing exposures are ever kept
    has = mask.any(-1)
    assert keep.any(-1)[has].all()  # >= 1 kept wherever there is one
    assert not keep.any(-1)[~has].any()  # nothing invented where there is none


def test_keep_one_also_holds_for_a_single_existing_exposure_in_the_last_slot() -> None:
    mask = torch.zeros(2000, 5, dtype=torch.bool)
    mask[:, 4] = True  # the only exposure is in the last slot: a slot pick among ALL slots fails
    keep = random_keep(mask, 0.2, _generator(), keep_one=True)
    assert keep[:, 4].all() and not keep[:, :4].any()


def test_kept_fraction_is_alpha_without_keep_one(rng) -> None:
    alpha = 0.8
    mask = _ragged_mask(rng, (3000, 10), 5)
    keep = random_keep(mask, alpha, _generator(3), keep_one=False)
    n = int(mask.sum())
    frac = float(keep.sum()) / n
    assert abs(frac - alpha) < 5 * np.sqrt(alpha * (1 - alpha) / n)


@pytest.mark.parametrize("x", [1, 3, 5])
def test_kept_fraction_with_keep_one_matches_its_expectation(x) -> None:
    """Per cell of X exposures: E[kept] = X alpha + (1 - alpha)^X (the forced one)."""
    alpha, cells = 0.6, 20000
    mask = torch.ones(cells, x, dtype=torch.bool)
    kept = random_keep(mask, alpha, _generator(11), keep_one=True).sum(-1).double()  # (cells,)
    expected = x * alpha + (1 - alpha) ** x
    var = float(kept.var())
    assert abs(float(kept.mean()) - expected) <= 5 * np.sqrt(var / cells) + 1e-12


def test_alpha_one_keeps_everything_existing(rng) -> None:
    mask = _ragged_mask(rng, (50, 4), 5)
    keep = random_keep(mask, 1.0, _generator(), keep_one=True)
    assert torch.equal(keep, mask)


def test_same_generator_state_gives_the_same_draw(rng) -> None:
    mask = _ragged_mask(rng, (30, 4), 5)
    a = random_keep(mask, 0.5, _generator(5), True)
    b = random_keep(mask, 0.5, _generator(5), True)
    c = random_keep(mask, 0.5, _generator(6), True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_inverse_variance_coadd_matches_numpy(rng) -> None:
    flux, error, mask = _exposures(rng, 60, 5, 6)
    keep = random_keep(mask, 0.7, _generator(), keep_one=True)
    coadd, err = inverse_variance_coadd(flux, error, keep)
    f, e, k = flux.numpy(), error.numpy(), keep.numpy()
    ref = np.full(k.shape[:-1], np.nan)
    ref_err = np.full(k.shape[:-1], np.nan)
    for i, j in np.ndindex(*k.shape[:-1]):
        sel = k[i, j]
        if sel.any():
            w = e[i, j, sel] ** -2.0
            ref[i, j] = (w * f[i, j, sel]).sum() / w.sum()
            ref_err[i, j] = w.sum() ** -0.5
    has = k.any(-1)
    np.testing.assert_allclose(coadd.numpy()[has], ref[has], rtol=1e-12)
    np.testing.assert_allclose(err.numpy()[has], ref_err[has], rtol=1e-12)
    assert np.isnan(coadd.numpy()[~has]).all()  # NaN where nothing is kept, never a 0 * NaN leak


def test_randomized_coadds_rebuild_bands_with_exposures_and_keep_the_rest(rng) -> None:
    flux, error, mask = _exposures(rng, 80, 6, 5)
    mask[:, 4:] = False  # bands 4, 5: coadd only (broad bands)
    coadd = torch.as_tensor(rng.normal(1.0, 0.1, (80, 6)))  # (N, B) catalogue coadds
    out = randomized_coadds(coadd, flux, error, mask, 0.8, _generator(2), keep_one=True)
    keep = random_keep(mask, 0.8, _generator(2), keep_one=True)  # same draw
    rebuilt, _ = inverse_variance_coadd(flux, error, keep)
    has = mask.any(-1)
    assert torch.equal(out[~has], coadd[~has])  # no exposures: the catalogue coadd, untouched
    torch.testing.assert_close(out[has], rebuilt[has], rtol=0, atol=0)
    assert torch.isfinite(out).all()


def test_randomized_coadds_with_all_exposures_is_the_full_inverse_variance_mean(rng) -> None:
    flux, error, mask = _exposures(rng, 40, 3, 4)
    coadd = torch.zeros(40, 3, dtype=torch.float64)
    out = randomized_coadds(coadd, flux, error, mask, 1.0, _generator(), keep_one=True)
    full, _ = inverse_variance_coadd(flux, error, mask)
    has = mask.any(-1)
    torch.testing.assert_close(out[has], full[has])


def test_without_keep_one_a_band_can_lose_every_exposure_and_become_nan() -> None:
    mask = torch.ones(5000, 1, 2, dtype=torch.bool)  # one band, two exposures
    flux = torch.ones(5000, 1, 2)
    error = torch.ones(5000, 1, 2)
    coadd = torch.ones(5000, 1)
    gen = _generator(4)
    out = randomized_coadds(coadd, flux, error, mask, 0.3, gen, keep_one=False)
    lost = torch.isnan(out[:, 0])
    assert 0.4 < float(lost.float().mean()) < 0.58  # expected (1 - 0.3)^2 = 0.49
    out1 = randomized_coadds(coadd, flux, error, mask, 0.3, _generator(4), keep_one=True)
    assert torch.isfinite(out1).all()


def test_works_with_member_and_batch_leading_axes(rng) -> None:
    flux, error, mask = _exposures(rng, 24, 4, 3)
    e_flux, e_err, e_mask = (t.reshape(3, 8, 4, 3) for t in (flux, error, mask))  # (E, n, B, X)
    coadd = torch.ones(3, 8, 4, dtype=torch.float64)
    out = randomized_coadds(coadd, e_flux, e_err, e_mask, 0.8, _generator(), keep_one=True)
    assert out.shape == (3, 8, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize("keep_one", [True, False])
def test_exposure_stack_matches_the_reference_coadd(rng, keep_one) -> None:
    """The prepared (N, X, B) form gives the same coadds as keep masks applied to (N, B, X)."""
    flux, error, mask = _exposures(rng, 60, 8, 5)  # (N, B, X)
    coadd = torch.as_tensor(rng.normal(size=(60, 8)))  # (N, B) used where a band has no exposure
    idx = torch.as_tensor(rng.integers(0, 60, size=(3, 20)))  # (E, n)
    stack = ExposureStack(flux, error, mask)
    out = stack.coadds(idx, coadd[idx], 0.4, _generator(9), keep_one)  # (E, n, B)
    keep = random_keep(mask[idx].transpose(-1, -2), 0.4, _generator(9), keep_one, dim=-2)
    ref, _ = inverse_variance_coadd(flux[idx], error[idx], keep.transpose(-1, -2))
    ref = torch.where(mask[idx].any(-1), ref, coadd[idx])
    torch.testing.assert_close(out, ref, equal_nan=True)
    has = mask[idx].any(-1)
    assert torch.isnan(out[has]).any() == (not keep_one)  # alpha 0.4 loses whole bands at times
    assert not torch.isnan(out[~has]).any()


def test_random_keep_on_another_axis_keeps_one_per_cell(rng) -> None:
    mask = _ragged_mask(rng, (300, 7), 6).transpose(-1, -2)  # (N, X, B)
    keep = random_keep(mask, 0.1, _generator(), keep_one=True, dim=-2)
    assert not (keep & ~mask).any()
    assert torch.equal(keep.any(-2), mask.any(-2))
