"""Observable statistics against an independent NumPy implementation; the activity change against hand-derived and
brute-force Jacobians, and its independence of the backward kernel B of aligned layers."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import layers as aligned
from goaldriven.observables import layers as observed
from goaldriven.observables import statistics as stats


def np_stat(values: np.ndarray, fn: str, stat: str) -> float:
    """One statistic of a 1-D array, written from the definitions (spec 11.3, A19)."""
    x = {"raw": values, "abs": np.abs(values), "sq": values**2}[fn].astype(np.float64)
    mu, var = x.mean(), x.var()
    with np.errstate(divide="ignore", invalid="ignore"):
        skew, kurtosis = 3 * (mu - np.median(x)) / np.sqrt(var), np.mean((x - mu) ** 4) / var**2
    return {
        "norm": np.sqrt(np.sum(x**2)),
        "mean": mu,
        "var": var,
        "skew": skew,
        "kurtosis": kurtosis,
        "median": np.percentile(x, 50),
        "thirdquartile": np.percentile(x, 75),
    }[stat]


def test_names_counts_and_order():
    assert len(stats.STATISTICS) == 45 and len(set(stats.STATISTICS)) == 45
    assert stats.STATISTICS[:7] == tuple(f"weights_raw_{s}" for s in stats.STATS)
    assert stats.STATISTICS[-3:] == ("gradavg_raw", "gradavg_abs", "gradavg_sq")
    assert len(stats.ADMISSIBLE) == 24 and set(stats.ADMISSIBLE) <= set(stats.STATISTICS)
    assert [stats.MEASURE_OF[n] for n in stats.ADMISSIBLE].count("weights") == 13
    assert [stats.MEASURE_OF[n] for n in stats.ADMISSIBLE].count("activations") == 8
    assert stats.ADMISSIBLE[0] == "weights_abs_mean" and stats.ADMISSIBLE[13] == "activations_abs_mean"
    with pytest.raises(ValueError, match="unknown or repeated"):
        stats.check_names(["weights_raw_mode"])


@pytest.mark.parametrize("relu", [False, True], ids=["signed", "nonnegative"])
@pytest.mark.parametrize("n", [1, 2, 7, 10, 33])
def test_every_statistic_matches_numpy(n, relu):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(3, n)).astype(np.float32) + 0.3
    if relu:  # the single-sort path for non-negative tensors
        x = np.maximum(x, 0.0) + (n == 1)
    wanted = [(fn, s) for fn in stats.FUNCTIONS for s in stats.STATS]
    got = stats.unit_statistics(tf.constant(x), wanted)
    for fn, s in wanted:
        expected = [np_stat(row, fn, s) for row in x]
        if n == 1 and s in ("skew", "kurtosis"):
            assert not np.isfinite(got[(fn, s)].numpy()).any()  # std 0: why these are not admissible
            continue
        np.testing.assert_allclose(got[(fn, s)].numpy(), expected, rtol=2e-5, atol=1e-6, err_msg=f"{fn}_{s}")


def test_perturbation_keeps_ceil_fraction_of_units_same_for_every_stimulus_and_adds_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 50)).astype(np.float32)
    p = stats.Perturbation(0.13, 0.0, 3)
    kept = stats.perturb(tf.constant(x), p, layer=2, measure="activations").numpy()
    assert kept.shape == (4, math.ceil(0.13 * 50)) == (4, 7)
    cols = [int(np.flatnonzero(np.all(x == kept[:, [j]], axis=0))[0]) for j in range(7)]
    assert len(set(cols)) == 7  # distinct units, the same for every stimulus
    again = stats.perturb(tf.constant(x), p, layer=2, measure="activations").numpy()
    np.testing.assert_array_equal(kept, again)  # seeded
    other = stats.perturb(tf.constant(x), stats.Perturbation(0.13, 0.0, 4), 2, "activations").numpy()
    assert not np.array_equal(kept, other)
    assert stats.perturb(tf.constant(x), stats.Perturbation(1e-5, 0.0, 0), 0, "weights").shape == (4, 1)
    # The statistics of the perturbed tensor are the NumPy statistics of the kept units.
    got = stats.unit_statistics(tf.constant(kept), [("abs", "median"), ("raw", "norm")])
    np.testing.assert_allclose(got[("abs", "median")], np.median(np.abs(x[:, cols]), axis=1), rtol=1e-6)
    np.testing.assert_allclose(got[("raw", "norm")], np.linalg.norm(x[:, cols], axis=1), rtol=1e-6)
    # Noise: independent per entry, N(0, sigma^2).
    big = np.zeros((200, 500), np.float32)
    noisy = stats.perturb(tf.constant(big), stats.Perturbation(1.0, 2.0, 1), 0, "activations").numpy()
    assert abs(noisy.std() - 2.0) < 0.02 and abs(noisy.mean()) < 0.02
    assert abs(np.corrcoef(noisy[0], noisy[1])[0, 1]) < 0.2
    same = stats.perturb(tf.constant(x), stats.Perturbation(1.0, 0.0, 9), 0, "weights")
    np.testing.assert_array_equal(same.numpy(), x)


def test_subsampled_activity_change_rescales_to_the_full_sum():
    v = np.arange(1.0, 11.0, dtype=np.float32)[None, :]  # one stimulus, 10 inputs
    full = stats.activity_change(tf.constant(v), n_in=10, n_out=4, fns=["raw", "sq"])
    np.testing.assert_allclose(full["raw"], [55.0 / 4])
    np.testing.assert_allclose(full["sq"], [385.0 / 4])
    part = stats.activity_change(tf.constant(v[:, :5]), n_in=10, n_out=4, fns=["raw"])
    np.testing.assert_allclose(part["raw"], [15.0 * 2 / 4])


def _column_sums(layer, x):
    rec = observed.layer_io(layer, x, observed.observed_layers(keras.Sequential([layer])))
    ((x_seen, y, v),) = rec.calls[0]
    return y.numpy(), v.numpy()


def test_activity_change_of_a_dense_layer_is_the_analytic_jacobian_sum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    layer = keras.layers.Dense(4, activation="relu", bias_initializer="random_normal")
    layer.build((None, 6))
    w, b = layer.kernel.numpy(), layer.bias.numpy()
    # y_j = relu(sum_i x_i W_ij + b_j): dy_j/dx_i = 1[pre_j > 0] W_ij, so v_i = sum_j 1[pre_j > 0] W_ij = (W mask^T)_i.
    mask = (x @ w + b > 0).astype(np.float32)  # (5, 4)
    expected_v = mask @ w.T  # (5, 6)
    y, v = _column_sums(layer, tf.constant(x))
    np.testing.assert_allclose(y, np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, expected_v, rtol=1e-5, atol=1e-6)
    gradavg = stats.activity_change(tf.constant(v), 6, 4, ["raw", "abs", "sq"])
    np.testing.assert_allclose(gradavg["raw"], expected_v.sum(1) / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradavg["abs"], np.abs(expected_v).sum(1) / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradavg["sq"], (expected_v**2).sum(1) / 4, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid")])
def test_activity_change_of_a_conv_layer_matches_the_brute_force_jacobian(strides, padding):
    x = tf.random.stateless_normal([2, 5, 5, 2], [0, 1])
    layer = keras.layers.Conv2D(3, 3, strides=strides, padding=padding, activation="relu")
    layer.build((None, 5, 5, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    jac = tape.jacobian(y, x).numpy()  # (2, ho, wo, 3, 2, 5, 5, 2)
    expected = np.stack([jac[s, :, :, :, s].sum(axis=(0, 1, 2)) for s in range(2)])  # (2, 5, 5, 2)
    _, v = _column_sums(layer, x)
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["feedback_alignment", "information_alignment", "kolen_pollack"])
def test_activity_change_ignores_the_backward_kernel(rule):
    x = tf.random.stateless_normal([3, 6], [2, 3])
    plain = keras.layers.Dense(4, activation="relu")
    plain.build((None, 6))
    layer = aligned.AlignedDense(4, rule=rule, activation="relu")
    layer.build((None, 6))
    layer.kernel.assign(plain.kernel)
    layer.bias.assign(plain.bias)
    assert np.abs(layer.backward_kernel.numpy().T - layer.kernel.numpy()).max() > 0.1  # B is not W^T
    with tf.GradientTape() as tape:  # the layer's own input gradient does use B ...
        tape.watch(x)
        total = tf.reduce_sum(layer(x))
    assert np.abs(tape.gradient(total, x).numpy() - _column_sums(plain, x)[1]).max() > 1e-3
    np.testing.assert_array_equal(_column_sums(layer, x)[1], _column_sums(plain, x)[1])  # ... the observable not
    conv = aligned.AlignedConv2D(3, 3, rule=rule, padding="same")
    ref = keras.layers.Conv2D(3, 3, padding="same")
    images = tf.random.stateless_normal([2, 4, 4, 2], [4, 5])
    conv.build(images.shape)
    ref.build(images.shape)
    ref.set_weights([conv.kernel.numpy(), conv.bias.numpy()])
    np.testing.assert_allclose(_column_sums(conv, images)[1], _column_sums(ref, images)[1], rtol=1e-6, atol=1e-6)
