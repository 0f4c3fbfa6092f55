"""The custom-gradient ops of alignment/ops.py against closed forms (spec ch5 3.1, 14.3 item 13).

    dense:  y = x W,  dx = dy B (not dy W^T),  dW = x^T dy,  dB = 0, or dW^T under tie_grad (Kolen-Pollack)
    conv:   y = conv(x, W),  dx = conv^T(dy, B),  dW = conv_filter_grad(x, dy),  dB = 0, or dW under tie_grad

The references are written here in NumPy (a direct-loop convolution, its transpose and its filter gradient, with
TensorFlow's SAME padding rule: pad_total = max((out - 1) s + k_eff - in, 0), pad_before = pad_total // 2). Controls:
with B = W^T (dense) or B = W (conv) every gradient equals autodiff of the plain op, and dx equals autodiff of the
plain op with W replaced by B.
"""

# n: batch, h/w: space, c: channels, kh/kw: kernel, m: depth multiplier
import math

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import ops

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _normal(shape, seed, dtype=tf.float64):
    return tf.random.stateless_normal(shape, [seed, 7], dtype=dtype)


def _conv_dtype_tol(dilation):
    """float64, except dilated convs: TF's CPU Conv2DBackpropInput has no float64 kernel for dilation > 1."""
    return (tf.float64, TOL) if dilation == 1 else (tf.float32, {"rtol": 1e-4, "atol": 1e-4})


def _grads(fn, x, w, b, dy):
    with tf.GradientTape() as tape:
        tape.watch([x, w, b])
        y = fn(x, w, b)
    return (y, *tape.gradient(y, [x, w, b], output_gradients=dy))


# ----------------------------------------------------------------------------------------------------- NumPy refs
def _out_and_pad(size, k, stride, padding, dilation=1):
    k_eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = math.ceil(size / stride)
        return out, max((out - 1) * stride + k_eff - size, 0) // 2
    return math.ceil((size - k_eff + 1) / stride), 0


def _geometry(x_shape, k_shape, stride, padding, dilation):
    (oh, top), (ow, left) = (
        _out_and_pad(x_shape[1], k_shape[0], stride, padding, dilation),
        _out_and_pad(x_shape[2], k_shape[1], stride, padding, dilation),
    )
    # padded input big enough for every tap of every output
    ph = max(x_shape[1] + top, (oh - 1) * stride + (k_shape[0] - 1) * dilation + 1)
    pw = max(x_shape[2] + left, (ow - 1) * stride + (k_shape[1] - 1) * dilation + 1)
    return oh, ow, top, left, ph, pw


def _taps(k_shape, oh, ow, stride, dilation):
    """Yields (di, dj, row slice, col slice) of the padded input that kernel tap (di, dj) reads for all outputs."""
    for di in range(k_shape[0]):
        for dj in range(k_shape[1]):
            rows = slice(di * dilation, di * dilation + (oh - 1) * stride + 1, stride)
            cols = slice(dj * dilation, dj * dilation + (ow - 1) * stride + 1, stride)
            yield di, dj, rows, cols


def np_conv(x, w, stride, padding, dilation=1, depthwise=False):
    """Direct NHWC convolution: (n, h, w, c_in) with (kh, kw, c_in, c_out) or depthwise (kh, kw, c, m)."""
    x, w = np.asarray(x), np.asarray(w)
    oh, ow, top, left, ph, pw = _geometry(x.shape, w.shape, stride, padding, dilation)
    xp = np.zeros((x.shape[0], ph, pw, x.shape[3]))
    xp[:, top : top + x.shape[1], left : left + x.shape[2]] = x
    c_out = w.shape[2] * w.shape[3] if depthwise else w.shape[3]
    y = np.zeros((x.shape[0], oh, ow, c_out))
    for di, dj, rows, cols in _taps(w.shape, oh, ow, stride, dilation):
        patch = xp[:, rows, cols]  # (n, oh, ow, c_in)
        if depthwise:
            y += np.einsum("nhwc,cm->nhwcm", patch, w[di, dj]).reshape(y.shape)
        else:
            y += patch @ w[di, dj]
    return y


def np_conv_transpose(dy, w, x_shape, stride, padding, dilation=1, depthwise=False):
    """The adjoint of np_conv in its input: scatters dy (n, oh, ow, c_out) back through kernel w to x_shape."""
    dy, w = np.asarray(dy), np.asarray(w)
    oh, ow, top, left, ph, pw = _geometry(x_shape, w.shape, stride, padding, dilation)
    dxp = np.zeros((x_shape[0], ph, pw, x_shape[3]))
    for di, dj, rows, cols in _taps(w.shape, oh, ow, stride, dilation):
        if depthwise:
            dxp[:, rows, cols] += np.einsum("nhwcm,cm->nhwc", dy.reshape(*dy.shape[:3], *w.shape[2:]), w[di, dj])
        else:
            dxp[:, rows, cols] += dy @ w[di, dj].T
    return dxp[:, top : top + x_shape[1], left : left + x_shape[2]]


def np_conv_filter_grad(x, dy, k_shape, stride, padding, dilation=1, depthwise=False):
    """The gradient of sum(np_conv(x, w) * dy) with respect to w (k_shape)."""
    x, dy = np.asarray(x), np.asarray(dy)
    oh, ow, top, left, ph, pw = _geometry(x.shape, k_shape, stride, padding, dilation)
    xp = np.zeros((x.shape[0], ph, pw, x.shape[3]))
    xp[:, top : top + x.shape[1], left : left + x.shape[2]] = x
    dw = np.zeros(k_shape)
    for di, dj, rows, cols in _taps(k_shape, oh, ow, stride, dilation):
        if depthwise:
            dw[di, dj] = np.einsum("nhwc,nhwcm->cm", xp[:, rows, cols], dy.reshape(*dy.shape[:3], *k_shape[2:]))
        else:
            dw[di, dj] = np.einsum("nhwc,nhwd->cd", xp[:, rows, cols], dy)
    return dw


def test_numpy_reference_matches_tf_conv():
    """Guards the references themselves: np_conv is tf.nn.conv2d, and np_conv_transpose is its adjoint."""
    x, w = _normal([2, 7, 6, 3], 1), _normal([3, 2, 3, 4], 2)
    for stride, padding in ((1, "SAME"), (2, "SAME"), (2, "VALID")):
        y = np_conv(x, w, stride, padding)
        np.testing.assert_allclose(y, tf.nn.conv2d(x, w, stride, padding), **TOL)
        dy = np.random.default_rng(0).normal(size=y.shape)
        dx = np_conv_transpose(dy, w, x.shape, stride, padding)
        np.testing.assert_allclose(np.sum(y * dy), np.sum(np.asarray(x) * dx), rtol=1e-10)


# ----------------------------------------------------------------------------------------------------- dense
@pytest.mark.parametrize("x_shape", [(3, 4), (2, 3, 4)])
def test_aligned_matmul_closed_form(x_shape):
    x, w, b = _normal(x_shape, 1), _normal([4, 5], 2), _normal([5, 4], 3)
    dy = _normal([*x_shape[:-1], 5], 4)
    xn, wn, bn, dyn = (np.asarray(t) for t in (x, w, b, dy))
    x2, dy2 = xn.reshape(-1, 4), dyn.reshape(-1, 5)
    for tie_grad in (False, True):
        y, dx, dw, db = _grads(lambda x, w, b: ops.aligned_matmul(x, w, b, tie_grad=tie_grad), x, w, b, dy)
        np.testing.assert_allclose(y, xn @ wn, **TOL)
        np.testing.assert_allclose(dx, dyn @ bn, **TOL)
        assert not np.allclose(dx, dyn @ wn.T)  # the input gradient does not use W
        np.testing.assert_allclose(dw, x2.T @ dy2, **TOL)
        np.testing.assert_allclose(db, (x2.T @ dy2).T if tie_grad else np.zeros((5, 4)), **TOL)


def test_aligned_matmul_with_transposed_kernel_is_autodiff():
    x, w, dy = _normal([3, 4], 1), _normal([4, 5], 2), _normal([3, 5], 4)
    _, dx, dw, _ = _grads(lambda x, w, b: ops.aligned_matmul(x, w, b), x, w, tf.transpose(w), dy)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = tf.matmul(x, w)
    ref_dx, ref_dw = tape.gradient(y, [x, w], output_gradients=dy)
    np.testing.assert_allclose(dx, ref_dx, **TOL)
    np.testing.assert_allclose(dw, ref_dw, **TOL)


def test_aligned_matmul_rejects_untransposed_backward_kernel():
    with pytest.raises(ValueError, match="transposed shape"):
        ops.aligned_matmul(_normal([3, 4], 1), _normal([4, 5], 2), _normal([4, 5], 3))


# ----------------------------------------------------------------------------------------------------- conv2d
CONV_CASES = [(1, "SAME", 1), (2, "SAME", 1), (1, "VALID", 1), (2, "VALID", 1), (1, "SAME", 2)]


@pytest.mark.parametrize("stride,padding,dilation", CONV_CASES)
def test_aligned_conv2d_closed_form(stride, padding, dilation):
    dtype, tol = _conv_dtype_tol(dilation)
    x, w, b = _normal([2, 7, 6, 3], 1, dtype), _normal([3, 2, 3, 4], 2, dtype), _normal([3, 2, 3, 4], 3, dtype)
    y_ref = np_conv(x, w, stride, padding, dilation)
    dy = _normal(y_ref.shape, 4, dtype)

    dx_ref = np_conv_transpose(dy, b, x.shape, stride, padding, dilation)
    dw_ref = np_conv_filter_grad(x, dy, w.shape, stride, padding, dilation)
    for tie_grad in (False, True):

        def fn(x, w, b):
            return ops.aligned_conv2d(x, w, b, strides=stride, padding=padding, dilations=dilation, tie_grad=tie_grad)

        y, dx, dw, db = _grads(fn, x, w, b, dy)
        np.testing.assert_allclose(y, y_ref, **tol)
        np.testing.assert_allclose(dx, dx_ref, **tol)
        assert not np.allclose(dx, np_conv_transpose(dy, w, x.shape, stride, padding, dilation))
        np.testing.assert_allclose(dw, dw_ref, **tol)
        np.testing.assert_allclose(db, dw_ref if tie_grad else np.zeros(w.shape), **tol)


@pytest.mark.parametrize("stride,padding,dilation", CONV_CASES)
def test_aligned_conv2d_controls_against_autodiff(stride, padding, dilation):
    """B = W gives autodiff's gradients; random B gives autodiff's dx of the conv with W replaced by B."""
    dtype, tol = _conv_dtype_tol(dilation)
    x, w, b = _normal([2, 7, 6, 3], 1, dtype), _normal([3, 3, 3, 4], 2, dtype), _normal([3, 3, 3, 4], 3, dtype)

    def plain(x, kernel):
        return tf.nn.conv2d(x, kernel, stride, padding, dilations=dilation)

    dy = _normal(plain(x, w).shape, 4, dtype)

    def autodiff(kernel):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = plain(x, kernel)
        return tape.gradient(y, [x, kernel], output_gradients=dy)

    def fn(x, w, b):
        return ops.aligned_conv2d(x, w, b, strides=stride, padding=padding, dilations=dilation)

    _, dx_tied, dw_tied, _ = _grads(fn, x, w, w, dy)
    ref_dx, ref_dw = autodiff(w)
    np.testing.assert_allclose(dx_tied, ref_dx, **tol)
    np.testing.assert_allclose(dw_tied, ref_dw, **tol)
    _, dx, dw, _ = _grads(fn, x, w, b, dy)
    np.testing.assert_allclose(dx, autodiff(b)[0], **tol)
    np.testing.assert_allclose(dw, ref_dw, **tol)  # dW does not depend on B


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_aligned_depthwise_conv2d_closed_form(stride, padding):
    x, w, b = _normal([2, 7, 6, 3], 1), _normal([3, 3, 3, 2], 2), _normal([3, 3, 3, 2], 3)
    y_ref = np_conv(x, w, stride, padding, depthwise=True)
    dy = _normal(y_ref.shape, 4)
    dw_ref = np_conv_filter_grad(x, dy, w.shape, stride, padding, depthwise=True)
    for tie_grad in (False, True):

        def fn(x, w, b):
            return ops.aligned_depthwise_conv2d(x, w, b, strides=stride, padding=padding, tie_grad=tie_grad)

        y, dx, dw, db = _grads(fn, x, w, b, dy)
        np.testing.assert_allclose(y, y_ref, **TOL)
        np.testing.assert_allclose(dx, np_conv_transpose(dy, b, x.shape, stride, padding, depthwise=True), **TOL)
        np.testing.assert_allclose(dw, dw_ref, **TOL)
        np.testing.assert_allclose(db, dw_ref if tie_grad else np.zeros(w.shape), **TOL)
    # control: B = W is autodiff of the plain depthwise conv
    _, dx_tied, _, _ = _grads(fn, x, w, w, dy)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_plain = tf.nn.depthwise_conv2d(x, w, [1, stride, stride, 1], padding)
    np.testing.assert_allclose(dx_tied, tape.gradient(y_plain, x, output_gradients=dy), **TOL)


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_transpose_and_kernel_gradient_helpers_match_numpy(stride, padding):
    x_shape = (2, 7, 6, 3)
    w, wd = _normal([3, 2, 3, 4], 2), _normal([3, 3, 3, 2], 3)
    dy = _normal(np_conv(np.zeros(x_shape), w, stride, padding).shape, 4)
    out = ops.conv2d_transpose(dy, w, x_shape, strides=stride, padding=padding.lower())
    np.testing.assert_allclose(out, np_conv_transpose(dy, w, x_shape, stride, padding), **TOL)
    x = _normal(x_shape, 6)
    out = ops.conv2d_kernel_gradient(x, dy, w.shape, strides=stride, padding=padding)
    np.testing.assert_allclose(out, np_conv_filter_grad(x, dy, w.shape, stride, padding), **TOL)
    dyd = _normal(np_conv(np.zeros(x_shape), wd, stride, padding, depthwise=True).shape, 5)
    out = ops.depthwise_conv2d_transpose(dyd, wd, x_shape, strides=stride, padding=padding)
    np.testing.assert_allclose(out, np_conv_transpose(dyd, wd, x_shape, stride, padding, depthwise=True), **TOL)


def test_conv_argument_errors():
    x, w = _normal([1, 5, 5, 2], 1), _normal([3, 3, 2, 4], 2)
    with pytest.raises(ValueError, match="forward kernel's shape"):
        ops.aligned_conv2d(x, w, _normal([3, 3, 4, 2], 3))
    with pytest.raises(ValueError, match="padding"):
        ops.aligned_conv2d(x, w, w, padding="causal")
    with pytest.raises(ValueError, match="strides"):
        ops.aligned_conv2d(x, w, w, strides=0)
    with pytest.raises(ValueError, match="forward kernel's shape"):
        ops.aligned_depthwise_conv2d(x, _normal([3, 3, 2, 1], 4), _normal([3, 3, 2, 2], 5))


def test_ops_compile_with_xla():
    """The same gradients inside tf.function(jit_compile=True) as eagerly (stride 2, SAME, tie_grad)."""
    x, w, b = _normal([2, 8, 8, 3], 1), _normal([3, 3, 3, 4], 2), _normal([3, 3, 3, 4], 3)
    wd, bd = _normal([3, 3, 4, 1], 4), _normal([3, 3, 4, 1], 5)
    wf, bf = _normal([16, 2], 6), _normal([2, 16], 7)

    def loss_grads(x, w, b, wd, bd, wf, bf):
        with tf.GradientTape() as tape:
            tape.watch([x, w, b, wd, bd, wf, bf])
            h = ops.aligned_conv2d(x, w, b, strides=2, padding="SAME", tie_grad=True)
            h = ops.aligned_depthwise_conv2d(h, wd, bd, strides=2, padding="SAME")
            y = ops.aligned_matmul(tf.reshape(h, [2, 16]), wf, bf, tie_grad=True)
            loss = tf.reduce_sum(tf.sin(y))
        return tape.gradient(loss, [x, w, b, wd, bd, wf, bf])

    args = (x, w, b, wd, bd, wf, bf)
    for eager, compiled in zip(loss_grads(*args), tf.function(loss_grads, jit_compile=True)(*args)):
        np.testing.assert_allclose(compiled, eager, rtol=1e-9, atol=1e-9)
