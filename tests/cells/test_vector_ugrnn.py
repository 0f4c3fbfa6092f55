"""UGRNN cell: one step against the equations in NumPy, harness checks, and the L2 target switch."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import vector_ugrnn
from tests import layer_testing


def _numpy_step(x, h, kernel, recurrent, bias, activation, gate_bias=1.0):
    pre = x @ kernel + h @ recurrent + bias
    n = h.shape[-1]
    gate, cand = pre[:, :n], pre[:, n:]
    f = {
        "relu": lambda z: np.maximum(z, 0),
        "tanh": np.tanh,
        "linear": lambda z: z,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    }[activation]
    u = 1 / (1 + np.exp(-(gate + gate_bias)))
    return u * h + (1 - u) * f(cand)


@pytest.mark.parametrize("activation", vector_ugrnn.ACTIVATIONS)
def test_step_matches_numpy(activation):
    cell = vector_ugrnn.VectorUGRNNCell(5, activation=activation)
    x, h = tf.random.normal((2, 3)), tf.random.normal((2, 5))
    cell(x, [h])
    rng = np.random.default_rng(0)
    cell.bias.assign(rng.normal(size=(10,)).astype(np.float32))  # nonzero bias exercises the gate offset
    out, states = cell(x, [h])
    expected = _numpy_step(
        x.numpy(), h.numpy(), cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy(), activation
    )
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(states[0].numpy(), out.numpy())


def test_harness():
    layer_testing.run_layer_test(
        vector_ugrnn.VectorUGRNNCell,
        {"units": 4, "activation": "relu", "l2": 1e-4},
        (tf.random.normal((2, 3)), [tf.random.normal((2, 4))]),
        expected_output_shape=(2, 4),
        expected_num_trainable_weights=3,
        output_fn=lambda out: out[0],
    )


def test_initialisation_is_glorot_over_the_joint_kernel():
    cell = vector_ugrnn.VectorUGRNNCell(64)
    cell(tf.zeros((1, 32)), [tf.zeros((1, 64))])
    limit = np.sqrt(6.0 / ((32 + 64) + 128))
    for w in (cell.kernel, cell.recurrent_kernel):
        assert np.abs(w.numpy()).max() <= limit
        assert np.abs(w.numpy()).max() > 0.9 * limit
    np.testing.assert_array_equal(cell.bias.numpy(), 0)


@pytest.mark.parametrize("target", ["recurrent_kernel", "bias"])
def test_l2_penalises_the_chosen_weight(target):
    cell = vector_ugrnn.VectorUGRNNCell(4, l2=0.5, l2_target=target)
    cell(tf.zeros((1, 3)), [tf.zeros((1, 4))])
    cell.bias.assign(np.full(8, 2.0, np.float32))
    weight = getattr(cell, target).numpy()
    np.testing.assert_allclose(float(sum(cell.losses)), 0.5 * np.sum(weight**2), rtol=1e-6)


def test_works_inside_keras_rnn():
    layer = tf.keras.layers.RNN(vector_ugrnn.VectorUGRNNCell(4), return_sequences=True)
    assert layer(tf.random.normal((2, 3, 5))).shape == (2, 3, 4)


def test_bad_arguments():
    for kwargs, match in (
        ({"activation": "gelu"}, "activation"),
        ({"l2_target": "kernel"}, "l2_target"),
        ({"l2": -1.0}, "l2"),
        ({"units": 0}, "units"),
    ):
        with pytest.raises(ValueError, match=match):
            vector_ugrnn.VectorUGRNNCell(**{"units": 4, **kwargs})
