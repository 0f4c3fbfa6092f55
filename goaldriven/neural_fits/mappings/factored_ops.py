"""Pure TF pieces of the spatially factored readout: forward pass, counter-based dropout and penalties.

Reference: thesis §2.5.6, eq. 2.12; spec ch2 §8.4 (reference code `cell_utils.py::factored_fc`, `_get_regularizer`,
`laplacian_regularizer`, `group_sparsity_regularizer`).

Forward (eq. 2.12, with the reference's bias):
    r_hat[i, n, t] = sum_{x, y, k} w_s[x, y, n] * w_c[k, n] * f[i, t, x, y, k] + b[n]
Two evaluation orders with the same flops (2 * b * t * h * w * c * u per forward):
    "channels_first" (the reference's order): z = f . W_c -> (b, t, h, w, u), then sum_{x,y} z * w_s.
        Extra memory traffic ~ b * t * h * w * u (the intermediate z).
    "full_kernel": W[x, y, k, n] = w_s[x, y, n] * w_c[k, n] -> (h*w*c, u), then one GEMM f (b*t, h*w*c) . W.
        Extra memory traffic ~ h * w * c * u (the kernel, independent of the batch); no batch-sized intermediate.
    "auto" picks full_kernel when b * t >= c (the batch-sized intermediate would be the larger one). Measured on
    the 2-core CPU (14x14x256 features, 256 units, float32, forward + backward): b=64, t=20: full 96 vs channels
    first 80 GFLOP/s without XLA, 71 vs 40 with XLA; b=64, t=1: channels first 59 vs full 28 GFLOP/s.

Dropout (inverted, rate p): keep f where hash(seed, step, global element index) >= p * 2^32, scale by 1 / (1 - p).
The mask is a pure function of the element's position in the GLOBAL batch, so it is identical with and without XLA
and for any number of replicas (tf.random's stateless ops differ between XLA and the TF kernels).

Penalties (each with its own scale; TF1 L2 convention):
    l2(w) = sum w^2 / 2,   l1(w) = sum |w|
    laplacian(w_s) = sum_n sum (conv_valid(w_s[:, :, n], L))^2,  L = [[0.5, 1, 0.5], [1, -6, 1], [0.5, 1, 0.5]]
    group_sparsity(w_s, w_c) = sum_n ||w_s[:, :, n]||_2 * ||w_c[:, n]||_1
The group penalty is the reference group-sparsity formula (sum over (channel k, unit n) of the L2 norm over space)
evaluated on the unfactored kernel W[x, y, k, n] = w_s[x, y, n] w_c[k, n] that the readout represents (spec §8.4
names that kernel as its natural target): ||W[:, :, k, n]||_2 = |w_c[k, n]| ||w_s[:, :, n]||_2. It keeps units
independent (every group belongs to one unit), drives whole channels of a unit to zero, and, unlike any penalty on one
factor alone, cannot be evaded by rescaling w_s up and w_c down.
"""

import numpy as np
import tensorflow as tf

# b: batch (stimuli), t: time bins, h/w: space, c: channels, u: units

CONTRACTIONS = ("auto", "channels_first", "full_kernel")
LAPLACIAN_KERNEL = np.array([[0.5, 1.0, 0.5], [1.0, -6.0, 1.0], [0.5, 1.0, 0.5]], np.float32)
PENALTY_NAMES = ("spatial_l2", "spatial_l1", "channel_l2", "channel_l1", "laplacian", "group_sparsity")


def resolve_contraction(contraction: str, batch: int, bins: int, channels: int) -> str:
    """The evaluation order for a per-replica batch of `batch` stimuli x `bins` time bins."""
    if contraction not in CONTRACTIONS:
        raise ValueError(f"unknown contraction {contraction!r}; use one of {CONTRACTIONS}.")
    if contraction == "auto":
        return "full_kernel" if batch * bins >= channels else "channels_first"
    return contraction


def factored_forward(features, spatial, channel, bias, *, contraction: str, compute_dtype="float32"):
    """Eq. 2.12 for a batch: features (b, t, h, w, c), spatial (h, w, u), channel (c, u), bias (u,) -> (b, u, t).

    The contraction runs in `compute_dtype` (bfloat16 under mixed precision); sums over space and the output are
    float32. `contraction` must be resolved ("channels_first" or "full_kernel").
    """
    b, t, h, w, c = features.shape
    u = channel.shape[-1]
    f = tf.cast(features, compute_dtype)
    if contraction == "full_kernel":
        kernel = tf.reshape(spatial[:, :, None, :] * channel[None, None, :, :], (h * w * c, u))  # (h*w*c, u)
        out = tf.matmul(tf.reshape(f, (b * t, h * w * c)), tf.cast(kernel, compute_dtype))  # (b*t, u)
        out = tf.cast(out, tf.float32)
    elif contraction == "channels_first":
        z = tf.matmul(tf.reshape(f, (b * t * h * w, c)), tf.cast(channel, compute_dtype))  # (b*t*h*w, u)
        z = tf.reshape(z, (b * t, h * w, u)) * tf.cast(tf.reshape(spatial, (1, h * w, u)), compute_dtype)
        out = tf.reduce_sum(tf.cast(z, tf.float32), axis=1)  # (b*t, u)
    else:
        raise ValueError(f"contraction must be resolved to 'channels_first' or 'full_kernel'; got {contraction!r}.")
    out = tf.reshape(out, (b, t, u)) + tf.cast(bias, tf.float32)
    return tf.transpose(out, (0, 2, 1))  # (b, u, t)


def _mix32(x):
    """A 32-bit integer finalizer (xor-shift-multiply); a bijection on uint32 with good avalanche."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def dropout(features, rate: float, seed, offset):
    """Inverted dropout of `features` (b, ...) whose first element sits at flat index `offset` of the global batch.

    seed: int32 tensor (2,) = (user seed, step); offset: int32 scalar (replica id * per-replica elements).
    """
    if rate <= 0.0:
        return features
    seed = tf.bitcast(tf.cast(seed, tf.int32), tf.uint32)
    key = _mix32(seed[0] ^ _mix32(seed[1] + tf.constant(0x9E3779B9, tf.uint32)))
    n = int(np.prod(features.shape))
    if n >= 2**31:
        raise ValueError(
            f"a per-replica feature batch of {n} elements overflows the int32 dropout counter; "
            "use a smaller global_batch_size or more replicas."
        )
    index = tf.bitcast(tf.range(n, dtype=tf.int32) + tf.cast(offset, tf.int32), tf.uint32)
    bits = _mix32(_mix32(index ^ key) + key)
    keep = tf.reshape(bits >= tf.constant(min(int(rate * 2**32), 2**32 - 1), tf.uint32), features.shape)
    return tf.where(keep, features * tf.constant(1.0 / (1.0 - rate), features.dtype), tf.zeros_like(features))


def laplacian_penalty(spatial):
    """Sum of squares of each unit's mask (h, w, u) convolved (VALID) with LAPLACIAN_KERNEL."""
    masks = tf.transpose(spatial, (2, 0, 1))[..., None]  # (u, h, w, 1)
    kernel = tf.constant(LAPLACIAN_KERNEL[:, :, None, None])
    return tf.reduce_sum(tf.square(tf.nn.conv2d(masks, kernel, strides=1, padding="VALID")))


def group_sparsity_penalty(spatial, channel):
    """sum_n ||w_s[:, :, n]||_2 * ||w_c[:, n]||_1 (the reference group lasso of the unfactored kernel)."""
    spatial_norm = tf.sqrt(tf.reduce_sum(tf.square(spatial), axis=(0, 1)) + 1e-24)  # (u,)
    return tf.reduce_sum(spatial_norm * tf.reduce_sum(tf.abs(channel), axis=0))


def penalty_terms(spatial, channel, scales: dict) -> dict:
    """Scaled penalty terms {name: scalar} for the nonzero scales in `scales` (keys from PENALTY_NAMES)."""
    terms = {}
    for name, scale in scales.items():
        if not scale:
            continue
        if name == "spatial_l2":
            value = 0.5 * tf.reduce_sum(tf.square(spatial))
        elif name == "spatial_l1":
            value = tf.reduce_sum(tf.abs(spatial))
        elif name == "channel_l2":
            value = 0.5 * tf.reduce_sum(tf.square(channel))
        elif name == "channel_l1":
            value = tf.reduce_sum(tf.abs(channel))
        elif name == "laplacian":
            value = laplacian_penalty(spatial)
        elif name == "group_sparsity":
            value = group_sparsity_penalty(spatial, channel)
        else:
            raise ValueError(f"unknown penalty {name!r}; use one of {PENALTY_NAMES}.")
        terms[name] = tf.constant(float(scale), tf.float32) * value
    return terms
