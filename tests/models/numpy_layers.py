"""NumPy references of the layers of the Chapter 6 models (independent of Keras/TF): convolution with TF's SAME
padding, 3x3/2 SAME max and average pooling (the average over the window's valid elements, as tf.nn.avg_pool), and
cross-channel LRN with `tf.nn.local_response_normalization` semantics."""

import numpy as np


def same_padding(n: int, k: int, s: int) -> tuple[int, int]:
    """TF SAME: out = ceil(n / s), total padding max((out - 1) s + k - n, 0), the extra pixel after."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv2d(x, kernel, bias, stride=1, padding="same"):
    """x (b, h, w, c), kernel (kh, kw, c, o) -> (b, h', w', o) float64."""
    x = np.asarray(x, np.float64)
    kh, kw = kernel.shape[:2]
    if padding == "same":
        (top, bottom), (left, right) = same_padding(x.shape[1], kh, stride), same_padding(x.shape[2], kw, stride)
        x = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride, :]
            out += patch @ kernel[i, j]
    return out + bias


def pool_same(x, kind, k=3, s=2):
    """k x k stride-s SAME pooling; "max" ignores padding, "avg" averages the valid elements only."""
    (top, _), (left, _) = same_padding(x.shape[1], k, s), same_padding(x.shape[2], k, s)
    oh, ow = -(-x.shape[1] // s), -(-x.shape[2] // s)
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - top, j * s - left
            window = x[:, max(r0, 0) : r0 + k, max(c0, 0) : c0 + k, :]
            out[:, i, j] = window.max(axis=(1, 2)) if kind == "max" else window.mean(axis=(1, 2))
    return out


def lrn(x, depth_radius, bias, alpha, beta):
    """y_c = x_c / (bias + alpha sum_{|c' - c| <= r} x_c'^2) ** beta."""
    channels = x.shape[-1]
    out = np.empty_like(x, dtype=np.float64)
    for c in range(channels):
        lo, hi = max(0, c - depth_radius), min(channels, c + depth_radius + 1)
        out[..., c] = x[..., c] / (bias + alpha * np.sum(x[..., lo:hi] ** 2, axis=-1)) ** beta
    return out


def relu(x):
    return np.maximum(x, 0.0)
