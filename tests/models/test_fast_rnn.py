"""The sequence RNN's hand-written BPTT equals autodiff; its forward equals the equations in NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import fast_rnn
from tests import layer_testing

NUMPY_ACT = {
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "linear": lambda x: x,
}


def _inputs(seed=0, b=2, t=3, n=5):
    rng = np.random.default_rng(seed)
    return (
        tf.constant(rng.normal(size=(b, n))),
        tf.constant(rng.normal(size=(t, b, n))),
        tf.constant(rng.normal(size=(n, n)) / np.sqrt(n)),
    )


@pytest.mark.parametrize("activation", fast_rnn.ACTIVATIONS)
def test_forward_matches_numpy(activation):
    h0, drive, kernel = _inputs()
    out = fast_rnn.simple_rnn_sequence(h0, drive, kernel, activation).numpy()
    h, expected = h0.numpy(), []
    for t in range(drive.shape[0]):
        h = NUMPY_ACT[activation](h @ kernel.numpy() + drive.numpy()[t])
        expected.append(h)
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-12)


@pytest.mark.parametrize("activation", fast_rnn.ACTIVATIONS)
def test_custom_gradient_equals_autodiff_float64(activation):
    h0, drive, kernel = _inputs(seed=1)
    weights = tf.constant(np.random.default_rng(2).normal(size=(3, 2, 5)))

    def reference(h0, drive, kernel):
        h, outs = h0, []
        for t in range(drive.shape[0]):
            h = fast_rnn._activate(tf.matmul(h, kernel) + drive[t], activation)  # pylint: disable=protected-access
            outs.append(h)
        return tf.stack(outs)

    grads = []
    for fn in (fast_rnn.simple_rnn_sequence, reference):
        with tf.GradientTape() as tape:
            tape.watch([h0, drive, kernel])
            loss = tf.reduce_sum(
                weights * fn(h0, drive, kernel, activation)
                if fn is fast_rnn.simple_rnn_sequence
                else weights * fn(h0, drive, kernel)
            )
        grads.append(tape.gradient(loss, [h0, drive, kernel]))
    for ours, autodiff in zip(*grads):
        np.testing.assert_allclose(ours.numpy(), autodiff.numpy(), rtol=1e-10, atol=1e-12)


def test_custom_gradient_compiles_with_xla():
    h0, drive, kernel = [tf.cast(x, tf.float32) for x in _inputs()]

    @tf.function(jit_compile=True)
    def grad(h0, drive, kernel):
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            loss = tf.reduce_sum(fast_rnn.simple_rnn_sequence(h0, drive, kernel, "relu") ** 2)
        return tape.gradient(loss, kernel)

    with tf.GradientTape() as tape:
        tape.watch(kernel)
        loss = tf.reduce_sum(fast_rnn.simple_rnn_sequence(h0, drive, kernel, "relu") ** 2)
    np.testing.assert_allclose(grad(h0, drive, kernel).numpy(), tape.gradient(loss, kernel).numpy(), rtol=1e-5)


def test_materialized_transpose():
    x = tf.reshape(tf.range(12.0), (3, 4))
    np.testing.assert_array_equal(fast_rnn.materialized_transpose(x).numpy(), x.numpy().T)


def test_layer_harness_and_bias():
    inputs = tf.random.normal((2, 3, 4))
    state = tf.random.normal((2, 6))
    layer = layer_testing.run_layer_test(
        fast_rnn.SimpleRNNSequence,
        {"units": 6, "activation": "tanh", "recurrent_regularizer": "l2"},
        (inputs, state),
        expected_output_shape=(2, 3, 6),
        expected_num_trainable_weights=3,
    )
    assert len(layer.losses) == 1  # the recurrent L2 penalty
    no_bias = fast_rnn.SimpleRNNSequence(6, use_bias=False)
    no_bias(inputs, state)
    assert [w.name for w in no_bias.trainable_weights] == ["kernel", "recurrent_kernel"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        fast_rnn.SimpleRNNSequence(4, activation="gelu")
    with pytest.raises(ValueError, match="units"):
        fast_rnn.SimpleRNNSequence(0)
