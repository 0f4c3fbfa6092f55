"""LearningRule.batch_fraction: R on the first ceil(fraction x n) examples (or that many noise samples)."""

# b: batch, h/w: space, c: channels
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import layers, rules, scope

B, H, C = 4, 6, 3


def _r(layer, x, *, gradient=False):
    """The layer's R on input x under a training collector (and dR/dB when asked)."""
    with tf.GradientTape() as tape:
        with scope.collect_alignment_losses() as collected:
            layer(x, training=True)
        total = collected.total()
    if not gradient:
        return float(total)
    return float(total), tape.gradient(total, layers.backward_kernels(layer))


def _pair(make, rule):
    """A layer under `rule` and an identical one whose rule computes R on the whole batch."""
    x = tf.constant(np.random.default_rng(0).normal(size=(B, H, H, C)), tf.float32)
    half, whole = make(rule), make(dataclasses.replace(rule, batch_fraction=1.0))
    half(x), whole(x)
    for a, b in zip(half.weights, whole.weights):
        b.assign(a)
    return half, whole, x


@pytest.mark.parametrize("make", [
    lambda rule: layers.AlignedConv2D(5, 3, rule=rule, alignment_relu=True),
    lambda rule: layers.AlignedSeparableConv2D(5, 3, rule=rule),
    lambda rule: layers.AlignedDense(5, rule=rule, activation="relu"),
], ids=["conv", "separable", "dense"])  # fmt: skip
def test_activation_alignment_on_half_the_batch_is_r_of_the_first_half(make):
    half, whole, x = _pair(make, rules.ActivationAlignment(batch_fraction=0.5))
    value, grads = _r(half, x, gradient=True)
    expected, expected_grads = _r(whole, x[: B // 2], gradient=True)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    for g, e in zip(grads, expected_grads):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-7)
    assert not np.isclose(value, _r(whole, x), rtol=1e-3)  # the whole batch gives another R


@pytest.mark.parametrize(
    "rule", [rules.InformationAlignment(batch_fraction=0.25), rules.WeightMirror(batch_fraction=0.3)]
)
def test_noise_rules_draw_fewer_samples_and_compile_with_xla(rule):
    conv = layers.AlignedConv2D(5, 3, rule=rule, alignment_relu=True)
    separable = layers.AlignedSeparableConv2D(4, 3, rule=rule)
    x = tf.constant(np.random.default_rng(1).normal(size=(B, H, H, C)), tf.float32)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            with scope.collect_alignment_losses() as collected:
                separable(conv(x, training=True), training=True)
            total = collected.total()
        return total, tape.gradient(total, layers.backward_kernels(conv) + layers.backward_kernels(separable))

    with scope.record_layer_inputs():  # build
        separable(conv(x))
    value, grads = step(x)
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g.numpy())) and np.any(g.numpy()) for g in grads)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="batch_fraction must be in"):
        rules.WeightMirror(batch_fraction=fraction)
