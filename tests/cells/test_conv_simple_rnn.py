"""Conv SimpleRNN: s_t = ELU(LN(W_i * x + b_i + W_s * s + b_s)) against NumPy, harness, counts, XLA, bfloat16."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import conv_simple_rnn
from tests import layer_testing
from tests.cells import cell_testing as ct

X_SHAPE = (2, 8, 8, 3)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_steps_match_numpy(layer_norm):
    cell = conv_simple_rnn.ConvSimpleRNNCell(5, layer_norm=layer_norm, dtype="float64")
    cell.build(X_SHAPE)
    ct.randomize_weights(cell)
    wi, ws = ct.variables(cell.input_conv), ct.variables(cell.state_conv)
    ln = ct.variables(cell.norm) if layer_norm else None

    def numpy_step(x, states):
        pre = ct.conv2d_same(x, wi["kernel"], wi["bias"]) + ct.conv2d_same(states[0], ws["kernel"], ws["bias"])
        if layer_norm:
            pre = ct.hwc_layer_norm(pre, ln["gamma"], ln["beta"])
        s = ct.elu(pre)
        return s, [s]

    ct.compare_steps(cell, numpy_step, X_SHAPE)


def test_harness():
    layer_testing.run_layer_test(
        conv_simple_rnn.ConvSimpleRNNCell,
        {"filters": 4, "layer_norm": True, "weight_decay": 1e-3},
        (tf.random.normal(X_SHAPE), [tf.random.normal((2, 8, 8, 4))]),
        expected_output_shape=(2, 8, 8, 4),
        expected_num_trainable_weights=6,  # 2 kernels, 2 biases, gamma, beta
        output_fn=lambda out: out[0],
    )


def test_weight_decay_covers_kernels_and_biases_not_layer_norm():
    cell = conv_simple_rnn.ConvSimpleRNNCell(4, layer_norm=True, weight_decay=0.2)
    cell.build(X_SHAPE)
    ct.randomize_weights(cell)
    decayed = [*ct.variables(cell.input_conv).values(), *ct.variables(cell.state_conv).values()]
    np.testing.assert_allclose(float(sum(cell.losses)), 0.2 / 2 * sum(np.sum(w**2) for w in decayed), rtol=1e-5)


def test_parameter_counts():
    # Shallow (LN on, c_out 128/256/256 from pre-convs 256/256/512; spec 11.2):
    #   conv3: 9*128*128 + 128 + 9*256*128 + 128 + 2*128 = 147,456 + 128 + 294,912 + 128 + 256 = 442,880
    #   conv4: 9*256*256 + 256 + 9*256*256 + 256 + 512 = 1,180,672
    #   conv5: 9*256*256 + 256 + 9*512*256 + 256 + 512 = 590,080 + 1,179,904 + 512 = 1,770,496
    #   sum 3,394,048 = simplernn shallow 6,272,872 - backbone (9,472 + 73,856 + 295,168 + 295,168 + 1,180,160
    #   + readout 2*2*256*1000 + 1000 = 2,878,824).
    counts = []
    for c_in, c_out, size in ((256, 128, 28), (256, 256, 14), (512, 256, 7)):
        cell = conv_simple_rnn.ConvSimpleRNNCell(c_out, layer_norm=True)
        cell.build((None, size, size, c_in))
        counts.append(cell.count_params())
    assert counts == [442_880, 1_180_672, 1_770_496]
    assert sum(counts) == 6_272_872 - 2_878_824
    # Intermediate (no LN): 18C^2 + 2C at C = 128: 294,912 + 256 = 295,168.
    cell = conv_simple_rnn.ConvSimpleRNNCell(128)
    cell.build((None, 28, 28, 128))
    assert cell.count_params() == 295_168


def test_xla_and_mixed_bfloat16():
    ct.check_xla_step(conv_simple_rnn.ConvSimpleRNNCell(4, layer_norm=True), X_SHAPE)
    ct.check_mixed_bfloat16(lambda: conv_simple_rnn.ConvSimpleRNNCell(4, layer_norm=True), X_SHAPE)


def test_errors():
    cell = conv_simple_rnn.ConvSimpleRNNCell(4)
    cell.build(X_SHAPE)
    with pytest.raises(ValueError, match="takes no `feedback`"):
        cell(tf.zeros(X_SHAPE), cell.get_initial_state(2), feedback=tf.zeros(X_SHAPE))
    with pytest.raises(ValueError, match="gelux"):
        conv_simple_rnn.ConvSimpleRNNCell(4, activation="gelux")
