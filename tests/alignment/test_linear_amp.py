"""The weight-mirror shortcut (amp as -<B, kernel_adjoint(x_b, f)> / n) equals the direct amp in value and gradient."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import rules

# The thesis' R_WM^TPE path options on real inputs (noise would make the two evaluations differ).
WM_REAL = dict(amp_weight=0.44, decay_weight=0.03, fo_bias=True, fo_relu=True, fo_bwmc=True, bi_bwmc=True, bo_bias=True)


def _dense_case(rng):
    x = tf.constant(rng.normal(size=(5, 4)))
    w = tf.constant(rng.normal(size=(4, 3)))
    b = tf.Variable(rng.normal(size=(4, 3)))  # B^T: W's shape
    bias = tf.constant(rng.normal(size=(3,)))
    fns = dict(
        project=lambda x, k: tf.matmul(x, k),
        reconstruct=lambda y, k: tf.matmul(y, k, transpose_b=True),
        kernel_adjoint=lambda x, y: tf.matmul(x, y, transpose_a=True),
    )
    return x, w, b, bias, fns


def _conv_case(rng, strides, padding):
    x = tf.constant(rng.normal(size=(3, 7, 7, 2)))
    w = tf.constant(rng.normal(size=(3, 3, 2, 4)))
    b = tf.Variable(rng.normal(size=(3, 3, 2, 4)))
    bias = tf.constant(rng.normal(size=(4,)))
    s = [1, strides, strides, 1]
    fns = dict(
        project=lambda x, k: tf.nn.conv2d(x, k, s, padding),
        reconstruct=lambda y, k: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=k, out_backprop=y, strides=s, padding=padding
        ),
        kernel_adjoint=lambda xx, y: tf.raw_ops.Conv2DBackpropFilter(
            input=xx, filter_sizes=tf.shape(w), out_backprop=y, strides=s, padding=padding
        ),
    )
    return x, w, b, bias, fns


@pytest.mark.parametrize("case", ["dense", "conv_s1_same", "conv_s2_valid"])
def test_linear_amp_matches_direct_amp(case):
    rng = np.random.default_rng(0)
    if case == "dense":
        x, w, b, bias, fns = _dense_case(rng)
    else:
        x, w, b, bias, fns = _conv_case(rng, 1 if "s1" in case else 2, "SAME" if "same" in case else "VALID")
    rule = rules.LearningRule(**WM_REAL)
    values, grads = [], []
    for use_adjoint in (True, False):
        kwargs = dict(fns)
        if not use_adjoint:
            kwargs["kernel_adjoint"] = None
        with tf.GradientTape() as tape:
            loss = rule.alignment_loss(x=x, w=w, b=b, bias=bias, activation=tf.nn.relu, **kwargs)
        values.append(float(loss))
        grads.append(tape.gradient(loss, b).numpy())
    np.testing.assert_allclose(values[0], values[1], rtol=1e-5)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)
