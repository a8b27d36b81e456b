"""Repetitions x folds (E20 Sec. 5.2): R random K-fold partitions give E = R * K networks.

Member (r, k) trains on every labelled galaxy outside fold k of repetition r. A training galaxy's
p(z) is the mean over only the R networks that never saw it (one per repetition); a galaxy outside the
training set uses all E. With K = 1 every member trains on all labelled galaxies (production mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepz_core.catalog.features import Features
from deepz_core.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Splits:
    """train: (E, N) bool, member e trained on galaxy n. labelled: (N,) bool (has a usable spec-z)."""

    train: np.ndarray
    labelled: np.ndarray
    repetitions: int
    folds: int

    @property
    def members(self) -> int:
        return self.train.shape[0]

    def predict_mask(self) -> np.ndarray:
        """(E, N) bool: members whose p(z) enters a galaxy's average (out-of-fold when possible)."""
        unseen = ~self.train
        none = ~unseen.any(axis=0)  # K = 1: every member saw it; fall back to all members
        return unseen | none[None, :]

    def out_of_fold(self) -> np.ndarray:
        """(N,) bool: the galaxy's p(z) comes only from members that never trained on it."""
        return (~self.train).any(axis=0) & self.labelled


def make_splits(labelled: np.ndarray, repetitions: int, folds: int, seed: int) -> Splits:
    """Random K-fold partitions of the labelled galaxies, repeated R times with independent shuffles."""
    if repetitions < 1:
        raise ConfigError(f"members (repetitions) must be >= 1, got {repetitions}")
    if folds < 1:
        raise ConfigError(f"folds must be >= 1, got {folds}")
    idx = np.flatnonzero(labelled)
    if len(idx) < 2 * folds:
        raise ConfigError(
            f"need at least {2 * folds} galaxies with zspec for {folds} folds, got {len(idx)}"
        )
    rng = np.random.default_rng([seed, 5])
    train = np.zeros((repetitions * folds, len(labelled)), dtype=bool)
    for r in range(repetitions):
        fold_of = np.empty(len(idx), dtype=np.int64)
        fold_of[rng.permutation(len(idx))] = np.arange(len(idx)) % folds
        for k in range(folds):
            held_out = fold_of == k if folds > 1 else np.zeros(len(idx), dtype=bool)
            train[r * folds + k, idx[~held_out]] = True
    return Splits(train=train, labelled=labelled.copy(), repetitions=repetitions, folds=folds)


Z_LABEL_MAX = 5.0  # spec-z above this (or negative) are not used as labels


def labelled_mask(features: Features) -> np.ndarray:
    """(N,) bool: galaxies whose spec-z can be a label and whose photometry passed the screen."""
    z = features.zspec
    return np.isfinite(z) & (z >= 0) & (z <= Z_LABEL_MAX) & features.trainable
