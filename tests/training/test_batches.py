"""Ensemble mini-batches (E, n, F): per-member orders, fresh simulation noise, randomised coadds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepz_core.catalog.catalog import Catalog, Exposures
from deepz_core.catalog.features import build_features
from deepz_core.errors import ConfigError
from deepz_core.training.batches import DataBatches, SimulationBatches, batch_slices, member_orders
from deepz_core.training.splits import make_splits

CPU = torch.device("cpu")
BANDS = ("NB455", "NB465", "NB475", "subaru_r", "subaru_i")


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _features(rng: np.random.Generator, n: int = 60):
    """Features with unique zspec (so a batch's labels identify its galaxies) and exposures."""
    flux = rng.uniform(2.0, 10.0, (n, len(BANDS)))
    error = np.full_like(flux, 0.3)
    rows = []
    for i in range(n):
        for j in range(3):  # narrow bands: 1..4 exposures; coadd = their inverse-variance mean
            k = 1 + (i + j) % 4
            e = rng.uniform(0.3, 0.9, k)
            f = flux[i, j] + e * rng.normal(size=k)
            w = e**-2
            flux[i, j], error[i, j] = (w * f).sum() / w.sum(), w.sum() ** -0.5
            rows += [(i, BANDS[j], x, f[x], e[x]) for x in range(k)]
    ref, band, num, f, e = map(np.array, zip(*rows, strict=True))
    zspec = np.round(np.linspace(0.1, 1.3, n), 6)
    zspec[::7] = np.nan
    cat = Catalog(
        ref_id=np.arange(n),
        bands=BANDS,
        flux=flux,
        flux_error=error,
        zspec=zspec,
        exposures=Exposures(ref, band, num, f, e),
    )
    return build_features(cat)


def test_member_orders_shuffle_each_pool_and_trim_to_the_smallest(rng) -> None:
    pools = [np.arange(0, 30), np.arange(10, 35), np.arange(100, 127)]
    orders = member_orders(pools, rng)
    assert orders.shape == (3, 25)
    for row, pool in zip(orders, pools, strict=True):
        assert len(np.unique(row)) == 25 and np.isin(row, pool).all()
    again = member_orders(pools, rng)
    assert not np.array_equal(orders, again)  # reshuffled every call (epoch)
    # over many epochs every galaxy of the larger pools is drawn (none systematically left out)
    seen = np.concatenate([member_orders(pools, rng)[0] for _ in range(30)])
    assert set(seen) == set(pools[0])


@pytest.mark.parametrize(
    ("n", "size", "min_batch", "expected"),
    [
        (250, 100, 60, [(0, 100), (100, 200)]),
        (250, 100, 50, [(0, 100), (100, 200), (200, 250)]),
        (100, 100, 10, [(0, 100)]),
        (5, 100, 10, []),
        (30, 10, 10, [(0, 10), (10, 20), (20, 30)]),
    ],
)
def test_batch_slices_skip_a_too_small_last_batch(n, size, min_batch, expected) -> None:
    assert [(s.start, min(s.stop, n)) for s in batch_slices(n, size, min_batch)] == expected


def test_simulation_batches_draw_fresh_noise_around_the_noiseless_ratios(rng) -> None:
    n, b, e = 400, 4, 3
    flux = rng.uniform(5, 10, (n, b))
    error = 0.1 * flux
    z = rng.uniform(0, 1, n)
    src = SimulationBatches(flux, error, z, ref=3, members=e, device=CPU)
    batches = list(src.epoch(rng, _gen(1), batch_size=100, min_batch=10))
    assert len(batches) == 4
    for batch in batches:
        assert batch.x.shape == (e, 100, b) and batch.z.shape == (e, 100)
        assert batch.x_err.shape == batch.target.shape == (e, 100, b)
        torch.testing.assert_close(batch.x[..., 3], torch.ones(e, 100))  # the reference itself
    x = torch.cat([bt.x for bt in batches], dim=1)  # (E, N, B)
    target = torch.cat([bt.target for bt in batches], dim=1)
    x_err = torch.cat([bt.x_err for bt in batches], dim=1)
    pull = ((x - target) / x_err)[..., :3]  # noise over its error: ~ N(0, ~1)
    assert abs(float(pull.mean())) < 0.1 and 0.85 < float(pull.std()) < 1.25
    # each member sees every galaxy once per epoch, in its own order
    zs = torch.cat([bt.z for bt in batches], dim=1)
    for m in range(e):
        np.testing.assert_allclose(np.sort(zs[m].numpy()), np.sort(z).astype(np.float32))
    assert not torch.equal(zs[0], zs[1])


def test_simulation_batches_without_noise_are_the_noiseless_ratios(rng) -> None:
    flux = rng.uniform(5, 10, (50, 3))
    src = SimulationBatches(flux, np.zeros_like(flux), rng.uniform(0, 1, 50), 2, 2, CPU)
    for batch in src.epoch(rng, _gen(), 25, 5):
        torch.testing.assert_close(batch.x, batch.target)


def test_data_batches_draw_each_member_from_its_own_training_set(rng) -> None:
    f = _features(rng)
    labelled = np.isfinite(f.zspec)
    s = make_splits(labelled, 2, 3, seed=4)
    src = DataBatches(f, s.train, CPU, alpha=0.8, keep_one=True, randomize=False)
    batches = list(src.epoch(rng, _gen(), batch_size=8, min_batch=4))
    assert all(bt.x.shape[0] == s.members for bt in batches)
    z_of = {float(np.float32(z)): i for i, z in enumerate(f.zspec) if np.isfinite(z)}
    for m in range(s.members):
        rows = [z_of[float(z)] for bt in batches for z in bt.z[m]]
        assert len(set(rows)) == len(rows)  # no galaxy twice in an epoch
        assert s.train[m, rows].all()  # only galaxies the member trains on
        for bt in batches:  # inputs are those galaxies' full-coadd ratios
            idx = [z_of[float(z)] for z in bt.z[m]]
            torch.testing.assert_close(bt.x[m], torch.as_tensor(f.ratio[idx]))


def test_data_batches_randomise_only_bands_with_exposures(rng) -> None:
    f = _features(rng)
    train = np.isfinite(f.zspec)[None, :]  # one member, all labelled galaxies
    src = DataBatches(f, train, CPU, alpha=0.5, keep_one=True, randomize=True)
    assert src.randomize
    (batch,) = list(src.epoch(rng, _gen(3), batch_size=1000, min_batch=1))
    z_of = {float(np.float32(z)): i for i, z in enumerate(f.zspec) if np.isfinite(z)}
    idx = [z_of[float(z)] for z in batch.z[0]]
    x, full = batch.x[0].numpy(), f.ratio[idx]
    np.testing.assert_array_equal(x[:, 3:], full[:, 3:])  # broad bands: the coadd
    assert np.isfinite(x).all()  # keep_one: never an empty band
    multi = f.exp_mask[idx, :3].sum(-1) > 1
    changed = ~np.isclose(x[:, :3], full[:, :3], rtol=1e-5)
    assert changed[multi].mean() > 0.3  # most multi-exposure bands get a different coadd
    assert not changed[~multi].any()  # a single exposure is always kept: coadd unchanged


def test_data_batches_do_not_randomise_without_exposures_or_at_alpha_one(rng) -> None:
    f = _features(rng)
    train = np.isfinite(f.zspec)[None, :]
    assert not DataBatches(f, train, CPU, 1.0, True, True).randomize
    assert not DataBatches(f, train, CPU, 0.8, True, False).randomize


def test_without_keep_one_galaxies_that_lose_a_band_leave_the_loss(rng) -> None:
    f = _features(rng)
    train = np.isfinite(f.zspec)[None, :]
    src = DataBatches(f, train, CPU, alpha=0.2, keep_one=False, randomize=True)
    (batch,) = list(src.epoch(rng, _gen(5), batch_size=1000, min_batch=1))
    assert batch.weight is not None and batch.weight.shape == batch.z.shape
    assert torch.isfinite(batch.x).all()  # lost galaxies keep finite inputs (BatchNorm stats)
    z_of = {float(np.float32(z)): i for i, z in enumerate(f.zspec) if np.isfinite(z)}
    idx = [z_of[float(z)] for z in batch.z[0]]
    lost = batch.weight[0] == 0
    assert 0 < float(lost.float().mean()) < 1  # alpha 0.2: many, not all, lose a band
    np.testing.assert_array_equal(batch.x[0][lost].numpy(), f.ratio[idx][lost.numpy()])
    assert set(batch.weight.unique().tolist()) <= {0.0, 1.0}
    keep_one = DataBatches(f, train, CPU, alpha=0.2, keep_one=True, randomize=True)
    assert all(b.weight is None for b in keep_one.epoch(rng, _gen(5), 1000, 1))


# --- photometric outliers in the training data (E20 App. B) ---------------------------------------


def _z_rows(f) -> dict[float, int]:
    return {float(np.float32(z)): i for i, z in enumerate(f.zspec) if np.isfinite(z)}


def _changes(f, batch, member: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, changed (n, B) bool, x - coadd (n, B)) of one member's batch vs the full coadds."""
    z_of = _z_rows(f)
    rows = np.array([z_of[float(z)] for z in batch.z[member]])
    x, full = batch.x[member].numpy(), f.ratio[rows]
    return rows, x != full, x - full


def test_outliers_hit_the_fraction_asked_for_in_one_non_reference_band(rng) -> None:
    f = _features(rng, n=700)
    train = np.isfinite(f.zspec)[None, :].repeat(3, axis=0)  # three members
    src = DataBatches(f, train, CPU, 0.8, True, randomize=False, outlier_fraction=0.3)
    ref = f.bands.index(f.ref_band)
    hits = []
    for batch in src.epoch(rng, _gen(7), batch_size=200, min_batch=1):
        for m in range(3):
            rows, changed, diff = _changes(f, batch, m)
            assert changed.sum(axis=1).max() <= 1  # never more than one band per galaxy
            assert not changed[:, ref].any()  # the reference band (ratio 1) is never hit
            extra = diff[changed]  # added flux, up to 100% of the band's |coadd flux|
            assert (extra > 0).all() and (extra <= np.abs(f.ratio[rows][changed]) * 1.0001).all()
            hits.append(changed.any(axis=1))
    hit = np.concatenate(hits)  # ~1800 draws: binomial sd ~0.011
    assert len(hit) > 1500 and abs(hit.mean() - 0.3) < 0.04


def test_outlier_measurements_hit_each_non_reference_flux_independently(rng) -> None:
    f = _features(rng, n=700)
    train = np.isfinite(f.zspec)[None, :].repeat(3, axis=0)
    src = DataBatches(
        f,
        train,
        CPU,
        0.8,
        True,
        randomize=False,
        outlier_fraction=0.2,
        outliers_per_measurement=True,
    )
    ref = f.bands.index(f.ref_band)
    others = [j for j in range(len(f.bands)) if j != ref]
    changed_all = []
    for batch in src.epoch(rng, _gen(5), batch_size=200, min_batch=1):
        for m in range(3):
            rows, changed, diff = _changes(f, batch, m)
            assert not changed[:, ref].any()
            extra = diff[changed]
            assert (extra > 0).all() and (extra <= np.abs(f.ratio[rows][changed]) * 1.0001).all()
            changed_all.append(changed[:, others])
    hit = np.concatenate(changed_all)  # (~1800, B - 1)
    assert np.all(np.abs(hit.mean(axis=0) - 0.2) < 0.04)  # every band at the asked rate
    per_galaxy = hit.sum(axis=1)  # independent bands: binomial(B - 1, 0.2) per galaxy
    assert abs(per_galaxy.mean() - 0.2 * len(others)) < 0.1 and per_galaxy.max() >= 2


def test_outlier_amplitude_sets_the_largest_extra_flux(rng) -> None:
    f = _features(rng, n=700)
    train = np.isfinite(f.zspec)[None, :]
    src = DataBatches(
        f, train, CPU, 0.8, True, randomize=False, outlier_fraction=0.5, outlier_amplitude=3.0
    )
    (batch,) = list(src.epoch(rng, _gen(6), batch_size=1000, min_batch=1))
    rows, changed, diff = _changes(f, batch, 0)
    share = diff[changed] / np.abs(f.ratio[rows][changed])  # U(0, 3): ~270 draws
    assert share.max() <= 3.0001 and share.max() > 2.5 and abs(share.mean() - 1.5) < 0.2


def test_outlier_bands_are_uniform_over_the_non_reference_bands(rng) -> None:
    f = _features(rng, n=700)
    train = np.isfinite(f.zspec)[None, :].repeat(4, axis=0)
    src = DataBatches(f, train, CPU, 0.8, True, randomize=False, outlier_fraction=0.5)
    counts = np.zeros(len(f.bands))
    for batch in src.epoch(rng, _gen(8), batch_size=1000, min_batch=1):
        for m in range(4):
            counts += _changes(f, batch, m)[1].sum(axis=0)
    share = counts[:4] / counts.sum()  # ~1200 outliers over 4 bands: sd ~0.0125
    assert counts[4] == 0 and np.all(np.abs(share - 0.25) < 0.05), share


def test_outliers_are_drawn_afresh_every_epoch(rng) -> None:
    f = _features(rng, n=300)
    train = np.isfinite(f.zspec)[None, :]
    src = DataBatches(f, train, CPU, 0.8, True, randomize=False, outlier_fraction=0.3)
    gen = _gen(9)
    hit_sets = []
    for _ in range(3):
        (batch,) = list(src.epoch(rng, gen, batch_size=1000, min_batch=1))
        rows, changed, _ = _changes(f, batch, 0)
        hit_sets.append(set(rows[changed.any(axis=1)].tolist()))
    a, b, c = hit_sets
    assert a != b and b != c
    overlap = len(a & b) / len(a)  # independent draws: ~30% of a's galaxies are hit again
    assert overlap < 0.6


def test_zero_outliers_leave_batches_bitwise_unchanged(rng) -> None:
    f = _features(rng)
    train = np.isfinite(f.zspec)[None, :].repeat(2, axis=0)
    seed = int(rng.integers(1 << 30))
    plain = DataBatches(f, train, CPU, 0.5, True, True)
    zero = DataBatches(f, train, CPU, 0.5, True, True, outlier_fraction=0.0)
    for _ in range(2):  # same numpy/torch streams -> identical batches (no extra draws)
        a = list(plain.epoch(np.random.default_rng(seed), _gen(2), 16, 4))
        b = list(zero.epoch(np.random.default_rng(seed), _gen(2), 16, 4))
        assert len(a) == len(b) > 1
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x.x, y.x) and torch.equal(x.z, y.z)


def test_outliers_come_on_top_of_the_randomised_coadds(rng) -> None:
    f = _features(rng, n=200)
    train = np.isfinite(f.zspec)[None, :]
    seed = int(rng.integers(1 << 30))
    (plain,) = DataBatches(f, train, CPU, 0.5, True, True).epoch(
        np.random.default_rng(seed), _gen(4), 1000, 1
    )
    (hit,) = DataBatches(f, train, CPU, 0.5, True, True, outlier_fraction=0.5).epoch(
        np.random.default_rng(seed), _gen(4), 1000, 1
    )  # one batch: the coadds are drawn first, from the same generator state
    changed = (hit.x != plain.x)[0].numpy()  # (n, B)
    assert changed.sum(axis=1).max() == 1 and 0.35 < changed.any(axis=1).mean() < 0.65
    assert torch.equal(hit.z, plain.z)


def test_outliers_need_a_band_besides_the_reference(rng) -> None:
    cat = Catalog(
        ref_id=np.arange(20),
        bands=("subaru_i",),
        flux=rng.uniform(1, 2, (20, 1)),
        flux_error=np.full((20, 1), 0.1),
        zspec=np.linspace(0.1, 1, 20),
    )
    f = build_features(cat)
    train = np.ones((1, 20), dtype=bool)
    assert DataBatches(f, train, CPU, 0.8, True, True).outlier_fraction == 0.0
    with pytest.raises(ConfigError, match="outlier_fraction"):
        DataBatches(f, train, CPU, 0.8, True, True, outlier_fraction=0.1)


def test_the_pipeline_passes_outlier_fraction_to_the_training_batches(rng) -> None:
    from deepz_core.jobs.training_run import _phases
    from deepz_core.training.config import RunConfig, TrainConfig

    f = _features(rng)
    s = make_splits(np.isfinite(f.zspec), 1, 2, seed=0)
    train = TrainConfig(outlier_fraction=0.1, device="cpu")
    (phase,) = _phases(RunConfig("cat.fits", pretrain="none", train=train), f, s, CPU)
    assert phase.source.outlier_fraction == 0.1
