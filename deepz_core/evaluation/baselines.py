"""Simple reference photo-z estimators to compare deepz against."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.neighbors import KNeighborsRegressor

from deepz_core.catalog.features import Features


def knn_photoz(train: Features, test: Features, k: int = 10) -> np.ndarray:
    """(N_test,) kNN regression of zspec on standardised flux ratios (distance-weighted k neighbours).

    Uses the same inputs as the networks (fluxes over the reference band); training galaxies must all
    have a finite zspec.
    """
    mean, std = train.ratio.mean(axis=0), train.ratio.std(axis=0) + 1e-12
    model = KNeighborsRegressor(n_neighbors=k, weights="distance")
    model.fit((train.ratio - mean) / std, train.zspec)
    return model.predict((test.ratio - mean) / std)


KDE_POINTS, TEST_POINTS = 4000, 20000  # redshift_distribution_nll's cost: at most their product


def redshift_distribution_nll(
    z_train: np.ndarray, z_test: np.ndarray, clip: float | None = None
) -> float:
    """Mean NLL (nats) of the redshifts ``z_test`` (M,) when every galaxy gets the same p(z): the
    training spec-z ``z_train`` (N,) smoothed by a Gaussian kernel (Silverman's bandwidth, at
    least 1e-3). What a photo-z estimator that learned nothing from the fluxes scores; each
    galaxy capped at ``clip`` nats when given, as the watched held-out NLL is
    (``training.loop.NLL_CLIP``). Beyond KDE_POINTS training redshifts their quantiles stand in
    for them, beyond TEST_POINTS test redshifts an even stride of them (a mean to ~0.005 nats).

    >>> z = np.random.default_rng(0).normal(1.0, 0.5, 5000)
    >>> round(redshift_distribution_nll(z[:2500], z[2500:]), 2)  # a Gaussian's: 0.73
    0.72
    """
    z_train, z_test = np.asarray(z_train, float), np.asarray(z_test, float)
    spread = min(z_train.std(), np.subtract(*np.percentile(z_train, [75, 25])) / 1.349)
    h = max(0.9 * spread * len(z_train) ** -0.2, 1e-3)
    if len(z_train) > KDE_POINTS:
        z_train = np.quantile(z_train, (np.arange(KDE_POINTS) + 0.5) / KDE_POINTS)
    z_test = z_test[:: -(-len(z_test) // TEST_POINTS)] if len(z_test) else z_test
    nll = np.empty(len(z_test))
    for s in range(0, len(z_test), 1024):  # (1024, N) at a time
        d = (z_test[s : s + 1024, None] - z_train[None, :]) / h
        log_k = -0.5 * d * d - np.log(h * np.sqrt(2 * np.pi))
        nll[s : s + 1024] = np.log(len(z_train)) - logsumexp(log_k, axis=1)
    return float(np.mean(nll if clip is None else np.minimum(nll, clip)))
