"""Per-layer alignment diagnostics (alignment/diagnostics.py; spec ch5 3.3, thesis Section 5.10).

angle(a, b)      = acos(<a, b> / (|a| |b|)) in degrees
weight angle     = angle(W, B^T) (dense) or angle(W, B) (convs): 0 when B = W^T, ~90 for independent draws
norm ratio       = |B|_F / |W|_F
gradient angle   = angle(the rule's input gradient, backprop's) per aligned layer; for a 2-layer ReLU MLP
                   (NumPy reference) with dy = dL/dy:
                     layer 2: dy B2            vs  dy W2^T
                     layer 1: ((dy B2) * [h > 0]) B1  vs  ((dy W2^T) * [h > 0]) W1^T
"""

# n: batch, h/w: space, c: channels
import math

import keras
import numpy as np
import tensorflow as tf

from goaldriven.alignment import diagnostics, layers


def _np_angle(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return math.degrees(math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


def test_angle():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 5))
    assert diagnostics.angle(a, a) < 1e-5
    assert diagnostics.angle(a, 3.0 * a) < 1e-5
    np.testing.assert_allclose(diagnostics.angle(a, -a), 180.0, atol=1e-5)
    np.testing.assert_allclose(diagnostics.angle([1.0, 0.0], [0.0, 2.0]), 90.0, atol=1e-10)
    np.testing.assert_allclose(diagnostics.angle([1.0, 0.0], [1.0, 1.0]), 45.0, atol=1e-10)
    np.testing.assert_allclose(diagnostics.angle([1.0, 0.0], [-1.0, 3**0.5]), 120.0, atol=1e-10)
    b = rng.normal(size=(4, 5))
    np.testing.assert_allclose(diagnostics.angle(a, b), _np_angle(a, b), rtol=1e-10)
    np.testing.assert_allclose(diagnostics.angle(tf.constant(a), b.ravel()), _np_angle(a, b), rtol=1e-10)
    assert math.isnan(diagnostics.angle(np.zeros(3), np.ones(3)))


def _model(units=4, filters=4, channels=3):
    return keras.Sequential(
        [
            keras.Input((8, 8, channels)),
            layers.AlignedConv2D(filters, 3, padding="same", rule="fa", name="conv"),
            layers.AlignedSeparableConv2D(4, 3, depth_multiplier=2, rule="sa", name="separable"),
            keras.layers.Flatten(),
            layers.AlignedDense(units, rule="kp", name="dense"),
        ],
        name="net",
    )


def _pairs(model):
    """[(key, W, B variable, B value in B's layout that makes the layer exact)]"""
    conv, separable, _, dense = model.layers
    return [
        ("net/conv", conv.kernel, conv.backward_kernel, conv.kernel.numpy()),
        ("net/separable/depthwise", separable.depthwise_kernel, separable.depthwise_backward_kernel,
         separable.depthwise_kernel.numpy()),
        ("net/separable/pointwise", separable.pointwise_kernel, separable.pointwise_backward_kernel,
         separable.pointwise_kernel.numpy()),
        ("net/dense", dense.kernel, dense.backward_kernel, dense.kernel.numpy().T),
    ]  # fmt: skip


def test_weight_angles_and_norm_ratios():
    model = _model()
    pairs = _pairs(model)
    keys = {key for key, *_ in pairs}
    # random B: the ratio against NumPy
    ratios = diagnostics.norm_ratios(model)
    assert set(ratios) == keys
    for key, w, b, _ in pairs:
        np.testing.assert_allclose(ratios[key], np.linalg.norm(b.numpy()) / np.linalg.norm(w.numpy()), rtol=1e-6)
    # B = W^T: angle 0; B = -2.5 W^T: angle 180, ratio 2.5
    for scale, expected_angle in ((1.0, 0.0), (-2.5, 180.0)):
        for _, _, b, exact in pairs:
            b.assign(scale * exact)
        angles, ratios = diagnostics.weight_angles(model), diagnostics.norm_ratios(model)
        assert set(angles) == keys
        for key in keys:
            np.testing.assert_allclose(angles[key], expected_angle, atol=1e-3, err_msg=key)
            np.testing.assert_allclose(ratios[key], abs(scale), rtol=1e-6, err_msg=key)


def test_weight_angles_of_big_random_layers_are_near_90():
    model = _model(units=256, filters=32, channels=32)
    angles = diagnostics.weight_angles(model)
    for key in ("net/conv", "net/dense"):  # 9216 and 65536 entries: |cos| ~ 1/sqrt(entries)
        assert abs(angles[key] - 90.0) < 3.0, (key, angles[key])


def test_gradient_angles_against_numpy():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            layers.AlignedDense(8, activation="relu", rule="fa", name="hidden"),
            layers.AlignedDense(3, rule="fa", name="out"),
        ],
        name="mlp",
    )
    hidden, out = model.layers
    out.bias.assign([0.1, -0.2, 0.3])
    x, target = tf.random.normal([5, 6]), tf.random.normal([5, 3])
    batch = {"x": x, "y": target}

    def loss_fn(m, b):
        return tf.reduce_mean(tf.square(m(b["x"]) - b["y"]))

    gradient_angles = diagnostics.make_gradient_angles(model, loss_fn)
    w1, b1, bw1 = (v.numpy() for v in (hidden.kernel, hidden.bias, hidden.backward_kernel))
    w2, b2, bw2 = (v.numpy() for v in (out.kernel, out.bias, out.backward_kernel))
    h = np.maximum(x.numpy() @ w1 + b1, 0)
    dy = 2 * (h @ w2 + b2 - target.numpy()) / target.numpy().size  # d mean((y - t)^2) / dy
    expected = {
        "mlp/out": _np_angle(dy @ bw2, dy @ w2.T),
        "mlp/hidden": _np_angle(((dy @ bw2) * (h > 0)) @ bw1, ((dy @ w2.T) * (h > 0)) @ w1.T),
    }
    angles = gradient_angles(batch)
    assert set(angles) == set(expected)
    for key, value in expected.items():
        assert value > 1.0
        np.testing.assert_allclose(angles[key], value, atol=1e-2, err_msg=key)
    # B = W^T: the rule's gradient is backprop's
    hidden.backward_kernel.assign(tf.transpose(hidden.kernel))
    out.backward_kernel.assign(tf.transpose(out.kernel))
    for key, value in gradient_angles(batch).items():
        assert value < 1e-3, (key, value)


def test_gradient_angles_of_a_conv_model():
    model = _model()
    batch = {"x": tf.random.normal([2, 8, 8, 3]), "y": tf.random.normal([2, 4])}
    gradient_angles = diagnostics.make_gradient_angles(
        model, lambda m, b: tf.reduce_mean(tf.square(m(b["x"]) - b["y"]))
    )
    keys = {"net/conv", "net/separable", "net/dense"}
    angles = gradient_angles(batch)
    assert set(angles) == keys
    assert all(angles[key] > 1.0 for key in keys), angles
    for _, _, b, exact in _pairs(model):
        b.assign(exact)
    angles = gradient_angles(batch)
    assert all(angles[key] < 1e-3 for key in keys), angles
