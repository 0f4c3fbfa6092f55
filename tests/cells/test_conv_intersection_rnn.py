"""Conv IntersectionRNN against NumPy (spec 4.6), harness, parameter counts, XLA, bfloat16, errors."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import conv_intersection_rnn
from tests import layer_testing
from tests.cells import cell_testing as ct

X_SHAPE = (2, 8, 8, 4)


def test_steps_match_numpy():
    cell = conv_intersection_rnn.ConvIntersectionRNNCell(4, dtype="float64")
    cell.build(X_SHAPE)
    ct.randomize_weights(cell)
    w = ct.variables(cell.conv)

    def numpy_step(x, states):
        s = states[0]
        pre = ct.conv2d_same(np.concatenate([x, s], -1), w["kernel"], w["bias"])
        p, m, y, n = (pre[..., 4 * i : 4 * (i + 1)] for i in range(4))  # order gh, h, gy, y
        p, y = ct.sigmoid(p + 1.0), ct.sigmoid(y + 1.0)
        s = p * s + (1 - p) * np.tanh(m)
        h = y * x + (1 - y) * ct.relu(n)
        return h, [s]

    ct.compare_steps(cell, numpy_step, X_SHAPE)


def test_harness():
    layer_testing.run_layer_test(
        conv_intersection_rnn.ConvIntersectionRNNCell,
        {"filters": 4},
        (tf.random.normal(X_SHAPE), [tf.random.normal(X_SHAPE)]),
        expected_output_shape=X_SHAPE,
        expected_num_trainable_weights=2,
        output_fn=lambda out: out[0],
    )


def test_parameter_counts():
    # 3x3 [2C -> 4C] + 4C = 72C^2 + 4C (spec 11.2). C = 128: 1,179,648 + 512 = 1,180,160.
    # Shallow: 2 * (72 * 256^2 + 1024) + 72 * 512^2 + 2048 = 9,439,232 + 18,876,416 = 28,315,648
    #   = intersectionrnn shallow 32,513,384 - FF 4,197,736.
    counts = {}
    for c, size in ((128, 28), (256, 28), (512, 7)):
        cell = conv_intersection_rnn.ConvIntersectionRNNCell(c)
        cell.build((None, size, size, c))
        counts[c] = cell.count_params()
    assert counts[128] == 1_180_160
    assert 2 * counts[256] + counts[512] == 32_513_384 - 4_197_736


def test_xla_and_mixed_bfloat16():
    ct.check_xla_step(conv_intersection_rnn.ConvIntersectionRNNCell(4), X_SHAPE)
    ct.check_mixed_bfloat16(lambda: conv_intersection_rnn.ConvIntersectionRNNCell(4), X_SHAPE)


def test_errors():
    with pytest.raises(ValueError, match="input depth must equal filters=4"):
        conv_intersection_rnn.ConvIntersectionRNNCell(4).build((None, 8, 8, 3))
    cell = conv_intersection_rnn.ConvIntersectionRNNCell(4)
    cell.build(X_SHAPE)
    with pytest.raises(ValueError, match="takes no `feedback`"):
        cell(tf.zeros(X_SHAPE), cell.get_initial_state(2), feedback=tf.zeros(X_SHAPE))
