"""Shared cell code: TF1 L2 convention, initializers, kernel clipping, HWC layer norm, the ConvCell checks, registry."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import cells
from goaldriven.cells import base
from tests import layer_testing
from tests.cells import cell_testing


def test_tf1_l2_is_half_lambda_sum_of_squares():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    reg = base.tf1_l2(0.3)
    np.testing.assert_allclose(float(reg(tf.constant(w))), 0.3 * np.sum(w**2) / 2, rtol=1e-6)
    assert base.tf1_l2(0.0) is None
    with pytest.raises(ValueError, match="weight_decay"):
        base.tf1_l2(-1.0)


def test_kernel_initializers():
    assert isinstance(base.kernel_initializer(None), keras.initializers.GlorotUniform)
    init = base.kernel_initializer(0.64)
    assert isinstance(init, keras.initializers.VarianceScaling)
    assert (init.scale, init.mode, init.distribution) == (0.64, "fan_in", "truncated_normal")
    # fan_in truncated normal: std = sqrt(scale / fan_in) (fan_in = 3 * 3 * 200 for a 3x3 conv from 200 channels).
    values = init((3, 3, 200, 50)).numpy()
    np.testing.assert_allclose(values.std(), np.sqrt(0.64 / 1800), rtol=0.05)
    assert np.abs(values).max() <= 2 * np.sqrt(0.64 / 1800) / 0.87962566  # truncated at 2 stddev of the raw normal


def test_kernel_clipping_of_a_depth_separable_conv():
    # A 7x7 depth-separable conv on a 4x4 map gets a 4x4 depthwise kernel (spec 4.7, reference `_ds_conv`).
    conv = base.make_conv(5, 7, (4, 4), name="ds", depth_separable=True)
    conv.build((None, 4, 4, 3))
    shapes = {v.name: tuple(v.shape) for v in conv.weights}
    assert shapes == {"depthwise_kernel": (4, 4, 3, 1), "pointwise_kernel": (1, 1, 3, 5), "bias": (5,)}
    assert base.clip_kernel_size(7, (4, 9)) == (4, 7)
    regular = base.make_conv(5, 3, (8, 8), name="c", use_bias=False)
    regular.build((None, 8, 8, 3))
    assert [tuple(v.shape) for v in regular.weights] == [(3, 3, 3, 5)]


def test_make_conv_matches_numpy_same_padding():
    x = cell_testing.random((2, 5, 6, 3), 0)
    for depth_separable, k in ((False, 2), (False, 3), (True, 4)):
        conv = base.make_conv(4, k, (5, 6), name="c", depth_separable=depth_separable, dtype="float64")
        conv.build(x.shape)
        cell_testing.randomize_weights(conv)
        expected = cell_testing.apply_conv(cell_testing.variables(conv), x)
        np.testing.assert_allclose(conv(x).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_hwc_layer_norm_matches_numpy():
    norm = base.HWCLayerNorm(dtype="float64")
    x = cell_testing.random((2, 3, 4, 5), 0, scale=3.0) + 2.0
    norm.build(x.shape)
    assert [tuple(v.shape) for v in norm.weights] == [(5,), (5,)]  # per channel, not (h, w, c)
    cell_testing.randomize_weights(norm)
    v = cell_testing.variables(norm)
    expected = cell_testing.hwc_layer_norm(x, v["gamma"], v["beta"])
    np.testing.assert_allclose(norm(x).numpy(), expected, rtol=1e-10, atol=1e-10)


def test_hwc_layer_norm_mixed_bfloat16_keeps_float32_statistics():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    norm = base.HWCLayerNorm()
    x = tf.random.normal((2, 4, 4, 3)) * 0.01 + 100.0  # bfloat16 statistics would lose the small fluctuations
    out = norm(x)
    assert out.dtype == "bfloat16" and norm.gamma.dtype == "float32"
    expected = cell_testing.hwc_layer_norm(tf.cast(tf.cast(x, "bfloat16"), "float64").numpy(), 1.0, 0.0)
    np.testing.assert_allclose(tf.cast(out, "float32").numpy(), expected, atol=0.05)


def test_hwc_layer_norm_harness():
    layer_testing.run_layer_test(
        base.HWCLayerNorm,
        {"epsilon": 1e-6},
        (2.0 * tf.random.normal((2, 8, 8, 4)) + 1.0,),
        expected_output_shape=(2, 8, 8, 4),
        expected_num_trainable_weights=2,  # gamma, beta
    )


def test_conv_cell_needs_static_map_and_matching_states():
    cell = cells.ConvUGRNNCell(4)
    with pytest.raises(ValueError, match="static h, w"):
        cell.build((None, None, None, 3))
    cell = cells.ConvUGRNNCell(4)
    with pytest.raises(ValueError, match="build"):
        cell.get_initial_state(2)
    cell.build((None, 4, 4, 3))
    with pytest.raises(ValueError, match="1 state tensor"):
        cell(tf.zeros((2, 4, 4, 3)), [tf.zeros((2, 4, 4, 4))] * 2)
    with pytest.raises(ValueError, match="4 channels"):
        cell(tf.zeros((2, 4, 4, 3)), [tf.zeros((2, 4, 4, 5))])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "filters"),
        ({"filters": 4, "weight_decay": -1.0}, "weight_decay"),
        ({"filters": 4, "init_scale": 0.0}, "init_scale"),
        ({"filters": 4, "kernel_size": 0}, "kernel_size"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cells.ConvGRUCell(**kwargs)


def test_registry():
    assert set(cells.CELLS) == {"timedecay", "simplernn", "gru", "lstm", "ugrnn", "intersectionrnn", "rgc"}
    assert cells.get_cell("rgc") is cells.ReciprocalGatedCell
    with pytest.raises(ValueError, match="known cells: gru, intersectionrnn, lstm, rgc"):
        cells.get_cell("convlstm")
    assert cells.get_vector_cell("ugrnn") is cells.VectorUGRNNCell


def test_compute_output_shape_gives_output_and_states():
    cell = cells.ConvLSTMCell(6)
    cell.build((None, 4, 4, 3))
    out, states = cell.compute_output_shape((2, 4, 4, 3))
    assert out == (2, 4, 4, 6) and states == [(2, 4, 4, 6), (2, 4, 4, 6)]
