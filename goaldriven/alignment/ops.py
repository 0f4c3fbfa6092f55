"""Custom-gradient matmul and convolutions with a separate backward kernel (thesis Section 5.8.1, spec ch5 3.1).

Each op takes the layer input x, the forward kernel w and the backward kernel b:

    dense:      y = x w                    (x: (n, in), w: (in, out), b: (out, in))
                dx = dy b                  (not dy w^T)
                dw = x^T dy                (the usual kernel gradient)
                db = dw^T if tie_grad else 0
    conv2d:     y = conv2d(x, w)           (w, b: (kh, kw, c_in, c_out))
                dx = conv2d_transpose(dy, b)
                dw = conv2d_backprop_filter(x, dy);  db = dw if tie_grad else 0
    depthwise:  as conv2d with the depthwise ops (w, b: (kh, kw, c, multiplier)).

With b = w^T (dense) or b = w (convs) every op's gradients equal autodiff exactly. `tie_grad` is Kolen-Pollack's
transported update (B gets W's update, transposed). Bias, activation and everything between layers stay ordinary ops
with exact gradients. The functions are pure: kernels are passed as tensors, nothing is stored.
"""

# n: batch (all leading axes of a dense input), h/w: space, c: channels, kh/kw: kernel
import tensorflow as tf


def _as_list(value, name: str) -> list[int]:
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a positive int or a pair of them. Received: {value!r}")
    return [1, values[0], values[1], 1]


def _padding(padding: str) -> str:
    upper = padding.upper()
    if upper not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'same' or 'valid' (pad explicitly for other schemes). Received: {padding!r}")
    return upper


def aligned_matmul(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, tie_grad: bool = False) -> tf.Tensor:
    """x (..., in) @ w (in, out) -> (..., out), whose input gradient uses b (out, in) in place of w^T."""
    if w.shape.rank != 2 or b.shape.rank != 2 or tuple(b.shape) != (w.shape[1], w.shape[0]):
        raise ValueError(f"b must have w's transposed shape; received w {w.shape} and b {b.shape}.")

    @tf.custom_gradient
    def op(x, w, b):
        flat = tf.reshape(x, [-1, w.shape[0]])  # (n, in)
        y = tf.matmul(flat, w)  # (n, out)

        def grad(dy):
            dy = tf.reshape(dy, [-1, w.shape[1]])  # (n, out)
            dx = tf.reshape(tf.matmul(dy, b), tf.shape(x))
            dw = tf.matmul(flat, dy, transpose_a=True)  # (in, out)
            db = tf.transpose(dw) if tie_grad else tf.zeros_like(b)
            return dx, dw, db

        return tf.reshape(y, tf.concat([tf.shape(x)[:-1], [w.shape[1]]], 0)), grad

    return op(x, w, b)


def aligned_conv2d(
    x: tf.Tensor,
    w: tf.Tensor,
    b: tf.Tensor,
    strides=1,
    padding: str = "SAME",
    dilations=1,
    tie_grad: bool = False,
) -> tf.Tensor:
    """NHWC conv2d of x (n, h, w, c_in) with w (kh, kw, c_in, c_out); the input gradient is the transposed conv of
    the output gradient with b (same shape as w)."""
    if tuple(b.shape) != tuple(w.shape):
        raise ValueError(f"a conv's backward kernel has the forward kernel's shape; received w {w.shape}, b {b.shape}.")
    strides, dilations, padding = _as_list(strides, "strides"), _as_list(dilations, "dilations"), _padding(padding)

    @tf.custom_gradient
    def op(x, w, b):
        y = tf.nn.conv2d(x, w, strides, padding, dilations=dilations)

        def grad(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=b, out_backprop=dy, strides=strides, padding=padding,
                dilations=dilations,
            )  # fmt: skip
            dw = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides, padding=padding,
                dilations=dilations,
            )  # fmt: skip
            return dx, dw, (dw if tie_grad else tf.zeros_like(b))

        return y, grad

    return op(x, w, b)


def aligned_depthwise_conv2d(
    x: tf.Tensor,
    w: tf.Tensor,
    b: tf.Tensor,
    strides=1,
    padding: str = "SAME",
    tie_grad: bool = False,
) -> tf.Tensor:
    """Depthwise conv of x (n, h, w, c) with w (kh, kw, c, m); the input gradient uses b (same shape as w)."""
    if tuple(b.shape) != tuple(w.shape):
        raise ValueError(f"a conv's backward kernel has the forward kernel's shape; received w {w.shape}, b {b.shape}.")
    strides, padding = _as_list(strides, "strides"), _padding(padding)

    @tf.custom_gradient
    def op(x, w, b):
        y = tf.nn.depthwise_conv2d(x, w, strides, padding)

        def grad(dy):
            dx = tf.nn.depthwise_conv2d_backprop_input(tf.shape(x), b, dy, strides, padding)
            dw = tf.nn.depthwise_conv2d_backprop_filter(x, tf.shape(w), dy, strides, padding)
            return dx, dw, (dw if tie_grad else tf.zeros_like(b))

        return y, grad

    return op(x, w, b)


def conv2d_transpose(y: tf.Tensor, kernel: tf.Tensor, input_shape, strides=1, padding="SAME", dilations=1):
    """The transposed conv (input gradient) of a conv2d with `kernel`: maps (n, h', w', c_out) back to input_shape."""
    return tf.raw_ops.Conv2DBackpropInput(
        input_sizes=input_shape, filter=kernel, out_backprop=y, strides=_as_list(strides, "strides"),
        padding=_padding(padding), dilations=_as_list(dilations, "dilations"),
    )  # fmt: skip


def conv2d_kernel_gradient(x: tf.Tensor, y: tf.Tensor, kernel_shape, strides=1, padding="SAME", dilations=1):
    """The gradient of <y, conv2d(x, K)> with respect to K (the filter gradient of a conv2d): kernel_shape."""
    return tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=list(kernel_shape), out_backprop=y, strides=_as_list(strides, "strides"),
        padding=_padding(padding), dilations=_as_list(dilations, "dilations"),
    )  # fmt: skip


def depthwise_conv2d_transpose(y: tf.Tensor, kernel: tf.Tensor, input_shape, strides=1, padding="SAME"):
    """The transposed depthwise conv of a depthwise conv with `kernel`."""
    return tf.nn.depthwise_conv2d_backprop_input(
        input_shape, kernel, y, _as_list(strides, "strides"), _padding(padding)
    )
