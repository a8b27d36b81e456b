"""The kNN reference estimator."""

import numpy as np
import pytest

from deepz_core.catalog.features import Features
from deepz_core.evaluation.baselines import knn_photoz


def _features(ratio: np.ndarray, zspec: np.ndarray) -> Features:
    n = len(zspec)
    return Features(
        bands=("a", "b"),
        ref_band="b",
        rows=np.arange(n),
        ref_id=np.arange(n),
        ratio=ratio.astype(np.float32),
        ratio_error=np.ones_like(ratio, np.float32),
        zspec=zspec,
        mag=None,
        exp_ratio=None,
        exp_error=None,
        exp_mask=None,
        n_excluded=0,
        flags=np.zeros(n, np.int32),
        usable=np.ones(ratio.shape, bool),
        n_rows=n,
        ref_mag=np.full(n, 20.0, np.float32),
    )


def test_knn_recovers_a_smooth_colour_redshift_relation(rng) -> None:
    z = rng.uniform(0, 1.2, 3000)
    ratio = np.stack([0.5 + z, np.ones_like(z)], axis=1)  # colour grows linearly with z
    train, test = _features(ratio[:2500], z[:2500]), _features(ratio[2500:], z[2500:])
    assert np.abs(knn_photoz(train, test) - z[2500:]).max() < 0.01


def test_feature_subset_keeps_rows_aligned(rng) -> None:
    z = rng.uniform(0, 1, 10)
    f = _features(np.stack([z, np.ones(10)], axis=1), z)
    sub = f.subset(np.arange(10) % 2 == 0)
    np.testing.assert_array_equal(sub.zspec, z[::2])
    np.testing.assert_array_equal(sub.ref_id, np.arange(0, 10, 2))
    assert sub.n == 5


def test_the_redshift_distribution_scores_a_gaussian_and_a_uniform_n_z() -> None:
    from deepz_core.evaluation.baselines import redshift_distribution_nll

    rng = np.random.default_rng(1)
    z = rng.normal(1.0, 0.5, 12000)  # entropy of N(1, 0.5): 0.5 ln(2 pi e 0.25) = 0.726 nats
    assert abs(redshift_distribution_nll(z[:6000], z[6000:]) - 0.726) < 0.03  # noise: 0.01
    u = rng.uniform(0.0, 3.0, 12000)  # ln 3 = 1.099, plus what the kernel spills past the edges
    assert 0 < redshift_distribution_nll(u[:6000], u[6000:]) - np.log(3.0) < 0.06


def test_the_redshift_distribution_caps_each_galaxy_at_the_clip() -> None:
    from deepz_core.evaluation.baselines import redshift_distribution_nll

    z = np.random.default_rng(2).normal(0.5, 0.2, 2000)
    test = np.append(z[1000:], 50.0)  # one junk redshift far from every training galaxy
    assert redshift_distribution_nll(z[:1000], test) > 100
    capped = redshift_distribution_nll(z[:1000], test, clip=20.0)
    clean = redshift_distribution_nll(z[:1000], z[1000:])  # no clean galaxy is near the cap
    assert capped == pytest.approx((1000 * clean + 20.0) / 1001, rel=1e-9)
