"""Simple reference photo-z estimators to compare deepz against."""

from __future__ import annotations

import numpy as np
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
