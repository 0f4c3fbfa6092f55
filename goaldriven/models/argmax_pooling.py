"""Max pooling that remembers where each maximum came from, and max-unpooling back to those positions.

Reference: spec ch3 A4.2 and C.6 (the mirrored decoder of the sparse autoencoder and depth prediction inverts every
max-pool with max-unpooling by the stored argmax indices, like PyTorch's MaxPool2d(return_indices=True) and
MaxUnpool2d).

    values, indices = max_pool_with_argmax(x, pool_size, strides)      valid padding, channels last
    indices[b, i, j, c] = ((b * H + y) * W + x) * C + c                 (y, x) the window's argmax in x[b, :, :, c]
    max_unpool(values, indices, (H, W, C))[b, y, x, c] = sum of the values whose index points at (b, y, x, c)

The index layout is that of `tf.nn.max_pool_with_argmax(..., include_batch_in_index=True)` (the same maxima, the same
tie-break: the first maximum in row-major window order), but computed from strided slices, because XLA has no kernel
for MaxPoolWithArgmax (jit_compile fails on it). Indices are int32: one replica's tensor before a pool must have fewer
than 2^31 elements (224 px AlexNet at a per-replica batch of 256: 5e7). The values come from `tf.nn.max_pool2d`, so
their gradient is the standard max-pool gradient.

Overlapping windows (3 x 3, stride 2) can pick the same input position twice; unpooling then SUMS the two values
(scatter-add: the adjoint of the max selection, deterministic). PyTorch's MaxUnpool2d writes one of them (undefined
which); the sum is the choice here.
"""

# b: batch, h/w: space before the pool, i/j: space after it, c: channels, k: window positions
import tensorflow as tf


def pooled_size(size: int, pool_size: int, strides: int) -> int:
    """Output side of a valid max-pool."""
    return (size - pool_size) // strides + 1


def max_pool_with_argmax(x: tf.Tensor, pool_size: int = 3, strides: int = 2) -> tuple[tf.Tensor, tf.Tensor]:
    """(values (b, i, j, c), int32 flat indices (b, i, j, c)) of a valid max-pool of `x` (b, h, w, c), static h, w, c."""
    _, h, w, c = x.shape
    if h is None or w is None or c is None:
        raise ValueError(f"max_pool_with_argmax needs static (h, w, c). Received shape {x.shape}")
    oh, ow = pooled_size(h, pool_size, strides), pooled_size(w, pool_size, strides)
    if oh < 1 or ow < 1:
        raise ValueError(f"a {pool_size} x {pool_size} pool does not fit in a {h} x {w} input.")
    values = tf.nn.max_pool2d(x, pool_size, strides, "VALID")  # (b, i, j, c)
    windows = [
        x[:, dy : dy + strides * (oh - 1) + 1 : strides, dx : dx + strides * (ow - 1) + 1 : strides, :]
        for dy in range(pool_size)
        for dx in range(pool_size)
    ]  # k of (b, i, j, c)
    which = tf.argmax(tf.stack(windows, axis=-1), axis=-1, output_type=tf.int32)  # (b, i, j, c): first maximum
    dy, dx = which // pool_size, which % pool_size
    rows = tf.range(oh, dtype=tf.int32)[None, :, None, None] * strides + dy  # (b, i, j, c)
    cols = tf.range(ow, dtype=tf.int32)[None, None, :, None] * strides + dx
    batch = tf.range(tf.shape(x)[0], dtype=tf.int32)[:, None, None, None]
    channel = tf.range(c, dtype=tf.int32)[None, None, None, :]
    indices = ((batch * h + rows) * w + cols) * c + channel
    return values, tf.stop_gradient(indices)


def max_unpool(values: tf.Tensor, indices: tf.Tensor, output_shape: tuple[int, int, int]) -> tf.Tensor:
    """Scatters `values` (b, i, j, c) to the flat `indices` of `max_pool_with_argmax` in zeros (b, h, w, c);
    values landing on the same position add up."""
    h, w, c = output_shape
    batch = tf.shape(values)[0]
    flat = tf.scatter_nd(
        tf.reshape(indices, [-1, 1]), tf.reshape(values, [-1]), tf.reshape(batch * h * w * c, [1])
    )  # (b * h * w * c,)
    return tf.reshape(flat, [batch, h, w, c])
