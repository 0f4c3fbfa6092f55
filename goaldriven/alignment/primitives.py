"""The regularisation primitives of thesis Table 5.1 in the reference code's convention (spec ch5 2.1).

Each is a function of the layer's projections: f = x W (forward path, "x_{l+1}"), b = x B^T ("x_l^T B_l"),
r_f = f B ("B_l x_{l+1}", the reconstruction of the input), r_b = b W^T, and the kernels W and B (B given in W's
shape: B^T for dense layers). Sums run over features, means over the batch (axis 0):

    decay(W, B)    = sum W^2 + sum B^2                          gradient wrt B: 2 B
    amp(f, b)      = - sum_features mean_batch f * b            gradient wrt b: -f / n
    null(r_f, r_b) = sum_features mean_batch (r_f^2 + r_b^2)
    sparse(f, b)   = sum_features mean_batch (f^2 + b^2)
    self(W, B)     = - sum W * B                                gradient wrt B: -W

There are no 1/2 factors (the thesis' Table 5.1 has them on decay, null and sparse): with the same coefficient the
gradients of decay, null and sparse are twice the thesis'. `half=True` gives the thesis' convention. The thesis'
metaparameters (Table 5.5, Section 5.9.2) were run with the code's convention, which is the default here.
"""

# n: batch
import tensorflow as tf


def _batch_mean_sum(t: tf.Tensor) -> tf.Tensor:
    """sum over features of the mean over the batch, in float32: sum(t) / n."""
    t = tf.cast(t, tf.float32)
    return tf.reduce_sum(t) / tf.cast(tf.shape(t)[0], tf.float32)


@tf.custom_gradient
def _sum_squares(t):
    """sum t^2 in float32; its gradient 2 t dy is one element-wise pass (autodiff would materialise dy broadcast to
    t's shape and 2 t before multiplying: three passes over every kernel, per step)."""

    def grad(dy):
        return t * tf.cast(2.0 * dy, t.dtype)

    return tf.reduce_sum(tf.square(tf.cast(t, tf.float32))), grad


@tf.custom_gradient
def _negative_inner(w, b):
    """-sum W * B in float32, with the one-pass gradients -B dy and -W dy (as _sum_squares)."""

    def grad(dy):
        return b * tf.cast(-dy, b.dtype), w * tf.cast(-dy, w.dtype)

    return -tf.reduce_sum(tf.cast(w, tf.float32) * tf.cast(b, tf.float32)), grad


def decay(w: tf.Tensor, b: tf.Tensor, half: bool = False) -> tf.Tensor:
    """sum W^2 + sum B^2 (x 1/2 if half)."""
    value = _sum_squares(w) + _sum_squares(b)
    return 0.5 * value if half else value


def amp(f: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """- sum_features mean_batch (f * b): Hebbian alignment of the two paths' outputs."""
    return -_batch_mean_sum(tf.cast(f, tf.float32) * tf.cast(b, tf.float32))


def null(r_f: tf.Tensor, r_b: tf.Tensor | None = None, half: bool = False) -> tf.Tensor:
    """sum_features mean_batch r_f^2 (+ r_b^2): the energy of the reconstruction B x_{l+1}."""
    value = _batch_mean_sum(tf.square(tf.cast(r_f, tf.float32)))
    if r_b is not None:
        value += _batch_mean_sum(tf.square(tf.cast(r_b, tf.float32)))
    return 0.5 * value if half else value


def sparse(f: tf.Tensor | None, b: tf.Tensor, half: bool = False) -> tf.Tensor:
    """sum_features mean_batch (f^2 + b^2); f may be None (it carries no gradient for B)."""
    value = _batch_mean_sum(tf.square(tf.cast(b, tf.float32)))
    if f is not None:
        value += _batch_mean_sum(tf.square(tf.cast(f, tf.float32)))
    return 0.5 * value if half else value


def self_alignment(w: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """- sum W * B (B in W's shape): the non-local "self" primitive."""
    return _negative_inner(w, b)
