"""Repetitions x folds (E20 Sec. 5.2): partitions, out-of-fold masks, the K = 1 fallback."""

from __future__ import annotations

import numpy as np
import pytest

from deepz_core.errors import ConfigError
from deepz_core.training.splits import make_splits


def _labelled(rng: np.random.Generator, n: int = 103, frac: float = 0.8) -> np.ndarray:
    return rng.random(n) < frac


@pytest.mark.parametrize(("r", "k"), [(1, 5), (3, 2), (2, 4), (4, 3)])
def test_r_times_k_partitions_hold_out_each_labelled_galaxy_once_per_repetition(rng, r, k) -> None:
    labelled = _labelled(rng)
    s = make_splits(labelled, r, k, seed=3)
    assert s.train.shape == (r * k, len(labelled)) and s.members == r * k
    assert (s.repetitions, s.folds) == (r, k)
    assert not s.train[:, ~labelled].any()  # unlabelled galaxies never train
    n_lab = int(labelled.sum())
    for rep in range(r):
        block = s.train[rep * k : (rep + 1) * k][:, labelled]  # (K, n_lab)
        held = ~block
        np.testing.assert_array_equal(held.sum(axis=0), 1)  # held out exactly once
        sizes = held.sum(axis=1)  # fold sizes differ by at most one galaxy
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n_lab


def test_repetitions_are_independent_shuffles(rng) -> None:
    labelled = _labelled(rng, 200)
    s = make_splits(labelled, 3, 5, seed=1)
    folds = [tuple(np.flatnonzero(~s.train[r * 5][labelled])) for r in range(3)]
    assert len(set(folds)) == 3


def test_seed_determines_the_partition(rng) -> None:
    labelled = _labelled(rng)
    a, b = make_splits(labelled, 2, 3, seed=9), make_splits(labelled, 2, 3, seed=9)
    c = make_splits(labelled, 2, 3, seed=10)
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)


def test_predict_mask_only_uses_members_that_never_saw_the_galaxy(rng) -> None:
    labelled = _labelled(rng)
    r, k = 3, 4
    s = make_splits(labelled, r, k, seed=2)
    pm = s.predict_mask()
    assert pm.shape == s.train.shape and pm.dtype == bool
    assert not (pm & s.train).any()  # never a member that trained on the galaxy
    np.testing.assert_array_equal(pm[:, labelled].sum(axis=0), r)  # one network per repetition
    assert pm[:, ~labelled].all()  # galaxies outside the training set use all E members
    np.testing.assert_array_equal(s.out_of_fold(), labelled)


def test_one_fold_trains_every_member_on_all_labelled_and_falls_back_to_all(rng) -> None:
    labelled = _labelled(rng)
    s = make_splits(labelled, 3, 1, seed=0)
    assert s.members == 3
    np.testing.assert_array_equal(s.train, np.broadcast_to(labelled, s.train.shape))
    assert s.predict_mask().all()  # every member saw it: the average uses them all
    assert not s.out_of_fold().any()


def test_labelled_mask_is_copied() -> None:
    labelled = np.ones(10, dtype=bool)
    s = make_splits(labelled, 1, 2, seed=0)
    labelled[:] = False
    assert s.labelled.all()


@pytest.mark.parametrize(
    ("r", "k", "n", "field"),
    [
        (0, 5, 100, "repetitions"),
        (-1, 5, 100, "repetitions"),
        (1, 0, 100, "folds"),
        (1, 5, 9, "galaxies"),
        (1, 1, 1, "galaxies"),
    ],
)
def test_bad_repetitions_folds_or_too_few_galaxies_raise(r, k, n, field) -> None:
    with pytest.raises(ConfigError, match=field) as err:
        make_splits(np.ones(n, dtype=bool), r, k, seed=0)
    assert str(r if field == "repetitions" else k if field == "folds" else n) in str(err.value)


# ---------------------------------------------------------------- issue 19: stored splits, labels


def _features(z: np.ndarray):
    """The few Features fields the label checks read."""
    from types import SimpleNamespace

    return SimpleNamespace(zspec=z, trainable=np.ones(len(z), bool), ref_id=np.arange(len(z)) + 7)


def test_stored_splits_round_trip_and_damage_is_named(tmp_path) -> None:
    from types import SimpleNamespace

    from deepz_core.training.splits import read_splits, write_splits

    s = make_splits(np.ones(10, bool), 1, 2, seed=0)
    f = SimpleNamespace(ref_id=np.arange(10), ratio=np.ones((10, 3)), ratio_error=np.ones((10, 3)))
    path = tmp_path / "splits.npz"
    write_splits(path, s, f)
    back = read_splits(path, members=2)
    np.testing.assert_array_equal(back.train, s.train)
    with pytest.raises(ConfigError, match="2 networks in 'train', the model has 5"):
        read_splits(path, members=5)
    path.write_bytes(path.read_bytes()[:200])  # cut short
    with pytest.raises(ConfigError, match="splits.npz: damaged splits file"):
        read_splits(path)
    np.savez(path, train=np.ones((2, 10)), labelled=np.ones(10, bool), ref_id=np.arange(10))
    with pytest.raises(ConfigError, match="'train' must be a 2-D bool array"):
        read_splits(path)
    np.savez(path, train=np.ones((2, 10), bool), labelled=np.ones(9, bool), ref_id=np.arange(10))
    with pytest.raises(ConfigError, match="'labelled' must be"):
        read_splits(path)


def test_labels_outside_the_label_range_are_explained() -> None:
    from deepz_core.errors import CatalogError
    from deepz_core.training.splits import check_labels, labelled_mask

    z = np.full(50, 7.5)  # spec-z, all above Z_LABEL_MAX
    f = _features(z)
    with pytest.raises(
        CatalogError, match="got 0: of the 50 galaxies with a spec-z, 50 are above 5"
    ):
        check_labels(f, labelled_mask(f), 2)


def test_a_catalogue_without_spec_z_says_so() -> None:
    """Review: 'of the 0 galaxies with a spec-z, 0 are above 5' for a catalogue with no zspec."""
    from deepz_core.errors import CatalogError
    from deepz_core.training.splits import check_labels, labelled_mask

    f = _features(np.full(50, np.nan))
    with pytest.raises(CatalogError, match=r"the catalogue has no spec-z \(column zspec"):
        check_labels(f, labelled_mask(f), 2)


def test_one_spec_z_value_for_every_galaxy_is_refused() -> None:
    from deepz_core.errors import CatalogError
    from deepz_core.training.splits import check_labels, labelled_mask

    f = _features(np.full(50, 0.5))
    with pytest.raises(CatalogError, match="every usable spec-z is 0.5"):
        check_labels(f, labelled_mask(f), 2)
    f = _features(np.linspace(0.1, 1, 50))
    check_labels(f, labelled_mask(f), 2)


def test_many_spec_z_of_exactly_zero_are_named_as_a_likely_code() -> None:
    """Review, tenth session: 300 of 1,087 labels were 0 (a catalogue's 'no redshift') and the
    run trained on them as z = 0 without a word."""
    from deepz_core.training.splits import labelled_mask, zero_labels_note

    z = np.linspace(0.1, 1, 200)
    assert zero_labels_note(_features(z), labelled_mask(_features(z))) is None
    z[:2] = 0.0  # 1%: galaxies may lie at z ~ 0
    assert zero_labels_note(_features(z), labelled_mask(_features(z))) is None
    z[:40] = 0.0
    f = _features(z)
    note = zero_labels_note(f, labelled_mask(f))
    assert note is not None and "40 of the 200 spec-z labels are exactly 0" in note
    assert str(f.ref_id[0]) in note and "NaN" in note
