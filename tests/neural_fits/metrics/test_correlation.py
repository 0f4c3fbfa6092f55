"""Pearson per unit, Spearman-Brown, the noise correction and summaries over units."""

import warnings

import numpy as np
import pytest
import scipy.stats

from goaldriven.neural_fits.metrics.correlation import noise_corrected, pearson, spearman_brown, summarize

# n: stimuli, u: units, t: time bins, r: trials, b: bootstraps


def test_pearson_matches_scipy_along_either_axis():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 5))
    b = 0.5 * a + rng.normal(size=(40, 5))
    expected = [scipy.stats.pearsonr(a[:, j], b[:, j])[0] for j in range(5)]
    np.testing.assert_allclose(pearson(a, b), expected, rtol=1e-12)
    expected_rows = [scipy.stats.pearsonr(a[i], b[i])[0] for i in range(40)]
    np.testing.assert_allclose(pearson(a, b, axis=1), expected_rows, rtol=1e-10)
    # float32 input, 3-D, negative axis
    a3, b3 = a.reshape(40, 5, 1).astype(np.float32), b.reshape(40, 5, 1).astype(np.float32)
    np.testing.assert_allclose(pearson(a3, b3, axis=-3)[:, 0], expected, rtol=1e-5)


def test_pearson_zero_variance_gives_nan_without_warnings():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 3))
    b = rng.normal(size=(30, 3))
    a[:, 0] = 0.1  # constant up to the rounding of the mean
    b[:, 2] = 7.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pearson(a, b)
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
        pearson(a, b)


# ------------------------------------------------------------------------------------------- spearman-brown, correction
def test_spearman_brown_values():
    np.testing.assert_allclose(spearman_brown(0.5), 2 * 0.5 / 1.5)
    np.testing.assert_allclose(spearman_brown([0.2], factor=4), [4 * 0.2 / (1 + 3 * 0.2)])
    np.testing.assert_allclose(spearman_brown(np.array([0.0, 1.0])), [0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(spearman_brown(-1.0))
    with pytest.raises(ValueError, match="factor"):
        spearman_brown(0.5, factor=0)


def test_noise_corrected_divides_by_root_reliability_and_never_gives_inf():
    r = np.array([0.5, 0.3, 0.3, 0.3, 0.4])
    rel = np.array([0.25, 0.0, -0.1, np.nan, 0.64])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = noise_corrected(r, rel)
    np.testing.assert_allclose(out[[0, 4]], [1.0, 0.5])
    assert np.all(np.isnan(out[1:4]))
    np.testing.assert_allclose(noise_corrected(np.ones((2, 3)), 0.25), np.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="broadcast"):
        noise_corrected(np.ones(3), np.ones(4))


# ----------------------------------------------------------------------------------------------------------- summarize
def test_summarize_ignores_nan_and_uses_ddof_1():
    values = np.array([0.2, np.nan, 0.9, 0.5, 0.4, np.nan])
    kept = values[~np.isnan(values)]
    out = summarize(values)
    assert out["n"] == 4
    np.testing.assert_allclose(out["median"], np.median(kept))
    np.testing.assert_allclose(out["sem"], np.std(kept, ddof=1) / 2.0)
    out = summarize(values, tanh=True)
    np.testing.assert_allclose(out["median"], np.median(np.tanh(kept)))
    np.testing.assert_allclose(out["sem"], np.std(np.tanh(kept), ddof=1) / 2.0)


def test_summarize_per_time_bin_and_degenerate_cases():
    values = np.array([[1.0, np.nan, 2.0], [3.0, np.nan, np.nan], [5.0, 4.0, np.nan]])  # (u, t)
    out = summarize(values, axis=0)
    np.testing.assert_array_equal(out["n"], [3, 1, 1])
    np.testing.assert_allclose(out["median"], [3.0, 4.0, 2.0])
    np.testing.assert_allclose(out["sem"][0], np.std([1, 3, 5], ddof=1) / np.sqrt(3))
    assert np.isnan(out["sem"][1]) and np.isnan(out["sem"][2])
    all_nan = summarize([np.nan, np.nan])
    assert all_nan["n"] == 0 and np.isnan(all_nan["median"]) and np.isnan(all_nan["sem"])
    with pytest.raises(ValueError, match="at least one value"):
        summarize([])


# ------------------------------------------------------------------------------------------------------------- splits
