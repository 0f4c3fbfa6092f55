"""Random train/test splits of the stimuli and random split halves of the trials, both seeded.

Reference: A. Nayebi, PhD thesis (Stanford, 2022): Section 2.5.6 (75/25 splits within each object, spec A-7),
Sections 3.6.2-3.6.3 (bootstrapped split halves of the trials).

Trial halves (`trial_halves`) are drawn once per bootstrap and shared by every stimulus, unit and time bin, as in a
recording where one trial covers every unit and bin. With an odd number of trials r each bootstrap leaves out one
random trial, so both halves hold floor(r / 2) trials. Half averages are one matrix product with a (r, 2 * n_boot)
matrix of weights 1 / floor(r / 2) (`half_weights`).
"""

from __future__ import annotations

import math

import numpy as np

# n: stimuli, u: units, t: time bins, r: trials, b: bootstraps, g: stimulus groups (objects)


def as_rng(seed) -> np.random.Generator:
    """An explicit `np.random.Generator` from an int seed (or the Generator itself); None is refused."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be an int or a np.random.Generator (results must be reproducible); received {seed!r}."
        )
    return np.random.default_rng(int(seed))


def stimulus_splits(n: int, train_fraction: float, n_splits: int, seed, groups=None) -> list:
    """Random train/test splits of n stimuli, stratified within groups (spec A-7: 75/25 within each object).

    Each split (and each group, if given) puts ceil(train_fraction * n_g) stimuli into train (at least 1 and at
    most n_g - 1, so every group has a test stimulus) and the rest into test, e.g. 60/20 for 80 images per object
    at 0.75, 59/59 for 118 images at 0.5, ceil(0.2 * n_bins) for ch4. Deterministic for a given seed.

    Args:
        n: number of stimuli.
        train_fraction: fraction in (0, 1) of each group used for training.
        n_splits: number of splits.
        seed: int or np.random.Generator.
        groups: optional (n,) labels (object ids); the split is drawn within each group.

    Returns:
        list of n_splits (train_idx, test_idx) pairs of sorted int64 index arrays.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2 (stimuli to split); received {n!r}.")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1; received {train_fraction!r}.")
    if int(n_splits) != n_splits or n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer; received {n_splits!r}.")
    rng = as_rng(seed)
    n = int(n)
    if groups is None:
        members = [np.arange(n)]
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must hold one label per stimulus, shape ({n},); received {groups.shape}.")
        _, inverse = np.unique(groups, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
        small = [len(m) for m in members if len(m) < 2]
        if small:
            raise ValueError(
                f"every group needs >= 2 stimuli to have both train and test members; {len(small)} groups have 1. "
                "Merge small groups or split without groups."
            )
    n_train = [min(max(math.ceil(round(train_fraction * len(m), 9)), 1), len(m) - 1) for m in members]
    splits = []
    for _ in range(int(n_splits)):
        train, test = [], []
        for m, k in zip(members, n_train):
            perm = rng.permutation(m)
            train.append(perm[:k])
            test.append(perm[k:])
        splits.append((np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(test)).astype(np.int64)))
    return splits


def trial_halves(n_trials: int, n_boot: int, seed) -> np.ndarray:
    """Random split halves of the trial axis, one pair per bootstrap.

    Returns:
        (n_boot, 2, n_trials // 2) int64 trial indices; with odd n_trials the one trial left out of a bootstrap is
        random. Deterministic for a given seed.
    """
    if int(n_trials) != n_trials or n_trials < 2:
        raise ValueError(f"split halves need >= 2 trials; received n_trials={n_trials!r}.")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; received {n_boot!r}.")
    rng = as_rng(seed)
    h = int(n_trials) // 2
    perms = rng.permuted(np.tile(np.arange(int(n_trials)), (int(n_boot), 1)), axis=1)
    return perms[:, : 2 * h].reshape(int(n_boot), 2, h).astype(np.int64)


def half_weights(halves: np.ndarray, n_trials: int) -> np.ndarray:
    """(r, 2 b) weights whose column j < b averages half 1 of bootstrap j and column b + j its half 2."""
    n_boot, _, h = halves.shape
    w = np.zeros((2, n_boot, n_trials))
    for j in range(2):
        np.put_along_axis(w[j], halves[:, j, :], 1.0 / h, axis=1)
    return np.ascontiguousarray(w.reshape(2 * n_boot, n_trials).T)


def half_means(trials, halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half averages s_1, s_2 of (..., r) trials for every bootstrap: two float64 arrays (..., b)."""
    trials = np.asarray(trials)
    out = trials @ half_weights(halves, trials.shape[-1])  # (..., 2 b)
    b = halves.shape[0]
    return out[..., :b], out[..., b:]
