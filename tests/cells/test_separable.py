"""The fast depthwise kernel gradient equals TensorFlow's, for odd, even and rectangular (clipped) kernels; the layer
under the shared harness."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import separable
from tests import layer_testing


@pytest.mark.parametrize("kernel_shape", [(7, 7), (4, 4), (3, 2), (1, 1)])
def test_gradients_match_tensorflow(kernel_shape):
    x = tf.random.stateless_normal([3, 5, 6, 4], [0, 1], dtype=tf.float64)
    kernel = tf.random.stateless_normal([*kernel_shape, 4, 1], [0, 2], dtype=tf.float64)
    dy = tf.random.stateless_normal([3, 5, 6, 4], [0, 3], dtype=tf.float64)
    grads = []
    for fn in (separable.depthwise_conv2d_same, lambda a, k: tf.nn.depthwise_conv2d(a, k, [1, 1, 1, 1], "SAME")):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = fn(x, kernel)
        grads.append((y, *tape.gradient(y, [x, kernel], output_gradients=dy)))
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


def test_layer_matches_keras_separable_conv():
    x = tf.random.stateless_normal([2, 6, 6, 3], [1, 1])
    ours = separable.SeparableConv2D(5, 3, padding="same", name="ds")
    theirs = keras.layers.SeparableConv2D(5, 3, padding="same", name="ds")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights([w + 0.1 for w in ours.get_weights()])
    ours.set_weights(theirs.get_weights())
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    for layer_pair in ((ours, theirs),):
        grads = []
        for layer in layer_pair:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(layer(x)))
            grads.append(tape.gradient(loss, layer.trainable_weights))
        for g_ours, g_theirs in zip(*grads):
            np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, out_size",
    [
        ({"padding": "same"}, 8),  # the fast depthwise kernel gradient
        ({"padding": "same", "strides": 2}, 4),  # Keras's path
        ({"padding": "valid", "depth_multiplier": 2}, 6),  # Keras's path
    ],
)
def test_harness(kwargs, out_size):
    layer_testing.run_layer_test(
        separable.SeparableConv2D,
        {"filters": 5, "kernel_size": 3, "activation": "tanh", **kwargs},
        (tf.random.normal((2, 8, 8, 4)),),
        expected_output_shape=(2, out_size, out_size, 5),
        expected_num_trainable_weights=3,  # depthwise_kernel, pointwise_kernel, bias
    )
