"""Stimulus splits (stratified, disjoint, seeded) and trial halves."""

import numpy as np
import pytest

from goaldriven.neural_fits.metrics.splits import stimulus_splits, trial_halves

# n: stimuli, u: units, t: time bins, r: trials, b: bootstraps


def test_stimulus_splits_are_stratified_disjoint_and_deterministic():
    groups = np.repeat(np.arange(4), [8, 8, 5, 3])  # object ids
    splits = stimulus_splits(len(groups), 0.75, 3, seed=7, groups=groups)
    assert len(splits) == 3
    for train, test in splits:
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
        # ceil(0.75 * n_g) per group: 8 -> 6, 5 -> 4, 3 -> 3 would leave no test member, so 2
        np.testing.assert_array_equal(np.bincount(groups[train], minlength=4), [6, 6, 4, 2])
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    again = stimulus_splits(len(groups), 0.75, 3, seed=7, groups=groups)
    for (a, b), (c, d) in zip(splits, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    other = stimulus_splits(len(groups), 0.75, 3, seed=8, groups=groups)
    assert any(not np.array_equal(a, c) for (a, _), (c, _) in zip(splits, other))
    assert not np.array_equal(splits[0][0], splits[1][0])  # splits differ from one another


def test_stimulus_splits_without_groups_use_ceil_of_fraction():
    for n, fraction, n_train in ((118, 0.5, 59), (80, 0.75, 60), (401, 0.2, 81)):
        train, test = stimulus_splits(n, fraction, 1, seed=0)[0]
        assert len(train) == n_train and len(test) == n - n_train


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n=1), ValueError, "n must be"),
        (dict(train_fraction=1.0), ValueError, "train_fraction"),
        (dict(train_fraction=0.0), ValueError, "train_fraction"),
        (dict(n_splits=0), ValueError, "n_splits"),
        (dict(groups=np.zeros(5)), ValueError, "one label per stimulus"),
        (dict(groups=np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 2])), ValueError, ">= 2 stimuli"),
        (dict(seed=None), TypeError, "seed"),
    ],
)
def test_stimulus_splits_errors(kwargs, error, match):
    args = dict(n=10, train_fraction=0.5, n_splits=2, seed=0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        stimulus_splits(**args)


# ------------------------------------------------------------------------------------------------------- trial halves
def test_trial_halves_are_disjoint_equal_halves_and_drop_one_trial_when_odd():
    for r in (10, 9):
        halves = trial_halves(r, 50, seed=3)
        assert halves.shape == (50, 2, r // 2)
        for h1, h2 in halves:
            assert np.intersect1d(h1, h2).size == 0
            assert len(np.unique(np.concatenate([h1, h2]))) == 2 * (r // 2)
        np.testing.assert_array_equal(halves, trial_halves(r, 50, seed=3))
    dropped = [np.setdiff1d(np.arange(9), h.ravel())[0] for h in trial_halves(9, 200, seed=0)]
    assert len(set(dropped)) == 9  # the left-out trial is random, not always the last
    with pytest.raises(ValueError, match=">= 2 trials"):
        trial_halves(1, 5, seed=0)
    with pytest.raises(ValueError, match="n_boot"):
        trial_halves(4, 0, seed=0)


# ---------------------------------------------------------------------------------------------------------- reliability
