"""Conv LSTM against NumPy (spec 4.4: i, j, f, o order; LN; peepholes on s_{t-1}), LSTM Opt settings, counts."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.cells import conv_lstm
from tests import layer_testing
from tests.cells import cell_testing as ct

X_SHAPE = (2, 8, 8, 3)


@pytest.mark.parametrize("layer_norm, peepholes", [(False, False), (True, False), (False, True), (True, True)])
def test_steps_match_numpy(layer_norm, peepholes):
    cell = conv_lstm.ConvLSTMCell(4, layer_norm=layer_norm, peepholes=peepholes, forget_bias=0.7, dtype="float64")
    cell.build(X_SHAPE)
    ct.randomize_weights(cell)
    w = ct.variables(cell.gates)
    ln = {k: ct.variables(n) for k, n in cell.norms.items()}
    v = {"i": 0.0, "f": 0.0, "o": 0.0}
    if peepholes:
        v = {k: cell.peephole_weights[k].numpy() for k in "ifo"}
        assert all(p.shape == (8, 8, 4) for p in v.values())

    def norm(key, z):
        return ct.hwc_layer_norm(z, ln[key]["gamma"], ln[key]["beta"]) if layer_norm else z

    def numpy_step(x, states):
        s, h = states
        pre = ct.conv2d_same(np.concatenate([x, h], -1), w["kernel"], w["bias"])
        i, j, f, o = (norm(key, pre[..., 4 * k : 4 * (k + 1)]) for k, key in enumerate("ijfo"))
        s_new = s * ct.sigmoid(f + 0.7 + v["f"] * s) + ct.sigmoid(i + v["i"] * s) * np.tanh(j)
        s_new = norm("state", s_new)
        h_new = np.tanh(s_new) * ct.sigmoid(o + v["o"] * s)  # peephole on the previous state
        return h_new, [s_new, h_new]

    ct.compare_steps(cell, numpy_step, X_SHAPE)


def test_lstm_opt_settings_are_constructor_arguments():
    # conv4 of "LSTM Opt" (spec 4.4 table): 3x3, LN, peepholes, forget bias 0.97796, VarianceScaling(1.83146),
    # bias init -1.16602, L2 7.613e-6.
    cell = conv_lstm.ConvLSTMCell(
        256, kernel_size=3, layer_norm=True, peepholes=True, forget_bias=0.97796, init_scale=1.83146,
        bias_init=-1.16602, weight_decay=7.613e-6,
    )  # fmt: skip
    cell.build((None, 14, 14, 256))
    np.testing.assert_array_equal(cell.gates.bias.numpy(), np.float32(-1.16602))
    kernel = cell.gates.kernel.numpy()
    np.testing.assert_allclose(kernel.std(), np.sqrt(1.83146 / (9 * 512)), rtol=0.02)  # fan_in = 3 * 3 * 512
    expected = 7.613e-6 / 2 * (np.sum(kernel**2) + np.sum(cell.gates.bias.numpy() ** 2))  # LN, peepholes: no decay
    np.testing.assert_allclose(float(sum(cell.losses)), expected, rtol=1e-4)


def test_harness():
    layer_testing.run_layer_test(
        conv_lstm.ConvLSTMCell,
        {"filters": 4, "layer_norm": True, "peepholes": True, "bias_init": 0.5, "init_scale": 0.8},
        (tf.random.normal(X_SHAPE), [tf.random.normal((2, 8, 8, 4)), tf.random.normal((2, 8, 8, 4))]),
        expected_output_shape=(2, 8, 8, 4),
        expected_num_trainable_weights=15,  # kernel, bias, 3 peepholes, 5 x (gamma, beta)
        output_fn=lambda out: out[0],
    )


def test_parameter_counts():
    # LSTM Opt (spec 4.4 table, 11.2): conv over [x ; h] -> 4 Co, LN 10 Co, peepholes 3 H W Co (conv4 only).
    #   conv3 (28x28, Cin 256, Co 128, 2x2): 4*384*512 + 512 + 1,280 = 786,944 + 1,280 = 788,224
    #   conv4 (14x14, Cin 256, Co 256, 3x3): 9*512*1024 + 1024 + 2,560 + 3*14*14*256 = 4,719,616 + 2,560 + 150,528
    #         = 4,872,704
    #   conv5 (7x7, Cin 512, Co 256, 4x4): 16*768*1024 + 1024 + 2,560 = 12,583,936 + 2,560 = 12,586,496
    #   sum 18,247,424 = lstm shallow 21,126,248 - backbone 2,878,824 (9,472 + 73,856 + 295,168 + 295,168
    #   + 1,180,160 + readout 2*2*256*1000 + 1000).
    counts = []
    for c_in, c_out, size, k, peep in ((256, 128, 28, 2, False), (256, 256, 14, 3, True), (512, 256, 7, 4, False)):
        cell = conv_lstm.ConvLSTMCell(c_out, kernel_size=k, layer_norm=True, peepholes=peep)
        cell.build((None, size, size, c_in))
        counts.append(cell.count_params())
    assert counts == [788_224, 4_872_704, 12_586_496]
    assert sum(counts) == 21_126_248 - 2_878_824
    # Intermediate (no LN, no peepholes): 72C^2 + 4C at C = 128 = 1,179,648 + 512 = 1,180,160.
    cell = conv_lstm.ConvLSTMCell(128)
    cell.build((None, 28, 28, 128))
    assert cell.count_params() == 1_180_160


def test_xla_and_mixed_bfloat16():
    def make():
        return conv_lstm.ConvLSTMCell(4, layer_norm=True, peepholes=True)

    ct.check_xla_step(make(), X_SHAPE)
    ct.check_mixed_bfloat16(make, X_SHAPE)


def test_errors():
    cell = conv_lstm.ConvLSTMCell(4)
    cell.build(X_SHAPE)
    with pytest.raises(ValueError, match="2 state tensor"):
        cell(tf.zeros(X_SHAPE), cell.get_initial_state(2)[:1])
    with pytest.raises(ValueError, match="takes no `feedback`"):
        cell(tf.zeros(X_SHAPE), cell.get_initial_state(2), feedback=tf.zeros(X_SHAPE))
