"""Depth-separable convolution with a fast depthwise kernel gradient (the RGC's tau/gate convs, spec ch2 4.7-4.8).

On CPU, TensorFlow's DepthwiseConv2dNativeBackpropFilter is the slowest op of an RGC Median training step (a third
of the bfloat16 step at 128 px). The kernel gradient of a stride-1 SAME depthwise conv

    dW[u, v, c] = sum_{b, i, j} xpad[b, i + u, j + v, c] * g[b, i, j, c]

is itself a depthwise conv: put (b, c) on the channel axis, the padded input as a single image and the output
gradient as the kernel; a VALID depthwise conv then yields dW (summed over b) about 9x faster. The forward pass and
the input gradient are TensorFlow's own ops. Other strides, paddings or multipliers fall back to Keras.
"""

# b: batch, h/w: space, c: channels, kh/kw: kernel
import keras
import tensorflow as tf
from keras import ops


def _same_padding(kh: int, kw: int):
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left], [0, 0]]


@tf.custom_gradient
def depthwise_conv2d_same(x, kernel):
    """Stride-1 SAME depthwise conv of x (b, h, w, c) with kernel (kh, kw, c, 1); returns (b, h, w, c)."""
    y = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")

    def grad(dy):
        b, h, w, c = x.shape
        kh, kw = kernel.shape[0], kernel.shape[1]
        dx = tf.nn.depthwise_conv2d_backprop_input(tf.shape(x), kernel, dy, [1, 1, 1, 1], "SAME")
        if b is None:  # unknown batch: TensorFlow's kernel gradient
            dk = tf.nn.depthwise_conv2d_backprop_filter(x, tf.shape(kernel), dy, [1, 1, 1, 1], "SAME")
            return dx, dk
        xp = tf.pad(x, _same_padding(kh, kw))  # (b, h + kh - 1, w + kw - 1, c)
        image = tf.reshape(tf.transpose(xp, [1, 2, 0, 3]), [1, h + kh - 1, w + kw - 1, b * c])
        filt = tf.reshape(tf.transpose(dy, [1, 2, 0, 3]), [h, w, b * c, 1])
        dk = tf.nn.depthwise_conv2d(image, filt, [1, 1, 1, 1], "VALID")  # (1, kh, kw, b * c)
        acc = tf.float32 if dk.dtype in (tf.bfloat16, tf.float16) else dk.dtype  # sum over b in >= float32
        dk = tf.reduce_sum(tf.reshape(tf.cast(dk, acc), [kh, kw, b, c]), axis=2)[..., None]
        return dx, tf.cast(dk, kernel.dtype)

    return y, grad


@keras.saving.register_keras_serializable(package="goaldriven")
class SeparableConv2D(keras.layers.SeparableConv2D):
    """keras.layers.SeparableConv2D (same weights and names) whose stride-1 SAME depthwise step uses
    `depthwise_conv2d_same`."""

    def call(self, inputs):
        fast = (
            tuple(self.strides) == (1, 1)
            and self.padding == "same"
            and self.data_format == "channels_last"
            and tuple(self.dilation_rate) == (1, 1)
            and self.depth_multiplier == 1
        )
        if not fast:
            return super().call(inputs)
        kernel = ops.convert_to_tensor(self.depthwise_kernel)  # autocast under mixed precision
        y = depthwise_conv2d_same(ops.convert_to_tensor(inputs), ops.cast(kernel, inputs.dtype))
        y = ops.conv(y, self.pointwise_kernel, strides=1, padding="valid", data_format=self.data_format)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y
