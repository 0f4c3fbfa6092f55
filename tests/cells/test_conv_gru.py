"""Conv GRU against NumPy (spec 4.3), harness, initial gate bias, parameter counts, XLA, bfloat16, errors."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import conv_gru
from tests import layer_testing
from tests.cells import cell_testing as ct

X_SHAPE = (2, 8, 8, 3)


def test_steps_match_numpy():
    cell = conv_gru.ConvGRUCell(4, dtype="float64")
    cell.build(X_SHAPE)
    ct.randomize_weights(cell)
    g, c = ct.variables(cell.gates), ct.variables(cell.candidate)

    def numpy_step(x, states):
        s = states[0]
        pre = ct.conv2d_same(np.concatenate([x, s], -1), g["kernel"], g["bias"])
        r = ct.sigmoid(pre[..., :4] + 1.0)  # forget bias on the reset gate only
        u = ct.sigmoid(pre[..., 4:])
        cand = np.tanh(ct.conv2d_same(np.concatenate([x, r * s], -1), c["kernel"], c["bias"]))
        s = u * s + (1 - u) * cand
        return s, [s]

    ct.compare_steps(cell, numpy_step, X_SHAPE)


def test_initial_biases():
    cell = conv_gru.ConvGRUCell(4)
    cell.build(X_SHAPE)
    np.testing.assert_array_equal(cell.gates.bias.numpy(), 1.0)  # both halves (reference, no bias_initializer)
    np.testing.assert_array_equal(cell.candidate.bias.numpy(), 0.0)


def test_harness():
    layer_testing.run_layer_test(
        conv_gru.ConvGRUCell,
        {"filters": 4, "weight_decay": 1e-3, "init_scale": 1.5},
        (tf.random.normal(X_SHAPE), [tf.random.normal((2, 8, 8, 4))]),
        expected_output_shape=(2, 8, 8, 4),
        expected_num_trainable_weights=4,
        output_fn=lambda out: out[0],
    )


def test_weight_decay_covers_kernels_and_biases():
    cell = conv_gru.ConvGRUCell(4, weight_decay=0.2)
    cell.build(X_SHAPE)
    expected = 0.2 / 2 * sum(np.sum(w.numpy() ** 2) for w in cell.weights)
    np.testing.assert_allclose(float(sum(cell.losses)), expected, rtol=1e-5)


def test_parameter_counts():
    # 3x3 [2C -> 2C] + 2C + 3x3 [2C -> C] + C = 54C^2 + 3C (spec 11.2). C = 128: 884,736 + 384 = 885,120.
    # Shallow: 2 * (54 * 256^2 + 768) + 54 * 512^2 + 1536 = 7,079,424 + 14,157,312 = 21,236,736
    #   = gru shallow 25,434,472 - FF 4,197,736.
    counts = {}
    for c, size in ((128, 28), (256, 28), (512, 7)):
        cell = conv_gru.ConvGRUCell(c)
        cell.build((None, size, size, c))
        counts[c] = cell.count_params()
    assert counts[128] == 885_120
    assert 2 * counts[256] + counts[512] == 25_434_472 - 4_197_736


def test_xla_and_mixed_bfloat16():
    ct.check_xla_step(conv_gru.ConvGRUCell(4), X_SHAPE)
    ct.check_mixed_bfloat16(lambda: conv_gru.ConvGRUCell(4), X_SHAPE)


def test_errors():
    cell = conv_gru.ConvGRUCell(4)
    cell.build(X_SHAPE)
    with pytest.raises(ValueError, match="takes no `residual`"):
        cell(tf.zeros(X_SHAPE), cell.get_initial_state(2), residual=tf.zeros(X_SHAPE))
