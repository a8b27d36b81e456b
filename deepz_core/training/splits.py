"""Repetitions x folds (E20 Sec. 5.2): R random K-fold partitions give E = R * K networks.

Member (r, k) trains on every labelled galaxy outside fold k of repetition r. A training galaxy's
p(z) is the mean over only the R networks that never saw it (one per repetition); a galaxy outside the
training set uses all E. With K = 1 every member trains on all labelled galaxies (production mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepz_core.catalog.features import Features
from deepz_core.errors import CatalogError, ConfigError
from deepz_core.files import atomic_write


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


def check_has_spec_z(zspec: np.ndarray, folds: int) -> None:
    """CatalogError when no galaxy of ``zspec`` (N,) has a spec-z (all NaN: no zspec column):
    checked before a run folder exists, and again among the labels (``check_labels``)."""
    if not np.isfinite(np.asarray(zspec, dtype=float)).any():
        raise CatalogError(
            f"need at least {2 * folds} galaxies with a usable spec-z for {folds} folds: the "
            "catalogue has no spec-z (column zspec; NaN = unknown)"
        )


def check_labels(features: Features, labelled: np.ndarray, folds: int) -> None:
    """CatalogError, with the reason, when the labels cannot train ``folds`` folds: fewer than
    2 x folds usable spec-z (counting those above Z_LABEL_MAX, e.g. a 99 'no redshift' code, and
    those the screen flagged), or one value for all of them (nothing to learn)."""
    z = features.zspec
    n = int(labelled.sum())
    if n < 2 * folds:
        check_has_spec_z(z, folds)
        finite = np.isfinite(z)
        high = int((finite & (z > Z_LABEL_MAX)).sum())
        screened = int((finite & (z >= 0) & (z <= Z_LABEL_MAX) & ~features.trainable).sum())
        raise CatalogError(
            f"need at least {2 * folds} galaxies with a usable spec-z for {folds} folds, got {n}: "
            f"of the {int(finite.sum())} galaxies with a spec-z, {high} are above "
            f"{Z_LABEL_MAX:g} (not used as labels) and {screened} have photometry the screen "
            "flagged (see the run's screen.json)"
        )
    values = np.unique(z[labelled])
    if len(values) == 1:
        raise CatalogError(
            f"every usable spec-z is {values[0]:g} ({n} galaxies): one value teaches the "
            "networks no redshift; check the catalogue's zspec column"
        )


ZERO_LABEL_SHARE = 0.01  # exact zeros beyond this share of the labels look like a "none" code


def zero_labels_note(features: Features, labelled: np.ndarray) -> str | None:
    """A warning when more than ``ZERO_LABEL_SHARE`` of the spec-z labels are exactly 0 (no
    galaxy's measured redshift is 0.0000: many catalogues write 0 for "no redshift", which
    would teach the networks z = 0), naming a few ref_ids; None otherwise."""
    zero = labelled & (features.zspec == 0.0)
    n = int(zero.sum())
    if n == 0 or n <= ZERO_LABEL_SHARE * int(labelled.sum()):
        return None
    shown = ", ".join(str(i) for i in features.ref_id[zero][:3])
    return (
        f"{n} of the {int(labelled.sum())} spec-z labels are exactly 0 (ref_id {shown}"
        f"{' ...' if n > 3 else ''}), trained on as z = 0: if 0 means 'no redshift' in this "
        "catalogue, set them to NaN"
    )


def write_splits(path: Path, splits: Splits, features: Features) -> None:
    """``splits.npz``, atomically: (E, N) train, (N,) labelled and ref_id, (N, B) flux ratios and
    their errors (to recognise a training galaxy by its photometry later)."""
    arrays = {
        "train": splits.train,
        "labelled": splits.labelled,
        "ref_id": features.ref_id,
        "ratio": features.ratio,
        "ratio_error": features.ratio_error,
    }
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


@dataclass(frozen=True, eq=False)
class StoredSplits:
    """A run's ``splits.npz`` as read back: (E, T) train, (T,) labelled and ref_id, and (T, B)
    ratio and ratio_error (None in runs made before they were stored)."""

    train: np.ndarray
    labelled: np.ndarray
    ref_id: np.ndarray
    ratio: np.ndarray | None
    ratio_error: np.ndarray | None


def read_splits(path: Path, members: int | None = None) -> StoredSplits:
    """``splits.npz`` with its arrays' types and shapes checked (against ``members`` networks when
    given); ConfigError naming the file when it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # zipfile, numpy and OS errors of a damaged file
        raise ConfigError(f"{path}: damaged splits file ({type(exc).__name__}: {exc})") from None
    problem = _splits_problem(arrays, members)
    if problem:
        raise ConfigError(f"{path}: damaged splits file ({problem})")
    return StoredSplits(
        arrays["train"],
        arrays["labelled"],
        arrays["ref_id"],
        arrays.get("ratio"),
        arrays.get("ratio_error"),
    )


def _splits_problem(arrays: dict[str, np.ndarray], members: int | None) -> str | None:
    """What is wrong with the arrays of a splits file, or None."""
    missing = [k for k in ("train", "labelled", "ref_id") if k not in arrays]
    if missing:
        return f"no arrays {missing}"
    train, labelled, ref_id = arrays["train"], arrays["labelled"], arrays["ref_id"]
    if train.dtype != bool or train.ndim != 2:
        return f"'train' must be a 2-D bool array, got {train.dtype} {train.shape}"
    n = train.shape[1]
    if labelled.dtype != bool or labelled.shape != (n,):
        return f"'labelled' must be ({n},) bool, got {labelled.dtype} {labelled.shape}"
    if ref_id.dtype.kind not in "iu" or ref_id.shape != (n,):
        return f"'ref_id' must be ({n},) integers, got {ref_id.dtype} {ref_id.shape}"
    if members is not None and train.shape[0] != members:
        return f"{train.shape[0]} networks in 'train', the model has {members}"
    if ("ratio" in arrays) != ("ratio_error" in arrays):
        return "'ratio' and 'ratio_error' must come together"
    for name in ("ratio", "ratio_error"):
        a = arrays.get(name)
        if a is not None and (a.dtype.kind != "f" or a.ndim != 2 or a.shape[0] != n):
            return f"'{name}' must be ({n}, B) floats, got {a.dtype} {a.shape}"
    return None
