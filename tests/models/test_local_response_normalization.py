"""LocalResponseNormalization: against NumPy and tf.nn.local_response_normalization, gradients, config, mixed
precision, argument checks, and the shared layer harness."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models.local_response_normalization import LocalResponseNormalization
from tests import layer_testing


def _lrn_numpy(x, depth_radius, bias, alpha, beta):
    """The tf.nn.local_response_normalization formula, channel by channel, in float64."""
    x = x.astype(np.float64)
    out = np.empty_like(x)
    channels = x.shape[-1]
    for c in range(channels):
        lo, hi = max(0, c - depth_radius), min(channels, c + depth_radius + 1)
        sqr_sum = np.sum(x[..., lo:hi] ** 2, axis=-1)
        out[..., c] = x[..., c] / (bias + alpha * sqr_sum) ** beta
    return out


@pytest.mark.parametrize(
    "depth_radius, bias, alpha, beta, scale",
    [
        (5, 1.0, 1e-4, 0.75, 30.0),  # the AlexNet setting; inputs large enough that the normalisation matters
        (2, 2.0, 0.3, 0.5, 1.0),
        (0, 1.0, 1.0, 1.0, 1.0),  # window of one channel
        (20, 1.0, 0.05, 0.75, 1.0),  # window wider than the channels
    ],
)
def test_lrn_matches_numpy(depth_radius, bias, alpha, beta, scale):
    x = (scale * np.random.default_rng(0).normal(size=(2, 3, 4, 16))).astype("float32")
    layer = LocalResponseNormalization(depth_radius, bias, alpha, beta)
    expected = _lrn_numpy(x, depth_radius, bias, alpha, beta)
    assert np.abs(expected - x).max() > 1e-2 * np.abs(x).max()  # the case is not trivially the identity
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=2e-5, atol=1e-6)
    reference = tf.nn.local_response_normalization(x, depth_radius, bias, alpha, beta)
    np.testing.assert_allclose(layer(x).numpy(), reference.numpy(), rtol=2e-5, atol=1e-6)
    xla = tf.function(layer, jit_compile=True)(tf.constant(x))
    np.testing.assert_allclose(xla.numpy(), expected, rtol=2e-5, atol=1e-6)


def test_lrn_gradient_matches_tf_op_and_config_round_trips():
    x = tf.constant(10 * np.random.default_rng(1).normal(size=(2, 3, 3, 12)), tf.float32)
    layer = LocalResponseNormalization(depth_radius=3, alpha=1e-3)
    grads = []
    for fn in (layer, lambda t: tf.nn.local_response_normalization(t, 3, 1.0, 1e-3, 0.75)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x) * tf.range(12, dtype=tf.float32))
        grads.append(tape.gradient(y, x).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, LocalResponseNormalization)
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta) == (3, 1.0, 1e-3, 0.75)


def test_lrn_under_mixed_bfloat16_computes_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x = tf.cast(30 * tf.random.normal((2, 2, 2, 8)), tf.bfloat16)
    out = LocalResponseNormalization()(x)
    assert out.dtype == tf.bfloat16
    expected = _lrn_numpy(tf.cast(x, tf.float32).numpy(), 5, 1.0, 1e-4, 0.75)
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), expected, rtol=1e-2, atol=1e-2)


def test_lrn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=-1)
    with pytest.raises(ValueError, match="bias must be > 0"):
        LocalResponseNormalization(bias=0.0)
    with pytest.raises(ValueError, match="known channel count"):
        LocalResponseNormalization()(keras.KerasTensor((None, 4)))


def test_harness():
    """No weights: the harness's step checks that a finite, non-zero gradient reaches the input."""
    x = 3.0 * tf.random.normal((2, 8, 8, 4))  # alpha * window sum ~ 0.1 * 5 * 9: the normalisation matters
    layer = layer_testing.run_layer_test(
        LocalResponseNormalization,
        {"depth_radius": 2, "bias": 2.0, "alpha": 0.1, "beta": 0.75},
        (x,),
        expected_output_shape=(2, 8, 8, 4),
        expected_num_trainable_weights=0,
    )
    assert layer.weights == []
