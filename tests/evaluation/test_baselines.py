"""The kNN reference estimator."""

import numpy as np

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
