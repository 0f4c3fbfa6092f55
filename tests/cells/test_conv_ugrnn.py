"""Conv UGRNN against NumPy (spec 4.5), harness, parameter counts, XLA, bfloat16, errors."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import conv_ugrnn
from tests import layer_testing
from tests.cells import cell_testing as ct

X_SHAPE = (2, 8, 8, 3)


def test_steps_match_numpy():
    cell = conv_ugrnn.ConvUGRNNCell(4, dtype="float64")
    cell.build(X_SHAPE)
    ct.randomize_weights(cell)
    w = ct.variables(cell.conv)

    def numpy_step(x, states):
        s = states[0]
        pre = ct.conv2d_same(np.concatenate([x, s], -1), w["kernel"], w["bias"])
        g = ct.sigmoid(pre[..., :4] + 1.0)  # gate half first, forget bias 1
        s = g * s + (1 - g) * np.tanh(pre[..., 4:])
        return s, [s]

    ct.compare_steps(cell, numpy_step, X_SHAPE)


def test_harness():
    layer_testing.run_layer_test(
        conv_ugrnn.ConvUGRNNCell,
        {"filters": 4, "kernel_size": 2, "weight_decay": 1e-3},
        (tf.random.normal(X_SHAPE), [tf.random.normal((2, 8, 8, 4))]),
        expected_output_shape=(2, 8, 8, 4),
        expected_num_trainable_weights=2,
        output_fn=lambda out: out[0],
    )


def test_parameter_counts():
    # 3x3 [C + C -> 2C] + 2C = 36C^2 + 2C (spec 11.2). C = 128: 589,824 + 256 = 590,080.
    # Shallow: 2 * (36 * 256^2 + 512) + 36 * 512^2 + 1024 = 4,719,616 + 9,438,208 = 14,157,824
    #   = ugrnn shallow 18,355,560 - FF 4,197,736.
    counts = {}
    for c, size in ((128, 28), (256, 28), (512, 7)):
        cell = conv_ugrnn.ConvUGRNNCell(c)
        cell.build((None, size, size, c))
        counts[c] = cell.count_params()
    assert counts[128] == 590_080
    assert 2 * counts[256] + counts[512] == 18_355_560 - 4_197_736


def test_xla_and_mixed_bfloat16():
    ct.check_xla_step(conv_ugrnn.ConvUGRNNCell(4), X_SHAPE)
    ct.check_mixed_bfloat16(lambda: conv_ugrnn.ConvUGRNNCell(4), X_SHAPE)


def test_feedback_or_residual_is_refused():
    cell = conv_ugrnn.ConvUGRNNCell(4)
    cell.build(X_SHAPE)
    states = cell.get_initial_state(2)
    with pytest.raises(ValueError, match="ConvUGRNNCell .* takes no `feedback` input"):
        cell(tf.zeros(X_SHAPE), states, feedback=tf.zeros((2, 8, 8, 6)))
    with pytest.raises(ValueError, match="takes no `residual` input"):
        cell(tf.zeros(X_SHAPE), states, residual=tf.zeros(X_SHAPE))
