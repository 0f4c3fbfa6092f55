"""Tests for goaldriven.neural_fits.metrics: correlations, splits, split-half reliability, summaries."""

import warnings

import numpy as np
import pytest
import scipy.stats

from goaldriven.neural_fits import metrics

# n: stimuli, u: units, t: time bins, r: trials, b: bootstraps


def _simulated_trials(n, u, r, noise_sd, seed=0, extra_shape=()):
    """Signal with unit variance over stimuli (exactly, per unit) plus Gaussian trial noise of sd `noise_sd`."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, u) + extra_shape)
    signal = (signal - signal.mean(0)) / signal.std(0)
    noise_sd = np.asarray(noise_sd, dtype=float)
    return signal[..., None] + noise_sd[..., None] * rng.normal(size=(n, u) + extra_shape + (r,))


# ------------------------------------------------------------------------------------------------------------- pearson
def test_pearson_matches_scipy_along_either_axis():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 5))
    b = 0.5 * a + rng.normal(size=(40, 5))
    expected = [scipy.stats.pearsonr(a[:, j], b[:, j])[0] for j in range(5)]
    np.testing.assert_allclose(metrics.pearson(a, b), expected, rtol=1e-12)
    expected_rows = [scipy.stats.pearsonr(a[i], b[i])[0] for i in range(40)]
    np.testing.assert_allclose(metrics.pearson(a, b, axis=1), expected_rows, rtol=1e-10)
    # float32 input, 3-D, negative axis
    a3, b3 = a.reshape(40, 5, 1).astype(np.float32), b.reshape(40, 5, 1).astype(np.float32)
    np.testing.assert_allclose(metrics.pearson(a3, b3, axis=-3)[:, 0], expected, rtol=1e-5)


def test_pearson_zero_variance_gives_nan_without_warnings():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 3))
    b = rng.normal(size=(30, 3))
    a[:, 0] = 0.1  # constant up to the rounding of the mean
    b[:, 2] = 7.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = metrics.pearson(a, b)
    assert np.isnan(r[0]) and np.isnan(r[2])
    np.testing.assert_allclose(r[1], scipy.stats.pearsonr(a[:, 1], b[:, 1])[0])


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((5, 2)), np.zeros((5, 3)), "same shape"),
        (np.zeros((1, 2)), np.zeros((1, 2)), ">= 2 stimuli"),
        (np.float64(1.0), np.float64(2.0), "stimulus axis"),
    ],
)
def test_pearson_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        metrics.pearson(a, b)


# ------------------------------------------------------------------------------------------- spearman-brown, correction
def test_spearman_brown_values():
    np.testing.assert_allclose(metrics.spearman_brown(0.5), 2 * 0.5 / 1.5)
    np.testing.assert_allclose(metrics.spearman_brown([0.2], factor=4), [4 * 0.2 / (1 + 3 * 0.2)])
    np.testing.assert_allclose(metrics.spearman_brown(np.array([0.0, 1.0])), [0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metrics.spearman_brown(-1.0))
    with pytest.raises(ValueError, match="factor"):
        metrics.spearman_brown(0.5, factor=0)


def test_noise_corrected_divides_by_root_reliability_and_never_gives_inf():
    r = np.array([0.5, 0.3, 0.3, 0.3, 0.4])
    rel = np.array([0.25, 0.0, -0.1, np.nan, 0.64])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = metrics.noise_corrected(r, rel)
    np.testing.assert_allclose(out[[0, 4]], [1.0, 0.5])
    assert np.all(np.isnan(out[1:4]))
    np.testing.assert_allclose(metrics.noise_corrected(np.ones((2, 3)), 0.25), np.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="broadcast"):
        metrics.noise_corrected(np.ones(3), np.ones(4))


# ----------------------------------------------------------------------------------------------------------- summarize
def test_summarize_ignores_nan_and_uses_ddof_1():
    values = np.array([0.2, np.nan, 0.9, 0.5, 0.4, np.nan])
    kept = values[~np.isnan(values)]
    out = metrics.summarize(values)
    assert out["n"] == 4
    np.testing.assert_allclose(out["median"], np.median(kept))
    np.testing.assert_allclose(out["sem"], np.std(kept, ddof=1) / 2.0)
    out = metrics.summarize(values, tanh=True)
    np.testing.assert_allclose(out["median"], np.median(np.tanh(kept)))
    np.testing.assert_allclose(out["sem"], np.std(np.tanh(kept), ddof=1) / 2.0)


def test_summarize_per_time_bin_and_degenerate_cases():
    values = np.array([[1.0, np.nan, 2.0], [3.0, np.nan, np.nan], [5.0, 4.0, np.nan]])  # (u, t)
    out = metrics.summarize(values, axis=0)
    np.testing.assert_array_equal(out["n"], [3, 1, 1])
    np.testing.assert_allclose(out["median"], [3.0, 4.0, 2.0])
    np.testing.assert_allclose(out["sem"][0], np.std([1, 3, 5], ddof=1) / np.sqrt(3))
    assert np.isnan(out["sem"][1]) and np.isnan(out["sem"][2])
    all_nan = metrics.summarize([np.nan, np.nan])
    assert all_nan["n"] == 0 and np.isnan(all_nan["median"]) and np.isnan(all_nan["sem"])
    with pytest.raises(ValueError, match="at least one value"):
        metrics.summarize([])


# ------------------------------------------------------------------------------------------------------------- splits
def test_stimulus_splits_are_stratified_disjoint_and_deterministic():
    groups = np.repeat(np.arange(4), [8, 8, 5, 3])  # object ids
    splits = metrics.stimulus_splits(len(groups), 0.75, 3, seed=7, groups=groups)
    assert len(splits) == 3
    for train, test in splits:
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
        # ceil(0.75 * n_g) per group: 8 -> 6, 5 -> 4, 3 -> 3 would leave no test member, so 2
        np.testing.assert_array_equal(np.bincount(groups[train], minlength=4), [6, 6, 4, 2])
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    again = metrics.stimulus_splits(len(groups), 0.75, 3, seed=7, groups=groups)
    for (a, b), (c, d) in zip(splits, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    other = metrics.stimulus_splits(len(groups), 0.75, 3, seed=8, groups=groups)
    assert any(not np.array_equal(a, c) for (a, _), (c, _) in zip(splits, other))
    assert not np.array_equal(splits[0][0], splits[1][0])  # splits differ from one another


def test_stimulus_splits_without_groups_use_ceil_of_fraction():
    for n, fraction, n_train in ((118, 0.5, 59), (80, 0.75, 60), (401, 0.2, 81)):
        train, test = metrics.stimulus_splits(n, fraction, 1, seed=0)[0]
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
        metrics.stimulus_splits(**args)


# ------------------------------------------------------------------------------------------------------- trial halves
def test_trial_halves_are_disjoint_equal_halves_and_drop_one_trial_when_odd():
    for r in (10, 9):
        halves = metrics.trial_halves(r, 50, seed=3)
        assert halves.shape == (50, 2, r // 2)
        for h1, h2 in halves:
            assert np.intersect1d(h1, h2).size == 0
            assert len(np.unique(np.concatenate([h1, h2]))) == 2 * (r // 2)
        np.testing.assert_array_equal(halves, metrics.trial_halves(r, 50, seed=3))
    dropped = [np.setdiff1d(np.arange(9), h.ravel())[0] for h in metrics.trial_halves(9, 200, seed=0)]
    assert len(set(dropped)) == 9  # the left-out trial is random, not always the last
    with pytest.raises(ValueError, match=">= 2 trials"):
        metrics.trial_halves(1, 5, seed=0)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.trial_halves(4, 0, seed=0)


# ---------------------------------------------------------------------------------------------------------- reliability
@pytest.mark.parametrize("noise_sd", [0.5, 1.5, 3.0])
def test_split_half_reliability_matches_spearman_brown_theory(noise_sd):
    n, u, r = 300, 30, 10
    trials = _simulated_trials(n, u, r, noise_sd, seed=int(10 * noise_sd))
    rel = metrics.split_half_reliability(trials, n_boot=20, seed=0)
    expected = 1.0 / (1.0 + noise_sd**2 / r)  # var_s / (var_s + var_noise / r), var_s = 1
    assert rel.shape == (u,)
    np.testing.assert_allclose(rel.mean(), expected, atol=0.03)
    np.testing.assert_allclose(rel, expected, atol=0.15)
    half = metrics.split_half_reliability(trials, n_boot=20, seed=0, spearman_brown=False)
    np.testing.assert_allclose(half.mean(), 1.0 / (1.0 + noise_sd**2 / (r // 2)), atol=0.03)


def test_split_half_reliability_time_resolved_and_odd_trial_count():
    n, u, r = 300, 20, 9
    noise_sd = np.broadcast_to(np.array([0.5, 1.0, 2.0, 4.0]), (u, 4))  # (u, t): SNR falls over bins
    trials = _simulated_trials(n, u, r, noise_sd, seed=4, extra_shape=(4,))  # (n, u, t, r)
    rel = metrics.split_half_reliability(trials, n_boot=20, seed=1)
    assert rel.shape == (u, 4)
    # r = 9: each half holds 4 trials, so the SB value predicts 2 * 4 = 8 trials.
    expected = 1.0 / (1.0 + np.array([0.5, 1.0, 2.0, 4.0]) ** 2 / 8)
    np.testing.assert_allclose(rel.mean(axis=0), expected, atol=0.03)


def test_split_half_reliability_equals_a_direct_loop_and_is_chunk_invariant():
    n, u, r, n_boot = 40, 3, 7, 12
    trials = _simulated_trials(n, u, r, 1.0, seed=5, extra_shape=(2,)).astype(np.float32)  # (n, u, t, r)
    halves = metrics.trial_halves(r, n_boot, seed=11)
    expected = np.zeros((u, 2))
    for unit in range(u):
        for k in range(2):
            vals = []
            for h1, h2 in halves:
                x = trials[:, unit, k, h1].astype(np.float64).mean(1)
                y = trials[:, unit, k, h2].astype(np.float64).mean(1)
                rho = np.corrcoef(x, y)[0, 1]
                vals.append(2 * rho / (1 + rho))
            expected[unit, k] = np.mean(vals)
    got = metrics.split_half_reliability(trials, n_boot, seed=11)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    tiny = metrics.split_half_reliability(trials, n_boot, seed=11, chunk_bytes=1)  # one column per chunk
    np.testing.assert_allclose(tiny, expected, rtol=1e-10)
    even = _simulated_trials(n, u, 8, 1.0, seed=6)
    halves = metrics.trial_halves(8, n_boot, seed=2)
    direct = [
        np.mean([np.corrcoef(even[:, j, a].mean(1), even[:, j, b].mean(1))[0, 1] for a, b in halves]) for j in range(u)
    ]
    got = metrics.split_half_reliability(even, n_boot, seed=2, spearman_brown=False)
    np.testing.assert_allclose(got, direct, rtol=1e-10)
    # Given halves that do not cover all 8 trials (2 + 2): no "s_2 = 2 mean - s_1" shortcut may be taken.
    partial = np.array([[[0, 1], [2, 3]], [[7, 5], [4, 0]]])
    direct = [
        np.mean([np.corrcoef(even[:, j, a].mean(1), even[:, j, b].mean(1))[0, 1] for a, b in partial]) for j in range(u)
    ]
    got = metrics.reliability_from_halves(even, partial, spearman_brown=False)
    np.testing.assert_allclose(got, direct, rtol=1e-10)


def test_split_half_reliability_constant_unit_is_nan_and_errors():
    trials = _simulated_trials(20, 2, 4, 1.0)
    trials[:, 1, :] = 3.0
    rel = metrics.split_half_reliability(trials, 5, seed=0)
    assert np.isfinite(rel[0]) and np.isnan(rel[1])
    with pytest.raises(ValueError, match=r"\(n, u, r\) or \(n, u, t, r\)"):
        metrics.split_half_reliability(np.zeros((5, 4)), 5, seed=0)
    with pytest.raises(ValueError, match=">= 3 stimuli"):
        metrics.split_half_reliability(np.zeros((2, 3, 4)), 5, seed=0)
    with pytest.raises(ValueError, match=">= 2 trials"):
        metrics.split_half_reliability(np.zeros((5, 3, 1)), 5, seed=0)
    with pytest.raises(ValueError, match="n_boot"):
        metrics.split_half_reliability(trials, 0, seed=0)
    with pytest.raises(TypeError, match="seed"):
        metrics.split_half_reliability(trials, 5, seed=None)
    with pytest.raises(ValueError, match="halves"):
        metrics.reliability_from_halves(trials, np.zeros((3, 2, 2), dtype=int) + 4)
