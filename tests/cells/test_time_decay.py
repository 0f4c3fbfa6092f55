"""TimeDecay cell: s_t = x_t + tau * s_{t-1} against NumPy, harness, parameter counts, XLA, bfloat16, errors."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import time_decay
from tests import layer_testing
from tests.cells import cell_testing

X_SHAPE = (2, 8, 8, 4)


def test_steps_match_numpy():
    cell = time_decay.TimeDecayCell(dtype="float64")
    cell.build(X_SHAPE)
    np.testing.assert_array_equal(cell.tau.numpy(), 0.0)  # reference init
    cell.tau.assign(0.7)

    def numpy_step(x, states):
        s = x + 0.7 * states[0]
        return s, [s]

    cell_testing.compare_steps(cell, numpy_step, X_SHAPE)


def test_harness():
    layer_testing.run_layer_test(
        time_decay.TimeDecayCell,
        {"tau_init": 0.5},
        (tf.random.normal(X_SHAPE), [tf.random.normal(X_SHAPE)]),
        expected_output_shape=X_SHAPE,
        expected_num_trainable_weights=1,
        output_fn=lambda out: out[0],
    )


def test_frozen_tau_and_no_weight_decay():
    cell = time_decay.TimeDecayCell(tau_trainable=False)
    cell.build(X_SHAPE)
    assert cell.trainable_weights == [] and len(cell.non_trainable_weights) == 1
    assert cell.losses == []  # tau is never decayed (reference `memory`)
    x = tf.random.normal(X_SHAPE)
    out, _ = cell(x, [tf.random.normal(X_SHAPE)])
    np.testing.assert_array_equal(out.numpy(), x.numpy())  # tau = 0: the identity (feedforward node)


def test_parameter_count():
    # Spec 11.2: timedecay shallow 4,197,739 = FF 4,197,736 + 3 cells x 1 scalar; intermediate 16,403,439 =
    # BaseNet 16,403,432 + 7 cells x 1.
    cell = time_decay.TimeDecayCell()
    cell.build((None, 28, 28, 256))
    assert cell.count_params() == 1
    assert cell.output_channels == 256 and cell.state_channels == (256,)


def test_xla_and_mixed_bfloat16():
    cell = time_decay.TimeDecayCell(tau_init=0.3)
    cell_testing.check_xla_step(cell, X_SHAPE)
    cell_testing.check_mixed_bfloat16(lambda: time_decay.TimeDecayCell(tau_init=0.3), X_SHAPE)


def test_errors():
    cell = time_decay.TimeDecayCell()
    cell.build(X_SHAPE)
    states = cell.get_initial_state(2)
    with pytest.raises(ValueError, match="feedback"):
        cell(tf.zeros(X_SHAPE), states, feedback=tf.zeros(X_SHAPE))
    with pytest.raises(ValueError, match="residual"):
        cell(tf.zeros(X_SHAPE), states, residual=tf.zeros(X_SHAPE))
    with pytest.raises(ValueError, match="filters must equal the input channels"):
        time_decay.TimeDecayCell(filters=5).build(X_SHAPE)
    with pytest.raises(ValueError, match="build it first"):
        time_decay.TimeDecayCell().output_channels
