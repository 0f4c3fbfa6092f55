"""Split-half reliability against Spearman-Brown theory, a direct loop, and its chunking."""

import numpy as np
import pytest

from goaldriven.neural_fits.metrics.reliability import reliability_from_halves, split_half_reliability
from goaldriven.neural_fits.metrics.splits import trial_halves

# n: stimuli, u: units, t: time bins, r: trials, b: bootstraps


def _simulated_trials(n, u, r, noise_sd, seed=0, extra_shape=()):
    """Signal with unit variance over stimuli (exactly, per unit) plus Gaussian trial noise of sd `noise_sd`."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(n, u) + extra_shape)
    signal = (signal - signal.mean(0)) / signal.std(0)
    noise_sd = np.asarray(noise_sd, dtype=float)
    return signal[..., None] + noise_sd[..., None] * rng.normal(size=(n, u) + extra_shape + (r,))


# ------------------------------------------------------------------------------------------------------------- pearson


@pytest.mark.parametrize("noise_sd", [0.5, 1.5, 3.0])
def test_split_half_reliability_matches_spearman_brown_theory(noise_sd):
    n, u, r = 300, 30, 10
    trials = _simulated_trials(n, u, r, noise_sd, seed=int(10 * noise_sd))
    rel = split_half_reliability(trials, n_boot=20, seed=0)
    expected = 1.0 / (1.0 + noise_sd**2 / r)  # var_s / (var_s + var_noise / r), var_s = 1
    assert rel.shape == (u,)
    np.testing.assert_allclose(rel.mean(), expected, atol=0.03)
    np.testing.assert_allclose(rel, expected, atol=0.15)
    half = split_half_reliability(trials, n_boot=20, seed=0, spearman_brown=False)
    np.testing.assert_allclose(half.mean(), 1.0 / (1.0 + noise_sd**2 / (r // 2)), atol=0.03)


def test_split_half_reliability_time_resolved_and_odd_trial_count():
    n, u, r = 300, 20, 9
    noise_sd = np.broadcast_to(np.array([0.5, 1.0, 2.0, 4.0]), (u, 4))  # (u, t): SNR falls over bins
    trials = _simulated_trials(n, u, r, noise_sd, seed=4, extra_shape=(4,))  # (n, u, t, r)
    rel = split_half_reliability(trials, n_boot=20, seed=1)
    assert rel.shape == (u, 4)
    # r = 9: each half holds 4 trials, so the SB value predicts 2 * 4 = 8 trials.
    expected = 1.0 / (1.0 + np.array([0.5, 1.0, 2.0, 4.0]) ** 2 / 8)
    np.testing.assert_allclose(rel.mean(axis=0), expected, atol=0.03)


def test_split_half_reliability_equals_a_direct_loop_and_is_chunk_invariant():
    n, u, r, n_boot = 40, 3, 7, 12
    trials = _simulated_trials(n, u, r, 1.0, seed=5, extra_shape=(2,)).astype(np.float32)  # (n, u, t, r)
    halves = trial_halves(r, n_boot, seed=11)
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
    got = split_half_reliability(trials, n_boot, seed=11)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    tiny = split_half_reliability(trials, n_boot, seed=11, chunk_bytes=1)  # one column per chunk
    np.testing.assert_allclose(tiny, expected, rtol=1e-10)
    even = _simulated_trials(n, u, 8, 1.0, seed=6)
    halves = trial_halves(8, n_boot, seed=2)
    direct = [
        np.mean([np.corrcoef(even[:, j, a].mean(1), even[:, j, b].mean(1))[0, 1] for a, b in halves]) for j in range(u)
    ]
    got = split_half_reliability(even, n_boot, seed=2, spearman_brown=False)
    np.testing.assert_allclose(got, direct, rtol=1e-10)
    # Given halves that do not cover all 8 trials (2 + 2): no "s_2 = 2 mean - s_1" shortcut may be taken.
    partial = np.array([[[0, 1], [2, 3]], [[7, 5], [4, 0]]])
    direct = [
        np.mean([np.corrcoef(even[:, j, a].mean(1), even[:, j, b].mean(1))[0, 1] for a, b in partial]) for j in range(u)
    ]
    got = reliability_from_halves(even, partial, spearman_brown=False)
    np.testing.assert_allclose(got, direct, rtol=1e-10)


def test_split_half_reliability_constant_unit_is_nan_and_errors():
    trials = _simulated_trials(20, 2, 4, 1.0)
    trials[:, 1, :] = 3.0
    rel = split_half_reliability(trials, 5, seed=0)
    assert np.isfinite(rel[0]) and np.isnan(rel[1])
    with pytest.raises(ValueError, match=r"\(n, u, r\) or \(n, u, t, r\)"):
        split_half_reliability(np.zeros((5, 4)), 5, seed=0)
    with pytest.raises(ValueError, match=">= 3 stimuli"):
        split_half_reliability(np.zeros((2, 3, 4)), 5, seed=0)
    with pytest.raises(ValueError, match=">= 2 trials"):
        split_half_reliability(np.zeros((5, 3, 1)), 5, seed=0)
    with pytest.raises(ValueError, match="n_boot"):
        split_half_reliability(trials, 0, seed=0)
    with pytest.raises(TypeError, match="seed"):
        split_half_reliability(trials, 5, seed=None)
    with pytest.raises(ValueError, match="halves"):
        reliability_from_halves(trials, np.zeros((3, 2, 2), dtype=int) + 4)
