"""Shared helpers of the conv-cell tests: NumPy references of TF's SAME convolutions and the common cell checks.

The NumPy ops are written from TF's definitions (stride 1, SAME: total padding k - 1, of which (k - 1) // 2 before),
not from the code under test.
"""

# b: batch, h/w: space, c: channels
import keras
import numpy as np
import tensorflow as tf


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def elu(z):
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def relu(z):
    return np.maximum(z, 0)


NUMPY_ACTIVATIONS = {"sigmoid": sigmoid, "tanh": np.tanh, "elu": elu, "relu": relu, "linear": lambda z: z}


def _pad_same(x, kh, kw):
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))


def conv2d_same(x, kernel, bias=None):
    """x (b, h, w, c_in), kernel (kh, kw, c_in, c_out) -> (b, h, w, c_out); TF SAME, stride 1."""
    kh, kw = kernel.shape[:2]
    h, w = x.shape[1:3]
    xp = _pad_same(x, kh, kw)
    out = sum(xp[:, i : i + h, j : j + w, :] @ kernel[i, j] for i in range(kh) for j in range(kw))
    return out if bias is None else out + bias


def depthwise_conv2d_same(x, kernel):
    """x (b, h, w, c), kernel (kh, kw, c, 1) -> (b, h, w, c); TF SAME, stride 1, depth multiplier 1."""
    kh, kw = kernel.shape[:2]
    h, w = x.shape[1:3]
    xp = _pad_same(x, kh, kw)
    return sum(xp[:, i : i + h, j : j + w, :] * kernel[i, j, :, 0] for i in range(kh) for j in range(kw))


def apply_conv(weights, x):
    """A conv given as a dict of its variables (kernel | depthwise_kernel + pointwise_kernel, optional bias)."""
    if "depthwise_kernel" in weights:
        out = depthwise_conv2d_same(x, weights["depthwise_kernel"]) @ weights["pointwise_kernel"][0, 0]
    else:
        out = conv2d_same(x, weights["kernel"])
    return out + weights["bias"] if "bias" in weights else out


def hwc_layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def variables(layer):
    """{short variable name: value} of a (sub)layer."""
    return {v.name: np.asarray(v.numpy()) for v in layer.weights}


def randomize_weights(layer, scale=0.3, seed=0):
    """Sets every weight to N(0, scale^2) so that biases, gains and peepholes all matter."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign(rng.normal(scale=scale, size=v.shape).astype(v.dtype))


def random(shape, seed, scale=1.0, dtype="float64"):
    return (np.random.default_rng(seed).normal(scale=scale, size=shape)).astype(dtype)


def compare_steps(cell, numpy_step, x_shape, *, steps=3, extra_channels=None, seed=1, rtol=1e-10, atol=1e-10):
    """Runs `steps` cell steps from random non-zero states and checks them against `numpy_step`.

    numpy_step(x, states, **extra) -> (out, new_states), all NumPy float64. extra_channels maps "feedback" /
    "residual" to channel counts; those inputs are random per step.
    """
    b, h, w, _ = x_shape
    states = [random((b, h, w, c), seed + 100 + i) for i, c in enumerate(cell.state_channels)]
    ref_states = [s.copy() for s in states]
    for t in range(steps):
        x = random(x_shape, seed + t)
        extra = {
            k: random((b, h, w, c), seed + 10 * (t + 1) + i) for i, (k, c) in enumerate((extra_channels or {}).items())
        }
        out, states = cell(x, states, **extra)
        ref_out, ref_states = numpy_step(x, ref_states, **extra)
        np.testing.assert_allclose(np.asarray(out), ref_out, rtol=rtol, atol=atol, err_msg=f"output, step {t}")
        assert len(states) == len(ref_states)
        for i, (s, r) in enumerate(zip(states, ref_states)):
            np.testing.assert_allclose(np.asarray(s), r, rtol=rtol, atol=atol, err_msg=f"state {i}, step {t}")


def check_xla_step(cell, x_shape, extra_channels=None):
    """One step under tf.function(jit_compile=True) equals the eager step."""
    b, h, w, _ = x_shape
    x = tf.random.normal(x_shape)
    extra = {k: tf.random.normal((b, h, w, c)) for k, c in (extra_channels or {}).items()}
    cell.build(x_shape)
    states = [tf.random.normal(s.shape) for s in cell.get_initial_state(b)]
    step = tf.function(lambda x, states, extra: cell(x, states, **extra), jit_compile=True)
    out, new_states = step(x, states, extra)
    ref_out, ref_states = cell(x, states, **extra)
    np.testing.assert_allclose(out.numpy(), ref_out.numpy(), rtol=1e-4, atol=1e-5)
    for s, r in zip(new_states, ref_states):
        np.testing.assert_allclose(s.numpy(), r.numpy(), rtol=1e-4, atol=1e-5)


def check_mixed_bfloat16(make_cell, x_shape, extra_channels=None, atol=0.1):
    """Under mixed_bfloat16 the step computes in bfloat16 (output dtype), stays finite and tracks float32."""
    b, h, w, _ = x_shape
    x = tf.random.normal(x_shape)
    extra = {k: tf.random.normal((b, h, w, c)) for k, c in (extra_channels or {}).items()}
    ref_cell = make_cell()
    ref_cell.build(x_shape)
    states = [tf.random.normal(s.shape) * 0.5 for s in ref_cell.get_initial_state(b)]
    ref_out, _ = ref_cell(x, states, **extra)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        cell = make_cell()
        cell.build(x_shape)
        assert all(v.dtype == "float32" for v in cell.weights)
        cell.set_weights(ref_cell.get_weights())
        assert all(s.dtype == "bfloat16" for s in cell.get_initial_state(b))
        out, new_states = cell(x, states, **extra)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == "bfloat16" and all(s.dtype == "bfloat16" for s in new_states)
    out = tf.cast(out, "float32").numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref_out.numpy(), atol=atol, rtol=0.05)
